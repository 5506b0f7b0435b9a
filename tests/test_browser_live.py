"""The Live camera page in Chromium with a fake camera: a square that grows and shrinks.

Chromium plays a Y4M file the test writes as its camera (``--use-file-for-fake-video-capture``,
permission granted by ``--use-fake-ui-for-media-stream``). The test starts the stream and checks
that processed frames come back (the level colors are in the returned video), that the "fps"
text appears, and that the dominant level changes as the square grows; then that five
start/stop cycles leave no thread behind in the server.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fpn_core.levels import LEVEL_COLORS
from tests.browser import (
    CHROMIUM,
    PAGE_TIMEOUT_MS,
    camera_args,
    colors_in_returned_video,
    live_stats,
    no_exception,
    start_stream,
    stream_button,
    thumb,
    wait_idle,
    write_square_y4m,
)
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.browser
SHOTS = ROOT / "artifacts" / "screenshots"
#: How long the checks wait for the stream (the machine may be busy: frames can take seconds).
STREAM_WAIT_S = 240


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def _server_pid(port: str) -> int:
    """The streamlit server listening on ``port`` (started by this test)."""
    wanted = f"--server.port\0{port}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no server process on port {port}")


def _wait(check, what: str, timeout_s: float = STREAM_WAIT_S, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what} within {timeout_s:.0f} s")


def _cycle(page) -> None:
    """START, wait for frames, STOP."""
    start_stream(page)
    _wait(lambda: (live_stats(page)["fps"] or 0) > 0, "frames flow after START")
    stream_button(page, "STOP").click(timeout=PAGE_TIMEOUT_MS)
    stream_button(page, "START").wait_for(timeout=PAGE_TIMEOUT_MS)


@pytest.fixture(scope="module")
def camera_browser(browser: object, tmp_path_factory: pytest.TempPathFactory):
    """A second Chromium with a fake camera, from the session's playwright (one sync playwright per thread)."""
    y4m = write_square_y4m(tmp_path_factory.mktemp("camera") / "square.y4m")
    camera = browser.browser_type.launch(executable_path=str(CHROMIUM), args=camera_args(y4m))  # type: ignore[attr-defined]
    try:
        yield camera
    finally:
        camera.close()


def test_live_page_streams_the_pyramid_and_stop_leaves_no_threads(
    camera_browser: object, test_env: dict[str, str], tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(test_env, tmp_path / "streamlit.log") as base:
        pid = _server_pid(base.rsplit(":", 1)[1])
        context = camera_browser.new_context(viewport={"width": 1440, "height": 1800})  # type: ignore[attr-defined]
        try:
            page = context.new_page()
            page.goto(f"{base}/live", timeout=PAGE_TIMEOUT_MS)  # a fresh context: the frame must be there
            wait_idle(page, "Live camera")
            no_exception(page)
            thumb(page, "FPN channel width d").wait_for(timeout=PAGE_TIMEOUT_MS)
            assert "Live camera" in page.locator("[data-testid='stSidebarNav']").inner_text()

            start_stream(page)
            # Processed frames come back: the legend and the map are in the level colors.
            levels = {name: LEVEL_COLORS[name] for name in ("p3", "p4", "p5", "p6")}
            shown = _wait(
                lambda: (c := colors_in_returned_video(page, levels)) and len(c) >= 3 and c,
                "the returned video shows the level colors",
            )
            assert set(shown) <= set(levels)
            # The "fps" text appears, with a rate above zero.
            _wait(lambda: (live_stats(page)["fps"] or 0) > 0, "a frame rate above 0 fps is shown")
            page.screenshot(path=str(SHOTS / "live_streaming.png"), full_page=True)
            # The dominant level changes as the square grows and shrinks.
            seen: set[str] = set()
            _wait(
                lambda: seen.add(live_stats(page)["dominant"] or "") or len(seen - {""}) >= 2,
                f"the dominant level changes as the square grows (seen {seen})",
            )
            no_exception(page)

            stream_button(page, "STOP").click(timeout=PAGE_TIMEOUT_MS)
            stream_button(page, "START").wait_for(timeout=PAGE_TIMEOUT_MS)
            # Libraries start some threads lazily on first use (torch's pools, aiortc's loops): count
            # after two more cycles, then check that three further cycles add none (a leak adds some each).
            for _ in range(2):
                _cycle(page)
            time.sleep(2)
            threads_before, rss_before = _threads(pid), _rss_mb(pid)
            for _ in range(3):
                _cycle(page)
            threads_after = _wait(
                lambda: ((n := _threads(pid)) <= threads_before and n) or None,
                f"the server's threads go back to {threads_before} after 3 more cycles (now {_threads(pid)})",
                timeout_s=60,
            )
            print(
                f"server threads {threads_before} -> {threads_after}, "
                f"RSS {rss_before:.0f} -> {_rss_mb(pid):.0f} MB after 3 more start/stop cycles"
            )
        except BaseException:
            page.screenshot(path=str(SHOTS / "live_failed.png"), full_page=True)
            raise
        finally:
            context.close()
