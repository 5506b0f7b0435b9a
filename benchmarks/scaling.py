"""Section 6: time and peak memory against input size, time against FPN width, and a plot.

Times are measured round-robin over the sizes (every size once per round), so a burst of load
from other work spreads over all sizes instead of inflating one. Memory comes from a fresh
subprocess per size (``VmHWM``), since a process's high-water mark never goes down.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import numpy as np

from . import ROOT, measure
from .forward import C2_C5, C3_C5, pyramid_for
from .measure import Context, square_image, time_watched, wait_for_quiet
from .report import Row, Table, fmt

SECTION = "6 scaling with input size and width"
PEAK_LIMIT_MB = 1500.0  # 1.5 GB, 1 MB = 10^6 bytes


def probe(args: list[str], timeout: float = 300, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m benchmarks._probe ARGS`` in a fresh interpreter and parse its JSON line.

    ``env`` replaces the child's environment (this process's own is never changed).
    """
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE_RESULT "):
            return json.loads(line.removeprefix("PROBE_RESULT "))
    raise RuntimeError(f"probe {args} failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")


def _round_robin(ctx: Context, cases: list, run_case, rounds: int) -> dict:
    """Ms per case, every case once per round (after one untimed warm-up each), quiet samples only.

    Before each run it waits (up to ``--settle``) for other processes to leave the CPUs; a sample
    during which they used 10% or more of the CPUs is dropped when at least 3 quiet ones remain.
    """
    for case in cases:
        run_case(case)
    samples: dict = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            wait_for_quiet(min(measure.SETTLE_S, 1.0), window_s=0.1)
            samples[case].append(time_watched(lambda case=case: run_case(case), ctx.device))
    times = {}
    for case, got in samples.items():
        quiet = [ms for ms, others in got if others < 0.10]
        times[case] = quiet if len(quiet) >= 3 else [ms for ms, _ in got]
    ctx.cache.setdefault("round_robin_quiet", []).append(
        sum(len([1 for _, o in got if o < 0.10]) for got in samples.values()) / max(1, sum(map(len, samples.values())))
    )
    return times


