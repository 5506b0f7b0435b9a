"""Matplotlib figures for downloads and slides (the screen shows numpy images).

Every maker returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (pyplot
keeps each figure alive in a global list, which leaks in a long-running server). Fonts
are sized for a projector (11-14 pt), layouts are ``"constrained"`` so labels are not
clipped, and every color bar is labelled in the map's real units.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullLocator

from fpn_core.maps import MapRange, check_colormap, map_range, overlay

__all__ = [
    "bar_figure",
    "contribution_figure",
    "erf_figure",
    "erf_radius_figure",
    "figure_to_png",
    "grid_figure",
    "image_axes",
    "line_figure",
    "map_figure",
    "maps_row_figure",
    "new_figure",
    "overlay_figure",
    "panel_size",
    "shares_figure",
    "slide_figure",
    "step_row_figure",
]

TITLE_PT = 14
LABEL_PT = 12
TICK_PT = 11
PANEL_TITLE_PT = 13
STEP_PT = 12


def new_figure(width: float, height: float) -> Figure:
    """A white, constrained-layout figure on an Agg canvas (no pyplot), ``width`` × ``height`` inches."""
    fig = Figure(figsize=(width, height), layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)  # a real canvas, so text can be measured for the layout
    return fig


def _mappable(rng: MapRange, colormap: str) -> ScalarMappable:
    return ScalarMappable(norm=Normalize(vmin=rng.vmin, vmax=rng.vmax), cmap=colormap)


def _colorbar(fig: Figure, rng: MapRange, colormap: str, ax: Axes | list[Axes], label: str) -> None:
    bar = fig.colorbar(_mappable(rng, colormap), ax=ax, shrink=0.9, pad=0.02)
    bar.set_label(label, fontsize=LABEL_PT)
    bar.ax.tick_params(labelsize=TICK_PT)


def image_axes(ax: Axes) -> None:
    """Axes for an image: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _size_label(map_: np.ndarray) -> str:
    h, w = np.shape(map_)[:2]
    return f"{w} × {h} cells"


def overlay_figure(
    image: np.ndarray,
    map_: np.ndarray,
    *,
    title: str,
    rng: MapRange | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    colorbar_label: str = "channel mean activation",
) -> Figure:
    """The image with a colored map blended over it and a color bar in map units.

    Args:
        image: ``uint8`` RGB array ``(H, W, 3)``.
        map_: 2-D map at any resolution; it is upsampled to the image.
        title: What the map is, e.g. ``"p4 (stride 16): channel mean"``.
        rng: Range of the color map ends; ``None`` for the map's own min..max.
        alpha: Weight of the color over the image, in ``[0, 1]``.
        colormap: Matplotlib color map name.
        colorbar_label: What the color bar measures.

    Returns:
        The figure.
    """
    rng = map_range([map_]) if rng is None else rng
    blended = overlay(image, map_, rng=rng, alpha=alpha, colormap=colormap)
    h, w = image.shape[:2]
    fig = new_figure(*panel_size(w, h, base=7.0, extra_w=1.4, extra_h=0.8))
    ax = fig.add_subplot()
    ax.imshow(blended, interpolation="antialiased")
    image_axes(ax)
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(f"map {_size_label(map_)}, shown at {w} × {h} px", fontsize=TICK_PT)
    _colorbar(fig, rng, colormap, ax, colorbar_label)
    return fig


def panel_size(w: int, h: int, *, base: float, extra_w: float, extra_h: float) -> tuple[float, float]:
    """Figure inches for one image panel of aspect ``w:h`` plus room for labels.

    Neither side drops below 3 inches, so a thin strip still leaves room for the title
    and a readable color bar.
    """
    aspect = w / h
    if aspect >= 1:
        return base + extra_w, max(3.0, base / aspect + extra_h)
    return max(3.0, base * aspect + extra_w), base + extra_h


