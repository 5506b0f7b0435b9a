"""Real-browser check of the Detection page: opened by its URL in the frame, offline (untrained).

Uses the session's streamlit server and system Chromium (``conftest.py``). The page opens at the
detector's own 800 px input with the untrained notice; the "noise" toggle then draws the boxes.
Screenshots go to ``artifacts/screenshots/`` (``detection.png`` with the boxes drawn).
"""

from __future__ import annotations

import pytest

from tests.browser import IDLE, PAGE_TIMEOUT_MS, no_exception, open_in_new_context, thumb
from tests.conftest import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = pytest.mark.browser


def test_detection_page_opens_by_url_in_the_frame(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_in_new_context(browser, f"{server}/detection", "Detection")
    try:
        no_exception(page)
        # In the frame: the sidebar's controls and our navigation, with the page listed under Explore.
        thumb(page, "FPN channel width d").wait_for(timeout=PAGE_TIMEOUT_MS)
        nav = page.locator("[data-testid='stSidebarNav']")
        assert nav.count() == 1
        assert "Explore" in nav.inner_text() and "Detection" in nav.inner_text()
        assert nav.locator("a[href$='/detection']").count() == 1
        # Offline: the untrained notice names the files; anchors and the level rule still show.
        body = page.inner_text("body")
        assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in body and "about 160 MB" in body
        assert "retinanet_resnet50_fpn_coco-eeacb38b.pth" in body and "about 130 MB" in body
        assert "network input 800 × 800 px" in body
        assert "Anchors per level" in body and "Boxes hidden" in body
        page.screenshot(path=str(SHOTS / "detection_untrained.png"), full_page=True)

        toggle = page.locator("[data-testid='stCheckbox']").filter(has_text="Draw untrained boxes (noise)")
        toggle.locator("label").first.click()
        page.get_by_text("detections with score ≥").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        no_exception(page)
        body = page.inner_text("body")
        assert "Box color = level" in body and "label: class score" in body
        # The detections table joins the anchors and rule tables (canvas grids: their text is not in the DOM).
        assert page.locator("[data-testid='stDataFrame']").count() == 3
        # Streamlit scrolls inside its own container: a tall window shows the whole page in one shot.
        page.set_viewport_size({"width": 1440, "height": 4200})
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "detection.png"), full_page=True)
    finally:
        page.context.close()
