"""Sections 2, 3, 5 and the half-precision one: timing overhead, width changes, efficiency, bf16."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from .measure import Context, matmul_gflops, paired, square_image, time_ms
from .reference import reference_pair, relative_errors
from .report import Row, Table, fmt

OVERHEAD = "2 instrumentation overhead"
WIDTH = "3 width change (FPN only from cached stages)"
EFFICIENCY = "5 efficiency vs matmul peak"
HALF = "half precision (bf16)"

C3_C5: tuple[str, ...] = ("c3", "c4", "c5")
C2_C5: tuple[str, ...] = ("c2", "c3", "c4", "c5")


def shared_backbone(ctx: Context):
    """One random-weight, optimized backbone per run, shared by every FPN the sections build."""
    if "backbone" not in ctx.cache:
        from fpn_core import build_backbone

        ctx.cache["backbone"] = build_backbone("random", device=ctx.device, allow_download=False)
    return ctx.cache["backbone"]


def pyramid_for(ctx: Context, stages: tuple[str, ...], out_channels: int):
    """A Pyramid on the shared backbone (only the FPN is built)."""
    from fpn_core import PyramidConfig, assemble_pyramid

    config = PyramidConfig(out_channels=out_channels, stages=stages, weights="random", device=str(ctx.device))
    return assemble_pyramid(shared_backbone(ctx), config)


# ------------------------------------------------------------------ 2 overhead


def run_overhead(ctx: Context) -> None:
    """Target 2: run_pyramid (per-step StepTimer) costs <= 5% over the same forward untimed."""
    from fpn_core.levels import level_of, torchvision_key_to_level
    from fpn_core.pyramid import prepare_input, run_pyramid
    from fpn_core.timing import NULL_RECORDER, StepTimer

    rep = ctx.report
    rep.section(OVERHEAD)
    cases = [(C3_C5, 224)] if ctx.quick else [(C3_C5, 512), (C3_C5, 224), (C2_C5, 512)]
    for stages, size in cases:
        model = pyramid_for(ctx, stages, 256)
        image = square_image(size)
        label = f"{','.join(stages)} {size} px"

        def untimed(model=model, image=image, size=size):
            _, x = prepare_input(image, size, model.backbone)
            with torch.inference_mode():
                return model(x)  # Pyramid.forward: NULL recorder, no steps kept

        def timed(model=model, image=image, size=size):
            return run_pyramid(model, image, size=size)

        res = paired(untimed, timed, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
        rep.row(
            Row(
                OVERHEAD,
                f"{label}: run_pyramid / (prepare_input + model(x))",
                res.ratio,
                "x",
                1.05,
                "<=",
                f"untimed {fmt(res.a)} ms, timed {fmt(res.b)} ms; {res.spread()}",
            )
        )

    # The recorder alone, on the identical code path (forward_steps keeps its steps either way).
    model = pyramid_for(ctx, C3_C5, 256)
    size = 224 if ctx.quick else 512
    _, x = prepare_input(square_image(size), size, model.backbone)
    names = [level_of(s) for s in model.config.stages] + [torchvision_key_to_level("pool", model.config.stages)]

    def with_recorder(rec_factory):
        def go():
            rec = rec_factory()
            with torch.inference_mode():
                stages = model.backbone(x, rec)
                feats = OrderedDict((s, stages[s]) for s in model.config.stages)
                return model.fpn.forward_steps(feats, rec, names)

        return go

    res = paired(
        with_recorder(lambda: NULL_RECORDER),
        with_recorder(lambda: StepTimer(ctx.device)),
        pairs=ctx.pairs,
        warmup=ctx.warmup,
        device=ctx.device,
    )
    rep.row(
        Row(
            OVERHEAD,
            f"c3,c4,c5 {size} px: StepTimer / NULL_RECORDER (same forward_steps path)",
            res.ratio,
            "x",
            detail=f"null {fmt(res.a)} ms, StepTimer {fmt(res.b)} ms; {res.spread()}",
        )
    )


# ------------------------------------------------------------------ 3 width change


def run_width(ctx: Context) -> None:
    """Target 3: run_fpn on cached stages <= 0.35x a full analysis at width 256, <= 0.15x at 64 (512 px)."""
    from fpn_core import build_fpn, count_flops, run_fpn, run_pyramid

    rep = ctx.report
    rep.section(WIDTH)
    size = 512
    image = square_image(size)
    table = Table(
        WIDTH,
        "FPN-only vs full analysis at 512 px (ideal = FPN share of counted FLOPs)",
        ["stages", "width", "full ms", "FPN ms", "ratio", "target", "FLOP share", "spread"],
    )
    for stages in (C3_C5,) if ctx.quick else (C3_C5, C2_C5):
        for out_channels, target in ((256, 0.35), (64, 0.15)):
            model = pyramid_for(ctx, stages, out_channels)
            cached = run_pyramid(model, image, size=size).stages

            def full(model=model):
                return run_pyramid(model, image, size=size)

            def fpn_only(model=model, cached=cached):
                return run_fpn(model.fpn, cached, model.config)

            res = paired(full, fpn_only, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
            flops = count_flops(model, image, size=size)
            fpn_share = sum(v for k, v in flops.items() if k.startswith("p")) / sum(flops.values())
            label = f"{','.join(stages)} width {out_channels}"
            rep.row(
                Row(
                    WIDTH,
                    f"{label}: run_fpn(cached) / run_pyramid",
                    res.ratio,
                    "x",
                    target,
                    "<=",
                    f"full {fmt(res.a)} ms, FPN {fmt(res.b)} ms, FPN share of FLOPs {fpn_share:.2f}; {res.spread()}",
                )
            )
            table.rows.append(
                [
                    ",".join(stages),
                    str(out_channels),
                    fmt(res.a),
                    fmt(res.b),
                    fmt(res.ratio),
                    f"<= {target}",
                    f"{fpn_share:.2f}",
                    res.spread(),
                ]
            )
    rep.table(table)

    # A width change also needs the new FPN: building it (seeded init) is part of the wait.
    backbone = shared_backbone(ctx)
    from fpn_core import PyramidConfig

    for stages in (C3_C5,) if ctx.quick else (C3_C5, C2_C5):
        config = PyramidConfig(out_channels=256, stages=stages, weights="random", device=str(ctx.device))
        times = sorted(time_ms(lambda config=config: build_fpn(config, backbone), ctx.device)[0] for _ in range(3))
        rep.row(
            Row(
                WIDTH,
                f"{','.join(stages)} width 256: build_fpn (seeded init, uncached)",
                times[1],
                " ms",
                detail="median of 3; a dashboard that caches FPNs per config pays this once per width",
            )
        )


# ------------------------------------------------------------------ 5 efficiency


def run_efficiency(ctx: Context) -> None:
    """Target 5: achieved GFLOP/s of the full analysis >= 80% of a 2048^2 float32 matmul, same run."""
    from fpn_core import count_flops, run_pyramid

    rep = ctx.report
    rep.section(EFFICIENCY)
    _, ours, _ = reference_pair(ctx)
    mm = matmul_gflops(ctx.device)
    n = 2048
    mm_reps = 3
    table = Table(
        EFFICIENCY,
        "achieved GFLOP/s (reference configuration c2..c5, width 256, p6)",
        ["size", "GFLOP", "forward ms", "GFLOP/s", "matmul GFLOP/s", "efficiency", "spread"],
    )
    for size in (224,) if ctx.quick else (224, 512):
        image = square_image(size)
        gflop = sum(count_flops(ours, image, size=size).values()) / 1e9

        def matmuls():
            for _ in range(mm_reps):
                mm()

        res = paired(
            matmuls,
            lambda image=image, size=size: run_pyramid(ours, image, size=size),
            pairs=ctx.pairs,
            warmup=ctx.warmup,
            device=ctx.device,
        )
        mm_gflops = mm_reps * 2 * n**3 / 1e9 / (res.a * 1e-3)
        achieved = gflop / (res.b * 1e-3)
        # per pair: (gflop / b) / (mm_flops / a); the median of per-pair efficiencies
        effs = sorted(gflop * a / (mm_reps * 2 * n**3 / 1e9 * b) for a, b in zip(res.a_ms, res.b_ms, strict=True))
        eff = float(np.median(effs))
        quiet = [
            gflop * a / (mm_reps * 2 * n**3 / 1e9 * b)
            for a, b, o in zip(res.a_ms, res.b_ms, res.others, strict=True)
            if o < res.QUIET
        ]
        quiet_text = (
            f"quiet-pair efficiency {np.median(quiet) * 100:.0f}% ({len(quiet)} pairs); "
            if len(quiet) >= 3
            else f"only {len(quiet)} quiet pairs; "
        )
        rep.row(
            Row(
                EFFICIENCY,
                f"{size} px: achieved / matmul peak",
                eff * 100,
                "%",
                80.0,
                ">=",
                f"{fmt(gflop)} GFLOP in {fmt(res.b)} ms = {fmt(achieved)} GFLOP/s; matmul {fmt(mm_gflops)} "
                f"GFLOP/s; {quiet_text}{res.spread()}",
            )
        )
        table.rows.append(
            [str(size), fmt(gflop), fmt(res.b), fmt(achieved), fmt(mm_gflops), f"{eff * 100:.0f}%", res.spread()]
        )
    rep.table(table)
    rep.note(
        EFFICIENCY,
        "FLOPs are FlopCounterMode's (2 per multiply-add, convolutions only); 90% of the CPU time "
        "is oneDNN convolution, the rest ReLU/add/upsample/pool passes that count no FLOPs",
    )


# ------------------------------------------------------------------ half precision


def run_half(ctx: Context) -> None:
    """bf16 speed-up and error: on CUDA the GPU measurement; on CPU an informational AMX row."""
    from fpn_core.pyramid import prepare_input

    rep = ctx.report
    rep.section(HALF)
    if ctx.device.type != "cuda":
        rep.row(Row(HALF, "CUDA bf16 autocast speed-up", None, "x", skipped="no GPU on this machine"))
    _, ours, _ = reference_pair(ctx)
    size = 224 if ctx.quick else 512
    _, x = prepare_input(square_image(size), size, ours.backbone)
    dev = ctx.device.type

    def fp32():
        with torch.inference_mode():
            return ours(x)

    def bf16():
        with torch.inference_mode(), torch.autocast(dev, dtype=torch.bfloat16):
            return ours(x)

    base = fp32()
    errs = relative_errors(
        {k: base[v] for k, v in (("0", "p2"), ("1", "p3"), ("2", "p4"), ("3", "p5"), ("pool", "p6"))}, bf16()
    )
    res = paired(fp32, bf16, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
    name = "CUDA" if dev == "cuda" else "CPU (AMX)"
    rep.row(
        Row(
            HALF,
            f"{name} bf16 autocast / fp32 at {size} px",
            res.ratio,
            "x",
            detail=f"fp32 {fmt(res.a)} ms, bf16 {fmt(res.b)} ms, max rel err {max(errs.values()):.1e} "
            f"(above the 1e-3 equality bound); {res.spread()}",
        )
    )
