"""Real-browser checks: a streamlit server, system Chromium, every page by its URL, in the frame.

Starts ``streamlit run dashboard.py`` on a free port (downloads off, empty torch hub cache).
The first test opens an old capitalised address on the fresh server (the case where streamlit
would run a page file without the frame); then every page opens by its URL in a fresh browser
context with the sidebar and its own content, the width slider is changed with the keyboard and
kept across the navigation. Screenshots go to ``artifacts/screenshots/``. Timings are printed,
not asserted (``python -m benchmarks --only live`` measures them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
#: URL path -> the page's title (its heading once it has rendered).
PAGES = {
    "": "FPN Explorer",
    "stage-activations": "Stage activations",
    "fpn-outputs": "FPN outputs",
    "overlays": "Overlays",
    "timing": "Timing",
    "step-by-step": "FPN step by step",
    "ab-comparison": "A/B comparison",
    "scale-probe": "Scale probe",
    "export": "Export",
}
#: Each page's own content: a text only that page shows once it has run.
CONTENT = {
    "": "Your pyramid, live",
    "stage-activations": "most active of 64 channels",
    "fpn-outputs": "c_k next to p_k",
    "overlays": "p3 · stride 8",
    "timing": "GFLOP/s achieved",
    "step-by-step": "The extra level p6",
    "ab-comparison": "Difference per level",
    "scale-probe": "Which level responds most strongly",
    "export": "Files in the zip",
}
#: Addresses before the frame (streamlit's names for the page files) -> where they now live.
OLD_ADDRESSES = {"Overlays": "overlays", "FPN_outputs": "fpn-outputs", "Scale_probe": "scale-probe"}
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGE_TIMEOUT_MS = 180_000

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running streamlit server; yields its base URL and stops it afterwards."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI; install it with `apt-get install -y chromium`")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); the browser test needs it")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=test_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:  # noqa: S310 (local URL)
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer on {base} within 90 s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """System Chromium through playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: object, url: str, title: str):  # -> playwright Page
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    _wait_idle(page, title)
    return page


def _wait_idle(page, title: str) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    # Images and the graphviz chart arrive with the last deltas; let them paint.
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def _watch_reruns(page) -> None:
    """Record in the page when the script starts and stops running (timestamps in ms)."""
    page.evaluate(
        """() => {
            window.__runs = [];
            const app = document.querySelector("[data-testid='stApp']");
            new MutationObserver(() => {
                window.__runs.push([app.getAttribute('data-test-script-state'), performance.now()]);
            }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
        }"""
    )


def _press_and_time(page, slider, key: str) -> float:
    """Press ``key`` on a slider thumb; milliseconds until the rerun it caused has finished."""
    _watch_reruns(page)
    slider.focus()
    t0 = page.evaluate("() => performance.now()")
    slider.press(key)
    page.wait_for_function(
        "() => { const r = window.__runs; const i = r.findIndex(x => x[0] === 'running');"
        " return i >= 0 && r.slice(i).some(x => x[0] === 'notRunning'); }",
        timeout=PAGE_TIMEOUT_MS,
    )
    done = page.evaluate(
        "() => { const r = window.__runs; const i = r.findIndex(x => x[0] === 'running');"
        " return r.slice(i).find(x => x[0] === 'notRunning')[1]; }"
    )
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
    return float(done - t0)


def _thumb(page, label: str):
    return page.locator("[data-testid='stSlider']").filter(has_text=label).locator("input[type='range']")


def _framed(page) -> None:
    """The page runs inside the frame: our navigation (with its sections) and the sidebar's controls."""
    _thumb(page, "FPN channel width d").wait_for(timeout=PAGE_TIMEOUT_MS)
    nav = page.locator("[data-testid='stSidebarNav']")
    assert nav.count() == 1
    nav_text = nav.inner_text()
    assert "Explore" in nav_text and "Teach" in nav_text and "dashboard" not in nav_text, nav_text


