"""The "Receptive fields" page: where one cell of each stage and level looks, and where its signal comes from.

Why it is built this way:

- **Picking the point: an Altair chart selection.** Altair ships with streamlit, so the click
  needs no extra package (``streamlit-image-coordinates`` would be one more component to install
  and keep in step with streamlit). The chart is the network input drawn as a Vega image mark
  under an invisible grid of cells generated in the browser (a Vega ``sequence``, so the spec
  stays a few kB); a click selects the cell under the pointer, and its centre becomes the point.
  The x and y number inputs hold the point (the click's callback writes them), so the keyboard
  path and the click are one state, and the point survives a click on a cell already picked.
- **Cost per click.** The stage contributions do not depend on the point: they are cached per
  analysis (``cache.get_contributions``). A click runs only the ERF's backward passes
  (``cache.get_erf``, per analysis, point, channel and magnitude). The point's controls and
  everything they change live in one ``st.fragment``, so a click reruns only that part.
- **Screen against download.** On screen every image is a numpy RGB array (``erf_overlay``,
  ``overlay_composite``) and the charts are Altair; each figure's annotated matplotlib version
  (``fpn_core.figures``) is drawn only when its PNG download is pressed.
- **Units.** Theoretical RF sides, ERF radii and their ratio are all given in pixels of the
  network input (the image resized to the sidebar's input size), so they compare directly.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import altair as alt
import cv2
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from fpn_core.contributions import TEACH_SHARES, Contributions, describe_shares, overlay_composite
from fpn_core.figures import contribution_figure, erf_figure, erf_radius_figure, shares_figure
from fpn_core.levels import hex_color, stride_of
from fpn_core.maps import MapRange
from fpn_core.point import PointAnalysis
from fpn_core.receptive import (
    ERF_PERCENTILE,
    INTRO,
    MAGNITUDES,
    TEACH_ERF,
    TEACH_FPN,
    TEACH_RF,
    ErfResult,
    erf_overlay,
    growth_text,
)
from ui import cache, loading, panels
from ui import settings as S

#: Name of the chart's point selection (its state: ``{"selection": {"pick": [{"x": .., "y": ..}]}}``).
PICK = "pick"
#: Cells of the click grid along the image's long side (a click lands on the centre of one).
CLICK_CELLS = 64
#: Long side of the click chart on screen, in CSS pixels.
CHART_PX = 440
#: Opacity of the ERF's color where the gradient is strongest (the photo shows through elsewhere).
ERF_ALPHA = 0.85
MAGNITUDE_LABELS: dict[str, str] = {"abs": "|gradient| (sum over RGB)", "squared": "gradient² (sum over RGB)"}

# ---------------------------------------------------------------------------- the point


def image_centre(image: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the image's centre pixel (the default point)."""
    h, w = image.shape[:2]
    return w // 2, h // 2


def _prepare_point_state(image: S.ImageChoice, max_channel: int) -> None:
    """Seed the point (the image centre) before its widgets exist; a new image starts at its centre again.

    Widgets get their values only from session state here (never also a ``value=``), and a
    value that the new image or width no longer allows is pulled back into range.
    """
    state = st.session_state
    h, w = image.array.shape[:2]
    if state.get(S.RF_POINT_IMAGE) != image.digest:
        state[S.KEY_RF_X], state[S.KEY_RF_Y] = image_centre(image.array)
        state[S.RF_POINT_IMAGE] = image.digest
    cx, cy = image_centre(image.array)
    state[S.KEY_RF_X] = min(max(int(state.get(S.KEY_RF_X, cx)), 0), w - 1)
    state[S.KEY_RF_Y] = min(max(int(state.get(S.KEY_RF_Y, cy)), 0), h - 1)
    state.setdefault(S.KEY_RF_MAGNITUDE, MAGNITUDES[0])
    channel = state.setdefault(S.KEY_RF_CHANNEL, None)
    if channel is not None and not 0 <= int(channel) <= max_channel:
        state[S.KEY_RF_CHANNEL] = None


def _on_click() -> None:
    """The chart's click: its cell's centre becomes the point (the number inputs hold it)."""
    state = st.session_state.get(S.KEY_RF_CLICK)
    picked = (state or {}).get("selection", {}).get(PICK) or []
    if picked:
        st.session_state[S.KEY_RF_X] = int(picked[0]["x"])
        st.session_state[S.KEY_RF_Y] = int(picked[0]["y"])


