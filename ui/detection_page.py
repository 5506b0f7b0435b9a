"""The Detection page: torchvision's detectors on the same ResNet-50 + FPN, every box traced to its level.

What runs where: ``ui.cache`` holds one detector per (name, weights, device) for the process,
its backbone + FPN pass per (image, input size, detector) and its heads on that pass; the
score threshold only re-filters (``fpn_core.detection.filter_detections``), so the slider runs no network.
Boxes, proposals and anchors are drawn with PIL onto the numpy image for the screen, each in
its level's app-wide color (``fpn_core.levels.LEVEL_COLORS``); matplotlib figures are drawn
only when a PNG download is pressed.

Why the detector's weights are not the sidebar's: the sidebar picks the backbone and FPN the
other pages teach, while a detector needs its own COCO checkpoint (heads included). Without
one it runs untrained: the page says which file to place where, still shows what does not
depend on training (anchors, the level rule), and draws boxes only behind a toggle that calls
them noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fpn_core.detection import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DETECTORS,
    FCOS_REGRESSION_RANGES,
    Detections,
    filter_detections,
    how_to_get_weights,
    paper_level,
)
from fpn_core.detection.figure import detection_figure, draw_keypoints, tint_masks
from fpn_core.detection.specs import FCOS_FAMILY
from fpn_core.figures import overlay_figure
from fpn_core.frameworks.listing import HEADS_NOT_RUN
from fpn_core.levels import LEVEL_COLORS, hex_color, level_name, stage_index, stride_of
from fpn_core.maps import MapRange, map_ranges, overlay
from fpn_core.paper import CANONICAL_SIZE, LEVEL_RULE_FLOOR, LEVEL_RULE_LATEX
from fpn_core.weights import hub_checkpoint_dir
from ui import cache, loading, models, panels
from ui import settings as S

log = logging.getLogger(__name__)

#: The detector checkpoints asked for: COCO, falling back to an untrained detector (said on the page).
DETECTOR_WEIGHTS = "coco"
DETECTOR_LABELS: dict[str, str] = {
    name: f"{spec.title} ({spec.levels[0]}..{spec.levels[-1]})" for name, spec in DETECTORS.items()
}
SIZE_OWN, SIZE_SIDEBAR = "own", "sidebar"
DEFAULT_SCORE = 0.5
SCORE_STEP = 0.01
#: Objectness maps per row of panels.
PER_ROW = 3
OBJECTNESS_CMAP = "inferno"


# ------------------------------------------------------------------------------- keys


def detector_choices() -> dict[str, str]:
    """The Detector choice: the built-in detectors, then the models folder's files (value -> label)."""
    return {**DETECTOR_LABELS, **dict(models.folder_choices().detectors)}


def detection_key(settings: S.Settings, name: str, size_option: str) -> cache.DetectionKey | None:
    """The cache key of one detector's pass on the sidebar's image (None without an image, or for a
    models-folder name that is no longer listed)."""
    if settings.image is None:
        return None
    size = settings.size if size_option == SIZE_SIDEBAR else None
    weights = DETECTOR_WEIGHTS
    if models.is_file_choice(name):
        info = models.info_of(name)
        if info is None:
            return None
        weights = str(info.path)
    detector = cache.DetectorKey(name, weights, str(settings.config.device))
    return cache.DetectionKey(settings.image.digest, size, detector)


def heads_min_score(trained: bool) -> float | None:
    """The heads' own threshold: torchvision's 0.05 when trained; 0 untrained, whose scores sit near 1/91."""
    return None if trained else 0.0


# --------------------------------------------------------------------------- drawing


def level_colors(levels: Sequence[str]) -> list[tuple[int, int, int]]:
    """Each level's app-wide color (``fpn_core.levels.LEVEL_COLORS``; white for an unknown name)."""
    return [LEVEL_COLORS.get(level, (255, 255, 255)) for level in levels]


