"""Memory stays bounded: the Overlays page rerun 60 times with varying settings.

Marked ``slow`` (about a minute). Caches have ``max_entries`` and figures are released, so
repeated reruns must not accumulate: the test fails when resident memory grows by 50 MB or
more per 50 reruns after warm-up.

A single pair of RSS readings is not a leak measurement: glibc keeps freed blocks in its
arenas, and two raw readings taken a few reruns apart differ by up to 50 MB on an idle
machine (seen in CI: +52 MB with no leak). So every checkpoint (each 10 reruns) is read
after ``gc.collect()`` and ``malloc_trim(0)``, which hands free heap back to the system, and
the growth is the least-squares slope through the checkpoints: a leak grows with every
rerun, noise does not. An injected leak (every figure kept alive) reads about +500 MB per
50 reruns here; without it, a few MB.

The soak runs in a fresh process (``python -m tests.test_memory``), as a server would, so
the rest of the test session's heap does not blur the figure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import itertools
import json
import subprocess
import sys

import psutil
import pytest

from tests.conftest import ROOT, open_page
from ui import settings as S

OUT_CHANNELS = (64, 128, 256)
ALPHAS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the slider's 0.05 steps
COLORMAPS = ("viridis", "magma", "jet", "turbo")
CHANNEL_AGGREGATIONS = ("mean", "max", "l2", "std")
LIMIT_MB = 50  # per 50 reruns
WARMUP = 40
RERUNS = 60
EVERY = 10  # reruns between checkpoints


def _setting(i: int) -> tuple[int, float, str, str]:
    """The i-th settings: no combination repeats within 228 reruns, so every rerun draws new
    figures (a cache hit would hide a leak) while the bounded caches fill up and evict."""
    return OUT_CHANNELS[i % 3], ALPHAS[i % len(ALPHAS)], COLORMAPS[i % 4], CHANNEL_AGGREGATIONS[(i // 4) % 4]


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``malloc_trim``); looked up once, not per checkpoint."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return ctypes.CDLL(name) if name else None


def _trimmed_rss_mb(process: psutil.Process) -> float:
    """Resident memory after collecting garbage and returning free heap to the system."""
    gc.collect()
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)  # elsewhere the raw figure is used
    return process.memory_info().rss / 2**20


def growth_per_50(reruns: list[int], rss_mb: list[float]) -> float:
    """Least-squares slope of RSS over reruns, as MB per 50 reruns."""
    n = len(reruns)
    mean_x, mean_y = sum(reruns) / n, sum(rss_mb) / n
    sxx = sum((x - mean_x) ** 2 for x in reruns)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(reruns, rss_mb, strict=True))
    return 50 * sxy / sxx


def soak() -> dict[str, object]:
    """Warm up, rerun ``RERUNS`` times; returns the checkpoints, the raw peak and the growth."""
    at = open_page("pages/3_Overlays.py", size=160)
    assert not at.exception
    process = psutil.Process()
    counter = itertools.count()

    def rerun() -> None:
        out_channels, alpha, colormap, aggregation = _setting(next(counter))
        at.slider(key=S.KEY_OUT_CHANNELS).set_value(out_channels)
        at.slider(key=S.KEY_ALPHA).set_value(alpha)
        at.selectbox(key=S.KEY_COLORMAP).set_value(colormap)
        at.selectbox(key=S.KEY_AGGREGATION).set_value(aggregation)
        at.run()
        assert not at.exception, [e.value for e in at.exception]

    for _ in range(WARMUP):  # warm-up: fills the bounded caches (figure images, FPN results)
        rerun()
    reruns, rss_mb, peak = [0], [_trimmed_rss_mb(process)], 0.0
    for i in range(1, RERUNS + 1):
        rerun()
        peak = max(peak, process.memory_info().rss / 2**20)
        if i % EVERY == 0:
            reruns.append(i)
            rss_mb.append(_trimmed_rss_mb(process))
    return {"reruns": reruns, "rss_mb": rss_mb, "peak_mb": peak, "growth_mb": growth_per_50(reruns, rss_mb)}


def test_growth_is_the_slope_not_the_noise() -> None:
    """The estimator: a steady 2 MB per rerun reads 100 MB per 50; a flat line with one
    +50 MB reading in the middle (an allocator spike) reads nothing."""
    xs = [0, 10, 20, 30, 40, 50, 60]
    assert growth_per_50(xs, [900 + 2 * x for x in xs]) == pytest.approx(100)
    assert growth_per_50(xs, [900, 900, 900, 950, 900, 900, 900]) == pytest.approx(0)


@pytest.mark.slow
def test_overlay_page_reruns_keep_memory_bounded(test_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.test_memory"],
        cwd=ROOT,
        env=test_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    checkpoints = ", ".join(f"{x}: {y:.0f}" for x, y in zip(result["reruns"], result["rss_mb"], strict=True))
    print(
        f"\nOverlays page, {RERUNS} reruns after {WARMUP} warm-up: trimmed RSS MB at rerun {checkpoints}; "
        f"raw peak {result['peak_mb']:.0f} MB; growth {result['growth_mb']:+.1f} MB per 50 reruns"
    )
    assert result["growth_mb"] < LIMIT_MB


if __name__ == "__main__":
    print(json.dumps(soak()))
