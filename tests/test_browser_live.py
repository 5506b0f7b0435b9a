"""The Live camera page in Chromium with a fake camera: a square that grows and shrinks.

Chromium plays a Y4M file the test writes as its camera (``--use-file-for-fake-video-capture``,
permission granted by ``--use-fake-ui-for-media-stream``). The test starts the stream and checks
that processed frames come back (the level colors are in the returned video), that the "fps"
text appears, and that the dominant level changes as the square grows; then that
start/stop cycles leave no thread behind in the server (counted by kind from a ``faulthandler``
dump of its stacks: see ``tests/threaddump``).
"""

from __future__ import annotations

import os
import re
import signal
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


#: Frames from these paths mean a thread of the stream (ours, streamlit-webrtc's, aiortc's, PyAV's).
STREAM_CODE = ("fpn_core", "/ui/", "streamlit_webrtc", "aiortc", "aioice", "/av/")
#: Idle workers of bounded pools (asyncio's executor, anyio's to_thread): they are reused, not leaked.
POOL_CODE = ("concurrent/futures/thread.py", "anyio/_backends/_asyncio.py")


def _settled_threads(pid: int, timeout_s: float = 20.0) -> None:
    """Wait until the server's thread count holds still for a second.

    ``faulthandler`` walks every thread's frames from inside the signal handler; a thread that is
    exiting at that moment (the stream's, just after STOP) can crash the server there (seen once in
    CI: a segfault in libpython on faulthandler's alternate stack).
    """
    deadline = time.monotonic() + timeout_s
    counts = [_threads(pid)]
    while time.monotonic() < deadline and not (len(counts) >= 3 and len(set(counts[-3:])) == 1):
        time.sleep(0.5)
        counts.append(_threads(pid))


def _thread_stacks(pid: int, dump: Path) -> list[list[str]]:
    """Every Python thread's stack in the server, from ``faulthandler`` (``tests/threaddump``)."""
    _settled_threads(pid)
    start = dump.stat().st_size if dump.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        text = dump.read_text()[start:] if dump.exists() else ""
        if "_run_module_as_main" in text:  # the main thread's stack ends every dump
            break
    stacks = []
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text.strip()):
        frames = [line.strip() for line in block.splitlines() if line.strip().startswith("File ")]
        if frames:
            stacks.append(frames)
    return stacks


def _census(pid: int, dump: Path) -> dict[str, int]:
    """The server's threads by kind: the stream's, idle pool workers, other Python threads, native threads."""
    stacks = _thread_stacks(pid, dump)  # waits for the threads to settle
    total = _threads(pid)
    kinds = {"stream": 0, "pool": 0, "python": 0}
    for frames in stacks:
        if any(code in frame for frame in frames for code in STREAM_CODE):
            kinds["stream"] += 1
        elif any(code in frames[-1 - i] for i in range(min(4, len(frames))) for code in POOL_CODE):
            kinds["pool"] += 1
        else:
            kinds["python"] += 1
    kinds["native"] = total - len(stacks)
    return kinds


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
    dump = tmp_path / "threads.txt"
    env = {**test_env, "PYTHONPATH": str(ROOT / "tests" / "threaddump"), "FPN_THREAD_DUMP": str(dump)}
    with running_server(env, tmp_path / "streamlit.log") as base:
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
            # Libraries start some threads lazily on first use (torch's pools, aiortc's loops) and pools keep
            # idle workers: count by kind after one more cycle, then check that two more leave no stream
            # thread and add no other thread (a leak adds some every cycle). The camera benchmark counts
            # the threads around five cycles.
            _cycle(page)
            time.sleep(2)
            before, rss_before = _census(pid, dump), _rss_mb(pid)
            for _ in range(2):
                _cycle(page)
            after = _wait(
                lambda: (
                    (c := _census(pid, dump))["stream"] == 0
                    and c["python"] <= before["python"]
                    and c["native"] <= before["native"]
                    and c
                ),
                f"no stream thread and no new thread after 2 more cycles (before {before}, now {_census(pid, dump)})",
                timeout_s=60,
            )
            print(
                f"server threads {before} -> {after}, "
                f"RSS {rss_before:.0f} -> {_rss_mb(pid):.0f} MB after 2 more start/stop cycles"
            )
        except BaseException:
            page.screenshot(path=str(SHOTS / "live_failed.png"), full_page=True)
            raise
        finally:
            context.close()
