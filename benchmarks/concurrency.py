"""Section 8: 1, 2 and 4 concurrent analyses from threads sharing one backbone.

Each thread analyses its own image at its own FPN width (the FPNs share the backbone, as a
dashboard's cached model would). Latency is the wall time of one ``run_pyramid`` call, waiting
for the device slot included; service time is the engine's own ``timings_ms["total"]``, measured
inside the slot. The engine serializes CPU analyses (one slot), so latency should grow with the
queue while throughput and service time stay flat. For contrast, the same load runs with the CPU
slot widened to the number of threads (a monkeypatch of the semaphore, restored afterwards).
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager

from . import measure
from .forward import C3_C5, pyramid_for
from .measure import Context, CpuWatch, load_average, sample_images, wait_for_quiet
from .report import Row, Table, fmt

SECTION = "8 concurrency (threads sharing one model)"
CONTENTION = "8b contention from other processes (OpenMP wait policy)"
OUT_CHANNELS = (256, 128, 64, 256)
SIZE = 512


@contextmanager
def cpu_slots(n: int):
    """Temporarily allow ``n`` analyses at once on the CPU (the engine's default is 1)."""
    from fpn_core import device

    with device._slots_lock:
        saved = device._slots.get("cpu")
        device._slots["cpu"] = threading.BoundedSemaphore(n)
    try:
        yield
    finally:
        with device._slots_lock:
            if saved is None:
                device._slots.pop("cpu", None)
            else:
                device._slots["cpu"] = saved


def _load(models, images, threads: int, per_thread: int) -> dict:
    from fpn_core import run_pyramid

    latencies: list[float] = []
    service: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        model, image = models[i % len(models)], images[i % len(images)]
        barrier.wait()
        for _ in range(per_thread):
            try:
                t0 = time.perf_counter()
                out = run_pyramid(model, image, size=SIZE)
                ms = (time.perf_counter() - t0) * 1e3
            except BaseException as exc:  # reported below, not swallowed
                errors.append(exc)
                return
            with lock:
                latencies.append(ms)
                service.append(out.timings_ms["total"])

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    watch = CpuWatch()
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {
        "wall_s": wall,
        "latency": latencies,
        "service": service,
        "throughput": len(latencies) / wall,
        "others": watch.others(),
    }


def run(ctx: Context) -> None:
    from fpn_core import run_pyramid

    rep = ctx.report
    rep.section(SECTION)
    images = sample_images()
    models = [pyramid_for(ctx, C3_C5, w) for w in OUT_CHANNELS]
    for m, img in zip(models, images * 2, strict=False):
        run_pyramid(m, img, size=SIZE)  # warm every width's primitives
    per_thread = 1 if ctx.quick else 2
    rounds = 1 if ctx.quick else 3
    levels = (1, 2, 4)
    runs: dict[tuple[str, int], list[dict]] = {}
    load0 = load_average()
    for _ in range(rounds):  # rounds interleave the thread counts, so slow spells hit them all
        for n in levels:
            wait_for_quiet(measure.SETTLE_S)
            runs.setdefault(("slot", n), []).append(_load(models, images, n, per_thread))
            if n > 1 and not (ctx.quick and n == 2):
                wait_for_quiet(measure.SETTLE_S)
                with cpu_slots(n):
                    runs.setdefault(("open", n), []).append(_load(models, images, n, per_thread))
    load1 = load_average()

    def agg(key):
        rs = runs[key]
        lat = [x for r in rs for x in r["latency"]]
        svc = [x for r in rs for x in r["service"]]
        return statistics.median(lat), max(lat), statistics.median(svc), statistics.median(r["throughput"] for r in rs)

    def others(key) -> str:
        return f"{statistics.median(r['others'] for r in runs[key]) * 100:.0f}%"

    table = Table(
        SECTION,
        f"{SIZE} px analyses, c3-c5, widths {OUT_CHANNELS[:4]}, {per_thread} per thread, "
        f"{rounds} round(s); load {load0:.1f}->{load1:.1f}",
        ["threads", "slots", "latency median ms", "latency max ms", "service median ms", "analyses/s", "others' CPU"],
    )
    base_lat, _, base_svc, base_tp = agg(("slot", 1))
    for key in [k for k in [("slot", 1), ("slot", 2), ("open", 2), ("slot", 4), ("open", 4)] if k in runs]:
        lat, mx, svc, tp = agg(key)
        table.rows.append(
            [
                str(key[1]),
                "1 (engine)" if key[0] == "slot" else f"{key[1]} (patched)",
                fmt(lat),
                fmt(mx),
                fmt(svc),
                f"{tp:.2f}",
                others(key),
            ]
        )
    rep.table(table)
    rep.note(
        SECTION,
        "others' CPU = share of the CPUs other processes used during the run; while it is high, more "
        "runnable threads win a bigger share of the machine from them, which flatters the unslotted runs",
    )
    singles = runs[("slot", 1)]

    def per_round(n: int, value) -> float:
        """Median over rounds of value(run with n threads, single-thread run of the same round)."""
        return statistics.median(value(r, one) for r, one in zip(runs[("slot", n)], singles, strict=True))

    for n in (2, 4):
        lat, mx, svc, tp = agg(("slot", n))
        tp_ratio = per_round(n, lambda r, one: r["throughput"] / one["throughput"])
        lat_ratio = per_round(
            n, lambda r, one, n=n: statistics.median(r["latency"]) / (n * statistics.median(one["latency"]))
        )
        rep.row(
            Row(
                SECTION,
                f"{n} threads: throughput / single-thread throughput",
                tp_ratio,
                "x",
                0.85,
                ">=",
                f"{tp:.2f} vs {base_tp:.2f} analyses/s (medians); ratio is the median over {rounds} round(s) of "
                f"the same round's runs",
            )
        )
        rep.row(
            Row(
                SECTION,
                f"{n} threads: median latency / ({n} x single latency)",
                lat_ratio,
                "x",
                1.2,
                "<=",
                f"median {fmt(lat)} ms, max {fmt(mx)} ms, single {fmt(base_lat)} ms; service time "
                f"{fmt(svc)} ms vs {fmt(base_svc)} ms alone (queueing, not thrashing)",
            )
        )
        if ("open", n) not in runs:
            continue
        olat, _, osvc, otp = agg(("open", n))
        rep.row(
            Row(
                SECTION,
                f"{n} threads without the slot (patched): throughput / engine's",
                otp / tp,
                "x",
                detail=f"{otp:.2f} vs {tp:.2f} analyses/s; median latency {fmt(olat)} vs {fmt(lat)} ms, service "
                f"{fmt(osvc)} ms",
            )
        )


OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def run_contention(ctx: Context) -> None:
    """One analysis beside another process's busy loop: OpenMP's spin-waiting collapses under it.

    Each variant runs in a fresh process (OpenMP reads its environment once, at load), first
    alone and then beside a one-core busy loop; variants alternate over the rounds.
    """
    import os

    from .scaling import probe

    rep = ctx.report
    section = rep.section(CONTENTION)
    size = 224
    runs = "3" if ctx.quick else "5"
    base_env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    variants = [
        ("default (OMP_WAIT_POLICY unset), 2 threads", base_env, "0"),
        ("OMP_WAIT_POLICY=PASSIVE, 2 threads", {**base_env, "OMP_WAIT_POLICY": "PASSIVE"}, "0"),
        (
            "PASSIVE + GOMP_SPINCOUNT=1000 (~40 us spin), 2 threads",
            {**base_env, "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
            "0",
        ),
    ]
    if not ctx.quick:
        variants.append(("default, torch.set_num_threads(1)", base_env, "1"))
    results: dict[str, list[dict]] = {v[0]: [] for v in variants}
    for _ in range(1 if ctx.quick else 2):
        for name, env, threads in variants:
            wait_for_quiet(measure.SETTLE_S)
            try:
                results[name].append(
                    probe(["contention", "--size", str(size), "--runs", runs, "--threads", threads], env=env)
                )
            except Exception as exc:
                rep.note(section, f"{name}: probe failed: {exc}")
    table = Table(
        section,
        f"{size} px analysis (c3-c5, d=256) alone and beside a one-core busy loop; median ms",
        ["variant", "no busy loop ms", "others' CPU meanwhile", "beside busy loop ms", "slowdown"],
    )
    med: dict[str, tuple[float, float]] = {}
    others_all: list[float] = []
    for name, *_ in variants:
        rs = results[name]
        if not rs:
            continue
        quiet = statistics.median(x for r in rs for x in r["quiet_ms"])
        busy = statistics.median(x for r in rs for x in r["hog_ms"])
        others = statistics.median(x for r in rs for x in r["quiet_others"])
        med[name] = (quiet, busy)
        others_all.append(others)
        table.rows.append([name, fmt(quiet), f"{others * 100:.0f}%", fmt(busy), f"{busy / quiet:.1f}x"])
    rep.table(table)
    default, passive = variants[0][0], variants[1][0]
    if default in med and passive in med:
        ratio = med[default][1] / med[passive][1]
        rep.row(
            Row(
                section,
                "beside a busy core: default / OMP_WAIT_POLICY=PASSIVE",
                ratio,
                "x",
                detail=f"{fmt(med[default][1])} vs {fmt(med[passive][1])} ms: what the spin-wait collapse costs",
            )
        )
        noisy = max(others_all) > 0.10
        rep.row(
            Row(
                section,
                "no busy loop: OMP_WAIT_POLICY=PASSIVE / default",
                med[passive][0] / med[default][0],
                "x",
                detail=f"{fmt(med[passive][0])} vs {fmt(med[default][0])} ms: what passive waiting costs "
                + (
                    f"(NOT quiet: other processes used up to {max(others_all) * 100:.0f}% of the CPUs, so this "
                    "is contended too)"
                    if noisy
                    else "on a quiet machine"
                ),
            )
        )
