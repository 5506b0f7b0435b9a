"""Issue 13: receptive fields and stage contributions at one point, against the 3 s page budget at 512 px.

One "point" is what the page computes when the user picks a point: the effective receptive
field of the cell under it for c2..c5 and every pyramid level (one forward pass with gradients,
one backward pass per map) plus the exact stage contributions of every level (one batched FPN
pass), i.e. ``fpn_core.point.analyse_point``. Runs are separated by a wait for quiet CPUs, and
the figure is the median; the parts (ERF alone, contributions alone) and the rendering of every
figure to PNG are reported beside it for information.
"""

from __future__ import annotations

import statistics

from . import ROOT, measure
from .forward import C2_C5, C3_C5, pyramid_for
from .measure import Context, square_image, time_watched, wait_for_quiet
from .report import Row, fmt

SECTION = "receptive fields and stage contributions at one point (issue 13)"
SIZE = 512
TARGET_S = 3.0


def _image():
    """The cat sample (the issue's screenshot image) when present, else the suite's square photo."""
    path = ROOT / "samples" / "chelsea.jpg"
    if path.exists():
        from fpn_core import load_image

        return load_image(path), "samples/chelsea.jpg"
    return square_image(SIZE), f"square photo {SIZE} px"


def _median_s(ctx: Context, fn, runs: int) -> tuple[float, list[float], str]:
    """Median seconds of ``runs`` calls after one untimed warm-up, and how quiet the machine was.

    As in the scaling section, a run during which other processes used 10% or more of the CPUs
    is dropped when at least 3 quiet runs remain (on two shared cores, other work can slow a
    run several times over).
    """
    fn()
    got = []
    for _ in range(runs):
        wait_for_quiet(measure.SETTLE_S, window_s=0.1)
        ms, other = time_watched(fn, ctx.device)
        got.append((ms / 1e3, other))
    quiet = [t for t, other in got if other < 0.10]
    kept = quiet if len(quiet) >= 3 else [t for t, _ in got]
    how = (
        f"{len(quiet)} of {len(got)} runs quiet (others < 10% of the CPUs), median of those"
        if len(quiet) >= 3
        else f"only {len(quiet)} of {len(got)} runs quiet: median of all, inflated by other work"
    )
    return statistics.median(kept), [t for t, _ in got], how


def run(ctx: Context) -> None:
    """Time ``analyse_point`` at 512 px for the default stages and for c2..c5 (target <= 3 s)."""
    from fpn_core import run_backbone
    from fpn_core.contributions import stage_contributions
    from fpn_core.figures import figure_to_png
    from fpn_core.point import analyse_point, point_figures
    from fpn_core.receptive import erf_maps

    rep = ctx.report
    rep.section(SECTION)
    image, label = _image()
    point = (image.shape[1] / 2, image.shape[0] / 2)
    runs = 3 if ctx.quick else max(5, ctx.pairs)
    for stages in (C3_C5,) if ctx.quick else (C3_C5, C2_C5):
        model = pyramid_for(ctx, stages, 256)
        names = ("c2", "c3", "c4", "c5", *model.config.level_names)
        what = f"{','.join(stages)}, {label} at {SIZE} px, ERF of {', '.join(names)} + contributions"
        total, times, how = _median_s(ctx, lambda model=model: analyse_point(model, image, point, size=SIZE), runs)
        rep.row(
            Row(
                SECTION,
                f"{what}: one point",
                total,
                " s",
                TARGET_S,
                "<=",
                f"{how}; all runs {', '.join(fmt(t) for t in times)} s",
            )
        )
        erf_s, _, _ = _median_s(ctx, lambda model=model: erf_maps(model, image, point, size=SIZE), runs)
        stage_maps = run_backbone(model.backbone, image, size=SIZE).stages
        contrib_s, _, _ = _median_s(
            ctx, lambda model=model, maps=stage_maps: stage_contributions(model.fpn, maps, model.config), runs
        )
        rep.row(
            Row(
                SECTION,
                f"{','.join(stages)}: ERF maps alone",
                erf_s,
                " s",
                detail=f"one forward with gradients, {len(names)} backward passes",
            )
        )
        rep.row(
            Row(
                SECTION,
                f"{','.join(stages)}: stage contributions alone",
                contrib_s,
                " s",
                detail=f"one FPN pass with batch {len(stages) + 1} (bias row + one row per stage)",
            )
        )
        if stages == C3_C5:
            analysis = analyse_point(model, image, point, size=SIZE)

            def render(analysis=analysis) -> int:
                return sum(len(figure_to_png(fig)) for fig in point_figures(analysis).values())

            fig_s, _, _ = _median_s(ctx, render, 1 if ctx.quick else 3)
            rep.row(
                Row(
                    SECTION,
                    f"{','.join(stages)}: every figure of the point to PNG (export)",
                    fig_s,
                    " s",
                    detail="matplotlib, 100 dpi; a page can render the visible panels only",
                )
            )
    rep.note(SECTION, "random weights (timing does not depend on the weights); the point is the image centre")
