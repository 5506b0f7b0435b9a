"""``python -m benchmarks``: run the sections, print every table, write results/<stem>.{md,json}.

Examples::

    python -m benchmarks                 # everything, 7 pairs per comparison (results/latest.md)
    python -m benchmarks --quick         # smoke run, under two minutes (results/quick.md)
    python -m benchmarks --only reference,overhead --pairs 11
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from . import RESULTS_DIR, ROOT, measure
from .measure import Context, load_average
from .report import Report, Row


def _sections() -> dict[str, Callable[[Context], None]]:
    from . import (
        camera,
        coldstart,
        concurrency,
        deck,
        detection,
        display,
        forward,
        frameworks,
        live,
        models,
        packed,
        receptive,
        reference,
        scaling,
    )

    return {
        "reference": reference.run,
        "overhead": forward.run_overhead,
        "width": forward.run_width,
        "display": display.run,
        "efficiency": forward.run_efficiency,
        "packed": packed.run,
        "scaling": scaling.run,
        "coldstart": coldstart.run,
        "concurrency": concurrency.run,
        "contention": concurrency.run_contention,
        "half": forward.run_half,
        "live": live.run,
        "receptive": receptive.run,
        "detection": detection.run,
        "models": models.run,
        "frameworks": frameworks.run,
        "camera": camera.run,
        "deck": deck.run,
    }


NAMES = (
    "reference",
    "overhead",
    "width",
    "display",
    "efficiency",
    "packed",
    "scaling",
    "coldstart",
    "concurrency",
    "contention",
    "half",
    "live",
    "receptive",
    "detection",
    "models",
    "frameworks",
    "camera",
    "deck",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and sizes: a smoke run under 2 minutes")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(NAMES)}")
    parser.add_argument("--pairs", type=int, default=None, help="alternating pairs per comparison (default 7; 3 quick)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go (default benchmarks/results)")
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="max seconds to wait before each pair for other processes to leave the CPUs "
        "(default 3; 0.5 quick; 0 never waits)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: the engine's choice)")
    parser.add_argument("--dashboard", type=Path, default=ROOT / "dashboard.py", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in NAMES]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    args.only = only or list(NAMES)
    if args.pairs is None:
        args.pairs = 3 if args.quick else 7
    if args.settle is None:
        args.settle = 0.5 if args.quick else 3.0
    if args.pairs < 1:
        parser.error(f"--pairs must be positive, got {args.pairs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))  # fpn_core from this checkout, whatever the working directory
    from fpn_core.device import resolve_device

    device, notice = resolve_device(None if args.device == "auto" else args.device)
    measure.SETTLE_S = args.settle
    stem = "quick" if args.quick else ("latest" if len(args.only) == len(NAMES) else "partial")
    meta = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device) + (f" ({notice})" if notice else ""),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "pairs per comparison": args.pairs,
        "settle before each pair (max s)": args.settle,
        "load average at start": f"{load_average():.2f}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report = Report(meta)
    print("FPN Explorer benchmarks: " + ", ".join(f"{k} {v}" for k, v in meta.items()), flush=True)
    if args.quick:
        print("quick mode: fewer pairs and sizes; figures are a smoke test, not the issue's >= 7-pair medians")
    ctx = Context(
        device=device, pairs=args.pairs, quick=args.quick, out_dir=args.out, report=report, dashboard=args.dashboard
    )
    sections = _sections()
    t_all = time.perf_counter()
    for name in args.only:
        t0 = time.perf_counter()
        try:
            sections[name](ctx)
        except Exception as exc:  # one broken section must not hide the others' figures
            traceback.print_exc()
            report.row(Row(name, f"section {name}", None, skipped=f"crashed: {type(exc).__name__}: {exc}"))
        print(f"  ({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    report.meta["load average at end"] = f"{load_average():.2f}"
    report.meta["wall time"] = f"{time.perf_counter() - t_all:.0f} s"
    print("\n" + report.summary_text())
    md, js = report.write(args.out, stem)
    print(f"\nwrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
