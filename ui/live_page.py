"""The "Live camera" page: the pyramid (or a detector) on every frame of the browser's camera.

``streamlit-webrtc`` carries the video both ways (SENDRECV, video only). Each frame goes to
this session's ``fpn_core.live.LiveRunner``, which runs the current model on the latest frame
in its own thread and hands back the latest processed image; the camera's own frames are never
queued. A fragment rerun every second shows the frame rate, latency and level shares.

Why ``rtc_configuration={"iceServers": []}``: streamlit-webrtc treats a missing list (or an
empty dict) as "not set" and adds a public STUN server, whose lookup hangs the connection on a
machine without internet. No server is needed on localhost or a LAN; ``FPN_ICE_SERVERS`` (JSON)
adds some for remote viewers.
"""

from __future__ import annotations

import os

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from fpn_core import Pyramid
from fpn_core.detection import DETECTORS, Detector
from fpn_core.levels import hex_color
from fpn_core.live import (
    DEFAULT_LIVE_SIZE,
    ICE_SERVERS_ENV,
    LIVE_SIZE_BOUNDS,
    VIEW_BOXES,
    VIEW_DOMINANT,
    VIEW_OVERLAY,
    LiveRunner,
    LiveSnapshot,
    LiveView,
    ice_servers_from_env,
)
from ui import cache, loading
from ui import settings as S

# Widget keys of this page (not in the URL: they belong to the page's view).
KEY_LIVE_MODEL = "live_model"
KEY_LIVE_VIEW = "live_view"
KEY_LIVE_LEVEL = "live_level"
KEY_LIVE_SIZE = "live_size"
KEY_LIVE_STREAM = "live_stream"
#: Session-state entry: this session's runner (its thread lives only while the stream plays).
LIVE_RUNNER = "_live_runner"

MODEL_PYRAMID = "pyramid"
MODEL_LABELS: dict[str, str] = {
    MODEL_PYRAMID: "Sidebar's pyramid",
    **{name: spec.title for name, spec in DETECTORS.items()},
}
VIEW_LABELS: dict[str, str] = {
    VIEW_DOMINANT: "Dominant level",
    VIEW_OVERLAY: "One level's overlay",
    VIEW_BOXES: "Detector's boxes",
}
#: Seconds between two refreshes of the frame rate text while streaming.
STATS_EVERY_S = 1.0
#: Camera frames per second asked of the browser: the pyramid's views keep up with 15; a detector runs
#: at about 6-7 on two cores (RetinaNet at 320 px), and each frame the camera sends is decoded and one is
#: coded back, so asking for fewer leaves the detector more of the CPU.
CAMERA_FPS = {"pyramid": 15, "detector": 8}


def media_constraints(fps: int) -> dict:
    """What the browser is asked for: a small picture is all the live sizes need, and costs less to code."""
    return {
        "video": {"width": {"ideal": 320}, "height": {"ideal": 240}, "frameRate": {"ideal": fps, "max": 30}},
        "audio": False,
    }


NO_CAMERA = (
    "No camera: this browser gives the page no video (no WebRTC, or the camera permission was refused). "
    "Choose **Camera** as the image source in the sidebar to analyse one photo instead."
)


def runner() -> LiveRunner:
    """This session's runner (made once per session)."""
    state = st.session_state
    if LIVE_RUNNER not in state:
        state[LIVE_RUNNER] = LiveRunner(name=f"fpn-live-{id(state):x}")
    return state[LIVE_RUNNER]