def map_figure(
    map_: np.ndarray,
    *,
    title: str,
    rng: MapRange | None = None,
    colormap: str = "viridis",
    colorbar_label: str = "channel mean activation",
) -> Figure:
    """One heat map at its own resolution (one square per cell) with a color bar.

    Args:
        map_: 2-D map.
        title: What the map is.
        rng: Range of the color map ends; ``None`` for the map's own min..max.
        colormap: Matplotlib color map name.
        colorbar_label: What the color bar measures.

    Returns:
        The figure.
    """
    check_colormap(colormap)
    values = np.asarray(map_, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"map_ must be 2-D, got shape {values.shape}")
    rng = map_range([values]) if rng is None else rng
    h, w = values.shape
    fig = new_figure(*panel_size(w, h, base=6.0, extra_w=1.6, extra_h=0.9))
    ax = fig.add_subplot()
    ax.imshow(values, cmap=colormap, vmin=rng.vmin, vmax=rng.vmax, interpolation="nearest")
    image_axes(ax)
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(_size_label(values), fontsize=TICK_PT)
    _colorbar(fig, rng, colormap, ax, colorbar_label)
    return fig


def maps_row_figure(
    maps: Sequence[tuple[str, np.ndarray | None]],
    *,
    rngs: Sequence[MapRange | None],
    colormap: str = "viridis",
    suptitle: str | None = None,
    colorbar_label: str = "activation",
    missing: Sequence[str] = (),
) -> Figure:
    """Heat maps side by side, e.g. one row of the pyramid from fine to coarse.

    Every panel spans the same width whatever the map's resolution, so coarse levels
    show as bigger cells over the same scene. When every map has the same range the row
    gets one shared color bar (colors compare across panels), else a color bar under each.

    Args:
        maps: ``(label, 2-D map or None)`` per panel, left to right; None marks a step that
            does not exist, shown as a framed text panel (``missing``).
        rngs: one range per panel (None for a missing map).
        colormap: Matplotlib color map name.
        suptitle: Title over the whole row.
        colorbar_label: What the color bars measure.
        missing: per panel, the text in place of a missing map.

    Returns:
        The figure.

    Raises:
        ValueError: If ``maps`` is empty or the number of ranges does not match.
    """
    check_colormap(colormap)
    if not maps:
        raise ValueError("maps_row_figure needs at least one map, got none")
    ranges = list(rngs)
    if len(ranges) != len(maps):
        raise ValueError(f"got {len(ranges)} ranges for {len(maps)} maps; give one per map")
    present = [rng for (_, map_), rng in zip(maps, ranges, strict=True) if map_ is not None and rng is not None]
    if not present:
        raise ValueError("maps_row_figure needs at least one map with a range")
    shared = len(set(present)) == 1
    n = len(maps)
    aspect = max(np.shape(m)[1] / np.shape(m)[0] for _, m in maps if m is not None)
    panel_w = 3.2
    fig = new_figure(panel_w * n + 1.2, panel_w / aspect + (1.1 if shared else 1.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    texts = list(missing) + [""] * (n - len(missing))
    for ax, (label, map_), rng, text in zip(axes, maps, ranges, texts, strict=True):
        ax.set_title(label, fontsize=PANEL_TITLE_PT)
        if map_ is None or rng is None:
            _missing_axes(ax, text or "not computed", aspect)
            continue
        ax.imshow(map_, cmap=colormap, vmin=rng.vmin, vmax=rng.vmax, interpolation="nearest")
        image_axes(ax)
        ax.set_xlabel(_size_label(map_), fontsize=TICK_PT)
        if not shared:
            bar = fig.colorbar(_mappable(rng, colormap), ax=ax, orientation="horizontal", pad=0.02)
            bar.ax.tick_params(labelsize=TICK_PT - 1)
            bar.ax.xaxis.set_major_locator(MaxNLocator(3))
    if shared:
        _colorbar(fig, present[0], colormap, list(axes), colorbar_label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=TITLE_PT)
    return fig


def _missing_axes(ax: Axes, text: str, aspect: float) -> None:
    """A panel for a step that does not exist: a dashed frame with the reason inside."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#F1F4F8")
    for spine in ax.spines.values():
        spine.set_edgecolor("#C5CCD6")
        spine.set_linestyle("--")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=STEP_PT, wrap=True, color="#1F2933")
    ax.set_box_aspect(1 / aspect)


def step_row_figure(
    panels: Sequence[tuple[str, np.ndarray | None, str]],
    *,
    rngs: Sequence[MapRange | None],
    colormap: str,
    suptitle: str,
    colorbar_label: str,
) -> Figure:
    """One pyramid level's pipeline as panels (:func:`maps_row_figure`); a missing step shows its explanation.

    Args:
        panels: ``(title, map or None, text for a missing map)`` per panel, left to right.
        rngs: one range per panel (None for a missing map); equal ranges share one color bar.
        colormap: matplotlib color map name.
        suptitle: title over the row.
        colorbar_label: what the color bars measure.

    Returns:
        The figure (``matplotlib.figure.Figure``, no pyplot).
    """
    return maps_row_figure(
        [(title, map_) for title, map_, _ in panels],
        rngs=rngs,
        colormap=colormap,
        suptitle=suptitle,
        colorbar_label=colorbar_label,
        missing=[text for _, _, text in panels],
    )


def grid_figure(
    mosaic: np.ndarray,
    indices: list[int],
    *,
    title: str,
    cols: int,
    colormap: str = "viridis",
) -> Figure:
    """The top-k channel mosaic from :func:`fpn_core.maps.channel_grid`, tiles numbered.

    Args:
        mosaic: 2-D mosaic; tiles in ``[0, 1]`` separated by 1-px NaN lines.
        indices: Channel number of each tile, row-major.
        title: What the grid shows.
        cols: Tiles per row used to build the mosaic.
        colormap: Matplotlib color map name.

    Returns:
        The figure.

    Raises:
        ValueError: If the mosaic's shape does not fit ``cols`` and ``len(indices)``.
    """
    check_colormap(colormap)
    values = np.asarray(mosaic, dtype=np.float32)
    if values.ndim != 2 or not indices or cols < 1:
        raise ValueError(
            f"need a 2-D mosaic, channel indices and cols >= 1, got shape {values.shape}, "
            f"{len(indices)} indices, cols={cols}"
        )
    cols = min(cols, len(indices))
    rows = math.ceil(len(indices) / cols)
    tile_w, rem_w = divmod(values.shape[1] - (cols - 1), cols)
    tile_h, rem_h = divmod(values.shape[0] - (rows - 1), rows)
    if rem_w or rem_h or tile_w < 1 or tile_h < 1:
        raise ValueError(f"a {values.shape} mosaic does not split into {rows} x {cols} tiles with 1-px gaps")
    lookup = matplotlib.colormaps[colormap].with_extremes(bad="white")
    fig = new_figure(*panel_size(values.shape[1], values.shape[0], base=8.0, extra_w=1.4, extra_h=0.8))
    ax = fig.add_subplot()
    ax.imshow(values, cmap=lookup, vmin=0.0, vmax=1.0, interpolation="nearest")
    image_axes(ax)
    ax.set_title(title, fontsize=TITLE_PT)
    label_pt = 11 if cols <= 4 else 9
    for slot, channel in enumerate(indices):
        row, col = divmod(slot, cols)
        ax.text(
            col * (tile_w + 1) - 0.5 + tile_w * 0.03,
            row * (tile_h + 1) - 0.5 + tile_h * 0.03,
            f"ch {channel}",
            fontsize=label_pt,
            va="top",
            ha="left",
            color="black",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5},
        )
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=lookup), ax=ax, shrink=0.9, pad=0.02)
    bar.set_label("activation, each tile scaled to its own 0–1", fontsize=LABEL_PT)
    bar.ax.tick_params(labelsize=TICK_PT)
    return fig


def slide_figure(
    image: np.ndarray,
    overlays: Sequence[tuple[str, np.ndarray]],
    *,
    rngs: Sequence[MapRange],
    alpha: float,
    colormap: str,
    suptitle: str,
    colorbar_label: str = "activation",
) -> Figure:
    """A 16:9 slide: the input image and one overlay per pyramid level.

    Args:
        image: ``uint8`` RGB input ``(H, W, 3)``.
        overlays: ``(label, 2-D map)`` per level, fine to coarse; each map is upsampled
            to the image and blended over it.
        rngs: One range per level: equal ranges share one color bar for the slide (levels
            compare), else a color bar goes under each overlay.
        alpha: Weight of the color over the image, in ``[0, 1]``.
        colormap: Matplotlib color map name.
        suptitle: Title of the slide.
        colorbar_label: What the color bar measures.

    Returns:
        The figure, 16 x 9 inches.

    Raises:
        ValueError: If the number of ranges does not match the number of overlays.
    """
    check_colormap(colormap)
    ranges = list(rngs)
    shared = len(set(ranges)) == 1
    if len(ranges) != len(overlays):
        raise ValueError(f"got {len(ranges)} ranges for {len(overlays)} overlays; give one per overlay")
    panels = 1 + len(overlays)
    cols = panels if panels <= 3 else math.ceil(panels / 2)
    rows = math.ceil(panels / cols)
    fig = new_figure(16.0, 9.0)
    if not shared:  # room between rows for the color bars under the panels
        fig.get_layout_engine().set(hspace=0.12)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    h, w = image.shape[:2]

    axes[0].imshow(image)
    axes[0].set_title(f"input\n{w} × {h} px", fontsize=PANEL_TITLE_PT)
    for ax, (label, map_), level_rng in zip(axes[1:], overlays, ranges, strict=False):
        ax.imshow(overlay(image, map_, rng=level_rng, alpha=alpha, colormap=colormap))
        ax.set_title(f"{label}\nmap {_size_label(map_)}", fontsize=PANEL_TITLE_PT)
        if not shared:
            bar = fig.colorbar(_mappable(level_rng, colormap), ax=ax, orientation="horizontal", shrink=0.8, pad=0.02)
            bar.ax.tick_params(labelsize=TICK_PT - 1)
            bar.ax.xaxis.set_major_locator(MaxNLocator(4))
    for ax in axes:
        image_axes(ax)
    for ax in axes[panels:]:
        ax.set_visible(False)
    if shared and overlays:
        _colorbar(fig, ranges[0], colormap, axes[:panels], colorbar_label)
    fig.suptitle(suptitle, fontsize=TITLE_PT + 4)
    return fig


def bar_figure(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    groups: Sequence[str] | None = None,
) -> Figure:
    """Horizontal bars, top to bottom in the given order, with the value at each end.

    Args:
        labels: One label per bar, e.g. ``"conv1"``, ``"layer1"``, ``"fpn"``.
        values: One value per bar, e.g. milliseconds.
        title: What is measured.
        xlabel: The value axis label, with units.
        groups: Optional group per bar (e.g. ``"backbone"``, ``"fpn"``); each group gets
            a color and a legend entry.

    Returns:
        The figure.

    Raises:
        ValueError: If the lengths of ``labels``, ``values`` and ``groups`` differ or
            there are no bars.
    """
    if not labels or len(labels) != len(values):
        raise ValueError(f"need one value per label, got {len(labels)} labels and {len(values)} values")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"need one group per label, got {len(groups)} groups for {len(labels)}")
    palette = matplotlib.colormaps["tab10"]
    group_names = list(dict.fromkeys(groups)) if groups is not None else []
    colors = [palette(group_names.index(g) % 10) for g in groups] if groups is not None else None
    fig = new_figure(8.5, 1.4 + 0.45 * len(labels))
    ax = fig.add_subplot()
    positions = np.arange(len(labels))
    bars = ax.barh(positions, [float(v) for v in values], color=colors or palette(0))
    ax.set_yticks(positions, [str(label) for label in labels])
    ax.invert_yaxis()  # first label on top
    ax.bar_label(bars, fmt="%.3g", padding=4, fontsize=TICK_PT)
    ax.margins(x=0.18)  # room for the value labels at the bar ends
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if groups is not None:
        handles = [Patch(color=palette(i % 10), label=name) for i, name in enumerate(group_names)]
        ax.legend(handles=handles, fontsize=TICK_PT, loc="lower right")
    return fig


def line_figure(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> Figure:
    """Lines with markers, one per named series, over shared x values.

    Args:
        x: The x values.
        series: Name -> y values, each as long as ``x``.
        title: What is plotted.
        xlabel: X axis label, with units.
        ylabel: Y axis label, with units.
        logx: Use a logarithmic x axis (e.g. for image sizes).

    Returns:
        The figure.

    Raises:
        ValueError: If a series' length differs from ``x`` or there is no series.
    """
    if not series:
        raise ValueError("line_figure needs at least one series, got none")
    for name, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} values for {len(x)} x values")
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", linewidth=2, label=name)
    if logx:
        ax.set_xscale("log")
        if 0 < len(x) <= 12:
            # Label the measured points in plain, rounded numbers (not powers of ten), leaving out a
            # point too close to the one labelled before it for both labels to fit.
            shown: list[float] = []
            for v in sorted({float(v) for v in x}):
                if not shown or v >= 1.25 * shown[-1]:
                    shown.append(v)
            ax.set_xticks(shown, [f"{v:.0f}" if v >= 10 else f"{v:.2g}" for v in shown])
            ax.xaxis.set_minor_locator(NullLocator())
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=TICK_PT)
    return fig


def figure_to_png(fig: Figure, *, scale: float = 1.0, dpi: int = 100) -> bytes:
    """Renders a figure to PNG bytes, then releases it.

    Args:
        fig: The figure; it is cleared afterwards and should not be reused.
        scale: Resolution multiplier (2 gives twice the pixels per side, for slides).
        dpi: Dots per inch at ``scale=1``.

    Returns:
        The PNG file's bytes, cropped to the drawn content (``bbox_inches="tight"``).

    Raises:
        ValueError: If ``scale`` or ``dpi`` is not positive.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not dpi > 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    try:
        # No software stamp: the PNG depends only on what is drawn (reproducible exports).
        fig.savefig(buffer, format="png", dpi=dpi * scale, bbox_inches="tight", metadata={"Software": None})
    finally:
        fig.clear()
    return buffer.getvalue()


def erf_figure(
    image: np.ndarray,
    erf_map: np.ndarray,
    *,
    title: str,
    box: tuple[int, int, int, int] | None = None,
    cell_square: tuple[int, int, int, int] | None = None,
    center: tuple[float, float] | None = None,
    alpha: float = 0.85,
    colormap: str = "inferno",
) -> Figure:
    """An effective receptive field over the image (``fpn_core.receptive.erf_overlay``, as on
    screen), with its theoretical square, the cell and a color bar of the shown values.

    Args:
        image: ``uint8`` RGB network input ``(H, W, 3)``.
        erf_map: ``(H, W)`` gradient magnitude (``ErfResult.maps[name]``).
        title: e.g. ``"p3: ERF r50 59 px, r90 107 px; theoretical RF 459 px"``.
        box: the cell's theoretical RF ``(x0, y0, x1, y1)``, half-open, in image pixels (drawn dashed).
        cell_square: the cell's stride-grid square ``(x0, y0, x1, y1)`` (drawn solid).
        center: ``(x, y)`` of the RF centre (marked with a cross).
        alpha: the largest opacity of the color.
        colormap: color map of the ERF.

    Returns:
        The figure.
    """
    from matplotlib.patches import Rectangle

    from fpn_core.receptive import ERF_PERCENTILE, erf_overlay

    check_colormap(colormap)
    h, w = image.shape[:2]
    fig = new_figure(*panel_size(w, h, base=7.0, extra_w=1.4, extra_h=0.8))
    ax = fig.add_subplot()
    ax.imshow(erf_overlay(image, erf_map, alpha=alpha, colormap=colormap), interpolation="antialiased")
    image_axes(ax)
    ax.set_title(title, fontsize=TITLE_PT)
    label = f"√(|gradient| / its {ERF_PERCENTILE:g}th percentile)"
    _colorbar(fig, MapRange(0.0, 1.0), colormap, ax, label)
    ax.set_xlabel(
        f"network input {w} × {h} px; dashed: theoretical RF; cyan square: the cell; +: RF centre", fontsize=TICK_PT
    )
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.5, ls="--"))
    if cell_square is not None:
        x0, y0, x1, y1 = cell_square
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1.5))
    if center is not None:
        ax.plot([center[0]], [center[1]], marker="+", color="cyan", markersize=12, mew=2)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    return fig


