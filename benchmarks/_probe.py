"""Child processes of the suite, so memory and cold-start figures come from fresh interpreters.

``python -m benchmarks._probe memory --size N``: one analysis; prints JSON with the resident
memory after import, after building the model and the peak (``VmHWM``).
``python -m benchmarks._probe coldstart``: import, build (random weights), first analysis; prints
JSON with the time of each step since the interpreter started.
``python -m benchmarks._probe contention``: analysis times alone and beside a one-core busy loop.
``python -m benchmarks._probe serve COUNTS -- ARGS``: ``streamlit run ARGS`` with backbone builds
and forward passes counted into the JSON file COUNTS (the dashboard itself is not modified).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

_T0 = time.perf_counter()


def _since_start_ms() -> float:
    """Milliseconds since this interpreter started (the process's own start time, from psutil)."""
    import psutil

    return (time.time() - psutil.Process().create_time()) * 1e3


def _peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark across fork and exec into
    ``ru_maxrss``, so a child of a big benchmark process would report the parent's size.
    """
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _image(size: int):
    import numpy as np

    from benchmarks.measure import square_image

    return np.ascontiguousarray(square_image(size))


def memory(args: argparse.Namespace) -> dict:
    import torch

    import fpn_core
    from fpn_core import PyramidConfig, build_pyramid, run_pyramid

    after_import = _rss_mb()
    stages = tuple(args.stages.split(","))
    model = build_pyramid(
        PyramidConfig(weights="random", stages=stages, out_channels=args.out_channels, device="cpu"),
        allow_download=False,
    )
    image = _image(args.size)
    after_build = _rss_mb()
    peak_before = _peak_rss_mb()
    out = run_pyramid(model, image, size=args.size)
    peak = _peak_rss_mb()
    held = sum(t.numel() * t.element_size() for t in (*out.stages.values(), *out.levels.values())) / 1e6
    del fpn_core, torch
    return {
        "size": args.size,
        "stages": args.stages,
        "out_channels": args.out_channels,
        "rss_after_import_mb": after_import,
        "rss_after_build_mb": after_build,
        "peak_before_analysis_mb": peak_before,
        "peak_rss_mb": peak,
        "rss_after_analysis_mb": _rss_mb(),
        "result_tensors_mb": held,
    }


def coldstart(args: argparse.Namespace) -> dict:
    started = _since_start_ms() - (time.perf_counter() - _T0) * 1e3  # interpreter start -> this module
    t_import0 = time.perf_counter()
    from fpn_core import PyramidConfig, build_pyramid, run_pyramid

    t_import = time.perf_counter()
    model = build_pyramid(PyramidConfig(weights="random", device="cpu"), allow_download=False)
    t_build = time.perf_counter()
    image = _image(args.size)
    t_image = time.perf_counter()
    out = run_pyramid(model, image, size=args.size)
    t_first = time.perf_counter()
    run_pyramid(model, image, size=args.size)
    t_second = time.perf_counter()
    assert out.levels
    return {
        "interpreter_to_main_ms": started,
        "import_ms": (t_import - t_import0) * 1e3,
        "build_ms": (t_build - t_import) * 1e3,
        "image_ms": (t_image - t_build) * 1e3,
        "first_analysis_ms": (t_first - t_image) * 1e3,
        "second_analysis_ms": (t_second - t_first) * 1e3,
        "process_to_first_analysis_ms": _since_start_ms() - (t_second - t_first) * 1e3,
    }


def contention(args: argparse.Namespace) -> dict:
    """Analysis times alone, then beside a one-core busy loop started (and stopped) here."""
    import subprocess

    import torch

    from benchmarks.measure import CpuWatch
    from fpn_core import PyramidConfig, build_pyramid, run_pyramid

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_pyramid(PyramidConfig(weights="random", device="cpu"), allow_download=False)
    image = _image(args.size)

    def timed() -> tuple[float, float]:
        watch = CpuWatch()
        t0 = time.perf_counter()
        run_pyramid(model, image, size=args.size)
        return (time.perf_counter() - t0) * 1e3, watch.others()

    for _ in range(2):
        timed()
    quiet = [timed() for _ in range(args.runs)]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        timed()
        busy = [timed() for _ in range(args.runs)]
    finally:
        hog.kill()
        hog.wait()
    return {
        "threads": torch.get_num_threads(),
        "quiet_ms": [q[0] for q in quiet],
        "quiet_others": [q[1] for q in quiet],
        "hog_ms": [b[0] for b in busy],
    }


def serve(args: argparse.Namespace) -> None:
    """Run streamlit in this process with class-level counters on the model's build and forward."""
    from fpn_core.backbone import ResNetBackbone
    from fpn_core.fpn import FPN

    counts = {"backbone_builds": 0, "fpn_builds": 0, "backbone_forwards": 0, "fpn_forwards": 0}

    def dump() -> None:
        tmp = args.counts + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(counts, fh)
        os.replace(tmp, args.counts)

    def counting(cls, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(self, *a, **kw):
            counts[key] += 1
            dump()
            return original(self, *a, **kw)

        setattr(cls, name, wrapper)

    counting(ResNetBackbone, "__init__", "backbone_builds")
    counting(FPN, "__init__", "fpn_builds")
    counting(ResNetBackbone, "forward", "backbone_forwards")
    counting(FPN, "forward_steps", "fpn_forwards")
    dump()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *args.rest]
    cli.main(prog_name="streamlit")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--size", type=int, default=1024)
    mem.add_argument("--stages", default="c3,c4,c5")
    mem.add_argument("--width", dest="out_channels", type=int, default=256)
    cold = sub.add_parser("coldstart")
    cold.add_argument("--size", type=int, default=512)
    con = sub.add_parser("contention")
    con.add_argument("--size", type=int, default=224)
    con.add_argument("--runs", type=int, default=5)
    con.add_argument("--threads", type=int, default=0)
    srv = sub.add_parser("serve")
    srv.add_argument("counts")
    srv.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.cmd == "serve":
        if args.rest and args.rest[0] == "--":
            args.rest = args.rest[1:]
        serve(args)
        return
    result = {"memory": memory, "coldstart": coldstart, "contention": contention}[args.cmd](args)
    print("PROBE_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
