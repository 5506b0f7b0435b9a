"""Browser test helpers: the system Chromium (Debian's ``/usr/bin/chromium``, never a browser
downloaded by playwright), its launch flags, and small steps on a streamlit page.

The ``server`` and ``browser`` fixtures that use them are in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGE_TIMEOUT_MS = 180_000


def open_in_new_context(browser: object, url: str, title: str):  # -> playwright Page
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    wait_idle(page, title)
    return page


def wait_idle(page, title: str) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    # Images and the graphviz chart arrive with the last deltas; let them paint.
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)


def no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def watch_reruns(page) -> None:
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


def press_and_time(page, slider, key: str) -> float:
    """Press ``key`` on a slider thumb; milliseconds until the rerun it caused has finished."""
    watch_reruns(page)
    before = slider.input_value()
    slider.focus()
    t0 = page.evaluate("() => performance.now()")
    slider.press(key)
    try:  # the value moves at once where the thumb got the key
        page.wait_for_function("([el, v]) => el.value !== v", arg=[slider.element_handle(), before], timeout=10_000)
    except Exception:  # playwright's TimeoutError: a key lost by the browser harness; press once more
        slider.focus()
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


def thumb(page, label: str):
    return page.locator("[data-testid='stSlider']").filter(has_text=label).locator("input[type='range']")