def draw_detections(image: np.ndarray, dets: Detections) -> np.ndarray:
    """The image with every detection: mask tinted and keypoints joined in its level's color (Mask and
    Keypoint R-CNN), box in that color, tab ``"class score"``."""
    colors = level_colors(dets.levels)
    if dets.masks is not None and len(dets):
        image = tint_masks(image, dets.masks.numpy(), colors)
    if dets.keypoints is not None and len(dets):
        image = draw_keypoints(image, dets.keypoints.numpy(), colors)
    labels = [f"{name} {float(score):.2f}" for name, score in zip(dets.names, dets.scores, strict=True)]
    return panels.draw_boxes(image, dets.boxes.tolist(), colors, labels)


def draw_proposals(image: np.ndarray, dets: Detections) -> np.ndarray:
    """The image with each level's top RPN proposals, thin, in the level's color."""
    boxes: list[list[float]] = []
    levels: list[str] = []
    for level, props in dets.proposals.items():  # fine levels first: drawn last, on top
        boxes += props.boxes.tolist()
        levels += [level] * int(props.boxes.shape[0])
    return panels.draw_boxes(image, boxes, level_colors(levels), width=max(1, panels.line_width(image) - 1))


def draw_anchors(image: np.ndarray, dets: Detections) -> np.ndarray:
    """Each level's smallest square anchor (ratio 1), centred on the image, in image pixels and level colors."""
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    boxes, levels = [], []
    for level, anchors in dets.anchors.items():
        side = anchors.sizes[0] / dets.input_scale
        boxes.append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        levels.append(level)
    return panels.draw_boxes(image, boxes, level_colors(levels))


def legend_markdown(levels: Sequence[str], values: Mapping[str, object], what: str = "detections") -> str:
    """One line per level: its color square, name, stride and value (HTML for the color)."""
    lines = []
    for level in levels:
        square = f'<span style="color:{hex_color(level)};font-size:1.3em">■</span>'
        lines.append(f"{square} **{level}** · stride {stride_of(level)} · {values.get(level, 0)} {what}")
    return "  \n".join(lines)


# ----------------------------------------------------------------------------- tables


def detection_rows(dets: Detections) -> list[dict[str, object]]:
    """One row per detection: class, score, size, the level used and the paper's k for that size."""
    rows = []
    for row in dets.as_dict()["detections"]:
        rows.append(
            {
                "class": row["class"],
                "score": round(float(row["score"]), 3),
                "size √(wh) px": round(float(row["size"]), 1),
                "input size px": round(float(row["input_size"]), 1),
                "level": row["level"],
                "paper k": int(row["paper_k"]),
                "rule agrees": "✓" if row["level"] == level_name(row["paper_k"]) else "✗",
            }
        )
    return rows


def _stride_text(level: str, actual: int) -> str:
    """``"64 px"``, or ``"64 px (61 on this input)"`` where torchvision's padded size // map size differs."""
    nominal = stride_of(level)
    return f"{nominal} px" if actual == nominal else f"{nominal} px ({actual} on this input)"


def anchor_rows(dets: Detections) -> list[dict[str, object]]:
    """One row per level: stride, anchor sizes and ratios, anchors per position and in all."""
    return [
        {
            "level": level,
            "stride": _stride_text(level, a.stride[1]),
            "anchor sizes (px)": ", ".join(f"{s:g}" for s in a.sizes),
            "aspect ratios (h/w)": ", ".join(f"{r:g}" for r in a.aspect_ratios),
            "anchors per position": a.per_position,
            "anchors on this input": a.count,
        }
        for level, a in dets.anchors.items()
    ]


def rule_rows() -> list[dict[str, object]]:
    """The paper's rule as ranges of box size per level (k clamped to 2..5)."""
    return [
        {"level": "p2", "box size √(wh) in input px": f"below {CANONICAL_SIZE // 2}"},
        {"level": "p3", "box size √(wh) in input px": f"{CANONICAL_SIZE // 2} to {CANONICAL_SIZE}"},
        {"level": "p4", "box size √(wh) in input px": f"{CANONICAL_SIZE} to {CANONICAL_SIZE * 2}"},
        {"level": "p5", "box size √(wh) in input px": f"{CANONICAL_SIZE * 2} and above"},
    ]