def _jpeg_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def point_chart(
    shown: np.ndarray, image_hw: tuple[int, int], point: tuple[int, int], *, cells: int = CLICK_CELLS
) -> alt.LayerChart:
    """The click target: ``shown`` (any resize of the image) with axes in the image's own pixels.

    Args:
        shown: RGB uint8 picture of the image (e.g. the network input).
        image_hw: ``(height, width)`` of the image as loaded: the chart's coordinates.
        point: the current ``(x, y)``, marked with a cross.
        cells: cells of the invisible click grid along the long side.

    Returns:
        A layered chart with a point selection named :data:`PICK` over fields ``x`` and ``y``.
    """
    h, w = image_hw
    step = max(h, w) / cells
    nx, ny = math.ceil(w / step), math.ceil(h / step)
    px_per = CHART_PX / max(h, w)
    width, height = round(w * px_per), round(h * px_per)
    xs = alt.Scale(domain=[0, w], nice=False, zero=False)
    ys = alt.Scale(domain=[0, h], nice=False, zero=False, reverse=True)
    photo = (
        alt.Chart(alt.Data(values=[{"x0": 0, "x1": w, "y0": 0, "y1": h, "url": _jpeg_url(shown)}]))
        .mark_image(aspect=False)
        .encode(
            x=alt.X("x0:Q", scale=xs, title="x (px of the image)"),
            x2="x1:Q",
            y=alt.Y("y0:Q", scale=ys, title="y (px)"),
            y2="y1:Q",
            url="url:N",
        )
    )
    pick = alt.selection_point(name=PICK, on="click", fields=["x", "y"], clear=False, empty=False)
    grid = (
        alt.Chart(alt.sequence(0, nx * ny, as_="i"))
        .transform_calculate(col=f"datum.i % {nx}", row=f"floor(datum.i / {nx})")
        .transform_calculate(
            x0=f"datum.col * {step}",
            x1=f"min((datum.col + 1) * {step}, {w})",
            y0=f"datum.row * {step}",
            y1=f"min((datum.row + 1) * {step}, {h})",
        )
        .transform_calculate(x="floor((datum.x0 + datum.x1) / 2)", y="floor((datum.y0 + datum.y1) / 2)")
        .mark_rect(color="white", opacity=0.01)
        .encode(
            x=alt.X("x0:Q", scale=xs),
            x2="x1:Q",
            y=alt.Y("y0:Q", scale=ys),
            y2="y1:Q",
            tooltip=[alt.Tooltip("x:Q", title="x"), alt.Tooltip("y:Q", title="y")],
        )
        .add_params(pick)
    )
    marker = (
        alt.Chart(alt.Data(values=[{"x": point[0], "y": point[1]}]))
        .mark_point(shape="cross", size=420, filled=True, color="#00e5ff", stroke="#000000", strokeWidth=1.2)
        .encode(x=alt.X("x:Q", scale=xs), y=alt.Y("y:Q", scale=ys))
    )
    return (photo + grid + marker).properties(width=width, height=height)


def _point_controls(image: S.ImageChoice, max_channel: int) -> tuple[tuple[int, int], int | None, str]:
    """The keyboard path to the point, the channel and the magnitude; returns what they hold."""
    h, w = image.array.shape[:2]
    left, right = st.columns(2)
    x = left.number_input(f"x (0 to {w - 1} px)", min_value=0, max_value=w - 1, step=1, key=S.KEY_RF_X)
    y = right.number_input(f"y (0 to {h - 1} px)", min_value=0, max_value=h - 1, step=1, key=S.KEY_RF_Y)
    channel = st.number_input(
        f"Channel (0 to {max_channel}; empty: the sum over all channels)",
        min_value=0,
        max_value=max_channel,
        step=1,
        placeholder="sum over all channels",
        key=S.KEY_RF_CHANNEL,
        help="The activation whose gradient is taken: one channel of each cell, or the sum of all its channels.",
    )
    magnitude = st.radio(
        "Gradient per pixel",
        MAGNITUDES,
        format_func=MAGNITUDE_LABELS.get,
        horizontal=True,
        key=S.KEY_RF_MAGNITUDE,
        help="How the gradient's three color channels become one value per pixel.",
    )
    return (int(x), int(y)), (None if channel is None else int(channel)), str(magnitude)


# ----------------------------------------------------------------------------- the figures