def frame_callback(run: LiveRunner):
    """The streamer's per-frame callback: the frame in as RGB, the latest processed image out."""

    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        out = run.offer(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")

    return callback


def _model(settings: S.Settings, choice: str) -> Pyramid | Detector | None:
    """The shared model for the choice (built once per process); errors become a message."""
    config = settings.config
    if choice == MODEL_PYRAMID:
        return loading.guarded(
            lambda: cache.get_pyramid(config, cache.get_backbone(cache.ModelKey(config.weights, str(config.device)))),
            spinner="Loading ResNet-50 and the FPN (once per server)…",
            failure="The model could not be built",
        )
    return loading.guarded(
        lambda: cache.get_detector(cache.DetectorKey(choice, "coco", str(config.device))),
        spinner=f"Loading {DETECTORS[choice].title} (once per server)…",
        failure="The model could not be built",
    )


def _controls(settings: S.Settings) -> tuple[str, Pyramid | Detector | None, LiveView]:
    """The page's controls (the model, the view, the level and the live size) and the chosen model."""
    cols = st.columns([3, 3, 2, 3], gap="medium")
    choice = cols[0].radio(
        "Model",
        tuple(MODEL_LABELS),
        format_func=MODEL_LABELS.__getitem__,
        key=KEY_LIVE_MODEL,
        help="The sidebar's pyramid (width, stages, weights), or a COCO detector on its own FPN.",
    )
    model = _model(settings, str(choice))
    views = (VIEW_DOMINANT, VIEW_OVERLAY) if choice == MODEL_PYRAMID else (VIEW_DOMINANT, VIEW_OVERLAY, VIEW_BOXES)
    if st.session_state.get(KEY_LIVE_VIEW) not in views:
        st.session_state[KEY_LIVE_VIEW] = VIEW_BOXES if choice != MODEL_PYRAMID else VIEW_DOMINANT
    view = cols[1].radio("Show", views, format_func=VIEW_LABELS.__getitem__, key=KEY_LIVE_VIEW)
    if choice != MODEL_PYRAMID:
        levels = list(DETECTORS[choice].levels)
    else:  # the built pyramid's own levels: p7 too for a RetinaNet, FCOS or mmdetection file
        levels = model.level_info.names() if isinstance(model, Pyramid) else settings.config.level_names
    if st.session_state.get(KEY_LIVE_LEVEL) not in levels:
        st.session_state[KEY_LIVE_LEVEL] = levels[0]
    level = cols[2].selectbox("Level", levels, key=KEY_LIVE_LEVEL, disabled=view != VIEW_OVERLAY)
    lo, hi, step = LIVE_SIZE_BOUNDS
    size = cols[3].slider(
        "Live size (long side, px)",
        lo,
        hi,
        DEFAULT_LIVE_SIZE,
        step,
        key=KEY_LIVE_SIZE,
        help="Each frame is resized to this before the network: smaller is faster.",
    )
    style = settings.style
    live = LiveView(
        view=str(view),
        size=int(size),
        level=str(level),
        aggregation=style.aggregation,
        colormap=style.colormap,
        alpha=max(0.35, style.alpha) if view == VIEW_DOMINANT else style.alpha,
    )
    return str(choice), model, live


def stats_text(snap: LiveSnapshot, what: str) -> str:
    """The line under the video: frame rate, latency, dominant level and each level's share."""
    if snap.frames == 0:
        return "Waiting for frames… (0 fps)"
    shares = " · ".join(
        f"<span style='color:{hex_color(n)}'>■</span> {n} {100 * s:.0f}%" for n, s in sorted(snap.shares.items())
    )
    dominant = f"**dominant level: {snap.dominant}**" if snap.dominant else "no level stands out"
    parts = [
        f"**{snap.fps:.1f} fps**",
        f"latency {snap.latency_ms:.0f} ms (median)",
        f"{snap.dropped} frames dropped",
        dominant,
    ]
    return " · ".join(parts) + (f"  \nShare of {what} over the last second: {shares}" if shares else "")


def _show_stats(run: LiveRunner, what: str) -> None:
    snap = run.snapshot()
    st.markdown(stats_text(snap, what), unsafe_allow_html=True)
    if snap.error:
        st.warning(f"The last frame failed: {snap.error}")


def _has_browser_session() -> bool:
    """Whether this run belongs to a browser session of a running server (not a bare script or AppTest)."""
    try:
        from streamlit_webrtc.session_info import get_this_session_info

        return get_this_session_info() is not None
    except Exception:  # no server runtime (streamlit's AppTest mocks it)
        return False


def show_live_page(settings: S.Settings) -> None:
    """The page below its title: controls, the stream, the statistics, and how to reach the camera."""
    choice, model, view = _controls(settings)
    run = runner()
    if model is None:
        run.stop()
        return
    run.configure(model, view)
    if not _has_browser_session():
        st.info("The video stream needs a browser connected to a running server (`streamlit run dashboard.py`).")
        _explain(view.view)
        return
    servers, ice_problem = ice_servers_from_env(os.environ)
    if ice_problem:
        st.warning(ice_problem)
    left, right = st.columns([3, 2], gap="large")
    with left:
        ctx = _streamer(run, servers, CAMERA_FPS["pyramid" if choice == MODEL_PYRAMID else "detector"])
    playing = bool(ctx.state.playing)
    if not playing and run.running:
        run.stop()
    what = {VIEW_DOMINANT: "colored pixels", VIEW_OVERLAY: "the response", VIEW_BOXES: "the boxes"}[view.view]
    with right:
        if playing:
            st.fragment(_show_stats, run_every=STATS_EVERY_S)(run, what)
        else:
            st.caption("Press **START** and allow the camera: the frame rate, latency and level shares show here.")
        _explain(view.view)


def _streamer(run: LiveRunner, servers: list[dict], fps: int):  # -> WebRtcStreamerContext
    """The video both ways: the camera's frames to ``run``, its images back."""
    return webrtc_streamer(
        key=KEY_LIVE_STREAM,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration={"iceServers": servers},  # a list, even empty: see the module docstring
        media_stream_constraints=media_constraints(fps),
        video_frame_callback=frame_callback(run),
        on_video_ended=lambda: run.stop(wait=False),  # from the event loop: never block it
        async_processing=False,  # the callback only hands the frame over; the runner's thread infers
        translations={
            "media_api_not_available": NO_CAMERA,
            "device_not_available": NO_CAMERA,
            "device_access_denied": NO_CAMERA,
        },
        video_html_attrs={"autoPlay": True, "controls": False, "muted": True, "style": {"width": "100%"}},
    )


def _explain(view: str) -> None:
    """What the colors mean, and why the camera may not start."""
    if view == VIEW_DOMINANT:
        st.markdown(
            "Each pixel takes the color of the level whose response (root mean square over its channels, "
            "normalized over the frame) is highest there; where no level stands out the camera image shows. "
            "With trained weights, move a hand towards the camera: the dominant level moves from fine (p3) to "
            "coarse (p5)."
        )
    with st.expander("The camera does not start?"):
        st.markdown(
            "- Browsers give a page the camera only on **localhost** or over **HTTPS**: open the app as "
            "`http://localhost:8501` on the machine that runs it, or put it behind HTTPS.\n"
            "- The browser asks for permission once; a refused permission is changed in the address bar's "
            "site settings.\n"
            f"- By default no ICE server is used, which works on localhost and on a LAN. For viewers elsewhere an "
            f"operator sets `{ICE_SERVERS_ENV}` to a JSON list of servers, e.g. "
            '`[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]`.\n'
            "- No camera at all? Choose **Camera** as the image source in the sidebar to analyse one photo."
        )
