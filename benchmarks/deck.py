"""Issue 21: the lecture deck of a 512 px image, detector and ERF included, against a 20 s budget.

One deck is what ``python -m fpn_core deck`` computes after the model is built: the analysis, a
Faster R-CNN pass (random weights: its cost does not depend on them), the receptive fields and
stage shares at the image centre, the ablations, the scale probe, the FLOP count, and every
slide rendered and laid out with python-pptx. The parts are reported beside the total.
"""

from __future__ import annotations

import time

from .forward import C3_C5, pyramid_for
from .measure import Context, wait_for_quiet
from .receptive import _image, _median_s
from .report import Row, fmt

SECTION = "lecture deck, 512 px, detector and ERF included (issue 21)"
SIZE = 512
TARGET_S = 20.0


def run(ctx: Context) -> None:
    """Time one whole deck (target <= 20 s) and its parts."""
    from fpn_core.deck import build_deck, run_lesson
    from fpn_core.detection import build_detector, detect
    from fpn_core.point import analyse_point
    from fpn_core.pyramid import run_pyramid

    rep = ctx.report
    rep.section(SECTION)
    image, label = _image()
    model = pyramid_for(ctx, C3_C5, 256)
    det = build_detector("faster-rcnn", weights="random", device=ctx.device, allow_download=False)
    h, w = image.shape[:2]
    parts: dict[str, float] = {}

    def one_deck() -> int:
        t = time.perf_counter()
        out = run_pyramid(model, image, size=SIZE, repeats=1)
        dets = detect(det, image, 0.5, size=SIZE)
        parts["analysis + detector"] = time.perf_counter() - t
        t = time.perf_counter()
        point = analyse_point(model, image, (w // 2, h // 2), size=SIZE)
        parts["ERF + stage shares"] = time.perf_counter() - t
        t = time.perf_counter()
        runs = run_lesson(model, out, image, size=SIZE, detections=dets, point=point)
        parts["ablations, probe, FLOPs"] = time.perf_counter() - t
        t = time.perf_counter()
        data = build_deck(model, out, runs, source=label)
        parts["slides rendered and laid out"] = time.perf_counter() - t
        return len(data)

    wait_for_quiet(1.0, window_s=0.1)
    total, times, how = _median_s(ctx, one_deck, 1 if ctx.quick else 3)
    rep.row(
        Row(
            SECTION,
            f"{label} at {SIZE} px, c3..c5, d=256, Faster R-CNN, point at the centre: one deck",
            total,
            " s",
            TARGET_S,
            "<=",
            f"{how}; all runs {', '.join(fmt(t) for t in times)} s",
        )
    )
    for name, seconds in parts.items():
        rep.row(Row(SECTION, f"last run: {name}", seconds, " s"))
    rep.note(SECTION, "random weights (timing does not depend on the weights); the model build is not counted")
