"""Reusable renderers: page frame, weights banner, captions, figures with downloads, diagram.

Pages call these with results from ``ui.cache``; nothing here computes a model.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import streamlit as st
import torch
from matplotlib.figure import Figure
from PIL import Image

from fpn_core import (
    FeatureInfo,
    Provenance,
    Pyramid,
    PyramidConfig,
    WeightsError,
    count_parameters,
    stride_of,
)
from fpn_core.figures import figure_to_jpeg, figure_to_png, grid_figure
from fpn_core.maps import MapRange, channel_grid, map_range, map_ranges, map_stats, reduce_channels
from fpn_core.weights import IMAGENET, WEIGHTS_ENV, how_to_place
from ui import cache, urlstate
from ui import state as S
from ui.sidebar import show_sidebar

log = logging.getLogger(__name__)

__all__ = [
    "architecture_dot",
    "feature_caption",
    "figure_spec",
    "join_names",
    "load_analysis",
    "map_range",
    "parameter_rows",
    "ranges_for",
    "reduce_channels",
    "reduced_maps",
    "shape_text",
    "show_figure",
    "show_image",
    "show_provenance",
    "stage_description",
    "start_page",
    "stride_of",
    "top_channels_figure",
]


# --------------------------------------------------------------------------- page frame


def start_page(title: str, icon: str, intro: str | None = None) -> S.Settings:
    """Page config (wide), the shared sidebar, then the title; returns the settings.

    Args:
        title: the page title (browser tab and heading).
        icon: an emoji for the browser tab.
        intro: one or two sentences under the title.
    """
    st.set_page_config(page_title=f"{title} · FPN Explorer", page_icon=icon, layout="wide")
    cache.apply_operator_weights()
    settings = show_sidebar()
    st.session_state[_EXPORT_SCALE] = settings.export_scale
    st.title(title)
    urlstate.show_notices()
    if intro:
        st.markdown(intro)
    return settings


def load_analysis(
    settings: S.Settings,
    config: PyramidConfig | None = None,
    *,
    image: np.ndarray | None = None,
    digest: str | None = None,
    banner: bool = True,
) -> cache.Analysis | None:
    """The cached analysis for the current settings, with a spinner; errors become messages.

    Args:
        settings: the sidebar settings (image, size and device come from here).
        config: the pyramid to run; None uses the sidebar's (``settings.config()``).
        image: an image other than the sidebar's (e.g. the scales image), with ``digest``.
        digest: content hash of ``image``.
        banner: show the weights banner (or caption) under the analysis.

    Returns:
        The analysis, or None (a message has been shown) when there is no image or it failed.
    """
    if image is None:
        image, digest = settings.image, settings.image_digest
    if image is None or digest is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, or an upload).")
        return None
    config = settings.config() if config is None else config
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        if total:
            text = f"Downloading weights: {done / 2**20:.0f} of {total / 2**20:.0f} MB"
            bar.progress(min(done / total, 1.0), text=text)

    try:
        with st.spinner("Running the network (cached after the first time)…"):
            analysis = cache.analyse(config, image, digest, settings.size, progress)
    except (WeightsError, ValueError) as exc:
        bar.empty()
        st.error(f"The analysis could not run: {exc}")
        return None
    except Exception:  # any other failure: a message for the user, the traceback for the log
        bar.empty()
        log.exception("analysis failed")
        st.error("The analysis failed unexpectedly (details are in the server log). Try a smaller input size.")
        return None
    bar.empty()
    for notice in analysis.notices:
        st.warning(notice)
    if banner:
        show_provenance(analysis.model.provenance, config.out_channels)
    return analysis


# ----------------------------------------------------------------------------- weights


def show_provenance(provenance: Provenance, width: int) -> None:
    """A banner when the backbone or the FPN is untrained, else one caption line.

    Args:
        provenance: from the assembled pyramid.
        width: the FPN width, to say why the FPN is untrained.
    """
    problems = []
    if not provenance.pretrained:
        problems.append(
            f"**The backbone has random weights** ({provenance.backbone}): the maps show what an untrained "
            "ResNet-50 does, not learned features."
        )
    if not provenance.fpn_pretrained:
        why = (
            "the COCO Faster R-CNN checkpoint could not be loaded"
            if provenance.requested == "coco-fpn" and width == 256 and provenance.pretrained
            else "trained FPN weights exist only in the COCO Faster R-CNN checkpoint, at width 256"
        )
        problems.append(f"**The FPN is untrained at width {width}**: {why}.")
    if not problems:
        st.caption(f"Weights: {provenance.backbone}; FPN: {provenance.fpn}.")
        return
    if not provenance.pretrained:
        advice = (
            f"**What to do:** {how_to_place(IMAGENET)} An operator can instead start the app with "
            f"`{WEIGHTS_ENV}=PATH streamlit run dashboard.py` or `streamlit run dashboard.py -- --weights PATH`. "
            "Then press **Try again**."
        )
    else:
        advice = "**What to do:** choose the *COCO Faster R-CNN (trained FPN)* weights and width 256."
    st.warning("  \n".join(problems) + "  \n" + advice, icon=":material/warning:")
    cols = st.columns([1, 6], vertical_alignment="center")
    if cols[0].button("Try again", key=S.KEY_RETRY, help="Look for the weight files again (clears the model caches)."):
        cache.clear_model_caches()
        _cached_screen.clear()
        _cached_download.clear()
        st.rerun()
    if provenance.fallbacks:
        with cols[1].expander("Why the trained weights were not used"):
            for line in provenance.fallbacks:
                st.markdown(f"- {line}")


# ---------------------------------------------------------------------------- captions


def shape_text(tensor: torch.Tensor) -> str:
    """``"512 × 64 × 64"`` (channels × height × width) of a (1, C, H, W) tensor."""
    return " × ".join(str(int(s)) for s in tensor.shape[-3:])


def feature_caption(name: str, tensor: torch.Tensor, *, what: str = "") -> str:
    """A one-paragraph caption: name, shape, stride, channels and statistics.

    Args:
        name: ``c1..c5`` or ``p2..p6``.
        tensor: the (1, C, H, W) feature map.
        what: an optional description, e.g. ``"backbone stage (layer2)"``.
    """
    stats = map_stats(tensor)
    c, h, w = (int(s) for s in tensor.shape[-3:])
    head = f"**{name}**" + (f" — {what}" if what else "")
    return (
        f"{head} · shape {c} × {h} × {w} (C × H × W) · stride {stride_of(name)} · {c} channels  \n"
        f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, min {stats['min']:.3g}, "
        f"max {stats['max']:.3g}, exact zeros {stats['sparsity']:.0%}"
    )


def stage_description(name: str, info: FeatureInfo) -> str:
    """E.g. ``"backbone stage (layer2)"`` for ``c3``."""
    return f"backbone stage ({info[name].module})"


# ------------------------------------------------------------------------------- maps


def reduced_maps(features: Mapping[str, torch.Tensor], how: str) -> dict[str, np.ndarray]:
    """Each feature's 2-D map by the chosen channel reduction (small numpy arrays)."""
    return {name: reduce_channels(t, how) for name, t in features.items()}


