"""Section camera: the Live page's frame rate and latency in Chromium with a fake camera.

A real ``streamlit run`` and the Debian Chromium playing a Y4M file this section writes (a
square that grows and shrinks, 320 x 240 at 15 fps) as its camera. Live size 256 px, c3..c5,
d = 256, random weights. After the first processed frame, the page's statistics line (frame rate
and median latency over the last second) is read once a second for 20 s per case; the medians
are reported against issue 20's targets. Then five START/STOP cycles: the server's threads and
RSS before and after.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from . import ROOT
from .chromium import CHROMIUM
from .coldstart import served
from .measure import Context
from .report import Row, Table, fmt

SECTION = "camera: Live page (Chromium, fake camera)"
SAMPLE_S = 20.0
#: (what, model radio label, view radio label, live size, fps target, latency target ms)
CASES: tuple[tuple[str, str, str, int, float, float | None], ...] = (
    ("overlay view, 256 px", "Sidebar's pyramid", "One level's overlay", 256, 8.0, 150.0),
    ("dominant-level view, 256 px", "Sidebar's pyramid", "Dominant level", 256, 8.0, 150.0),
    ("RetinaNet boxes, 320 px", "RetinaNet", "Detector's boxes", 320, 5.0, None),
)


def run(ctx: Context) -> None:
    rep = ctx.report
    if not CHROMIUM.exists():
        rep.row(Row(SECTION, "live camera", None, " fps", skipped=f"{CHROMIUM} is missing"))
        return
    try:
        import playwright.sync_api  # noqa: F401
        import streamlit_webrtc  # noqa: F401
    except ImportError as exc:
        rep.row(Row(SECTION, "live camera", None, " fps", skipped=f"{exc.name} is not installed"))
        return
    try:
        results, leaks = measure(SAMPLE_S / 4 if ctx.quick else SAMPLE_S)
    except Exception as exc:
        rep.row(Row(SECTION, "live camera", None, " fps", skipped=f"failed: {type(exc).__name__}: {exc}"))
        return
    table = Table(SECTION, "frame rate and latency, median over the samples", ["case", "fps", "latency ms", "samples"])
    for (what, _, _, _, fps_target, lat_target), (fps, lat) in zip(CASES, results, strict=True):
        fps_med = statistics.median(fps) if fps else None
        lat_med = statistics.median(lat) if lat else None
        shown = ["-" if v is None else fmt(v) for v in (fps_med, lat_med)]
        table.rows.append([what, *shown, ", ".join(fmt(f) for f in fps)])
        detail = f"median of {len(fps)} one-second samples; fake camera 320 x 240, c3..c5, d = 256, random weights"
        rep.row(Row(SECTION, f"{what}: frame rate", fps_med, " fps", fps_target, op=">=", detail=detail))
        if lat_target is not None:
            rep.row(Row(SECTION, f"{what}: latency p50", lat_med, " ms", lat_target, detail=detail))
    rep.table(table)
    (t0, r0), (t1, r1) = leaks
    rep.row(Row(SECTION, "server threads after 5 START/STOP cycles", t1, "", t0, detail=f"before the cycles: {t0}"))
    rss = f"{r0:.0f} -> {r1:.0f} MB"
    rep.row(Row(SECTION, "server RSS change after 5 START/STOP cycles", r1 - r0, " MB", detail=rss))


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(ln for ln in fh if ln.startswith("VmRSS")).split()[1]) / 1024


Samples = tuple[list[float], list[float]]
Usage = tuple[int, float]


def measure(sample_s: float) -> tuple[list[Samples], tuple[Usage, Usage]]:
    """Per case, the fps and latency samples; then (threads, RSS MB) before and after 5 START/STOP cycles."""
    from playwright.sync_api import sync_playwright

    from tests.browser import camera_args, live_stats, start_stream, stream_button, thumb, wait_idle, write_square_y4m

    y4m = write_square_y4m(Path(tempfile.mkdtemp(prefix="fpn-bench-camera-")) / "square.y4m")
    results: list[Samples] = []
    with served(ROOT / "dashboard.py", "fpn-bench-camera-") as (base, proc), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=camera_args(y4m), headless=True)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1800}).new_page()
            page.goto(f"{base}/live?weights=random", timeout=300_000)
            wait_idle(page, "Live camera")
            start_stream(page)
            size_thumb = thumb(page, "Live size (long side, px)", sidebar=False)
            for _, model, view, size, _, _ in CASES:
                page.get_by_text(model, exact=True).click()
                page.get_by_text(view, exact=True).click()
                while int(size_thumb.input_value()) != size:
                    size_thumb.focus()
                    size_thumb.press("ArrowRight" if int(size_thumb.input_value()) < size else "ArrowLeft")
                    time.sleep(1.0)
                _until(lambda: (live_stats(page)["fps"] or 0) > 0, 300)
                time.sleep(3.0)  # the new model warms up
                fps, lat = [], []
                end = time.monotonic() + sample_s
                while time.monotonic() < end:
                    time.sleep(1.0)
                    stats = live_stats(page)
                    if stats["fps"] is not None:
                        fps.append(float(stats["fps"]))  # type: ignore[arg-type]
                    if stats["latency_ms"] is not None:
                        lat.append(float(stats["latency_ms"]))  # type: ignore[arg-type]
                results.append((fps, lat))
            stream_button(page, "STOP").click()
            stream_button(page, "START").wait_for(timeout=120_000)
            time.sleep(2.0)
            before = (_threads(proc.pid), _rss_mb(proc.pid))
            for _ in range(5):
                start_stream(page)
                _until(lambda: (live_stats(page)["fps"] or 0) > 0, 300)
                stream_button(page, "STOP").click()
                stream_button(page, "START").wait_for(timeout=120_000)
            time.sleep(3.0)
            after = (_threads(proc.pid), _rss_mb(proc.pid))
        finally:
            browser.close()
    return results, (before, after)


def _until(check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no processed frame within {timeout_s:.0f} s")
        time.sleep(0.5)
