"""Real-browser checks: a streamlit server, system Chromium, every page by its URL, in the frame.

Starts ``streamlit run dashboard.py`` on a free port (downloads off, empty torch hub cache).
The first test opens an old capitalised address on the fresh server (the case where streamlit
would run a page file without the frame); then every page opens by its URL in a fresh browser
context with the sidebar and its own content, the width slider is changed with the keyboard and
kept across the navigation. Screenshots go to ``artifacts/screenshots/``. Timings are printed,
not asserted (``python -m benchmarks --only live`` measures them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import (
    PAGE_TIMEOUT_MS,
    RUN_RECORDER_JS,
    no_exception,
    open_in_new_context,
    press_and_time,
    thumb,
    wait_idle,
)
from tests.conftest import ROOT, running_server

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

pytestmark = pytest.mark.browser


def framed(page) -> None:
    """The page runs inside the frame: our navigation (with its sections) and the sidebar's controls."""
    thumb(page, "FPN channel width d").wait_for(timeout=PAGE_TIMEOUT_MS)
    nav = page.locator("[data-testid='stSidebarNav']")
    assert nav.count() == 1
    nav_text = nav.inner_text()
    assert "Explore" in nav_text and "Teach" in nav_text and "dashboard" not in nav_text, nav_text


def test_old_capitalised_address_lands_on_its_framed_page(server: str, browser: object) -> None:
    """Run first, on the fresh server: an old link must never run a page file without the frame."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old, new in OLD_ADDRESSES.items():
        title = PAGES[new]
        page = open_in_new_context(browser, f"{server}/{old}?fpn_width=64", title)
        try:
            no_exception(page)
            framed(page)
            assert f"/{new}?" in page.url, page.url
            assert "fpn_width=64" in page.url, "the old link's settings come along"
            assert thumb(page, "FPN channel width d").input_value() == "64"
            page.screenshot(path=str(SHOTS / f"old_address_{old}.png"), full_page=True)
        finally:
            page.context.close()


def test_a_fresh_servers_first_deep_link_answers_the_keyboard(
    browser: object, test_env: dict[str, str], tmp_path: Path
) -> None:
    """On a fresh server the first session's address goes through streamlit's old pages/ router;
    the frame must still give a working session (this once left the sidebar deaf to keys)."""
    with running_server(test_env, tmp_path / "streamlit.log") as base:
        page = open_in_new_context(browser, f"{base}/fpn-outputs?fpn_width=32&input_size=128", "FPN outputs")
        try:
            framed(page)
            press_and_time(page, thumb(page, "FPN channel width d"), "ArrowRight")
            assert thumb(page, "FPN channel width d").input_value() == "48"
            assert "fpn_width=48" in page.url
        finally:
            page.context.close()


def test_every_page_opens_by_url_in_the_frame(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for path, title in PAGES.items():
        # A small input keeps twelve analyses quick; the width stays the default.
        page = open_in_new_context(browser, f"{server}/{path}?input_size=256", title)
        try:
            no_exception(page)
            framed(page)
            assert thumb(page, "FPN channel width d").input_value() == "256"
            page.get_by_text(CONTENT[path]).first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.screenshot(path=str(SHOTS / f"{path or 'home'}.png"), full_page=True)
        finally:
            page.context.close()


def test_width_change_persists_across_pages(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_in_new_context(browser, f"{server}/fpn-outputs", "FPN outputs")
    try:
        assert "shape 256 × 64 × 64" in page.inner_text("body")
        width_ms = press_and_time(page, thumb(page, "FPN channel width d"), "ArrowRight")
        no_exception(page)
        assert thumb(page, "FPN channel width d").input_value() == "272"
        assert "shape 272 × 64 × 64" in page.inner_text("body")

        page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Home").first.click()
        wait_idle(page, "FPN Explorer")
        no_exception(page)
        assert "d = 272" in page.inner_text("body")
        assert thumb(page, "FPN channel width d").input_value() == "272"
        page.screenshot(path=str(SHOTS / "Home_after_width_change.png"), full_page=True)

        page.locator("[data-testid='stSidebarNav'] a[href*='/overlays']").click()
        wait_idle(page, "Overlays")
        no_exception(page)
        assert thumb(page, "FPN channel width d").input_value() == "272"
        alpha_ms = press_and_time(page, thumb(page, "Overlay alpha"), "ArrowRight")
        no_exception(page)
        assert thumb(page, "Overlay alpha").input_value() == "0.55"
        page.screenshot(path=str(SHOTS / "Overlays_after_alpha_change.png"), full_page=True)
    finally:
        page.context.close()
    print(f"\nkey press to rerun finished, size 512: width {width_ms:.0f} ms, alpha {alpha_ms:.0f} ms")
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "browser_timings.txt").write_text(
        f"width_change_ms={width_ms:.0f}\nalpha_change_ms={alpha_ms:.0f}\n", encoding="utf-8"
    )


def _press_and_see_runs(page, label: str) -> list[str]:
    """Press ArrowRight on a sidebar slider; the kinds of the runs it caused (``RUN_RECORDER_JS``)."""
    slider = thumb(page, label)
    slider.focus()
    t0 = page.evaluate("() => performance.now()")
    slider.press("ArrowRight")
    page.wait_for_function(
        "t0 => window.__msgs.some(m => m[1] >= t0 && (m[0] === 'done' || m[0] === 'fragment'))",
        arg=t0,
        timeout=PAGE_TIMEOUT_MS,
    )
    page.wait_for_timeout(300)  # a full rerun would have started by now
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=PAGE_TIMEOUT_MS)
    return page.evaluate("t0 => window.__msgs.filter(m => m[1] >= t0).map(m => m[0])", t0)


def test_a_control_the_page_ignores_reruns_only_its_fragment(server: str, browser: object) -> None:
    """Stage activations does not read the FPN width: a press reruns the slider's fragment alone (the
    page's images stay, its downloads work, the address bar follows). On FPN outputs the same press
    reruns the page."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    context.add_init_script(RUN_RECORDER_JS)
    page = context.new_page()
    try:
        page.goto(f"{server}/stage-activations?input_size=128", timeout=PAGE_TIMEOUT_MS)
        wait_idle(page, "Stage activations")
        images = "els => els.map(e => e.src)"
        # Under load (the full suite on two workers) the page can read idle while React still adds the last
        # images (seen: 0 and 6 of 10): wait for the run's end message, then for the images to stay put.
        page.wait_for_function("() => window.__msgs.some(m => m[0] === 'done')", timeout=PAGE_TIMEOUT_MS)
        before, seen = None, page.eval_on_selector_all("[data-testid='stMain'] img", images)
        for _ in range(150):  # a minute at most
            if seen and seen == before:
                break
            page.wait_for_timeout(400)
            before, seen = seen, page.eval_on_selector_all("[data-testid='stMain'] img", images)
        assert seen and seen == before, "the page's images never settled"
        kinds = _press_and_see_runs(page, "FPN channel width d")
        assert "fragment" in kinds and "done" not in kinds, kinds
        page.wait_for_function("() => location.search.includes('fpn_width=272')", timeout=PAGE_TIMEOUT_MS)
        assert page.eval_on_selector_all("[data-testid='stMain'] img", images) == before
        with page.expect_download(timeout=PAGE_TIMEOUT_MS) as download:  # the page's downloads still work
            page.locator("[data-testid='stMain'] [data-testid='stDownloadButton'] button").first.click()
        assert download.value.suggested_filename == "stage_c1_map.png"
        no_exception(page)

        page.locator("[data-testid='stSidebarNav'] a[href*='/fpn-outputs']").click()
        wait_idle(page, "FPN outputs")
        assert "shape 272 × 16 × 16" in page.inner_text("body")
        kinds = _press_and_see_runs(page, "FPN channel width d")
        assert "done" in kinds and "fragment" not in kinds, kinds
        page.get_by_text("shape 288 × 16 × 16").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        no_exception(page)
    finally:
        context.close()