def ranges_for(maps: Mapping[str, np.ndarray], scope: str) -> dict[str, MapRange]:
    """Colour ranges per map: each its own, or one shared (``scope``)."""
    return map_ranges(maps, scope)


# ----------------------------------------------------------------------------- figures


#: Figures are rendered at this resolution for the screen: at a column's width it looks the
#: same as 100 dpi, with fewer bytes to encode and send.
DISPLAY_DPI = 80
#: PNG downloads are rendered at ``EXPORT_DPI * scale`` (1x = 100 dpi, as fpn_core.export).
EXPORT_DPI = 100
#: Plain session-state key: the sidebar's export scale, read by every download on the page.
_EXPORT_SCALE = "_export_scale"


def export_scale() -> int:
    """The sidebar's "Export resolution" (1, 2 or 3) for this run."""
    return int(st.session_state.get(_EXPORT_SCALE, S.DEFAULT_EXPORT_SCALE))


@st.cache_data(show_spinner=False, max_entries=96, ttl=3600)
def _cached_screen(spec: tuple, _make: Callable[..., Figure], _args: tuple, _kwargs: dict) -> bytes:
    """Screen image (JPEG) of ``_make(*_args, **_kwargs)``, cached by ``spec`` (everything it depends on)."""
    return figure_to_jpeg(_make(*_args, **_kwargs), dpi=DISPLAY_DPI)