def erf_radius_figure(
    names: Sequence[str],
    radii: Mapping[str, Mapping[str, float | None]],
    theoretical: Mapping[str, float],
    *,
    title: str = "Effective receptive field radius per stage and level",
    unit: str = "px",
) -> Figure:
    """ERF radii (50% and 90% of the gradient mass) against stage/level, the theoretical RF half-side beside.

    Args:
        names: stages and levels in display order, e.g. ``["c2", ..., "c5", "p3", ...]``.
        radii: name -> ``{"50": r, "90": r}`` (None where the gradient vanished).
        theoretical: name -> theoretical RF side (plotted as half the side, a radius).
        title: the title.
        unit: the pixels the radii are in, for the axis label.

    Returns:
        The figure.
    """
    from fpn_core.levels import hex_color

    if not names:
        raise ValueError("erf_radius_figure needs at least one name")
    fig = new_figure(8.5, 5.0)
    ax = fig.add_subplot()
    xs = np.arange(len(names))

    def values(get) -> list[float]:
        return [float("nan") if get(n) is None else float(get(n)) for n in names]

    ax.bar(xs, values(lambda n: theoretical[n] / 2), color="#dddddd", label="theoretical RF (half side)")
    ax.plot(xs, values(lambda n: radii[n]["90"]), marker="o", lw=2, color="#444444", label="ERF r90")
    ax.plot(xs, values(lambda n: radii[n]["50"]), marker="s", lw=2, color="#888888", label="ERF r50")
    ax.set_xticks(xs, list(names))
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        tick.set_color(hex_color(name))
        tick.set_fontweight("bold")
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel("backbone stage / pyramid level", fontsize=LABEL_PT)
    ax.set_ylabel(f"radius ({unit})", fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=TICK_PT)
    return fig


