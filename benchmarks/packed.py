"""Section packed: convolutions with their weights packed once (``fpn_core.packed``) against torch's own.

Each case runs the same function with packing off (``packed.packing(False)``: torch's
``Conv2d`` modules, a weight reorder per call) and on, alternately in one run; the ratio is
packed / torch's. Random weights; the outputs are the same numbers (tests/test_packed.py).
"""

from __future__ import annotations

import numpy as np
import torch

from .forward import C3_C5, pyramid_for, shared_backbone
from .measure import Context, paired, square_image
from .report import Row, Table, fmt

SECTION = "packed convolutions"


def run(ctx: Context) -> None:
    from fpn_core import packed
    from fpn_core.pyramid import run_pyramid

    rep = ctx.report
    rep.section(SECTION)
    if not packed.enabled():
        rep.row(Row(SECTION, "packed convolutions", None, "x", skipped="packing is off or its ops are missing"))
        return
    cases = [("folded ResNet-50, 256 x 320 input", _body(ctx, 256, 320))]
    model = pyramid_for(ctx, C3_C5, 256)
    for size in (224,) if ctx.quick else (224, 512):
        image = square_image(size)
        cases.append(
            (
                f"analysis c3..c5, d = 256, {size} px",
                lambda image=image, size=size: run_pyramid(model, image, size=size),
            )
        )
    if not ctx.quick:
        cases.append(("live RetinaNet frame, 320 px (boxes view)", _retinanet_frame()))
    table = Table(
        SECTION,
        "torch's convolutions against packed ones, same run",
        ["case", "torch ms", "packed ms", "ratio", "spread"],
    )
    for name, fn in cases:

        def unpacked(fn=fn):
            with packed.packing(False):
                return fn()

        res = paired(unpacked, fn, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
        rep.row(
            Row(
                SECTION,
                f"{name}: packed / torch's",
                res.ratio,
                "x",
                detail=f"{fmt(res.a)} -> {fmt(res.b)} ms; {res.spread()}",
            )
        )
        table.rows.append([name, fmt(res.a), fmt(res.b), fmt(res.ratio), res.spread()])
    rep.table(table)
    info = packed.cache_info()
    rep.row(
        Row(
            SECTION,
            "packed weights held",
            info["bytes"] / 2**20,
            " MB",
            packed.BUDGET_MB,
            detail=f"{info['packs']} packs of {info['convolutions']} convolutions",
        )
    )


def _body(ctx: Context, h: int, w: int):
    backbone = shared_backbone(ctx)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    x = x.to(ctx.device).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            return backbone(x)

    return forward


def _retinanet_frame():
    from fpn_core.detection import build_detector
    from fpn_core.live import LiveView, process_frame

    det = build_detector("retinanet", weights="random", allow_download=False)
    frame = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)
    view = LiveView(view="boxes", size=320)
    return lambda: process_frame(det, frame, view)