@st.cache_data(show_spinner=False, max_entries=32, ttl=3600)
def _cached_download(spec: tuple, scale: int, _make: Callable[..., Figure], _args: tuple, _kwargs: dict) -> bytes:
    """Download PNG of the same figure at ``scale`` x 100 dpi, cached by ``spec`` and scale."""
    return figure_to_png(_make(*_args, **_kwargs), scale=scale, dpi=EXPORT_DPI)


def render_download_png(
    make: Callable[..., Figure], args: tuple, kwargs: dict, spec: tuple | None, scale: int
) -> bytes:
    """The download PNG of a figure at ``scale`` (cached when ``spec`` is given)."""
    if spec is not None:
        return _cached_download(spec, scale, make, args, kwargs)
    return figure_to_png(make(*args, **kwargs), scale=scale, dpi=EXPORT_DPI)


def _file_stem(text: str) -> str:
    """A file-name-safe stem from a title: ``"p4 · stride 16"`` -> ``"p4_stride_16"``."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", text.split("\n")[0]).strip("_").lower()
    return stem[:60] or "figure"


def _scaled_name(name: str, scale: int) -> str:
    """``"levels.png"`` -> ``"levels@2x.png"`` (1x keeps the name)."""
    if scale == 1:
        return name
    base, dot, ext = name.rpartition(".")
    return f"{base}@{scale}x.{ext}" if dot else f"{name}@{scale}x"


def show_figure(
    make: Callable[..., Figure],
    /,
    *args: object,
    spec: tuple | None = None,
    download_name: str | None = None,
    key: str | None = None,
    caption: str | None = None,
    **kwargs: object,
) -> bytes:
    """Draw ``make(*args, **kwargs)``, show it at screen resolution, and offer a PNG download.

    The screen image is rendered at ``DISPLAY_DPI`` (cheap); the download is rendered only
    when the button is pressed, at the sidebar's "Export resolution" (1x/2x/3x of 100 dpi),
    and cached by ``spec`` and scale.

    Args:
        make: a figure maker from ``fpn_core.figures``, e.g. ``overlay_figure``.
        *args: its positional arguments.
        spec: a hashable description of everything the figure depends on (image digest, size,
            configuration, level, map settings); when given, the PNGs are cached by it, so a
            change elsewhere in the sidebar does not redraw this figure. None draws every time.
        download_name: file name of the PNG download; None derives one from the title.
        key: key of the download button (default ``download_<file stem>``; give one when two
            figures on a page would get the same name).
        caption: text under the image.
        **kwargs: the maker's keyword arguments.

    Returns:
        The screen image's bytes (JPEG: half the drawing time of a PNG; downloads are PNG).
    """
    if spec is not None:
        screen = _cached_screen(spec, make, args, kwargs)
    else:
        screen = figure_to_jpeg(make(*args, **kwargs), dpi=DISPLAY_DPI)
    st.image(screen, caption=caption, width="stretch")
    title = str(kwargs.get("title") or kwargs.get("suptitle") or "figure")
    name = download_name or f"{_file_stem(title)}.png"
    scale = export_scale()
    st.download_button(
        f"Download PNG ({scale}×)",
        lambda: render_download_png(make, args, kwargs, spec, scale),
        file_name=_scaled_name(name, scale),
        mime="image/png",
        key=key or f"download_{name.rsplit('.', 1)[0]}",
        on_click="ignore",
        icon=":material/download:",
    )
    return screen


def array_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of an RGB uint8 image, enlarged ``scale`` times with nearest neighbour (crisp grids)."""
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def show_image(image: np.ndarray, *, caption: str, download_name: str, key: str | None = None) -> None:
    """Show an RGB image (not a figure) with a PNG download at the export resolution."""
    st.image(image, caption=caption, width="stretch")
    scale = export_scale()
    st.download_button(
        f"Download PNG ({scale}×)",
        lambda: array_png(image, scale),
        file_name=_scaled_name(download_name, scale),
        mime="image/png",
        key=key or f"download_{download_name.rsplit('.', 1)[0]}",
        on_click="ignore",
        icon=":material/download:",
    )