def shares_figure(shares: Mapping[str, Mapping[str, float]], *, title: str) -> Figure:
    """Stacked horizontal bars: each level's split into stages, in the app-wide stage colors.

    Args:
        shares: row label (e.g. ``"p3"`` or ``"p3 at point"``) -> stage -> share (summing to 1).
        title: the title.

    Returns:
        The figure.
    """
    from fpn_core.levels import hex_color

    if not shares:
        raise ValueError("shares_figure needs at least one row")
    labels = list(shares)
    fig = new_figure(8.5, 1.6 + 0.55 * len(labels))
    ax = fig.add_subplot()
    seen: dict[str, Patch] = {}
    for row, label in enumerate(labels):
        left = 0.0
        for stage, share in shares[label].items():
            pct = 100 * float(share)
            ax.barh(row, pct, left=left, color=hex_color(stage), edgecolor="white")
            if pct >= 7:
                ax.text(
                    left + pct / 2,
                    row,
                    f"{stage} {pct:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=TICK_PT,
                    color="white",
                    fontweight="bold",
                )
            left += pct
            seen.setdefault(stage, Patch(color=hex_color(stage), label=stage))
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the contributions' L1 norm (%)", fontsize=LABEL_PT)
    ax.set_title(title, fontsize=TITLE_PT)
    ax.tick_params(labelsize=TICK_PT)
    ax.legend(
        handles=[seen[s] for s in sorted(seen)],
        fontsize=TICK_PT,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(labels) < 3 else -0.12),
        ncol=len(seen),
        frameon=False,
    )
    return fig