def training_rule(dets: Detections) -> str:
    """How the detector's training assigns an object to a level (FCOS: by regression range), in words."""
    return dets.spec.family.training_rule.replace("{title}", dets.spec.title)


def regression_range_rows() -> list[dict[str, object]]:
    """FCOS's regression range per level: a location learns an object there when its largest distance
    to the box's sides falls in the range (network input pixels)."""
    return [
        {"level": level, "largest distance to the box's sides, px": f"{lo:g} to {'∞' if math.isinf(hi) else f'{hi:g}'}"}
        for level, (lo, hi) in FCOS_REGRESSION_RANGES.items()
    ]


# ----------------------------------------------------------------------------- charts


def _rule_line(lo: float = 4.0, hi: float = 1400.0, n: int = 240) -> tuple[list[float], list[int]]:
    sizes = [float(v) for v in np.geomspace(lo, hi, n)]
    return sizes, [paper_level(s, s) for s in sizes]


def level_counts_chart(counts: Mapping[str, int], what: str) -> alt.Chart:
    """Bars per level in the levels' colors (for ``st.altair_chart``)."""
    levels = list(counts)
    data = pd.DataFrame({"level": levels, what: [int(counts[k]) for k in levels]})
    scale = alt.Scale(domain=levels, range=[hex_color(k) for k in levels])
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("level:N", sort=levels, title="pyramid level"),
            y=alt.Y(f"{what}:Q", title=what),
            color=alt.Color("level:N", scale=scale, legend=None),
            tooltip=["level", what],
        )
    )
    text = bars.mark_text(dy=-6).encode(text=f"{what}:Q", color=alt.value("#333333"))
    return (bars + text).properties(height=260)


