"""The sidebar, drawn once per run by the frame: image, pyramid, maps, export, share link.

Every widget is made from its row of the control table (``ui.settings.controls``). Defaults
and link values are put into session state before the widgets are drawn, and widgets get no
``value=``, so each value has one source: its widget key. Uploads and camera photos are
decoded in the widget's ``on_change`` and kept as a small RGB array in session state.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from fpn_core import available_devices
from fpn_core.images import MAX_UPLOAD_BYTES, ImageError, load_image
from ui import cache, models, panels
from ui import settings as S

#: Decoded uploads are kept at most this long on their long side (the largest input size).
UPLOAD_MAX_SIDE = 1024
#: Session-state flag: the link's query parameters have been read for this session.
URL_READ = "_url_read"
#: Widget key of the share expander (open: its link is drawn fresh on every change).
KEY_SHARE_OPEN = "share_link_open"


def table() -> dict[str, S.Control]:
    """The control table for the samples and devices of this server."""
    return S.controls(tuple(cache.sample_names()), tuple(available_devices()), models.folder_choices().weights)


# ------------------------------------------------------------------------------ the URL


def read_url(controls: Mapping[str, S.Control]) -> list[str]:
    """Once per session, before any widget: seed the widgets from the link, then the defaults.

    Returns:
        One warning per refused link value (empty after the first run of a session).
    """
    state = st.session_state
    notices: list[str] = []
    if not state.get(URL_READ):
        state[URL_READ] = True
        params = {key: st.query_params.get_all(key) for key in st.query_params}
        accepted, notices = S.parse_params(params, controls)
        for key, value in accepted.items():
            state[key] = value
    for key, control in controls.items():
        if key not in state or (control.options and _missing(state[key], control.options)):
            state[key] = control.default
    return notices


def _missing(value: object, options: tuple[object, ...]) -> bool:
    """Whether a kept value is no longer offered (e.g. a sample or device that went away)."""
    if isinstance(value, list):
        return any(v not in options for v in value)
    return value not in options


def write_url(controls: Mapping[str, S.Control]) -> dict[str, str]:
    """Write the current values into the address bar (only those that changed); returns them all."""
    wanted = S.url_params(st.session_state, controls)
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    return wanted


def share_link(params: Mapping[str, str]) -> str:
    """The page's address with ``params``; a relative ``?…`` where the address is unknown (tests)."""
    from urllib.parse import urlencode

    try:
        base = (st.context.url or "").split("?")[0]
    except Exception:  # no browser context (a bare script run): the query alone still helps
        base = ""
    return f"{base}?{urlencode(dict(params))}"


# ------------------------------------------------------------------------------ widgets


def draw(control: S.Control, where: object = None) -> object:
    """Draw one control's widget (no ``value=``: the value lives under its key) in ``where`` (by
    default the current container) and return its value."""
    where = where or st
    common = {"key": control.key, "help": control.help}
    if control.widget == "slider":
        lo, hi, step = control.bounds  # type: ignore[misc]
        if isinstance(control.default, int):
            lo, hi, step = int(lo), int(hi), int(step)
        return where.slider(control.label, lo, hi, step=step, **common)  # type: ignore[attr-defined]
    if control.widget == "toggle":
        return where.toggle(control.label, **common)  # type: ignore[attr-defined]
    if control.widget == "multiselect":
        return where.multiselect(control.label, control.options, **common)  # type: ignore[attr-defined]
    make = where.radio if control.widget == "radio" else where.selectbox  # type: ignore[attr-defined]
    extra = {"horizontal": True} if control.key == S.KEY_EXPORT_SCALE else {}
    return make(control.label, control.options, format_func=control.show, **common, **extra)


def handle_upload(uploaded: object | None) -> str | None:
    """Decode an upload or camera photo into session state, or record why it was refused.

    A refused file leaves the previous good image in place, so pages keep showing it next
    to the message.

    Args:
        uploaded: streamlit's ``UploadedFile`` (any binary file-like object with ``name``),
            or None when the user removed the file.

    Returns:
        The error message when the file was refused, else None.
    """
    state = st.session_state
    state.pop(S.UPLOAD_ERROR, None)
    if uploaded is None:
        for key in (S.UPLOAD_IMAGE, S.UPLOAD_NAME, S.UPLOAD_DIGEST):
            state.pop(key, None)
        return None
    name = str(getattr(uploaded, "name", "upload"))
    try:
        image = load_image(uploaded, max_bytes=MAX_UPLOAD_BYTES, max_side=UPLOAD_MAX_SIDE)  # type: ignore[arg-type]
    except ImageError as exc:
        message = f"{name} could not be used: {exc}"
        state[S.UPLOAD_ERROR] = message
        return message
    image.setflags(write=False)
    state[S.UPLOAD_IMAGE] = image
    state[S.UPLOAD_NAME] = name
    state[S.UPLOAD_DIGEST] = "upload-" + cache.digest_of(image)
    return None


def _on_file(key: str) -> None:
    handle_upload(st.session_state.get(key))


@st.fragment
def _unread(key: str) -> None:
    """A control the page on screen does not read, in a fragment of its own: changing it reruns this alone.

    The page's elements stay as they are (they do not depend on it), so the browser redraws one
    widget instead of the page. The address bar follows the new value here; the share link is
    drawn anew by a full rerun, and only while its expander is open.
    """
    controls = table()
    draw(controls[key])
    write_url(controls)
    if st.session_state.get(KEY_SHARE_OPEN):
        st.rerun(scope="app")


