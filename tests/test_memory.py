"""Memory stays bounded: the Overlays page rerun 50 times with varying settings.

Marked ``slow`` (about a minute). It prints the resident-memory figures and fails when the
growth after warm-up reaches 50 MB: caches have ``max_entries`` and figures are released, so
repeated reruns must not accumulate. The soak runs in a fresh process (``python -m
tests.test_memory``), as a server would, so the rest of the test session's heap does not
blur the figure.
"""

from __future__ import annotations

import gc
import itertools
import json
import subprocess
import sys

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ui import state as S

WIDTHS = (64, 128, 256)
ALPHAS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the slider's 0.05 steps
COLORMAPS = ("viridis", "magma", "jet", "turbo")
REDUCTIONS = ("mean", "max", "l2", "std")
LIMIT_MB = 50
WARMUP = 40


def _setting(i: int) -> tuple[int, float, str, str]:
    """The i-th settings: no combination repeats within 228 reruns, so every rerun draws new
    figures (a cache hit would hide a leak) while the bounded caches fill up and evict."""
    return WIDTHS[i % 3], ALPHAS[i % len(ALPHAS)], COLORMAPS[i % 4], REDUCTIONS[(i // 4) % 4]


def soak() -> tuple[float, float, float, float]:
    """Warm up, rerun 50 times; returns RSS MB at the base, the end and the peak, and the growth."""
    at = AppTest.from_file(str(ROOT / "pages" / "3_Overlays.py"), default_timeout=120)
    at.session_state[S.KEY_SIZE] = 160
    at.run()
    assert not at.exception
    process = psutil.Process()
    counter = itertools.count()

    def rerun() -> None:
        width, alpha, cmap, reduction = _setting(next(counter))
        at.slider(key=S.KEY_WIDTH).set_value(width)
        at.slider(key=S.KEY_ALPHA).set_value(alpha)
        at.selectbox(key=S.KEY_COLORMAP).set_value(cmap)
        at.selectbox(key=S.KEY_REDUCTION).set_value(reduction)
        at.run()
        assert not at.exception, [e.value for e in at.exception]

    for _ in range(WARMUP):  # warm-up: fills the bounded caches (figure PNGs, FPN results)
        rerun()
    gc.collect()
    base = process.memory_info().rss
    samples = []
    for _ in range(50):
        rerun()
        samples.append(process.memory_info().rss)
    gc.collect()
    end = process.memory_info().rss
    return base / 2**20, end / 2**20, max(samples) / 2**20, (end - base) / 2**20


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
    base, end, peak, growth_mb = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"\nOverlays page, 50 reruns after warm-up: RSS {base:.0f} MB -> {end:.0f} MB "
        f"(peak {peak:.0f} MB), growth {growth_mb:+.1f} MB"
    )
    assert growth_mb < LIMIT_MB


if __name__ == "__main__":
    print(json.dumps(soak()))