def top_channels_figure(feature: torch.Tensor, *, k: int, name: str, cmap: str) -> Figure:
    """The ``k`` most active channels of one feature map as a numbered grid (4 per row)."""
    mosaic, indices = channel_grid(feature, k=k)
    title = f"{name}: the {len(indices)} most active of {int(feature.shape[-3])} channels"
    return grid_figure(mosaic, indices, title=title, cols=4, cmap=cmap)


def figure_spec(settings: S.Settings, analysis: cache.Analysis, *parts: object) -> tuple:
    """A cache key for a figure: image, input size, weights actually loaded, map settings and ``parts``."""
    provenance = analysis.model.provenance
    return (
        settings.image_digest,
        settings.size,
        settings.weights,
        settings.device,
        provenance.backbone,
        provenance.fpn,
        settings.reduction,
        settings.colormap,
        settings.scope,
        *parts,
    )


# ----------------------------------------------------------------------------- diagram


_NODE_STYLE = {
    "stage": 'fillcolor="#DCE8F7", color="#6B8BB5"',
    "unused": 'fillcolor="#F7F7F7", color="#C5CCD6", fontcolor="#8A99AD"',
    "conv": 'fillcolor="#FFF4DB", color="#C9A227"',
    "level": 'fillcolor="#DDF2E3", color="#3C8D5A"',
    "merge": 'shape=circle, fillcolor="#FFFFFF", width=0.4, fixedsize=true',
}


def _node(name: str, label: str, style: str) -> str:
    return f'  {name} [label="{label}", {_NODE_STYLE[style]}];'