def run(ctx: Context) -> None:
    from fpn_core import run_fpn, run_pyramid

    rep = ctx.report
    rep.section(SECTION)
    rounds = 3 if ctx.quick else ctx.pairs
    sizes = [128, 256, 512] if ctx.quick else [128, 256, 384, 512, 640, 768, 896, 1024]
    model = pyramid_for(ctx, C3_C5, 256)
    images = {s: square_image(s) for s in sizes}
    size_times = _round_robin(ctx, sizes, lambda s: run_pyramid(model, images[s], size=s), rounds)

    # Memory: one fresh process per size, plus the heaviest configuration at the largest size.
    mem_cases = [(1024, "c3,c4,c5")] if ctx.quick else [(s, "c3,c4,c5") for s in sizes] + [(1024, "c2,c3,c4,c5")]
    mem = {}
    for size, stages in mem_cases:
        try:
            mem[(size, stages)] = probe(["memory", "--size", str(size), "--stages", stages])
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rep.note(SECTION, f"memory probe at {size} px ({stages}) failed: {exc}")

    table = Table(
        SECTION,
        "time and memory vs input size (c3,c4,c5, width 256; median ms of the quiet samples of round-robin runs)",
        [
            "size",
            "megapixels",
            "ms",
            "samples",
            "min-max ms",
            "ms / MP",
            "peak RSS MB",
            "RSS after build MB",
            "result tensors MB",
        ],
    )
    mps, meds = [], []
    for s in sizes:
        t = size_times[s]
        mp = s * s / 1e6
        med = statistics.median(t)
        mps.append(mp)
        meds.append(med)
        m = mem.get((s, "c3,c4,c5"))
        table.rows.append(
            [
                str(s),
                f"{mp:.3f}",
                fmt(med),
                str(len(t)),
                f"{fmt(min(t))}-{fmt(max(t))}",
                fmt(med / mp),
                fmt(m["peak_rss_mb"]) if m else "-",
                fmt(m["rss_after_build_mb"]) if m else "-",
                fmt(m["result_tensors_mb"]) if m else "-",
            ]
        )
    rep.table(table)
    slope, intercept = np.polyfit(mps, meds, 1)
    fitted = np.polyval([slope, intercept], mps)
    r2 = 1 - float(np.sum((np.array(meds) - fitted) ** 2) / np.sum((np.array(meds) - np.mean(meds)) ** 2))
    rep.row(
        Row(
            SECTION,
            "time per megapixel (linear fit over sizes)",
            float(slope),
            " ms/MP",
            detail=f"fit: {fmt(intercept)} ms + {fmt(slope)} ms/MP x pixels, R^2 {r2:.3f}; per-size ms/MP "
            + ", ".join(f"{s}:{fmt(m / mp)}" for s, m, mp in zip(sizes, meds, mps, strict=True)),
        )
    )

    for (size, stages), m in mem.items():
        if size != 1024:
            continue
        rep.row(
            Row(
                SECTION,
                f"peak RSS, one analysis at 1024 px ({stages}, width 256), fresh process",
                m["peak_rss_mb"],
                " MB",
                PEAK_LIMIT_MB,
                "<=",
                f"RSS after import {fmt(m['rss_after_import_mb'])} MB, after build {fmt(m['rss_after_build_mb'])} "
                f"MB, after analysis {fmt(m['rss_after_analysis_mb'])} MB; results hold "
                f"{fmt(m['result_tensors_mb'])} MB of tensors (VmHWM)",
            )
        )
    if mem:
        base = next(iter(mem.values()))
        rep.row(
            Row(
                SECTION,
                "baseline RSS after `import fpn_core` (torch, torchvision, cv2, matplotlib)",
                base["rss_after_import_mb"],
                " MB",
                detail="fresh process, before any model is built",
            )
        )

    sweep = [16, 256] if ctx.quick else [16, 32, 64, 128, 256, 512]
    size = 512
    image = square_image(size)
    models = {w: pyramid_for(ctx, C3_C5, w) for w in sweep}
    cached = run_pyramid(models[sweep[0]], image, size=size).stages
    full_times = _round_robin(ctx, sweep, lambda w: run_pyramid(models[w], image, size=size), rounds)
    fpn_times = _round_robin(ctx, sweep, lambda w: run_fpn(models[w].fpn, cached, models[w].config), rounds)
    wtable = Table(
        SECTION, "time vs FPN width at 512 px (c3,c4,c5; median ms)", ["width", "full ms", "FPN-only ms", "FPN / full"]
    )
    for w in sweep:
        f, p = statistics.median(full_times[w]), statistics.median(fpn_times[w])
        wtable.rows.append([str(w), fmt(f), fmt(p), fmt(p / f)])
    rep.table(wtable)
    rep.note(
        SECTION,
        "quiet samples kept per round-robin sweep: "
        + ", ".join(f"{q * 100:.0f}%" for q in ctx.cache.get("round_robin_quiet", []))
        + " (all samples used where fewer than 3 "
        "were quiet)",
    )
    c2_model = pyramid_for(ctx, C2_C5, 256)
    rep.note(
        SECTION,
        f"c2..c5 (p2 at stride 4) is the heavy case: FPN parameters at width 256 "
        f"{sum(p.numel() for p in c2_model.fpn.parameters()) / 1e6:.2f} M",
    )

    path = _plot(ctx, sizes, size_times, mem, sweep, full_times, fpn_times)
    rep.note(SECTION, f"plot saved to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def _plot(ctx: Context, sizes, size_times, mem, sweep, full_times, fpn_times):
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    mps = [s * s / 1e6 for s in sizes]
    ax1.plot(mps, [statistics.median(size_times[s]) for s in sizes], "o-", label="median")
    ax1.fill_between(
        mps, [min(size_times[s]) for s in sizes], [max(size_times[s]) for s in sizes], alpha=0.2, label="min-max"
    )
    ax1.set(
        xlabel="input megapixels (square, 128 to 1024 px)",
        ylabel="ms per analysis",
        title="Time vs input size (c3-c5, d=256)",
    )
    ax1.legend()
    mem_sizes = sorted(s for s, st in mem if st == "c3,c4,c5")
    ax2.plot(mem_sizes, [mem[(s, "c3,c4,c5")]["peak_rss_mb"] for s in mem_sizes], "o-", label="peak RSS")
    ax2.plot(mem_sizes, [mem[(s, "c3,c4,c5")]["rss_after_build_mb"] for s in mem_sizes], "s--", label="RSS after build")
    ax2.axhline(PEAK_LIMIT_MB, color="red", ls=":", label="1.5 GB target")
    ax2.set(xlabel="input side (px)", ylabel="MB", title="Peak memory, fresh process")
    ax2.legend()
    ax3.plot(sweep, [statistics.median(full_times[w]) for w in sweep], "o-", label="full analysis")
    ax3.plot(sweep, [statistics.median(fpn_times[w]) for w in sweep], "s-", label="FPN only (cached stages)")
    ax3.set_xscale("log", base=2)
    ax3.set(xlabel="FPN width d", ylabel="ms at 512 px", title="Time vs width (c3-c5)")
    ax3.legend()
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    out = Path(str(ctx.out_dir))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scaling.png"
    fig.savefig(path, dpi=100)
    return path