def contribution_figure(
    image: np.ndarray,
    composite: np.ndarray,
    *,
    title: str,
    stages: Sequence[str],
    alpha: float = 0.6,
    point: tuple[float, float] | None = None,
) -> Figure:
    """Where each stage dominates a level: the composite map over the image, with a stage legend.

    Args:
        image: ``uint8`` RGB network input.
        composite: ``(h, w, 3)`` uint8 from ``contributions.composite_map``.
        title: e.g. ``"p3: where c3, c4 and c5 dominate"``.
        stages: the stages in the composite (legend order).
        alpha: weight of the composite over the image.
        point: ``(x, y)`` in image pixels to mark, or None.

    Returns:
        The figure.
    """
    from fpn_core.contributions import overlay_composite
    from fpn_core.levels import hex_color

    blended = overlay_composite(image, composite, alpha=alpha)
    h, w = image.shape[:2]
    fig = new_figure(*panel_size(w, h, base=7.0, extra_w=0.4, extra_h=1.2))
    ax = fig.add_subplot()
    ax.imshow(blended, interpolation="nearest")
    if point is not None:
        ax.plot([point[0]], [point[1]], marker="+", color="white", markersize=14, mew=2.5)
    image_axes(ax)
    ax.set_title(title, fontsize=TITLE_PT)
    ax.legend(
        handles=[Patch(color=hex_color(s), label=s) for s in stages],
        fontsize=TICK_PT,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=len(stages),
        frameon=False,
        title="colour: the stage that sends most; brightness: total strength",
        title_fontsize=TICK_PT,
    )
    return fig