def architecture_dot(analysis: cache.Analysis) -> str:
    """A Graphviz DOT diagram of the live pyramid, with real shapes for this image.

    One row per level, coarse at the top: the backbone stage c_k, its lateral 1x1 conv, the
    merge with the upsampled map from the row above, the 3x3 conv and the output p_k; p6 above.
    Shapes are channels × height × width of the tensors computed for the chosen image.
    """
    config = analysis.model.config
    d = config.out_channels
    stages, levels, steps = analysis.backbone.stages, analysis.fpn.levels, analysis.fpn.steps
    h, w = analysis.backbone.image.shape[:2]
    info = analysis.model.feature_info
    up = f"2× {config.upsample}"
    merge = "+" if config.merge == "sum" else "mean"
    lines = [
        "digraph FPN {",
        "  rankdir=BT; nodesep=0.3; ranksep=0.35; newrank=true;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10, color="#55657A"];',
        _node("img", f"image\\n3 × {h} × {w}", "unused").replace("#8A99AD", "#1F2933"),
    ]
    prev = "img"
    for name in ("c1", "c2", "c3", "c4", "c5"):
        label = f"{name} ({info[name].module})\\n{shape_text(stages[name])}\\nstride {stride_of(name)}"
        lines += [_node(name, label, "stage" if name in config.stages else "unused"), f"  {prev} -> {name};"]
        prev = name
    top = config.stages[-1]
    for stage in config.stages:
        level = f"p{stage[1]}"
        step = steps.get(level)
        row = [stage, f"lat_{level}"]
        lines.append(_node(f"lat_{level}", f"1×1 conv\\n{int(stages[stage].shape[1])} → {d}", "conv"))
        lines.append(f"  {stage} -> lat_{level};")
        src = f"lat_{level}"
        if stage != top and step is not None and step.top_down is not None:
            above = f"m_p{int(stage[1]) + 1}"
            lines.append(_node(f"m_{level}", merge, "merge"))
            lines.append(f"  lat_{level} -> m_{level};")
            lines.append(
                f'  {above} -> m_{level} [label=" {up}\\n {shape_text(step.top_down)}", '
                'color="#2F6DB5", fontcolor="#2F6DB5", constraint=false];'
            )
            src = f"m_{level}"
            row.append(src)
        elif stage == top:
            lines.append(f'  m_{level} [label="", shape=point, width=0.06];')
            lines.append(f"  lat_{level} -> m_{level} [arrowhead=none];")
            src = f"m_{level}"
            row.append(src)
        if level in levels:
            lines.append(_node(f"conv_{level}", f"3×3 conv\\n{d} → {d}", "conv"))
            label = f"{level}\\n{shape_text(levels[level])}\\nstride {stride_of(level)}"
            lines += [f"  {src} -> conv_{level};", _node(level, label, "level"), f"  conv_{level} -> {level};"]
            row += [f"conv_{level}", level]
        lines.append(f"  {{rank=same; {'; '.join(row)};}}")
    inputs = {f"p{s[1]}" for s in config.stages}
    for name in (n for n in levels if n not in inputs):
        label = f"{name}\\n{shape_text(levels[name])}\\nstride {stride_of(name)}"
        lines.append(_node(name, label, "level"))
        lines.append(f'  p{int(name[1]) - 1} -> {name} [label=" subsample ×2\\n (max_pool k=1, s=2)"];')
    lines.append("}")
    return "\n".join(lines)


def parameter_rows(model: Pyramid) -> list[dict[str, object]]:
    """Rows for a parameter table: per backbone stage, FPN laterals and 3x3s, then the two totals.

    The last two rows are the backbone total and the FPN total.
    """
    counts = count_parameters(model)
    backbone = {k: v for k, v in counts.items() if k.startswith("c")}
    lateral = sum(v for k, v in counts.items() if k.endswith(".lateral"))
    output = sum(v for k, v in counts.items() if k.endswith(".output"))
    rows: list[dict[str, object]] = [{"part": f"backbone {k}", "parameters": v} for k, v in backbone.items()]
    rows += [
        {"part": "FPN lateral 1×1 convs", "parameters": lateral},
        {"part": "FPN output 3×3 convs", "parameters": output},
        {"part": "backbone total", "parameters": sum(backbone.values())},
        {"part": "FPN total", "parameters": lateral + output},
    ]
    return rows