def erf_rows(erf: ErfResult) -> list[dict[str, object]]:
    """One table row per stage and level: cell, theoretical RF, ERF radii and their ratio (network-input px)."""
    rows = []
    for name in erf.names:
        radii, ratio = erf.radii_input_px[name], erf.ratio[name]
        rows.append(
            {
                "map": name,
                "stride": stride_of(name),
                "cell (row, col)": "({}, {})".format(*erf.cells[name]),
                "theoretical RF (px)": int(erf.theoretical_rf_px[name]),
                "ERF r50 (px)": None if radii["50"] is None else round(float(radii["50"]), 1),
                "ERF r90 (px)": None if radii["90"] is None else round(float(radii["90"]), 1),
                "2·r90 / RF side": None if ratio is None else round(float(ratio), 3),
            }
        )
    return rows


def radius_chart(erf: ErfResult) -> alt.LayerChart:
    """ERF radii r50 and r90 against stage and level, over grey bars of the theoretical RF's half side."""
    names = list(erf.names)
    half = pd.DataFrame({"map": names, "px": [erf.theoretical_rf_px[n] / 2 for n in names]})
    long = pd.DataFrame(
        [
            {"map": n, "radius": f"ERF r{q}", "px": erf.radii_input_px[n][q]}
            for n in names
            for q in ("50", "90")
            if erf.radii_input_px[n][q] is not None
        ]
    )
    x = alt.X("map:N", sort=names, title="backbone stage / pyramid level", axis=alt.Axis(labelAngle=0))
    bars = (
        alt.Chart(half)
        .mark_bar(color="#d9d9d9")
        .encode(x=x, y=alt.Y("px:Q", title="radius (network-input px)"), tooltip=["map", "px"])
    )
    lines = (
        alt.Chart(long)
        .mark_line(point=False, color="#555555")
        .encode(x=x, y="px:Q", strokeDash=alt.StrokeDash("radius:N", title=None))
    )
    dots = (
        alt.Chart(long)
        .mark_point(filled=True, size=90, opacity=1)
        .encode(
            x=x,
            y="px:Q",
            shape=alt.Shape("radius:N", title="grey bars: half the theoretical RF side"),
            color=alt.Color("map:N", scale=alt.Scale(domain=names, range=[hex_color(n) for n in names]), legend=None),
            tooltip=["map", "radius", alt.Tooltip("px:Q", format=".1f")],
        )
    )
    return (bars + lines + dots).properties(height=300)


def share_rows(contributions: Contributions, at_point: Mapping[str, Mapping[str, float]]) -> dict[str, dict]:
    """Bar label -> stage -> share: per level, the whole level, then the picked point."""
    rows: dict[str, dict] = {}
    for level in contributions.levels:
        rows[f"{level} · whole level"] = dict(contributions.shares[level])
        if at_point.get(level):
            rows[f"{level} · at the point"] = dict(at_point[level])
    return rows


def shares_chart(rows: Mapping[str, Mapping[str, float]], stages: Sequence[str]) -> alt.LayerChart:
    """Stacked horizontal bars of the stage shares, in the app-wide stage colors."""
    order = {s: i for i, s in enumerate(stages)}
    data = pd.DataFrame(
        [
            {"row": label, "stage": s, "share": 100 * float(v), "order": order[s]}
            for label, shares in rows.items()
            for s, v in shares.items()
        ]
    )
    color = alt.Color(
        "stage:N",
        scale=alt.Scale(domain=list(stages), range=[hex_color(s) for s in stages]),
        legend=alt.Legend(orient="top", title="stage"),
    )
    y = alt.Y("row:N", sort=list(rows), title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200))
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", stack="zero", scale=alt.Scale(domain=[0, 100]), title="share (%)"),
            y=y,
            color=color,
            order=alt.Order("order:Q"),
            tooltip=["row", "stage", alt.Tooltip("share:Q", format=".1f")],
        )
    )
    text = (
        alt.Chart(data)
        .transform_filter("datum.share >= 8")
        .transform_calculate(label="datum.stage + ' ' + format(datum.share, '.0f') + '%'")
        .mark_text(color="white", fontWeight="bold")
        .encode(
            x=alt.X("share:Q", stack="zero", bandPosition=0.5),
            y=y,
            detail="stage:N",
            order=alt.Order("order:Q"),
            text="label:N",
        )
    )
    return (bars + text).properties(height=alt.Step(28))


def _mark_point(image: np.ndarray, xy: tuple[float, float]) -> np.ndarray:
    out = np.ascontiguousarray(image).copy()
    centre = (round(xy[0]), round(xy[1]))
    cv2.drawMarker(out, centre, (0, 0, 0), markerType=cv2.MARKER_CROSS, markerSize=15, thickness=3)
    cv2.drawMarker(out, centre, (255, 255, 255), markerType=cv2.MARKER_CROSS, markerSize=13, thickness=1)
    return out