def size_level_chart(rows: Sequence[Mapping[str, object]], levels: Sequence[str]) -> alt.LayerChart:
    """Each detection's size (network input px, log) against its level k, over the paper's rule line."""
    x = alt.X(
        "size:Q",
        scale=alt.Scale(type="log", domain=[4, 1400]),
        title="box size √(wh), px in the network input (log)",
    )
    y = alt.Y(
        "k:Q",
        scale=alt.Scale(domain=[1.5, 7.5]),
        axis=alt.Axis(values=[2, 3, 4, 5, 6, 7], title="level k of p_k"),
    )
    sizes, ks = _rule_line()
    rule = (
        alt.Chart(pd.DataFrame({"size": sizes, "k": ks}))
        .mark_line(interpolate="step-after", color="#555555", strokeDash=[6, 3])
        .encode(x=x, y=y)
    )
    points_data = pd.DataFrame(
        {
            "size": [float(r["input size px"]) for r in rows],  # type: ignore[arg-type]
            "k": [stage_index(str(r["level"])) for r in rows],
            "level": [str(r["level"]) for r in rows],
            "class": [str(r["class"]) for r in rows],
            "score": [float(r["score"]) for r in rows],  # type: ignore[arg-type]
        }
    )
    scale = alt.Scale(domain=list(levels), range=[hex_color(k) for k in levels])
    points = (
        alt.Chart(points_data)
        .mark_circle(size=70, opacity=0.75)
        .encode(
            x=x,
            y=y,
            color=alt.Color("level:N", scale=scale, legend=None),
            tooltip=["class", "score", "size", "level"],
        )
    )
    return (rule + points).properties(height=260)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def level_counts_figure(counts: Mapping[str, int], *, title: str, ylabel: str) -> Figure:
    """Bars per level in the levels' colors, with the count on each bar (for the PNG download)."""
    levels = list(counts)
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    bars = ax.bar(levels, [counts[k] for k in levels], color=[hex_color(k) for k in levels])
    ax.bar_label(bars, padding=3, fontsize=11)
    ax.set_title(title, fontsize=13)
    ax.set_xlabel("pyramid level", fontsize=12)
    ax.set_ylabel(ylabel, fontsize=12)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def size_level_figure(
    sizes: Sequence[float], levels: Sequence[str], level_names: Sequence[str], *, title: str
) -> Figure:
    """Box size against level, colored by level, over the paper's rule (for the PNG download)."""
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    line_x, line_k = _rule_line()
    ax.step(line_x, line_k, where="post", color="#555555", linestyle="--", label=f"paper: {LEVEL_RULE_FLOOR}")
    for name in level_names:
        xs = [s for s, lv in zip(sizes, levels, strict=True) if lv == name]
        if xs:
            ax.scatter(xs, [stage_index(name)] * len(xs), color=hex_color(name), alpha=0.75, label=name, s=36)
    ax.set_xscale("log")
    ax.set_xlim(4, 1400)
    ax.set_ylim(1.5, 7.5)
    ax.set_yticks([2, 3, 4, 5, 6, 7], [level_name(k) for k in range(2, 8)])
    ax.set_title(title, fontsize=13)
    ax.set_xlabel("box size √(wh), px in the network input", fontsize=12)
    ax.set_ylabel("level", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")
    return fig


# ------------------------------------------------------------------------------- page


def _untrained_notice(name: str, dets: Detections) -> str:
    """Markdown: the detector is untrained, what that hides, and which files to place where (or why
    the models folder's file did not load)."""
    hidden = (
        "Its boxes, classes and scores are noise, so they are hidden unless you ask for them below; the anchors "
        "and the level rule do not depend on training and show as usual."
    )
    if name not in DETECTORS:
        why = "; ".join(dets.provenance.fallbacks) if dets.provenance is not None else ""
        return (
            f"**{detector_choices().get(name, name)} did not load: the detector is untrained.** {hidden}\n\n"
            f"**Why:** {why or 'the file could not be used'}. Replace the file in the models folder "
            f"`{models.models_dir()}`, then press **Try again**."
        )
    others = "; ".join(
        f"{spec.title} needs `{spec.weights.filename}` (about {spec.file_mb} MB, or `{spec.env}=PATH`)"
        for other, spec in DETECTORS.items()
        if other != name
    )
    return (
        f"**No COCO detector weights here: {DETECTORS[name].title} is untrained.** {hidden}\n\n"
        f"**What to place where:** {how_to_get_weights(name)} Likewise, {others}, in `{hub_checkpoint_dir()}`. "
        "Then press **Try again**."
    )


def framework_notice(name: str) -> str:
    """Markdown: an mmdetection or detectron2 file's heads are not run here, and why."""
    info = models.info_of(name)
    what = f"`{info.path.name}` is an {info.format} checkpoint ({info.title})" if info else f"`{name}`"
    return (
        f"**{what}: its detection heads are not run.** {HEADS_NOT_RUN}\n\n"
        "Choose it in the sidebar's **Weights** to see its trained ResNet-50 and FPN on every feature page "
        "(stage activations, FPN outputs, overlays, timing, receptive fields, A/B, export)."
    )


def _load(key: cache.DetectionKey, image: np.ndarray) -> Detections | None:
    """The detector's detections before a threshold (cached); errors become messages."""
    title = detector_choices().get(key.detector.name, key.detector.name)
    size = f"long side {key.size} px" if key.size else f"{DEFAULT_MIN_SIZE} px short side"

    def run() -> Detections:
        detector = cache.get_detector(key.detector)
        return cache.detections(key, image, min_score=heads_min_score(bool(detector.provenance.pretrained)))

    return loading.guarded(
        run,
        spinner=f"Running {title} at {size} (the backbone and FPN once per image, then the heads)…",
        failure="The detector could not run",
        advice="Try the sidebar's smaller size.",
    )


@st.fragment
def show_detection_page(settings: S.Settings) -> None:
    """The "Detection" page below its title; its own widgets rerun only this fragment."""
    top = st.container()  # the untrained notice goes first, once the chosen detector is known
    if settings.image is None:
        loading.choose_image_prompt()
        return
    cols = st.columns([3, 3, 4], gap="medium")
    choices = detector_choices()
    if st.session_state.get(S.KEY_DETECTOR) not in choices:  # a file that left the models folder
        st.session_state.pop(S.KEY_DETECTOR, None)
    name = cols[0].radio(
        "Detector",
        tuple(choices),
        format_func=lambda value: choices.get(value, value),
        key=S.KEY_DETECTOR,
        help="Faster R-CNN: RPN on p2..p6, RoIAlign on p2..p5. RetinaNet: one head on p3..p7 (FPN on c3..c5). "
        "Then the models folder's checkpoints, with their kind and classes.",
    )
    size_option = cols[1].radio(
        "Input size",
        (SIZE_OWN, SIZE_SIDEBAR),
        format_func={
            SIZE_OWN: f"detector's own ({DEFAULT_MIN_SIZE} px short side)",
            SIZE_SIDEBAR: f"sidebar's ({settings.size} px long side)",
        }.__getitem__,
        key=S.KEY_DETECTION_SIZE,
        help=f"torchvision resizes to a short side of {DEFAULT_MIN_SIZE} px (long side at most {DEFAULT_MAX_SIZE}).",
    )
    score = cols[2].slider(
        "Score threshold",
        0.0,
        1.0,
        DEFAULT_SCORE,
        SCORE_STEP,
        key=S.KEY_DETECTION_SCORE,
        help="Only re-filters the cached detections: no network runs when it moves.",
    )
    if size_option == SIZE_SIDEBAR:
        st.caption(
            f"The COCO detectors were trained at {DEFAULT_MIN_SIZE} px (short side). At {settings.size} px objects "
            "are smaller in the network's pixels, so they move to finer levels and trained detectors find fewer."
        )
    if models.is_framework_choice(str(name)):
        st.info(framework_notice(str(name)), icon=":material/block:")
        st.session_state.pop(S.DETECTION_SHOWN, None)
        return
    key = detection_key(settings, str(name), str(size_option))
    if key is None:
        return
    image = settings.image.array
    all_dets = _load(key, image)
    if all_dets is None:
        return
    trained = all_dets.provenance is None or bool(all_dets.provenance.pretrained)
    if not trained:
        with top:
            st.warning(_untrained_notice(key.detector.name, all_dets), icon=":material/warning:")
            if st.button("Try again", key=S.KEY_DETECTION_RETRY, help="Look for the checkpoints again."):
                cache.clear_model_caches()
                st.rerun()
    dets = filter_detections(all_dets, float(score))
    spec = all_dets.spec
    ih, iw = all_dets.input_hw
    prov = all_dets.provenance
    weights = "unknown" if prov is None else prov.backbone
    if prov is not None and prov.source not in prov.backbone:
        weights += f" ({prov.source})"
    st.caption(f"{spec.title} · network input {iw} × {ih} px · weights: {weights}")

    st.subheader("Boxes, colored by the level that found them")
    show_boxes = trained or st.toggle(
        "Draw untrained boxes (noise)",
        value=False,
        key=S.KEY_DETECTION_NOISE,
        help="The untrained detector's boxes, classes and scores are random: shown only to see the mechanics.",
    )
    if show_boxes:
        st.session_state[S.DETECTION_SHOWN] = cache.DetectionChoice(key, heads_min_score(trained), float(score))
        _show_boxes(settings, image, dets, trained)
    else:
        st.session_state.pop(S.DETECTION_SHOWN, None)
        st.info(
            "Boxes hidden: an untrained detector's boxes are noise. Turn on **Draw untrained boxes (noise)** to "
            "see them anyway (for the mechanics: which level each box comes from).",
            icon=":material/visibility_off:",
        )
    _show_objectness(settings, image, all_dets, trained, show_boxes)
    _show_anchors(settings, image, all_dets)


def _show_boxes(settings: S.Settings, image: np.ndarray, dets: Detections, trained: bool) -> None:
    """The image with its boxes, the legend, the table and the per-level charts."""
    counts = dets.count_per_level()
    noise = "" if trained else " (untrained detector: noise)"
    left, right = st.columns([3, 1], gap="large")
    with left:
        st.image(
            draw_detections(image, dets),
            width="stretch",
            caption=f"{len(dets)} detections with score ≥ {dets.score_threshold:.2f}{noise} · label: class score",
        )
        panels.download_button(
            panels.Download(
                detection_figure,
                (image, dets),
                file_name=f"detections_{dets.detector}.png",
                key=S.KEY_DETECTION_PNG,
            ),
            settings.export_scale,
        )
    with right:
        st.markdown("**Box color = level**")
        st.markdown(legend_markdown(dets.level_names, counts), unsafe_allow_html=True)
        st.caption(f"Level: {dets.spec.level_source}.")
    if not len(dets):
        st.info(f"No detection scores at least {dets.score_threshold:.2f}: lower the score threshold.")
        return
    rows = detection_rows(dets)
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "score": st.column_config.NumberColumn("score", format="%.3f"),
            "size √(wh) px": st.column_config.NumberColumn("size √(wh) px", help="In the image's pixels."),
            "input size px": st.column_config.NumberColumn(
                "input size px", help="The same size in the network input's pixels, where the paper's rule applies."
            ),
            "paper k": st.column_config.NumberColumn(
                "paper k", help=f"{LEVEL_RULE_FLOOR} on the input size, clamped to 2..5."
            ),
        },
    )
    agree = sum(1 for r in rows if r["rule agrees"] == "✓")
    st.caption(f"The level used matches the paper's rule for {agree} of {len(rows)} detections. {dets.spec.rule_note}")
    st.subheader("Detections per level")
    bars_col, scatter_col = st.columns(2, gap="large")
    with bars_col:
        st.markdown("**How many detections each level produced**")
        st.altair_chart(level_counts_chart(counts, "detections"), width="stretch")
        panels.download_button(
            panels.Download(
                level_counts_figure,
                (counts,),
                {"title": f"{dets.detector}: detections per level{noise}", "ylabel": "detections"},
                file_name=f"detections_per_level_{dets.detector}.png",
                key="download_detections_per_level",
            ),
            settings.export_scale,
        )
    with scatter_col:
        st.markdown("**Box size against level, with the paper's rule (dashed)**")
        st.altair_chart(size_level_chart(rows, dets.level_names), width="stretch")
        panels.download_button(
            panels.Download(
                size_level_figure,
                ([float(r["input size px"]) for r in rows], [str(r["level"]) for r in rows], dets.level_names),
                {"title": f"{dets.detector}: box size vs level{noise}"},
                file_name=f"detections_size_vs_level_{dets.detector}.png",
                key="download_detections_size_level",
            ),
            settings.export_scale,
        )


