"""Real-browser check of the "Receptive fields" page: opened by its URL in the frame, a click, the keyboard.

Uses the session's streamlit server and system Chromium (``conftest.py``), at input size 256.
A click on the image picks the point (an Altair chart selection); the x and y number inputs are
the keyboard path to it. The screenshot goes to ``artifacts/screenshots/receptive_fields.png``.
"""

from __future__ import annotations

import pytest

from tests.browser import IDLE, PAGE_TIMEOUT_MS, no_exception, open_in_new_context, thumb
from tests.conftest import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
TITLE = "Receptive fields"

pytestmark = pytest.mark.browser


def _number_input(page, label: str):
    return page.locator("[data-testid='stNumberInput']").filter(has_text=label).locator("input")


def _reading(page) -> str:
    """The sentence beside the point's controls: the finest level's shares at the point."""
    return page.locator("[data-testid='stAlert']").filter(has_text="At this point").first.inner_text()


def _cells(page) -> str:
    """The line naming the cell (row, col) of each level under the point."""
    markdown = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="Cells (row, col) under the point")
    return markdown.last.inner_text()


def _settle(page) -> None:
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)


def test_receptive_fields_page_click_and_keyboard(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_in_new_context(browser, f"{server}/receptive-fields?input_size=256", TITLE)
    try:
        no_exception(page)
        # In the frame: the sidebar's controls and the navigation, with the page listed under Teach.
        thumb(page, "FPN channel width d").wait_for(timeout=PAGE_TIMEOUT_MS)
        nav = page.locator("[data-testid='stSidebarNav']")
        assert "Teach" in nav.inner_text() and TITLE in nav.inner_text()
        assert nav.locator("a[href$='/receptive-fields']").count() == 1
        body = page.inner_text("body")
        for text in ("Where one cell looks", "Where each level's signal comes from", "Luo et al.", "theoretical RF"):
            assert text in body, text
        # One ERF panel per stage and level, one composite per level, the click chart and the plots.
        assert page.locator("[data-testid='stImage']").count() >= 12
        assert page.locator("[data-testid='stVegaLiteChart']").count() == 3
        x_input, y_input = _number_input(page, "x (0 to"), _number_input(page, "y (0 to")
        centre = (int(x_input.input_value()), int(y_input.input_value()))
        first, cells_at_centre = _reading(page), _cells(page)

        # A click near the top-left of the image moves the point there.
        chart = page.locator("[data-testid='stVegaLiteChart']").first
        chart.scroll_into_view_if_needed()
        canvas = chart.locator("canvas, svg").first
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 0.18 * box["width"], box["y"] + 0.2 * box["height"])
        page.wait_for_function(
            "([el, v]) => el.value !== v", arg=[x_input.element_handle(), str(centre[0])], timeout=PAGE_TIMEOUT_MS
        )
        _settle(page)
        no_exception(page)
        clicked = (int(x_input.input_value()), int(y_input.input_value()))
        assert clicked[0] < centre[0] and clicked[1] < centre[1], (centre, clicked)

        # The keyboard path: type a point near the bottom-right; the reading follows it.
        x_input.fill(str(2 * centre[0] - 8))
        x_input.press("Enter")
        _settle(page)
        y_input.fill(str(2 * centre[1] - 8))
        y_input.press("Enter")
        page.wait_for_function(
            "([el, v]) => el.value === v", arg=[y_input.element_handle(), str(2 * centre[1] - 8)], timeout=10_000
        )
        _settle(page)
        no_exception(page)
        assert _reading(page) != first
        assert _cells(page) != cells_at_centre

        # Back to the centre for the picture, which the report describes.
        x_input.fill(str(centre[0]))
        x_input.press("Enter")
        _settle(page)
        y_input.fill(str(centre[1]))
        y_input.press("Enter")
        _settle(page)
        no_exception(page)
        page.set_viewport_size({"width": 1440, "height": 4000})
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "receptive_fields.png"), full_page=True)
    finally:
        page.context.close()