# --------------------------------------------------------------------------------- sections


def _get_erf(
    analysis: cache.Analysis, image: S.ImageChoice, point: tuple[int, int], channel: int | None, magnitude: str
) -> ErfResult | None:
    """The cached ERF at ``point``; a refused point or option becomes a message (None)."""
    key = cache.ErfKey(analysis.key, (float(point[0]), float(point[1])), channel, magnitude)
    try:
        with st.spinner("Taking the gradients of each cell (cached per point)…"):
            return cache.get_erf(key, analysis.model, image.array)
    except ValueError as exc:
        st.error(f"The receptive fields could not be computed: {exc}")
        return None


def show_erf_panels(erf: ErfResult, settings: S.Settings, names: Sequence[str], title: str) -> None:
    """One row of ERF overlays with the theoretical RF square, each with its PNG download."""
    style = settings.style
    st.markdown(f"##### {title}")
    cols = st.columns(max(len(names), 4), gap="small")
    x, y = (round(v) for v in erf.point)
    for col, name in zip(cols, names, strict=False):
        box, (r, c), s = erf.boxes[name], erf.cells[name], stride_of(name)
        radii, rf = erf.radii_input_px[name], erf.theoretical_rf_px[name]
        reading = (
            "no gradient"
            if radii["90"] is None
            else f"r50 {radii['50']:.0f} · r90 {radii['90']:.0f} px · 2·r90/RF {erf.ratio[name]:.2f}"
        )
        image = erf_overlay(erf.image, erf.maps[name], box=box, colormap=style.colormap, alpha=ERF_ALPHA)
        with col:
            panels.show_panel(
                panels.enlarge(image),
                title=f"{name} · stride {s} · cell ({r}, {c})",
                caption=f"theoretical RF {rf} px · {reading}",
                download=panels.Download(
                    erf_figure,
                    (erf.image, erf.maps[name]),
                    {
                        "title": f"{name} cell ({r}, {c}) at ({x}, {y}): {reading}; theoretical RF {rf} px",
                        "box": (box.x0, box.y0, box.x1, box.y1),
                        "cell_square": (c * s, r * s, (c + 1) * s, (r + 1) * s),
                        "center": (box.cx, box.cy),
                        "alpha": ERF_ALPHA,
                        "colormap": style.colormap,
                    },
                    file_name=f"erf_{name}_x{x}_y{y}_{settings.size}px.png",
                    key=f"download_erf_{name}",
                ),
                export_scale=settings.export_scale,
            )