def _show_objectness(
    settings: S.Settings, image: np.ndarray, dets: Detections, trained: bool, show_boxes: bool
) -> None:
    """Per-level objectness overlays (own or shared color scale) and the RPN's top proposals."""
    st.subheader("Where each level sees objects")
    cols = st.columns(2)
    shared = cols[0].toggle(
        "One color scale for all levels",
        value=False,
        key=S.KEY_DETECTION_SHARED,
        help="Shared: which level is most confident. Own: where each level looks.",
    )
    is_rcnn = dets.spec.family.proposals
    proposals = cols[1].toggle(
        "Show the RPN's top proposals per level",
        value=False,
        key=S.KEY_DETECTION_PROPOSALS,
        disabled=not is_rcnn,
        help="Faster R-CNN only: RetinaNet has no region proposal network.",
    )
    what = dets.spec.objectness
    st.caption(
        f"Each level's {what} at every position, blended over the image."
        + ("" if trained else " Untrained: these maps are noise too.")
    )
    maps = dets.objectness_maps()
    ranges: dict[str, MapRange] = map_ranges(maps, "shared" if shared else "per-level")
    alpha = settings.style.alpha
    items = list(maps.items())
    for start in range(0, len(items), PER_ROW):
        row = st.columns(PER_ROW, gap="small")
        for col, (level, m) in zip(row, items[start : start + PER_ROW], strict=False):
            title = f"{level} · stride {stride_of(level)} · {m.shape[1]} × {m.shape[0]} · max {float(m.max()):.2f}"
            with col:
                panels.show_panel(
                    overlay(image, m, rng=ranges[level], alpha=alpha, colormap=OBJECTNESS_CMAP),
                    title=title,
                    scale=panels.ColorScale(OBJECTNESS_CMAP, ranges[level], "objectness"),
                    download=panels.Download(
                        overlay_figure,
                        (image, m),
                        {
                            "title": f"{dets.detector} {title}",
                            "rng": ranges[level],
                            "alpha": alpha,
                            "colormap": OBJECTNESS_CMAP,
                            "colorbar_label": "objectness",
                        },
                        file_name=f"objectness_{dets.detector}_{level}.png",
                        key=f"download_objectness_{level}",
                    ),
                    export_scale=settings.export_scale,
                )
    if not (proposals and is_rcnn):
        return
    counts = {level: p.count for level, p in dets.proposals.items()}
    left, right = st.columns([3, 1], gap="large")
    with right:
        st.markdown("**Proposals sent to the RoI heads, per level**")
        st.markdown(legend_markdown(list(counts), counts, "proposals"), unsafe_allow_html=True)
    with left:
        if not (trained or show_boxes):
            st.info("An untrained RPN's proposals are noise: turn on **Draw untrained boxes (noise)** to draw them.")
            return
        top_k = max((int(p.boxes.shape[0]) for p in dets.proposals.values()), default=0)
        panels.show_image(
            draw_proposals(image, dets),
            caption=f"The top {top_k} proposals of each level by objectness, in the level's color",
            download_name="proposals_per_level.png",
            scale=settings.export_scale,
            key="download_proposals",
        )