def _upload_choice() -> S.ImageChoice | None:
    """The last accepted upload or photo, if any."""
    state = st.session_state
    image = state.get(S.UPLOAD_IMAGE)
    if image is None:
        return None
    return S.ImageChoice(str(state.get(S.UPLOAD_NAME, "upload")), str(state[S.UPLOAD_DIGEST]), image)


def image_from_state() -> S.ImageChoice | None:
    """The image the image widgets hold (cached loads, so it costs lookups only)."""
    source = st.session_state.get(S.KEY_SOURCE)
    if source == S.SOURCE_SCALES:
        loaded = cache.load_scales()
        return S.ImageChoice("scales (synthetic)", loaded.digest, loaded.image)
    if source in (S.SOURCE_UPLOAD, S.SOURCE_CAMERA):
        return _upload_choice()
    samples = cache.sample_names()
    name = st.session_state.get(S.KEY_SAMPLE)
    if name not in samples:
        return None
    loaded = cache.load_sample(samples[name])
    return S.ImageChoice(str(name), loaded.digest, loaded.image)


def _upload_messages(prompt: str) -> None:
    """The last refused file's error, or a prompt while there is no image yet."""
    error = st.session_state.get(S.UPLOAD_ERROR)
    if error:
        st.error(error)
    elif st.session_state.get(S.UPLOAD_IMAGE) is None:
        st.info(prompt)


def _choose_image(controls: Mapping[str, S.Control]) -> S.ImageChoice | None:
    """The image widgets; returns the chosen image, or None with a message shown."""
    source = draw(controls[S.KEY_SOURCE])
    if source == S.SOURCE_SCALES:
        st.caption("One target shape at 32, 64, 128 and 256 px: each pyramid level answers a different size.")
    elif source == S.SOURCE_UPLOAD:
        st.file_uploader(
            f"Upload an image (up to {MAX_UPLOAD_BYTES // 2**20} MB)",
            type=list(S.UPLOAD_TYPES),
            key=S.KEY_UPLOAD,
            on_change=_on_file,
            args=(S.KEY_UPLOAD,),
            help="JPEG, PNG, WebP, BMP, TIFF or GIF. The file stays in this session's memory only.",
        )
        _upload_messages("Choose an image file to analyse it.")
    elif source == S.SOURCE_CAMERA:
        st.camera_input(
            "Take a photo",
            key=S.KEY_CAMERA,
            on_change=_on_file,
            args=(S.KEY_CAMERA,),
            help="The photo goes through the same checks as an upload and stays in this session only.",
        )
        _upload_messages("Take a photo to analyse it (the browser asks for the camera first).")
    elif not cache.sample_names():
        st.warning("No sample images were found; use the synthetic image or an upload.")
    else:
        draw(controls[S.KEY_SAMPLE])
    return image_from_state()


def show_sidebar(ignores: frozenset[str] = frozenset()) -> tuple[S.Settings, list[str]]:
    """Draw the sidebar (into the current container: the frame's ``with st.sidebar``) and return what it chose.

    Args:
        ignores: the control keys the page on screen does not read: each is drawn in a fragment
            of its own (:func:`_unread`), so changing it does not rerun the page.

    Returns:
        The current settings, and warnings about refused link values (first run only).
    """
    controls = table()

    def put(key: str, where: object = None) -> None:
        if key not in ignores:
            draw(controls[key], where)
        elif where is None:
            _unread(key)
        else:
            with where:
                _unread(key)

    notices = read_url(controls)
    st.header("Image")
    image = _choose_image(controls)
    if image is not None:
        h, w = image.array.shape[:2]
        thumb = panels.screen_jpeg(cache.thumbnail(image.digest, image.array))
        st.image(thumb, caption=f"{image.name} · {w} × {h} px", width=220)

    st.header("Pyramid")
    put(S.KEY_OUT_CHANNELS)
    draw(controls[S.KEY_STAGES])  # always redraws the page: its error message is drawn below it
    _, stage_error = S.stages_from_state(st.session_state)
    if stage_error:
        st.error(stage_error)
    left, right = st.columns(2)
    put(S.KEY_UPSAMPLE, left)
    put(S.KEY_MERGE, right)
    for key in (S.KEY_P6, S.KEY_SIZE, S.KEY_DEVICE, S.KEY_WEIGHTS):
        put(key)

    st.header("Maps")
    put(S.KEY_AGGREGATION)
    left, right = st.columns(2)
    put(S.KEY_COLORMAP, left)
    put(S.KEY_ALPHA, right)
    put(S.KEY_SCOPE)
    put(S.KEY_EXPORT_SCALE)

    _show_share_hint(write_url(controls))
    return S.settings_from_state(st.session_state, controls, image), notices


def _show_share_hint(params: Mapping[str, str]) -> None:
    """The "copy link" hint: the address bar holds every setting; a copyable link below."""
    st.header("Share")
    with st.expander("Copy link to this view", icon=":material/link:", key=KEY_SHARE_OPEN, on_change="rerun"):
        st.caption(
            "The address bar holds every setting above, so copying it shares this exact view. "
            "Or copy this link (the copy button is at its top right):"
        )
        st.code(share_link(params), language=None, wrap_lines=True)
    st.caption(
        "Uploads and photos can't travel in a URL: a link made with one opens on that source without "
        "the image. Share a sample or the scales image instead."
    )
