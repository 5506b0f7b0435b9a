"""The one sidebar every page shows: image, pyramid configuration and map settings.

Persistence across pages: every widget has an explicit key and ``persist_state="session"``
(streamlit 1.67), and also the classic pattern: its ``on_change`` copies the value into a
plain session-state key (``_kept_<key>``), which is written back to the widget's key before
the widget is drawn on any page. Plain keys survive widget cleanup on page switches, so the
value follows the user whether or not the new ``persist_state`` applies (AppTest's page
switch, for one, did not keep it). ``st.file_uploader`` has no ``persist_state``:
an accepted upload is decoded in its ``on_change`` callback and kept as a small RGB array
in session state (``state.UPLOAD_IMAGE``), which outlives the uploader widget.
"""

from __future__ import annotations

import streamlit as st

from fpn_core import FPN_STAGES, MERGE_MODES, UPSAMPLE_MODES, WEIGHT_CHOICES, available_devices
from fpn_core.images import MAX_UPLOAD_BYTES, ImageError, load_image
from fpn_core.levels import validate_stages
from fpn_core.maps import COLORMAPS, REDUCTIONS, SCOPES
from ui import cache, urlstate
from ui import state as S

PERSIST = "session"
#: Prefix of the plain session-state copy kept for each sidebar widget.
KEPT = urlstate.KEPT
#: Decoded uploads are kept at most this long on their long side (the largest input size).
UPLOAD_MAX_SIDE = S.SIZE_MAX


def _remember(key: str) -> None:
    """on_change: copy a widget's new value into its plain session-state copy."""
    st.session_state[KEPT + key] = st.session_state[key]


def _keep(key: str, default: object) -> dict[str, object]:
    """Give a widget its kept value (or the default) before it is created.

    The classic cross-page pattern, next to ``persist_state="session"``: a plain session-state
    key outlives widget cleanup on a page switch, and is written back to the widget's key
    before the widget is drawn. Widgets get no ``value=``/``index=``, so streamlit never sees
    two sources for one value.

    Returns:
        The keyword arguments every sidebar widget takes (key, persistence, callback).
    """
    st.session_state[key] = st.session_state.get(KEPT + key, st.session_state.get(key, default))
    st.session_state[KEPT + key] = st.session_state[key]
    return {"key": key, "persist_state": PERSIST, "on_change": _remember, "args": (key,)}


def _drop_if_gone(key: str, options: list[str]) -> None:
    """Forget a kept choice that is no longer offered (e.g. a device that went away)."""
    kept = st.session_state.get(KEPT + key, st.session_state.get(key))
    if kept is not None and kept not in options:
        st.session_state.pop(KEPT + key, None)
        st.session_state.pop(key, None)


def handle_upload(uploaded: object | None) -> str | None:
    """Decode an upload into session state, or record why it was refused.

    Called from the uploader's ``on_change``. A refused file leaves the previous good
    upload in place, so the pages keep showing it next to the error.

    Args:
        uploaded: streamlit's ``UploadedFile`` (any binary file-like object with ``name``),
            or None when the user removed the file.

    Returns:
        The error message when the file was refused, else None.
    """
    st.session_state.pop(S.UPLOAD_ERROR, None)
    if uploaded is None:
        for key in (S.UPLOAD_IMAGE, S.UPLOAD_NAME, S.UPLOAD_DIGEST):
            st.session_state.pop(key, None)
        return None
    name = str(getattr(uploaded, "name", "upload"))
    try:
        image = load_image(uploaded, max_bytes=MAX_UPLOAD_BYTES, max_side=UPLOAD_MAX_SIDE)  # type: ignore[arg-type]
    except ImageError as exc:
        message = f"{name} could not be used: {exc}"
        st.session_state[S.UPLOAD_ERROR] = message
        return message
    st.session_state[S.UPLOAD_IMAGE] = image
    st.session_state[S.UPLOAD_NAME] = name
    st.session_state[S.UPLOAD_DIGEST] = "upload-" + cache.digest_of(image)
    return None


def _on_upload() -> None:
    handle_upload(st.session_state.get(S.KEY_UPLOAD))


def _choose_image() -> tuple[object | None, str, str]:
    """The image widgets; returns (image or None, name, digest)."""
    sb = st.sidebar
    source = sb.radio("Image source", S.SOURCES, **_keep(S.KEY_SOURCE, S.SOURCE_SAMPLE))
    if source == S.SOURCE_SCALES:
        loaded = cache.load_scales()
        sb.caption("One target shape at 32, 64, 128 and 256 px: each pyramid level answers a different size.")
        return loaded.image, "scales (synthetic)", loaded.digest
    if source == S.SOURCE_UPLOAD:
        sb.file_uploader(
            f"Upload an image (up to {MAX_UPLOAD_BYTES // 2**20} MB)",
            type=list(S.UPLOAD_TYPES),
            key=S.KEY_UPLOAD,
            on_change=_on_upload,
            help="JPEG, PNG, WebP, BMP or TIFF. The file stays in this session's memory only.",
        )
        error = st.session_state.get(S.UPLOAD_ERROR)
        if error:
            sb.error(error)
        image = st.session_state.get(S.UPLOAD_IMAGE)
        if image is None:
            if not error:
                sb.info("Choose an image file to analyse it.")
            return None, "", ""
        return image, str(st.session_state.get(S.UPLOAD_NAME, "upload")), str(st.session_state[S.UPLOAD_DIGEST])
    samples = cache.sample_names()
    if not samples:
        sb.warning("No sample images were found; use the synthetic image or an upload.")
        return None, "", ""
    names = list(samples)
    _drop_if_gone(S.KEY_SAMPLE, names)
    name = sb.selectbox("Sample", names, **_keep(S.KEY_SAMPLE, names[0]))
    loaded = cache.load_sample(samples[name])
    return loaded.image, name, loaded.digest