def test_old_capitalised_address_lands_on_its_framed_page(server: str, browser: object) -> None:
    """Run first, on the fresh server: an old link must never run a page file without the frame."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old, new in OLD_ADDRESSES.items():
        title = PAGES[new]
        page = _open(browser, f"{server}/{old}?fpn_width=64", title)
        try:
            _no_exception(page)
            _framed(page)
            assert f"/{new}?" in page.url, page.url
            assert "fpn_width=64" in page.url, "the old link's settings come along"
            assert _thumb(page, "FPN channel width d").input_value() == "64"
            page.screenshot(path=str(SHOTS / f"old_address_{old}.png"), full_page=True)
        finally:
            page.context.close()


def test_every_page_opens_by_url_in_the_frame(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path, title in PAGES.items():
        page = _open(browser, f"{server}/{path}", title)
        try:
            _no_exception(page)
            _framed(page)
            assert _thumb(page, "FPN channel width d").input_value() == "256"
            page.get_by_text(CONTENT[path]).first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / f"{path or 'home'}.png"), full_page=True)
        finally:
            page.context.close()


def test_width_change_persists_across_pages(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, f"{server}/fpn-outputs", "FPN outputs")
    try:
        assert "shape 256 × 64 × 64" in page.inner_text("body")
        width_ms = _press_and_time(page, _thumb(page, "FPN channel width d"), "ArrowRight")
        _no_exception(page)
        assert _thumb(page, "FPN channel width d").input_value() == "272"
        assert "shape 272 × 64 × 64" in page.inner_text("body")

        page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Home").first.click()
        _wait_idle(page, "FPN Explorer")
        _no_exception(page)
        assert "d = 272" in page.inner_text("body")
        assert _thumb(page, "FPN channel width d").input_value() == "272"
        page.screenshot(path=str(SHOTS / "Home_after_width_change.png"), full_page=True)

        page.locator("[data-testid='stSidebarNav'] a[href*='/overlays']").click()
        _wait_idle(page, "Overlays")
        _no_exception(page)
        assert _thumb(page, "FPN channel width d").input_value() == "272"
        alpha_ms = _press_and_time(page, _thumb(page, "Overlay alpha"), "ArrowRight")
        _no_exception(page)
        assert _thumb(page, "Overlay alpha").input_value() == "0.55"
        page.screenshot(path=str(SHOTS / "Overlays_after_alpha_change.png"), full_page=True)
    finally:
        page.context.close()
    print(f"\nkey press to rerun finished, size 512: width {width_ms:.0f} ms, alpha {alpha_ms:.0f} ms")
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "browser_timings.txt").write_text(
        f"width_change_ms={width_ms:.0f}\nalpha_change_ms={alpha_ms:.0f}\n", encoding="utf-8"
    )


def test_url_with_query_params_opens_that_view(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, f"{server}/fpn-outputs?fpn_width=64&map_colormap=nope", "FPN outputs")
    try:
        _no_exception(page)
        assert _thumb(page, "FPN channel width d").input_value() == "64"
        body = page.inner_text("body")
        assert "shape 64 × 64 × 64" in body
        assert "map_colormap=nope" in body and "not valid" in body
        # The address bar now holds the whole view, the corrected colour map included.
        assert "fpn_width=64" in page.url and "map_colormap=viridis" in page.url
        page.screenshot(path=str(SHOTS / "FPN_outputs_from_link.png"), full_page=True)
    finally:
        page.context.close()


def test_five_sessions_at_once_each_see_their_own_image_and_width(server: str, browser: object) -> None:
    """Five browser sessions open at the same moment; none shows another's image or width."""
    wanted = [
        ("astronaut.jpg", 32),
        ("chelsea.jpg", 64),
        ("coffee.jpg", 96),
        ("grace_hopper.jpg", 128),
        ("chelsea.jpg", 160),
    ]
    pages = []
    try:
        for sample, width in wanted:  # start all five before waiting for any
            context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
            page = context.new_page()
            url = f"{server}/fpn-outputs?image_source=sample&sample_name={sample}&fpn_width={width}&input_size=256"
            page.goto(url, wait_until="commit", timeout=PAGE_TIMEOUT_MS)
            pages.append(page)
        for page, (sample, width) in zip(pages, wanted, strict=True):
            _wait_idle(page, "FPN outputs")
            _no_exception(page)
            body = page.inner_text("body")
            assert f"{sample} ·" in body, (sample, body[:500])
            assert f"shape {width} × " in body
            assert _thumb(page, "FPN channel width d").input_value() == str(width)
            others = {w for _, w in wanted} - {width}
            assert not any(f"shape {w} × " in body for w in others), (width, others)
        # a change in one session leaves the others alone
        _press_and_time(pages[0], _thumb(pages[0], "FPN channel width d"), "ArrowRight")
        assert _thumb(pages[0], "FPN channel width d").input_value() == "48"
        for page, (_, width) in zip(pages[1:], wanted[1:], strict=True):
            page.reload(timeout=PAGE_TIMEOUT_MS)
            _wait_idle(page, "FPN outputs")
            assert _thumb(page, "FPN channel width d").input_value() == str(width)
    finally:
        for page in pages:
            page.context.close()