def test_url_with_query_params_opens_that_view(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_in_new_context(browser, f"{server}/fpn-outputs?fpn_width=64&map_colormap=nope", "FPN outputs")
    try:
        no_exception(page)
        assert thumb(page, "FPN channel width d").input_value() == "64"
        body = page.inner_text("body")
        assert "shape 64 × 64 × 64" in body
        assert "map_colormap=nope" in body and "not valid" in body
        # The address bar now holds the whole view, the corrected color map included.
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
        for sample, out_channels in wanted:  # start all five before waiting for any
            context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
            page = context.new_page()
            url = (
                f"{server}/fpn-outputs?image_source=sample&sample_name={sample}&fpn_width={out_channels}&input_size=256"
            )
            page.goto(url, wait_until="commit", timeout=PAGE_TIMEOUT_MS)
            pages.append(page)
        for page, (sample, out_channels) in zip(pages, wanted, strict=True):
            # A background tab in headless Chromium may leave streamlit's lazily loaded widgets and
            # images as grey placeholders until it is shown: look at each session as a user would.
            page.bring_to_front()
            wait_idle(page, "FPN outputs")
            no_exception(page)
            page.get_by_text(f"{sample} ·").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            body = page.inner_text("body")
            assert f"{sample} ·" in body, (sample, body[body.find("Image source") :][:400])
            assert f"shape {out_channels} × " in body
            assert thumb(page, "FPN channel width d").input_value() == str(out_channels)
            others = {w for _, w in wanted} - {out_channels}
            assert not any(f"shape {w} × " in body for w in others), (out_channels, others)
        # a change in one session leaves the others alone
        pages[0].bring_to_front()
        press_and_time(pages[0], thumb(pages[0], "FPN channel width d"), "ArrowRight")
        assert thumb(pages[0], "FPN channel width d").input_value() == "48"
        for page, (_, out_channels) in zip(pages[1:], wanted[1:], strict=True):
            page.bring_to_front()
            page.reload(timeout=PAGE_TIMEOUT_MS)
            wait_idle(page, "FPN outputs")
            assert thumb(page, "FPN channel width d").input_value() == str(out_channels)
    finally:
        for page in pages:
            page.context.close()
