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
#: Installed before the app loads: notes when each of streamlit's messages arrives and what it says
#: about script runs (a ForwardMsg's top-level fields: 4 ``new_session`` starts a run, 6
#: ``script_finished`` ends one: ``done`` a full run, ``fragment`` a fragment's, ``early`` one stopped for a
#: rerun). ``window.__msgs`` holds ``[kind, performance.now()]`` per message. A fragment run (a
#: sidebar control the page does not read) can start and finish within one React update, leaving
#: the ``data-test-script-state`` attribute unchanged, so the messages are the clock.
RUN_RECORDER_JS = """(() => {
    window.__msgs = [];
    const varint = (b, p) => { let x = 0, s = 0, c; do { c = b[p.i++]; x += (c & 0x7f) * 2 ** s; s += 7; }
                               while (c & 0x80 && p.i < b.length); return x; };
    const scan = (buf, t) => {
        const b = new Uint8Array(buf), p = {i: 0};
        while (p.i < b.length) {
            const key = varint(b, p), field = Math.floor(key / 8), wire = key & 7;
            if (wire === 0) {
                const v = varint(b, p);
                if (field === 6) window.__msgs.push([v === 2 ? 'early' : v === 3 ? 'fragment' : 'done', t]);
            } else if (wire === 2) {
                const n = varint(b, p);
                if (field === 4) window.__msgs.push(['start', t]);
                p.i += n;
            }
            else if (wire === 1) p.i += 8; else if (wire === 5) p.i += 4; else break;
        }
    };
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
        constructor(...args) {
            super(...args);
            this.addEventListener('message', ev => {
                const t = performance.now();
                if (ev.data instanceof ArrayBuffer) scan(ev.data, t);
                else if (ev.data instanceof Blob) ev.data.arrayBuffer().then(buf => scan(buf, t));
            });
        }
    };
})()"""
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


def thumb(page, label: str, *, sidebar: bool = True):
    """The slider named ``label``: the sidebar's (a page may draw sliders of the same name, as the A/B
    page's sides do), or with ``sidebar=False`` any slider of that name (a page's own)."""
    scope = "[data-testid='stSidebar'] " if sidebar else ""
    sliders = page.locator(scope + "[data-testid='stSlider']")
    return sliders.filter(has_text=label).locator("input[type='range']")


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


STREAM_FRAME = "iframe[title*='webrtc']"


def stream_button(page, name: str):
    """The streamer's START or STOP button (inside the component's iframe; its text is upper-cased by CSS)."""
    import re

    return page.frame_locator(STREAM_FRAME).get_by_role("button", name=re.compile(f"^{name}$", re.IGNORECASE))


def start_stream(page, attempts: int = 3) -> None:
    """Press START until the streamer shows STOP (a press before the component is wired is lost)."""
    last: Exception | None = None
    for _ in range(attempts):
        stream_button(page, "START").click(timeout=PAGE_TIMEOUT_MS)
        try:
            stream_button(page, "STOP").wait_for(timeout=60_000)
            return
        except Exception as exc:  # playwright's TimeoutError: still showing START
            last = exc
    raise AssertionError("the stream did not start") from last


def live_stats(page) -> dict[str, object]:
    """What the Live page's statistics line says now: fps, latency (ms) and the dominant level (or None)."""
    import re

    text = page.locator("[data-testid='stMain']").inner_text()
    fps = re.search(r"([\d.]+) fps", text)
    latency = re.search(r"latency (\d+) ms", text)
    dominant = re.search(r"dominant level: (p\d)", text)
    return {
        "fps": float(fps.group(1)) if fps else None,
        "latency_ms": float(latency.group(1)) if latency else None,
        "dominant": dominant.group(1) if dominant else None,
    }


def colors_in_returned_video(page, colors: dict[str, tuple[int, int, int]], tolerance: int = 60) -> list[str] | None:
    """Which of ``colors`` the video the server sends back shows now (None before it plays).

    A color counts where some pixel is within ``tolerance`` (sum of the channel differences).
    """
    video = page.frame_locator(STREAM_FRAME).locator("video")
    if video.count() == 0:
        return None
    return video.first.evaluate(
        """(v, [colors, tol]) => {
            if (!v.videoWidth || v.readyState < 2) return null;
            const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
            const g = c.getContext('2d'); g.drawImage(v, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data; const found = new Set();
            for (let k = 0; k < d.length; k += 4) for (const [name, [r, gg, b]] of Object.entries(colors)) {
                if (Math.abs(d[k] - r) + Math.abs(d[k + 1] - gg) + Math.abs(d[k + 2] - b) <= tol) found.add(name);
            }
            return Array.from(found).sort();
        }""",
        [{k: list(v) for k, v in colors.items()}, tolerance],
    )
