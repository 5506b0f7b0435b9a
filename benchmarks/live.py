"""Section 8: how live the sidebar feels: key press on a slider to every image on the page loaded.

A real ``streamlit run`` and the Debian Chromium (never a downloaded browser), in a 1440 x 1800
window, at input size 512, c3..c5, d = 256, random weights. For each (page, control) the slider thumb gets a key
press with a new value every time (nothing comes from a cache), and the time runs from the
press until the rerun has finished and every image on the page has loaded. The median of
``--pairs`` presses (at least 5) is reported against the issue's targets.

``--dashboard PATH`` measures another checkout's ``dashboard.py`` (e.g. the version before the
frame, whose pages live at ``/Overlays`` instead of ``/overlays``) for a before/after table.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from . import ROOT
from .chromium import CHROMIUM, CHROMIUM_ARGS, RUN_RECORDER_JS
from .coldstart import served
from .measure import Context
from .report import Row, Table, fmt

SECTION = "8 live sidebar (Chromium)"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
#: (page title, URL path after the frame, URL path before it, slider label, key, target seconds)
#: Targets with issue 20's margin (the frame issue's were 0.40, 0.25 and 0.20 s).
CASES: tuple[tuple[str, str, str, str, float], ...] = (
    ("Timing", "timing", "Overlay alpha", "overlay alpha (unused by the page)", 0.15),
    ("Overlays", "overlays", "FPN channel width d", "width d, one step", 0.30),
    ("Overlays", "overlays", "Overlay alpha", "overlay alpha, one step", 0.18),
    ("FPN outputs", "fpn-outputs", "FPN channel width d", "width d, one step", 0.30),
    ("FPN outputs", "fpn-outputs", "Overlay alpha", "overlay alpha (unused by the page)", 0.15),
    ("Stage activations", "stage-activations", "FPN channel width d", "width d (unused by the page)", 0.15),
)
#: The browser window measured in (issue 20: the margins must hold in a tall window, where every
#: panel of the page is on screen and decoded).
VIEWPORT = {"width": 1440, "height": 1800}
LEGACY_PATHS = {
    "overlays": "Overlays",
    "fpn-outputs": "FPN_outputs",
    "stage-activations": "Stage_activations",
    "timing": "Timing",
}
#: Resolves with the time when the press's run (full or fragment) has finished, the page shows it
#: (``notRunning``), every image is decoded, and no further run started within 150 ms after.
DONE_JS = """t0 => new Promise(resolve => {
    let since = null;
    const check = () => {
        const now = performance.now();
        const m = window.__msgs.filter(x => x[1] >= t0);
        const lastDone = m.findLastIndex(x => x[0] === 'done' || x[0] === 'fragment');
        const lastStart = m.findLastIndex(x => x[0] === 'start');
        const app = document.querySelector("[data-testid='stApp']");
        const imgs = Array.from(document.querySelectorAll("[data-testid='stMain'] img"));
        const ok = lastDone >= 0 && lastDone > lastStart
            && app.getAttribute('data-test-script-state') === 'notRunning'
            && imgs.every(im => im.complete && im.naturalWidth > 0);
        if (!ok) since = null;
        else if (since === null) since = now;
        if (since !== null && now - since > 150) resolve(since); else requestAnimationFrame(check);
    };
    check();
})"""


def run(ctx: Context) -> None:
    """Measure every case on this checkout's dashboard (or ``--dashboard``)."""
    rep = ctx.report
    dashboard = Path(str(ctx.dashboard)) if ctx.dashboard else ROOT / "dashboard.py"
    if not CHROMIUM.exists():
        rep.row(Row(SECTION, "live sidebar", None, " s", skipped=f"{CHROMIUM} is missing"))
        return
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        rep.row(Row(SECTION, "live sidebar", None, " s", skipped="playwright is not installed"))
        return
    presses = max(5, ctx.pairs)
    framed = (dashboard.parent / "ui" / "frame.py").exists()
    try:
        results = measure(dashboard, presses, framed)
    except Exception as exc:
        rep.row(Row(SECTION, "live sidebar", None, " s", skipped=f"failed: {type(exc).__name__}: {exc}"))
        return
    table = Table(
        SECTION,
        f"key press -> rerun done and images loaded ({dashboard.parent.name})",
        ["page", "control", "median s", "presses (s)"],
    )
    for (title, _, _, what, target), times in zip(CASES, results, strict=True):
        table.rows.append([title, what, fmt(statistics.median(times)), ", ".join(fmt(t) for t in times)])
        rep.row(
            Row(
                SECTION,
                f"{title}: {what}",
                statistics.median(times),
                " s",
                target,
                detail=f"median of {len(times)} presses in Chromium, size 512, c3..c5, d = 256, random weights",
            )
        )
    rep.table(table)


def measure(dashboard: Path, presses: int, framed: bool = True) -> list[list[float]]:
    """Seconds per press for every case of :data:`CASES`, on one fresh server."""
    from playwright.sync_api import sync_playwright

    results: list[list[float]] = []
    with served(dashboard, "fpn-bench-live-") as (base, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            for title, path, label, _, _ in CASES:
                url = f"{base}/{path if framed else LEGACY_PATHS[path]}?input_size=512"
                results.append(_presses(browser, url, title, label, presses))
        finally:
            browser.close()
    return results


def _presses(browser, url: str, title: str, label: str, presses: int) -> list[float]:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RUN_RECORDER_JS)
    try:
        page = context.new_page()
        page.goto(url, timeout=300_000)
        page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=300_000)
        page.wait_for_selector(IDLE, timeout=300_000)
        page.wait_for_load_state("networkidle", timeout=300_000)
        thumb = page.locator("[data-testid='stSlider']").filter(has_text=label).locator("input[type='range']")
        times = []
        for _ in range(presses):
            thumb.focus()
            t0 = page.evaluate("() => performance.now()")
            thumb.press("ArrowRight")
            done = page.evaluate(DONE_JS, t0)
            times.append((done - t0) / 1e3)
            print(f"    {title} · {label}: {times[-1]:.3f} s", flush=True)
            page.wait_for_load_state("networkidle", timeout=300_000)
        return times
    finally:
        context.close()
