"""Timing on a shared, noisy machine: alternating pairs, medians, and how noisy the run was.

On the CPU a wall clock (``perf_counter``) is exact because work is synchronous; on CUDA each
call is bracketed by CUDA events and the device is synchronized before reading them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import ROOT
from .report import Report, fmt


@dataclass
class Context:
    """What every section needs: the device, how many pairs, where results go, the report."""

    device: torch.device
    pairs: int
    quick: bool
    out_dir: object
    report: Report
    dashboard: object = None
    cache: dict = field(default_factory=dict)

    @property
    def warmup(self) -> int:
        return 1 if self.quick else 2


def time_ms(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Milliseconds of one call of ``fn`` (CUDA events on a GPU, ``perf_counter`` elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end), result
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1e3, result


def _machine_busy_s() -> float:
    """CPU seconds all processes on the machine have spent busy (summed over cores)."""
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuWatch:
    """How much of the machine's CPU other processes took while this one was timed.

    ``others`` is (machine busy time - this process's CPU time) / (wall x cores): 0 means the
    cores were ours alone, 0.5 means other work used half of them. Tick resolution is 10 ms.
    """

    def __init__(self) -> None:
        self.busy0, self.own0, self.wall0 = _machine_busy_s(), time.process_time(), time.perf_counter()

    def others(self) -> float:
        wall = time.perf_counter() - self.wall0
        other = (_machine_busy_s() - self.busy0) - (time.process_time() - self.own0)
        return min(1.0, max(0.0, other / max(1e-9, wall * (os.cpu_count() or 1))))


#: Longest wait, in seconds, before each pair for a moment when other processes leave the CPUs
#: alone (set from ``--settle``). Waiting never changes what is measured, only when.
SETTLE_S = 0.0


def wait_for_quiet(max_s: float, threshold: float = 0.10, window_s: float = 0.25) -> float:
    """Sleep until other processes use under ``threshold`` of the CPUs for ``window_s``, at most ``max_s``.

    Returns:
        Seconds waited.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        watch = CpuWatch()
        time.sleep(window_s)
        if watch.others() < threshold:
            break
    return time.perf_counter() - t0


def time_watched(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Milliseconds of one call and the share of the CPUs other processes used meanwhile."""
    watch = CpuWatch()
    ms, _ = time_ms(fn, device)
    return ms, watch.others()


def load_average() -> float:
    """The 1-minute load average (2.0 means both cores of this machine were busy)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


@dataclass
class Paired:
    """Times of two sides measured alternately; ``ratio`` is the median of per-pair ``b / a``.

    Attributes:
        a_ms, b_ms: milliseconds per run of each side, in pair order.
        cpu_share: process CPU time over (wall time x torch threads) during the pairs: near 1
            means this process had the cores to itself, lower means other work took them.
        load: the 1-minute load average before and after.
        others: per pair, the larger share of the CPUs that other processes used during either side.
    """

    a_ms: list[float]
    b_ms: list[float]
    cpu_share: float
    load: tuple[float, float]
    others: list[float] = field(default_factory=list)
    waited_s: float = 0.0

    QUIET = 0.10  # a pair is quiet when other processes used under 10% of the CPUs during both sides

    def quiet_ratio(self) -> tuple[float | None, int]:
        """Median ratio over the quiet pairs only (None with fewer than 3), and how many there were."""
        quiet = [r for r, o in zip(self.ratios, self.others, strict=True) if o < self.QUIET]
        return (statistics.median(quiet) if len(quiet) >= 3 else None), len(quiet)

    @property
    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.a_ms, self.b_ms, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def a(self) -> float:
        return statistics.median(self.a_ms)

    @property
    def b(self) -> float:
        return statistics.median(self.b_ms)

    def spread(self) -> str:
        """Ratio interquartile range and min..max, the CPU share and the load: how noisy it was."""
        r = sorted(self.ratios)
        q1, q3 = np.percentile(r, [25, 75]) if len(r) > 1 else (r[0], r[0])
        quiet, n_quiet = self.quiet_ratio()
        quiet_text = f", quiet-pair ratio {fmt(quiet)}" if quiet is not None else ""
        others = f"others used {statistics.median(self.others) * 100:.0f}% of CPUs, " if self.others else ""
        return (
            f"{len(r)} pairs, ratio IQR {fmt(q1)}-{fmt(q3)}, range {fmt(r[0])}-{fmt(r[-1])}; "
            f"{others}{n_quiet}/{len(r)} quiet pairs{quiet_text}; waited {self.waited_s:.0f} s for quiet; "
            f"cpu share {self.cpu_share:.2f}, "
            f"load {self.load[0]:.1f}->{self.load[1]:.1f}"
        )


def paired(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    *,
    pairs: int,
    warmup: int,
    device: torch.device,
) -> Paired:
    """Time ``fn_a`` and ``fn_b`` alternately, swapping which goes first each pair (A B, B A, ...).

    Swapping the order cancels a steady drift and any advantage of running second (warm caches).
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    a_ms: list[float] = []
    b_ms: list[float] = []
    others: list[float] = []
    load0 = load_average()
    waited = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(pairs):
        if SETTLE_S > 0:
            t_wait = time.perf_counter()
            waited += wait_for_quiet(SETTLE_S)
            wall0 += time.perf_counter() - t_wait  # the cpu share covers the timed runs, not the waits
        first, second = (fn_a, fn_b) if i % 2 == 0 else (fn_b, fn_a)
        t1, o1 = time_watched(first, device)
        t2, o2 = time_watched(second, device)
        a, b = (t1, t2) if i % 2 == 0 else (t2, t1)
        a_ms.append(a)
        b_ms.append(b)
        others.append(max(o1, o2))
    share = (time.process_time() - cpu0) / max(1e-9, (time.perf_counter() - wall0) * torch.get_num_threads())
    return Paired(a_ms, b_ms, share, (load0, load_average()), others, waited)


def repeat_ms(fn: Callable[[], object], *, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Milliseconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [time_ms(fn, device)[0] for _ in range(repeats)]


def matmul_gflops(device: torch.device, n: int = 2048) -> Callable[[], float]:
    """A callable that times one ``n x n`` float32 matmul and returns its GFLOP/s (2 n^3 FLOP)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def run() -> float:
        ms, _ = time_ms(lambda: a @ b, device)
        return 2 * n**3 / (ms * 1e-3) / 1e9

    return run


# ------------------------------------------------------------------------ inputs


def sample_images() -> list[np.ndarray]:
    """The bundled sample photos as RGB uint8 (or a drawn test image when none is present)."""
    from fpn_core.images import load_image
    from fpn_core.scales import make_scales_image

    images = []
    for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg"):
        path = ROOT / "samples" / name
        if path.is_file():
            images.append(load_image(path))
    return images or [make_scales_image().image]


def square_image(size: int) -> np.ndarray:
    """A ``size x size`` RGB photo (the astronaut, stretched to a square when needed)."""
    import cv2

    image = sample_images()[0]
    return np.ascontiguousarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
