"""The export page: every map, overlay, the slide and metadata.json in one zip."""

import dataclasses
import io
import json
from collections.abc import Mapping

import streamlit as st
from PIL import Image

from ui import cache, detection_page, loading
from ui import settings as S

KEY_EXPORT_DECK = "download_export_deck"
DECK_MIME = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def deck_point(settings: S.Settings) -> tuple[tuple[int, int], int | None, str]:
    """The Receptive fields page's point, channel and gradient magnitude on this image (else its defaults).

    Read during the run (session state); the page seeds the point at the image centre, so does the deck.
    """
    image = settings.image
    assert image is not None
    state = st.session_state
    h, w = image.array.shape[:2]
    if state.get(S.RF_POINT_IMAGE) != image.digest:
        return (w // 2, h // 2), None, "abs"
    channel = state.get(S.KEY_RF_CHANNEL)
    xy = (int(state.get(S.KEY_RF_X, w // 2)), int(state.get(S.KEY_RF_Y, h // 2)))
    return xy, (None if channel is None else int(channel)), str(state.get(S.KEY_RF_MAGNITUDE, "abs"))


def lecture_deck(
    settings: S.Settings,
    analysis: cache.Analysis,
    shown: cache.DetectionChoice | None,
    point: tuple[tuple[int, int], int | None, str],
) -> bytes:
    """The lecture deck (.pptx bytes) of the current analysis: cached by settings, image, detections and point
    (``cache.get_deck``); the point's ERF is the Receptive fields page's own cache entry."""
    image = settings.image
    assert image is not None
    (x, y), channel, magnitude = point
    detections = detection_page.choice_detections(shown, image)
    key = cache.DeckKey(
        analysis.key,
        settings.style,
        image.name,
        shown if detections is not None else None,
        cache.ErfKey(analysis.key, (float(x), float(y)), channel, magnitude),
    )
    return cache.get_deck(key, analysis, image.array, detections)


def deck_button(settings: S.Settings, analysis: cache.Analysis) -> None:
    """The "Lecture deck (.pptx)" download: built when pressed (then cached), from the current settings and
    image and the Detection and Receptive fields pages' current choices."""
    if settings.image is None:
        return
    shown = detection_page.shown_choice(settings)  # session state is read here: the download runs outside the run
    point = deck_point(settings)
    st.download_button(
        "Lecture deck (.pptx)",
        lambda: lecture_deck(settings, analysis, shown, point),
        file_name=export_file_name(settings).replace("fpn_export_", "fpn_lecture_").rsplit("_", 1)[0] + ".pptx",
        mime=DECK_MIME,
        key=KEY_EXPORT_DECK,
        on_click="ignore",
        icon=":material/slideshow:",
        help="The whole lesson as a 16:9 deck with speaker notes: every step, the ablations against the paper, "
        "the scale probe, the Detection page's boxes, the Receptive fields page's point and the timings.",
    )


def export_bundle(
    settings: S.Settings, analysis: cache.Analysis, shown: cache.DetectionChoice | None = None
) -> cache.ExportBundle:
    """The cached "Export all" bundle for the current analysis and sidebar.

    ``shown`` (``detection_page.shown_choice``, read during the run) adds the Detection page's boxes.
    """
    source = settings.image.name if settings.image is not None else None
    detections = detection_page.choice_detections(shown, settings.image)
    key = cache.ExportKey(analysis.key, settings.style, settings.export_scale, source)
    if shown is None or detections is None:
        return cache.get_export(key, analysis)
    return cache.get_export(dataclasses.replace(key, detection=shown), analysis, detections)


def export_file_name(settings: S.Settings) -> str:
    """``"fpn_export_chelsea_d256_512px_2x.zip"``."""
    name = settings.image.name if settings.image is not None else "image"
    stem = "".join(c if c.isalnum() else "_" for c in name.rsplit(".", 1)[0])[:40]
    return f"fpn_export_{stem}_d{settings.config.out_channels}_{settings.size}px_{settings.export_scale}x.zip"


def export_rows(files: Mapping[str, bytes]) -> list[dict[str, object]]:
    """One row per file of the bundle: name, what it is, size, and pixel size of PNGs."""
    kinds = {"maps": "map", "overlays": "overlay"}
    rows = []
    for name, data in files.items():
        kind = kinds.get(name.split("/")[0], "input" if name == "input.png" else name.rsplit(".", 1)[0])
        pixels = ""
        if name.endswith(".png"):
            with Image.open(io.BytesIO(data)) as img:
                pixels = f"{img.width} × {img.height}"
        rows.append({"file": name, "what": kind, "pixels": pixels, "KB": round(len(data) / 1024, 1)})
    return rows


def show_export_page(settings: S.Settings) -> None:
    """The "Export" page below its title."""
    analysis = loading.load_analysis(settings)
    if analysis is None:
        return
    with st.spinner(f"Rendering every map and overlay at {settings.export_scale}× (cached afterwards)…"):
        bundle = export_bundle(settings, analysis, detection_page.shown_choice(settings))
    cols = st.columns([2, 1, 1, 1], vertical_alignment="center")
    cols[0].download_button(
        f"Export all ({len(bundle.files)} files, zip)",
        bundle.archive,
        file_name=export_file_name(settings),
        mime="application/zip",
        key=S.KEY_EXPORT_ZIP,
        on_click="ignore",
        icon=":material/folder_zip:",
        type="primary",
    )
    with cols[0]:
        deck_button(settings, analysis)
    cols[1].metric("Files", len(bundle.files))
    cols[2].metric("Zip size", f"{len(bundle.archive) / 2**20:.1f} MB")
    cols[3].metric("Resolution", f"{settings.export_scale}× ({100 * settings.export_scale} dpi)")
    if "detections.png" in bundle.files:
        st.caption("With the Detection page's boxes on this image: `detections.png`, `detections` in metadata.json.")
    left, right = st.columns([5, 3], gap="large")
    with left:
        st.subheader("slide.png")
        st.image(bundle.files["slide.png"], caption="The composite slide: input and every p-level overlay.")
    with right:
        st.subheader("Files in the zip")
        rows = export_rows(bundle.files)
        st.dataframe(rows, hide_index=True, width="stretch", height="content")
    with st.expander("metadata.json"):
        st.json(json.loads(bundle.files["metadata.json"]), expanded=1)


def overlays_zip_button(settings: S.Settings, analysis: cache.Analysis) -> None:
    """An "Export all (zip)" button built only when pressed (for the Overlays page)."""
    shown = detection_page.shown_choice(settings)  # session state is read here: the download runs outside the run
    st.download_button(
        "Export all (zip)",
        lambda: export_bundle(settings, analysis, shown).archive,
        file_name=export_file_name(settings),
        mime="application/zip",
        key=S.KEY_OVERLAY_ZIP,
        on_click="ignore",
        icon=":material/folder_zip:",
        help="Input, every map and overlay, a slide and metadata.json; see the Export page for the list.",
    )
