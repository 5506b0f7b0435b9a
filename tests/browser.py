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


# ------------------------------------------------------------------------ a fake camera


def camera_args(y4m: Path) -> list[str]:
    """Chromium flags for a fake camera that plays ``y4m`` (in a loop) without asking for permission."""
    return [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ]


def square_side(i: int, frames: int, low: int, high: int) -> int:
    """The square's side in frame ``i`` of a loop of ``frames``: grows from ``low`` to ``high`` and back."""
    phase = i / frames
    tri = 2 * phase if phase < 0.5 else 2 * (1 - phase)
    return round(low + (high - low) * tri)


def write_square_y4m(path: Path, *, width: int = 320, height: int = 240, fps: int = 15, seconds: float = 8.0) -> Path:
    """A Y4M video (``C420``) of a yellow square on grey that grows to most of the frame and shrinks back.

    Chromium's fake camera plays it in a loop (``--use-file-for-fake-video-capture``).
    """
    import cv2
    import numpy as np

    frames = round(fps * seconds)
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420\n".encode())
        for i in range(frames):
            rgb = np.full((height, width, 3), 90, np.uint8)
            side = square_side(i, frames, 12, min(width, height) - 8)
            y, x = (height - side) // 2, (width - side) // 2
            rgb[y : y + side, x : x + side] = (230, 220, 60)
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path