def _choose_stages() -> tuple[str, ...]:
    """The stage picker; an invalid pick shows an error and keeps the last valid stages."""
    picked = st.sidebar.multiselect(
        "Input stages",
        FPN_STAGES,
        **_keep(S.KEY_STAGES, list(S.DEFAULT_STAGES_CHOICE)),
        help="A contiguous run of two or more backbone stages feeds the FPN (the paper uses c2..c5).",
    )
    ordered = tuple(s for s in FPN_STAGES if s in picked)
    try:
        stages = validate_stages(ordered)
    except ValueError:
        kept = tuple(st.session_state.get(S.LAST_STAGES, S.DEFAULT_STAGES_CHOICE))
        st.sidebar.error(
            f"Pick a contiguous run of two or more stages (e.g. c3, c4, c5); "
            f"{', '.join(ordered) or 'nothing'} is not. Still using {', '.join(kept)}."
        )
        return kept
    st.session_state[S.LAST_STAGES] = stages
    return stages


def show_sidebar() -> S.Settings:
    """Draw the shared sidebar and return what it chose.

    Every page calls this once, right after ``st.set_page_config``.

    Returns:
        The current ``Settings``.
    """
    sb = st.sidebar
    devices = available_devices()
    urlstate.seed_from_url(list(cache.sample_names()), devices)
    sb.header("Image")
    image, name, digest = _choose_image()
    if image is not None:
        h, w = image.shape[:2]  # type: ignore[union-attr]
        sb.image(image, caption=f"{name} · {w} × {h} px", width=220)

    sb.header("Pyramid")
    width = sb.slider(
        "FPN channel width d",
        S.WIDTH_MIN,
        S.WIDTH_MAX,
        step=S.WIDTH_STEP,
        **_keep(S.KEY_WIDTH, S.DEFAULT_WIDTH),
        help="Channels of every pyramid level. The paper uses d = 256.",
    )
    stages = _choose_stages()
    col1, col2 = sb.columns(2)
    upsample = col1.selectbox("Upsampling", UPSAMPLE_MODES, **_keep(S.KEY_UPSAMPLE, UPSAMPLE_MODES[0]))
    merge = col2.selectbox("Merge", MERGE_MODES, **_keep(S.KEY_MERGE, MERGE_MODES[0]))
    p6 = sb.toggle("Add p6 (stride-2 subsampling of the top level)", **_keep(S.KEY_P6, True))
    size = sb.slider(
        "Input size (long side, px)",
        S.SIZE_MIN,
        S.SIZE_MAX,
        step=S.SIZE_STEP,
        **_keep(S.KEY_SIZE, S.DEFAULT_SIZE),
    )
    _drop_if_gone(S.KEY_DEVICE, devices)
    device = sb.selectbox("Device", devices, **_keep(S.KEY_DEVICE, devices[0]))
    weights = sb.selectbox(
        "Weights",
        WEIGHT_CHOICES,
        format_func=lambda w: S.WEIGHT_LABELS.get(w, w),
        **_keep(S.KEY_WEIGHTS, S.DEFAULT_WEIGHTS),
    )

    sb.header("Maps")
    reduction = sb.selectbox(
        "Channel reduction",
        REDUCTIONS,
        format_func=lambda r: S.REDUCTION_LABELS.get(r, r),
        **_keep(S.KEY_REDUCTION, S.DEFAULT_REDUCTION),
    )
    col1, col2 = sb.columns(2)
    colormap = col1.selectbox("Colour map", COLORMAPS, **_keep(S.KEY_COLORMAP, S.DEFAULT_COLORMAP))
    alpha = col2.slider("Overlay alpha", 0.0, 1.0, step=0.05, **_keep(S.KEY_ALPHA, S.DEFAULT_ALPHA))
    scope = sb.radio(
        "Colour scale",
        SCOPES,
        format_func=lambda s: S.SCOPE_LABELS.get(s, s),
        **_keep(S.KEY_SCOPE, S.DEFAULT_SCOPE),
        help="Per level shows the pattern inside each map; shared shows which level is strongest.",
    )
    export_scale = sb.radio(
        "Export resolution",
        S.EXPORT_SCALES,
        format_func=lambda s: f"{s}× ({100 * s} dpi)",
        horizontal=True,
        **_keep(S.KEY_EXPORT_SCALE, S.DEFAULT_EXPORT_SCALE),
        help="Resolution of every PNG download (2× or 3× for slides). The screen always shows 1×.",
    )
    _show_share_hint(urlstate.write_to_url())
    return S.Settings(
        image=image,  # type: ignore[arg-type]
        image_name=name,
        image_digest=digest,
        width=int(width),
        stages=stages,
        upsample=str(upsample),
        merge=str(merge),
        p6=bool(p6),
        size=int(size),
        device=str(device),
        weights=str(weights),
        reduction=str(reduction),
        colormap=str(colormap),
        alpha=float(alpha),
        scope=str(scope),
        export_scale=int(export_scale),
    )


def _show_share_hint(params: dict[str, str]) -> None:
    """The "copy link" hint: the address bar holds every setting; a copyable link below."""
    sb = st.sidebar
    sb.header("Share")
    with sb.expander("Copy link to this view", icon=":material/link:"):
        st.caption(
            "The address bar holds every setting above, so copying it shares this exact view. "
            "Or copy this link (the copy button is at its top right):"
        )
        st.code(urlstate.share_link(params), language=None, wrap_lines=True)
    sb.caption(
        "Uploaded images can't travel in a URL: a link made with an upload opens on the upload "
        "source without the image. Share a sample or the scales image instead."
    )