def show_erf_section(erf: ErfResult, settings: S.Settings) -> None:
    """The ERF of each stage and level, their table and the radius plot."""
    stages = [n for n in erf.names if n.startswith("c")]
    levels = [n for n in erf.names if n.startswith("p")]
    h, w = erf.image.shape[:2]
    st.subheader("Where one cell looks")
    st.caption(
        f"Color: how much each input pixel moves the cell under the point (|∂ activation / ∂ pixel|), per panel: "
        f"√ of the gradient over its own {ERF_PERCENTILE:g}th percentile, clipped at 1; the photo shows through "
        f"where the gradient is zero. White square: the cell's theoretical RF, clipped to the image; cyan cross: "
        f"its centre. Pixels of the network input ({w} × {h} px). The PNG downloads show the same image, "
        "with a color bar."
    )
    show_erf_panels(erf, settings, stages, "Backbone stages c_k (bottom-up only)")
    show_erf_panels(erf, settings, levels, "Pyramid levels p_k (after the top-down path)")
    panels.show_color_scale(
        panels.ColorScale(settings.style.colormap, MapRange(0.0, 1.0), "√(gradient ÷ its 99th percentile)")
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Theoretical RF and ERF radius per stage and level**")
        st.dataframe(erf_rows(erf), hide_index=True, width="stretch", key=None)
        sx, sy = erf.scale
        st.caption(
            f"All in pixels of the network input; one of them is {sx:.2f} × {sy:.2f} px of the image as loaded. "
            "r50 / r90: radius around the RF centre holding 50% / 90% of the gradient mass. "
            "2·r90 / RF side: how much of the theoretical square the ERF fills."
        )
    with right:
        st.markdown("**ERF radius against level, with the theoretical RF**")
        st.altair_chart(radius_chart(erf), width="stretch")
        x, y = (round(v) for v in erf.point)
        panels.download_button(
            panels.Download(
                erf_radius_figure,
                (erf.names, erf.radii_input_px, erf.theoretical_rf_px),
                {
                    "title": f"ERF radius at ({x}, {y}) and theoretical RF half side",
                    "unit": "network-input px",
                },
                file_name=f"erf_radii_x{x}_y{y}_{settings.size}px.png",
                key="download_erf_radii",
            ),
            settings.export_scale,
        )
    st.markdown(growth_text(erf))
    st.markdown(TEACH_RF)
    st.markdown(TEACH_ERF)
    st.markdown(TEACH_FPN)


def show_shares_section(point: PointAnalysis, settings: S.Settings, net_image: np.ndarray) -> None:
    """Each level's stage shares (whole level and at the point), composite maps and sentences."""
    contributions = point.contributions
    at_point = point.shares_at
    st.subheader("Where each level's signal comes from")
    st.markdown(TEACH_SHARES)
    rows = share_rows(contributions, at_point)
    st.altair_chart(shares_chart(rows, contributions.stages), width="stretch")
    panels.download_button(
        panels.Download(
            shares_figure,
            (rows,),
            {"title": "Stage shares per level (L1 of the contributions): whole level and at the point"},
            file_name=f"stage_shares_{settings.size}px.png",
            key="download_stage_shares",
        ),
        settings.export_scale,
    )
    px, py = point.erf.input_point
    x, y = (round(v) for v in point.erf.point)
    levels = contributions.levels
    cols = st.columns(max(len(levels), 4), gap="small")
    for col, level in zip(cols, levels, strict=False):
        sources = contributions.sources[level]
        composite = contributions.composite(level)
        image = _mark_point(overlay_composite(net_image, composite, alpha=0.6), (px, py))
        sentence = point.sentence(level)
        whole = describe_shares(level, contributions.shares[level], where="over the whole level,")
        legend = " ".join(f"<span style='color:{hex_color(s)}'>■</span> {s}" for s in sources)
        with col:
            st.markdown(f"**{level}** · {legend}", unsafe_allow_html=True)
            st.image(panels.enlarge(image), width="stretch")
            st.markdown(f"{sentence} {whole}")
            panels.download_button(
                panels.Download(
                    contribution_figure,
                    (net_image, composite),
                    {
                        "title": f"{level}: where each stage dominates\n{sentence}",
                        "stages": sources,
                        "point": (px, py),
                    },
                    file_name=f"contributions_{level}_x{x}_y{y}_{settings.size}px.png",
                    key=f"download_contributions_{level}",
                ),
                settings.export_scale,
            )
    st.caption(
        "Composite maps: each cell's color mixes the stages' colors by their shares there (a cell that is mostly "
        "c3 looks like c3); brightness is the cell's total contribution relative to the level's strongest cell."
    )


@st.fragment
def show_receptive_page(settings: S.Settings) -> None:
    """The "Receptive fields" page below its title; the point's controls rerun only this fragment."""
    image = settings.image
    analysis = loading.load_analysis(settings)
    if analysis is None or image is None:
        return
    max_channel = min(settings.config.out_channels, analysis.model.feature_info["c2"].num_chs) - 1
    _prepare_point_state(image, max_channel)
    st.markdown(INTRO)
    picker, controls = st.columns([3, 2], gap="large")
    with controls:
        st.markdown("**The point** (click the image, or type)")
        point, channel, magnitude = _point_controls(image, max_channel)
        st.caption(
            f"Pixels of **{image.name}** as loaded ({image.array.shape[1]} × {image.array.shape[0]} px). "
            "A click picks the centre of the small grid cell under the pointer; the numbers refine it."
        )
    with picker:
        st.altair_chart(
            point_chart(analysis.output.image, image.array.shape[:2], point),
            key=S.KEY_RF_CLICK,
            on_select=_on_click,
            selection_mode=PICK,
            width="content",
        )
    erf = _get_erf(analysis, image, point, channel, magnitude)
    if erf is None:
        return
    contributions = cache.get_contributions(analysis.key, analysis.model.fpn, analysis.output.backbone)
    at = PointAnalysis(erf, contributions)
    with controls:
        cells = ", ".join(f"{n} ({r}, {c})" for n, (r, c) in erf.cells.items() if n.startswith("p"))
        st.markdown(f"**Cells (row, col) under the point:** {cells}.")
        if contributions.levels:
            first = contributions.levels[0]
            st.info(at.sentence(first), icon=":material/call_split:")
        if not analysis.model.provenance.pretrained:
            st.caption(
                "Random weights: the receptive fields and shares are those of an untrained network. Their sizes "
                "and the Gaussian shape still hold; the details change with trained weights."
            )
    show_erf_section(erf, settings)
    show_shares_section(at, settings, analysis.output.image)