def join_names(names: Sequence[str]) -> str:
    """``"c3, c4 and c5"``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ------------------------------------------------------------------------------ timing


def _level_label(step: str) -> str:
    """``"p3.lateral"`` -> ``"p3"``; backbone stages stay as they are."""
    return step.split(".")[0]


def timing_rows(report: cache.TimingReport) -> list[dict[str, object]]:
    """One table row per step: milliseconds, GFLOPs, GFLOP/s, output MB and device."""
    rows = []
    for name, ms in report.steps.items():
        gflops = report.flops.get(name, 0) / 1e9
        rows.append(
            {
                "step": name,
                "part": report.groups[name],
                "ms": round(ms, 3),
                "GFLOPs": round(gflops, 4),
                "GFLOP/s": round(gflops / (ms / 1e3), 1) if ms > 0 else None,
                "output MB": round(report.output_mb.get(name, 0.0), 3),
                "device": report.device,
            }
        )
    return rows


@st.fragment
def show_timing_panel(settings: S.Settings, repeats: int) -> None:
    """Measure and show the timing panel; "Measure again" reruns only this fragment.

    Args:
        settings: the sidebar settings (the analysis comes from the caches, not from arguments,
            so the fragment keeps no tensors alive between reruns).
        repeats: timed runs per median.
    """
    from fpn_core.figures import bar_figure  # local: only this panel draws bars

    st.button("Measure again", key=S.KEY_MEASURE, icon=":material/timer:", help="Rerun only the measurement.")
    analysis = cache.analyse(settings.config(), settings.image, settings.image_digest, settings.size)  # type: ignore[arg-type]
    with st.spinner(f"Timing {repeats} runs after one warm-up run…"):
        report = cache.time_pyramid(analysis, settings.image, settings.size, repeats)  # type: ignore[arg-type]
    for notice in report.notices:
        st.warning(notice)
    total = report.backbone_ms + report.fpn_ms
    gflop = sum(report.flops.values()) / 1e9
    cols = st.columns(5)
    cols[0].metric("Backbone", f"{report.backbone_ms:.1f} ms", border=True)
    cols[1].metric("FPN", f"{report.fpn_ms:.1f} ms", border=True)
    cols[2].metric("FPN share of total", f"{report.fpn_ms / total:.1%}" if total > 0 else "–", border=True)
    cols[3].metric("GFLOP/s achieved", f"{gflop / (total / 1e3):.0f}" if total > 0 else "–", border=True)
    cols[4].metric("Device", report.device.upper(), border=True)
    if st.toggle(
        "Compare with the plain forward",
        key=S.KEY_COMPARE_PLAIN,
        help="Times the same ResNet-50 without BatchNorm folded into the convolutions and without "
        "channels_last memory layout: the two optimizations applied once at load.",
    ):
        with st.spinner("Timing the plain backbone…"):
            plain_ms = cache.time_plain_backbone(
                settings.weights,
                settings.device,
                settings.image,
                settings.size,
                repeats,  # type: ignore[arg-type]
            )
        speedup = plain_ms / report.backbone_ms if report.backbone_ms > 0 else float("nan")
        st.metric(
            "Optimized backbone speedup",
            f"{speedup:.2f}×",
            delta=f"{plain_ms - report.backbone_ms:.1f} ms saved per image ({plain_ms:.1f} ms plain)",
            border=True,
        )

    per_level: dict[str, float] = {}
    groups: dict[str, str] = {}
    # Backbone stages first, then the FPN levels fine to coarse (the FPN runs coarse to fine).
    order = sorted(report.steps, key=lambda n: (report.groups[n] != "backbone", _level_label(n)))
    for name in order:
        ms = report.steps[name]
        label = _level_label(name)
        if report.groups[name] == "fpn":
            label = f"{label} (FPN)"
        per_level[label] = per_level.get(label, 0.0) + ms
        groups[label] = report.groups[name]
    left, right = st.columns([1, 1], gap="large")
    with left:
        show_figure(
            bar_figure,
            list(per_level),
            list(per_level.values()),
            title=f"Median ms per stage and per pyramid level ({report.repeats} runs, {report.device})",
            xlabel="milliseconds",
            groups=[groups[label] for label in per_level],
            download_name="timing.png",
            key="download_timing",
        )
        st.caption(
            "An FPN level's bar sums its lateral 1×1, top-down upsample + merge and 3×3 steps; "
            "p6 is the subsampling of the top level."
        )
    with right:
        rows = timing_rows(report)
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            height=36 * (len(rows) + 1) + 4,  # every row visible, no inner scrolling
            column_config={
                "ms": st.column_config.NumberColumn("ms", format="%.2f"),
                "GFLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
                "GFLOP/s": st.column_config.NumberColumn("GFLOP/s", format="%.1f"),
                "output MB": st.column_config.NumberColumn("output MB", format="%.2f"),
            },
        )
        st.caption(
            f"Input {settings.size} px long side, d = {settings.width}. GFLOPs are counted by torch's "
            "FlopCounterMode for this input shape (one multiply-add = 2 FLOPs). The whole-pass medians above "
            "are measured around each pass, so they can differ slightly from the sum of the steps."
        )