def _show_anchors(settings: S.Settings, image: np.ndarray, dets: Detections) -> None:
    """The anchors each level carries and the paper's level rule (neither depends on training)."""
    st.subheader("Anchors per level, and the paper's level rule")
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.dataframe(anchor_rows(dets), hide_index=True, width="stretch")
        st.caption(
            "Sizes are in network input pixels: each level's anchors are about 8 times its stride (×1, ×2^(1/3), "
            "×2^(2/3) for RetinaNet), so each level is built for one band of object sizes."
        )
        st.markdown("**The paper's rule** (FPN, eq. 1), used by RoIAlign to pick the level of a box:")
        st.latex(LEVEL_RULE_LATEX + r",\ 2 \le k \le 5")
        st.dataframe(rule_rows(), hide_index=True)
        st.caption(dets.spec.paper_rule_use)
        family = dets.spec.family
        st.markdown(f"**How {dets.spec.title} gives objects to levels in training:** " + training_rule(dets))
        if family.key == FCOS_FAMILY.key:
            st.dataframe(regression_range_rows(), hide_index=True)
    with right:
        panels.show_image(
            draw_anchors(image, dets),
            caption="Each level's smallest square anchor, centred, at the image's scale",
            download_name=f"anchors_{dets.detector}.png",
            scale=settings.export_scale,
            key="download_anchors",
        )
        sizes = {level: f"{a.sizes[0]:g} px" for level, a in dets.anchors.items()}
        st.markdown(legend_markdown(list(sizes), sizes, "anchor"), unsafe_allow_html=True)


# ------------------------------------------------------------------------------ export


def shown_choice(settings: S.Settings) -> cache.DetectionChoice | None:
    """What the Detection page last drew boxes for on the sidebar's image in this session, if anything."""
    choice = st.session_state.get(S.DETECTION_SHOWN)
    if not isinstance(choice, cache.DetectionChoice) or settings.image is None:
        return None
    return choice if choice.key.digest == settings.image.digest else None


def choice_detections(choice: cache.DetectionChoice | None, image: S.ImageChoice | None) -> Detections | None:
    """The detections of ``choice`` on ``image``, from the caches (recomputed if they were dropped).

    Returns:
        None without a choice, for another image, or when the detector fails (the export then
        stays exactly what it was before detection existed).
    """
    if choice is None or image is None or choice.key.digest != image.digest:
        return None
    try:
        dets = cache.detections(choice.key, image.array, min_score=choice.min_score)
    except Exception:  # the export goes on without them; the log keeps why
        log.exception("detections for the export failed")
        return None
    return filter_detections(dets, choice.score)
