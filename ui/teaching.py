"""Renderers of the teaching pages: FPN step by step, A/B comparison, scale probe, export.

Each ``show_*_page`` draws one page below its title; the page files only call them. The
models run through ``ui.cache`` (shared backbone, activations and FPN results), and every
figure goes through ``views.show_figure`` so it has a PNG download at the export resolution.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

from fpn_core import ABLATIONS, FPN_STAGES, MERGE_MODES, UPSAMPLE_MODES, WEIGHT_CHOICES, PyramidConfig
from fpn_core.compare import PRESETS, compare_levels
from fpn_core.figures import line_figure, maps_row_figure
from fpn_core.images import Box
from fpn_core.levels import stage_of, stride_of, validate_stages
from fpn_core.maps import MapRange, map_range
from fpn_core.probe import assign_level_k, box_responses, scale_boxes, stride_grid
from fpn_core.weights import COCO, how_to_place
from ui import cache, views
from ui import state as S

# ---------------------------------------------------------------------------- paper facts

#: FPN paper, Table 1 (ResNet-50, COCO minival, region proposals): AR with 1000 proposals,
#: overall and for small objects, per ablation of ``fpn_core.fpn.ABLATIONS``.
PAPER_AR: dict[str, tuple[str, float, float]] = {
    "full": ("FPN", 56.3, 44.9),
    "no-top-down": ("bottom-up pyramid only (no top-down)", 49.5, 30.5),
    "no-lateral": ("top-down without lateral connections", 46.1, 26.5),
    "finest-only": ("P2 only (finest level, no pyramid)", 51.3, 35.1),
}
#: The paper's single-map baseline, for context.
PAPER_BASELINE = ("single c4 feature map", 48.3, 32.0)
PAPER_SOURCE = "FPN paper (Lin et al., CVPR 2017), Table 1: ResNet-50 RPN on COCO minival, AR with 1000 proposals"


def ablation_label(name: str) -> str:
    """``"no-top-down — AR1k 49.5 (paper)"``: an ablation with its paper number."""
    _, ar, _ = PAPER_AR[name]
    return f"{name} — AR1k {ar} (paper)"


def ablation_note(name: str) -> str:
    """What an ablation does and what the paper measured for it."""
    setting, ar, small = PAPER_AR[name]
    return (
        f"{ABLATIONS[name]}. Paper, Table 1 ({setting}): AR1k **{ar}**, small objects **{small}** "
        f"(single c4 map: {PAPER_BASELINE[1]} / {PAPER_BASELINE[2]})."
    )


def paper_table() -> list[dict[str, object]]:
    """Table 1 of the paper as rows, the ablations this app can run marked with their names."""
    rows: list[dict[str, object]] = [
        {"setting": PAPER_BASELINE[0], "ablation here": "—", "AR1k": PAPER_BASELINE[1], "AR1k small": PAPER_BASELINE[2]}
    ]
    for name, (setting, ar, small) in PAPER_AR.items():
        rows.append({"setting": setting, "ablation here": name, "AR1k": ar, "AR1k small": small})
    return rows


# ------------------------------------------------------------------------- step by step

STEP_PT = 12


@dataclass(frozen=True)
class StepPanel:
    """One panel of a step-by-step row.

    Attributes:
        title: short panel title, e.g. ``"lateral 1×1"``.
        map: the channel-reduced map, or None when the step does not exist (``missing`` says why).
        missing: text shown in place of a missing map.
        caption: markdown under the panel: shape, stride, channels and what the step does.
    """

    title: str
    map: np.ndarray | None
    missing: str
    caption: str


def step_row_figure(
    panels: Sequence[tuple[str, np.ndarray | None, str]],
    *,
    rngs: MapRange | Sequence[MapRange | None],
    cmap: str,
    suptitle: str,
    colorbar_label: str,
) -> Figure:
    """One pyramid level's pipeline as panels; a missing step shows its explanation as text.

    Args:
        panels: ``(title, map or None, text for a missing map)`` per panel, left to right.
        rngs: one range for all panels (one colour bar, colours compare across the row) or
            one per panel (None for a missing map).
        cmap: matplotlib colour map name.
        suptitle: title over the row.
        colorbar_label: what the shared colour bar measures.

    Returns:
        The figure (``matplotlib.figure.Figure``, no pyplot).
    """
    shared = isinstance(rngs, MapRange)
    ranges = [rngs] * len(panels) if shared else list(rngs)
    shapes = [np.shape(m) for _, m, _ in panels if m is not None]
    aspect = max((w / h for h, w in shapes), default=1.0)
    panel_w = 3.0
    fig = Figure(figsize=(panel_w * len(panels) + (1.0 if shared else 0.3), panel_w / aspect + 1.5), facecolor="white")
    fig.set_layout_engine("constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, map_, missing), rng in zip(axes, panels, ranges, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=STEP_PT + 1)
        if map_ is None or rng is None:
            ax.set_facecolor("#F1F4F8")
            for spine in ax.spines.values():
                spine.set_edgecolor("#C5CCD6")
                spine.set_linestyle("--")
            ax.text(0.5, 0.5, missing, ha="center", va="center", fontsize=STEP_PT, wrap=True, color="#1F2933")
            ax.set_box_aspect(1 / aspect)
            continue
        ax.imshow(map_, cmap=cmap, vmin=rng.vmin, vmax=rng.vmax, interpolation="nearest")
        h, w = np.shape(map_)
        ax.set_xlabel(f"{w} × {h} cells", fontsize=STEP_PT - 1)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if not shared:
            bar = fig.colorbar(
                ScalarMappable(norm=Normalize(rng.vmin, rng.vmax), cmap=cmap), ax=ax, orientation="horizontal", pad=0.03
            )
            bar.ax.tick_params(labelsize=STEP_PT - 2)
            bar.ax.xaxis.set_major_locator(MaxNLocator(3))
    if shared:
        bar = fig.colorbar(
            ScalarMappable(norm=Normalize(rngs.vmin, rngs.vmax), cmap=cmap),  # type: ignore[union-attr]
            ax=list(axes),
            shrink=0.85,
            pad=0.01,
        )
        bar.set_label(colorbar_label, fontsize=STEP_PT)
        bar.ax.tick_params(labelsize=STEP_PT - 1)
    fig.suptitle(suptitle, fontsize=STEP_PT + 3)
    return fig


def _shape_line(name: str, tensor: torch.Tensor, stride: int) -> str:
    c, h, w = (int(s) for s in tensor.shape[-3:])
    return f"**{name}** · {c} × {h} × {w} · stride {stride} · {c} channels"


def level_panels(analysis: cache.Analysis, level: str, reduction: str) -> list[StepPanel]:
    """The five panels of one level: c_k, lateral 1×1, top-down, merged, 3×3 output p_k.

    Args:
        analysis: the cached analysis (its configuration says upsampling, merge and ablation).
        level: ``p2..p5``.
        reduction: channel reduction of the maps.

    Returns:
        Five panels, left to right; missing steps carry the sentence that explains why.
    """
    config = analysis.model.config
    step = analysis.fpn.steps[level]
    stage = stage_of(level)
    stride = stride_of(level)
    k = int(level[1])
    c_in = analysis.backbone.stages[stage]
    reduce = views.reduce_channels
    top = level == f"p{config.stages[-1][1]}"
    op = "+" if config.merge == "sum" else "mean of"
    panels = [
        StepPanel(
            f"{stage} (backbone)",
            reduce(c_in, reduction),
            "",
            _shape_line(stage, c_in, stride) + ": the last residual block of a ResNet-50 stage (after ReLU). "
            "Precise positions, weaker semantics at fine levels.",
        )
    ]
    if step.lateral is not None:
        panels.append(
            StepPanel(
                "lateral 1×1",
                reduce(step.lateral, reduction),
                "",
                _shape_line("lateral", step.lateral, stride)
                + f": a 1×1 conv maps {int(c_in.shape[1])} channels to d = {config.out_channels}, so the level "
                "can be added to the map from above (no non-linearity).",
            )
        )
    else:
        panels.append(
            StepPanel(
                "lateral 1×1",
                None,
                "no lateral:\nthe ablation drops\nthe 1×1 connection",
                f"**lateral** · none: with *no-lateral*, {stage} never enters; the level only receives the upsampled "
                "map from above, so fine detail is lost (paper: AR1k 46.1).",
            )
        )
    if step.top_down is not None:
        panels.append(
            StepPanel(
                f"top-down from p{k + 1} ↑2×",
                reduce(step.top_down, reduction),
                "",
                _shape_line("top-down", step.top_down, stride)
                + f": the merged map of p{k + 1} (before its 3×3) upsampled 2× with {config.upsample} "
                "interpolation to this size: coarse, semantically strong features come down.",
            )
        )
    elif top:
        panels.append(
            StepPanel(
                "top-down input",
                None,
                "no top-down input:\nthis is the top\nof the pyramid",
                f"**top-down** · no top-down input: this is the top of the pyramid ({level}); nothing comes "
                "down from above, so the merged map is the lateral alone.",
            )
        )
    else:
        panels.append(
            StepPanel(
                "top-down input",
                None,
                "no top-down input:\nthe ablation removes\nthe top-down path",
                "**top-down** · no top-down input: the ablation removes the top-down path, so every level is "
                "a bottom-up feature on its own (paper: AR1k 49.5).",
            )
        )
    merged_what = (
        "equals the lateral (nothing to merge)"
        if step.top_down is None
        else "is the upsampled map alone (no lateral)"
        if step.lateral is None
        else f"is lateral {op} top-down: fine localisation from {stage} plus meaning from above"
    )
    panels.append(
        StepPanel(
            f"merged ({config.merge})",
            reduce(step.merged, reduction),
            "",
            _shape_line("merged", step.merged, stride) + f": the input of the 3×3; here it {merged_what}.",
        )
    )
    if step.output is not None:
        panels.append(
            StepPanel(
                f"{level} = 3×3 conv",
                reduce(step.output, reduction),
                "",
                _shape_line(level, step.output, stride) + ": a 3×3 conv on the merged map; the paper says it "
                '"reduces the aliasing effect of upsampling" (nearest upsampling leaves 2×2 blocks).',
            )
        )
    else:
        panels.append(
            StepPanel(
                f"{level} output",
                None,
                "no output:\nonly the finest level\nis kept",
                f"**{level}** · none: *finest-only* keeps the top-down path but outputs only the finest level "
                "(paper, P2 only: AR1k 51.3).",
            )
        )
    return panels


def p6_explanation(analysis: cache.Analysis) -> tuple[str, str, bool] | None:
    """The extra level and the level it subsamples, and whether it equals every second cell.

    Returns:
        ``(extra, below, exact)``, or None when the pyramid has no extra level.
    """
    inputs = {f"p{s[1]}" for s in analysis.model.config.stages}
    extra = [name for name in analysis.fpn.levels if name not in inputs]
    if not extra:
        return None
    name = extra[0]
    below = f"p{int(name[1]) - 1}"
    levels = analysis.fpn.levels
    exact = below in levels and torch.equal(levels[name], levels[below][..., ::2, ::2])
    return name, below, bool(exact)


def show_step_by_step_page(settings: S.Settings) -> None:
    """The "FPN step by step" page below its title."""
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    ablation = left.selectbox(
        "Ablation (FPN paper, Table 1)",
        tuple(ABLATIONS),
        format_func=ablation_label,
        key=S.KEY_STEPS_ABLATION,
        persist_state="session",
    )
    per_panel = right.toggle(
        "Per-panel colour scale",
        key=S.KEY_STEPS_PER_PANEL,
        persist_state="session",
        help="Off: one colour scale across each row, so the panels compare. On: each panel on its own scale.",
    )
    st.caption(
        ablation_note(str(ablation)) + " With one colour scale per row, c_k (after ReLU, often larger values) can "
        "dominate; switch on per-panel scaling to see the pattern inside each panel."
    )
    analysis = views.load_analysis(settings, settings.config(ablation=str(ablation)))
    if analysis is None:
        return
    config = analysis.model.config
    for level in reversed(list(analysis.fpn.steps)):
        panels = level_panels(analysis, level, settings.reduction)
        present = [p.map for p in panels if p.map is not None]
        rngs: MapRange | list[MapRange | None] = (
            [map_range([p.map]) if p.map is not None else None for p in panels] if per_panel else map_range(present)
        )
        st.subheader(f"{level} · stride {stride_of(level)} · from {stage_of(level)}")
        views.show_figure(
            step_row_figure,
            [(p.title, p.map, p.missing) for p in panels],
            rngs=rngs,
            cmap=settings.colormap,
            suptitle=f"{stage_of(level)} → {level}: {settings.reduction_label}, "
            + ("each panel on its own scale" if per_panel else "one colour scale for the row"),
            colorbar_label=settings.reduction_label,
            spec=views.figure_spec(settings, analysis, "step-row", config, level, bool(per_panel)),
            download_name=f"step_{level}_{config.ablation}.png",
            key=f"download_step_{level}",
        )
        for col, panel in zip(st.columns(len(panels)), panels, strict=True):
            col.caption(panel.caption)
    _show_p6(analysis, settings)


def _show_p6(analysis: cache.Analysis, settings: S.Settings) -> None:
    """The extra level: a stride-2 subsampling written as max_pool2d with kernel 1."""
    found = p6_explanation(analysis)
    st.subheader("The extra level p6")
    if found is None:
        if analysis.model.config.ablation == "finest-only":
            st.markdown("With *finest-only* there is no extra level: only the finest level is output.")
        else:
            st.markdown("p6 is off (sidebar: *Add p6*). Turn it on to see how it is made.")
        return
    name, below, exact = found
    st.markdown(
        f"**{name}** is not computed by a convolution: it is a stride-2 **subsampling** of {below}, used only by "
        "the region proposal network for the largest anchors (512²). torchvision writes it as "
        '`F.max_pool2d(x, kernel_size=1, stride=2)`; with a 1×1 window the "max" is over a single value, so it '
        "just keeps every second row and column. "
        + (
            f"Checked on this image: {name} equals {below}[..., ::2, ::2] exactly."
            if exact
            else f"On this image {name} is not exactly every second cell of {below}."
        )
    )
    levels = analysis.fpn.levels
    maps = [
        (f"{n} (stride {stride_of(n)})", views.reduce_channels(levels[n], settings.reduction)) for n in (below, name)
    ]
    left, _ = st.columns([3, 2])
    with left:
        views.show_figure(
            maps_row_figure,
            maps,
            rngs=map_range([m for _, m in maps]),
            cmap=settings.colormap,
            suptitle=f"{below} and its subsampling {name}, one colour scale",
            colorbar_label=settings.reduction_label,
            spec=views.figure_spec(settings, analysis, "p6", analysis.model.config),
            download_name=f"{name}_subsampling.png",
            key="download_p6",
        )


# ----------------------------------------------------------------------------- A/B page

SIDES: tuple[str, ...] = ("a", "b")
NO_PRESET = "(none: set both sides yourself)"
_AB_BASE = "_ab_base"
_FIELD_OF = {"out_channels": "width"}


def ab_key(side: str, field: str) -> str:
    """The widget key of one side's field, e.g. ``ab_a_width``."""
    return f"{S.KEY_AB_PREFIX}{side}_{field}"


def sidebar_fields(settings: S.Settings) -> dict[str, object]:
    """The A/B fields as the sidebar sets them (each side's default)."""
    return {
        "width": settings.width,
        "stages": list(settings.stages),
        "upsample": settings.upsample,
        "merge": settings.merge,
        "weights": settings.weights,
        "ablation": "full",
    }


def preset_fields(preset: str, base: Mapping[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """Side A's and B's fields for a preset of ``fpn_core.compare.PRESETS``, on top of ``base``."""
    changes_a, changes_b = PRESETS[preset]
    side_a = {**base, **{_FIELD_OF.get(k, k): v for k, v in changes_a.items()}}
    side_b = {**base, **{_FIELD_OF.get(k, k): v for k, v in changes_b.items()}}
    return side_a, side_b


def _apply_preset() -> None:
    """on_change of the preset box: write the preset's values into both sides' widgets."""
    preset = st.session_state.get(S.KEY_AB_PRESET)
    if preset not in PRESETS:
        return
    base = st.session_state.get(_AB_BASE, {})
    for side, fields in zip(SIDES, preset_fields(preset, base), strict=True):
        for field, value in fields.items():
            st.session_state[ab_key(side, field)] = value


def _side_widgets(
    side: str, base: Mapping[str, object], settings: S.Settings
) -> tuple[PyramidConfig | None, dict[str, object]]:
    """One side's widgets (defaults from the sidebar); its configuration, or None when invalid."""
    for field, value in base.items():
        st.session_state.setdefault(ab_key(side, field), value)
    common = {"persist_state": "session"}
    width = st.slider("FPN width d", S.WIDTH_MIN, S.WIDTH_MAX, step=S.WIDTH_STEP, key=ab_key(side, "width"), **common)
    stages = st.multiselect("Input stages", FPN_STAGES, key=ab_key(side, "stages"), **common)
    c1, c2 = st.columns(2)
    upsample = c1.selectbox("Upsampling", UPSAMPLE_MODES, key=ab_key(side, "upsample"), **common)
    merge = c2.selectbox("Merge", MERGE_MODES, key=ab_key(side, "merge"), **common)
    weights = st.selectbox(
        "Weights",
        WEIGHT_CHOICES,
        format_func=lambda w: S.WEIGHT_LABELS.get(w, w),
        key=ab_key(side, "weights"),
        **common,
    )
    ablation = st.selectbox(
        "Ablation", tuple(ABLATIONS), format_func=ablation_label, key=ab_key(side, "ablation"), **common
    )
    st.caption(ablation_note(str(ablation)))
    fields = {
        "width": width,
        "stages": stages,
        "upsample": upsample,
        "merge": merge,
        "weights": weights,
        "ablation": ablation,
    }
    ordered = tuple(s for s in FPN_STAGES if s in stages)
    try:
        validate_stages(ordered)
    except ValueError:
        st.error(f"Pick a contiguous run of two or more stages; {', '.join(ordered) or 'nothing'} is not.")
        return None, fields
    return (
        PyramidConfig(
            out_channels=int(width),
            stages=ordered,
            upsample=str(upsample),
            merge=str(merge),
            ablation=str(ablation),
            weights=str(weights),
            p6=settings.p6,
            device=settings.device,
        ),
        fields,
    )


def describe_config(config: PyramidConfig) -> str:
    """``"d = 256 · c2..c5 · nearest · sum · imagenet · full"``."""
    return (
        f"d = {config.out_channels} · {config.stages[0]}..{config.stages[-1]} · {config.upsample} · "
        f"{config.merge} · {config.weights} · {config.ablation}"
    )


def coco_missing_note(side: str, provenance: object, width: int) -> str:
    """Why a side that asked for the COCO FPN runs without it, and how to place the file."""
    if width != 256:
        why = f"trained FPN weights exist only at width 256 (this side has d = {width})"
    else:
        why = f"the COCO Faster R-CNN file `{COCO.filename}` was not found"
    return (
        f"**Side {side.upper()} asks for the COCO-trained FPN, but {why}.** This preset compares a trained FPN "
        f"with a random one, so it needs that file. {how_to_place(COCO)} Then press *Try again* (or restart "
        f"the app). Until then side {side.upper()} runs with "
        f"{getattr(provenance, 'backbone', 'the fallback backbone')} and a random FPN."
    )


def show_ab_page(settings: S.Settings) -> None:
    """The "A/B comparison" page below its title."""
    base = sidebar_fields(settings)
    st.session_state[_AB_BASE] = base
    st.selectbox(
        "Preset",
        (NO_PRESET, *PRESETS),
        key=S.KEY_AB_PRESET,
        on_change=_apply_preset,
        persist_state="session",
        help="Sets both sides for a classic comparison; change any widget afterwards.",
        width=420,
    )
    with st.expander("What the paper measured for each ablation (Table 1)"):
        st.dataframe(paper_table(), hide_index=True, width="content")
        st.caption(PAPER_SOURCE + ". Higher is better. The maps here show what changes, not accuracy.")
    columns = st.columns(2, gap="large", border=True)
    configs: dict[str, PyramidConfig | None] = {}
    for side, col in zip(SIDES, columns, strict=True):
        with col:
            st.subheader(f"Side {side.upper()}")
            configs[side], _ = _side_widgets(side, base, settings)
    if settings.image is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, or an upload).")
        return
    analyses: dict[str, cache.Analysis | None] = {}
    for side, col in zip(SIDES, columns, strict=True):
        config = configs[side]
        if config is None:
            analyses[side] = None
            continue
        with col:
            analysis = views.load_analysis(settings, config, banner=False)
            analyses[side] = analysis
            if analysis is None:
                continue
            prov = analysis.model.provenance
            st.caption(f"Runs: {describe_config(config)}. Weights: {prov.summary()}.")
            if config.weights == "coco-fpn" and not prov.fpn_pretrained:
                st.info(coco_missing_note(side, prov, config.out_channels), icon=":material/info:")
            elif not prov.pretrained:
                st.caption("⚠️ Random backbone weights: the maps show an untrained network.")
    a, b = analyses.get("a"), analyses.get("b")
    if a is None or b is None:
        st.warning("Both sides need a valid configuration to be compared.")
        return
    # One weights banner for the page (with Try again), for the side that lacks more.
    worst = min((a, b), key=lambda x: (x.model.provenance.pretrained, x.model.provenance.fpn_pretrained))
    views.show_provenance(worst.model.provenance, worst.model.config.out_channels)
    if a.model.config == b.model.config:
        st.info("Both sides are the same configuration, so the difference is zero: pick a preset or change one side.")
    shared_backbone = a.backbone is b.backbone
    st.caption(
        "Both sides reuse one backbone pass (same image, size, weights and device): only the FPNs differ."
        if shared_backbone
        else "The sides use different backbone weights, so each ran its own backbone."
    )
    _show_difference(settings, a, b)


def _show_difference(settings: S.Settings, a: cache.Analysis, b: cache.Analysis) -> None:
    """Maps of both sides, their standardized difference per level, and a statistics table."""
    comparisons = compare_levels(a.fpn.levels, b.fpn.levels, reduction=settings.reduction)
    st.header("Difference per level")
    if not comparisons:
        st.warning("The two sides share no pyramid level (e.g. different stages, or finest-only on one side).")
        return
    st.markdown(
        "Each level's map is reduced over channels; **B − A** is taken after standardizing each map (zero mean, "
        "unit std), so a change of width or weight scale does not swamp the change of pattern. Red: B stronger, "
        "blue: A stronger."
    )
    spec = (a.model.config, b.model.config, a.model.provenance.fpn, b.model.provenance.fpn)
    for side, analysis, maps in (("A", a, [c.a for c in comparisons]), ("B", b, [c.b for c in comparisons])):
        panels = [(f"{c.level} (stride {stride_of(c.level)})", m) for c, m in zip(comparisons, maps, strict=True)]
        rngs = map_range(maps) if settings.scope == "shared" else [map_range([m]) for m in maps]
        views.show_figure(
            maps_row_figure,
            panels,
            rngs=rngs,
            cmap=settings.colormap,
            suptitle=f"Side {side}: {describe_config(analysis.model.config)}",
            colorbar_label=settings.reduction_label,
            spec=views.figure_spec(settings, a, "ab-side", side, *spec),
            download_name=f"ab_side_{side.lower()}.png",
            key=f"download_ab_{side.lower()}",
        )
    limit = max(float(np.abs(c.difference).max()) for c in comparisons)
    limit = limit if limit > 0 else 1.0
    views.show_figure(
        maps_row_figure,
        [(f"{c.level}: B − A", c.difference) for c in comparisons],
        rngs=MapRange(-limit, limit),
        cmap="RdBu_r",
        suptitle="Standardized difference B − A per level (one symmetric scale)",
        colorbar_label="B − A (std units)",
        spec=views.figure_spec(settings, a, "ab-diff", *spec),
        download_name="ab_difference.png",
        key="download_ab_difference",
    )
    rows = [{"level": c.level, **c.stats} for c in comparisons]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            name: st.column_config.NumberColumn(name, format="%.3f")
            for name in ("A mean", "B mean", "A std", "B std", "correlation", "mean |difference| (std units)")
        },
    )
    st.caption(
        "Correlation 1: the same pattern up to scale. Mean |difference| in std units: 0 is identical, about 1.1 "
        "is unrelated patterns."
    )


# --------------------------------------------------------------------------- scale probe

PROBE_SCALES, PROBE_OWN = "Scales image (known boxes)", "Sidebar image (your boxes)"
PROBE_SOURCES: tuple[str, ...] = (PROBE_SCALES, PROBE_OWN)
BOX_COLUMNS: tuple[str, ...] = ("label", "x0", "y0", "x1", "y1")
BOX_COLOUR = (235, 90, 20)


def default_boxes(width: int, height: int) -> pd.DataFrame:
    """Two starting boxes for a user's image: the central half and a small central box."""
    cx, cy = width // 2, height // 2
    rows = [
        {"label": "centre half", "x0": width // 4, "y0": height // 4, "x1": 3 * width // 4, "y1": 3 * height // 4},
        {
            "label": "small centre",
            "x0": cx - width // 16,
            "y0": cy - height // 16,
            "x1": cx + width // 16,
            "y1": cy + height // 16,
        },
    ]
    return pd.DataFrame(rows, columns=list(BOX_COLUMNS))


def parse_boxes(
    table: pd.DataFrame | Sequence[Mapping[str, object]], width: int, height: int
) -> tuple[list[Box], list[str]]:
    """Validate boxes typed by a user, in original-image pixels.

    Args:
        table: rows with ``label, x0, y0, x1, y1`` (a DataFrame or a list of dicts).
        width: the image's width in pixels.
        height: the image's height in pixels.

    Returns:
        The valid boxes, and one message per refused row (row number and why).
    """
    rows = table.to_dict("records") if isinstance(table, pd.DataFrame) else [dict(r) for r in table]
    boxes: list[Box] = []
    problems: list[str] = []
    for i, row in enumerate(rows, start=1):
        values = [row.get(c) for c in ("x0", "y0", "x1", "y1")]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue  # an empty row the editor just added
        try:
            x0, y0, x1, y1 = (float(v) for v in values)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.append(f"Row {i}: every corner needs a number (x0, y0, x1, y1).")
            continue
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            problems.append(f"Row {i}: every corner needs a number (x0, y0, x1, y1).")
            continue
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            problems.append(
                f"Row {i}: need 0 ≤ x0 < x1 ≤ {width} and 0 ≤ y0 < y1 ≤ {height} (the image is {width} × {height} px), "
                f"got ({x0:g}, {y0:g}, {x1:g}, {y1:g})."
            )
            continue
        raw_label = row.get("label")
        label = (
            str(raw_label).strip()
            if raw_label is not None and str(raw_label).strip() not in ("", "nan", "None")
            else f"box {i}"
        )
        if any(b.label == label for b in boxes):
            label = f"{label} (row {i})"
        boxes.append(Box(label, round(x0), round(y0), round(x1), round(y1)))
    return boxes, problems


def draw_boxes(image: np.ndarray, boxes: Sequence[Box], colour: tuple[int, int, int] = BOX_COLOUR) -> np.ndarray:
    """A copy of ``image`` with each box outlined (2 px) in ``colour``."""
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(pil)
    for box in boxes:
        draw.rectangle((box.x0, box.y0, max(box.x1 - 1, box.x0), max(box.y1 - 1, box.y0)), outline=colour, width=2)
    return np.asarray(pil)


def probe_table(rows: Sequence[Mapping[str, object]], levels: Sequence[str]) -> list[dict[str, object]]:
    """One row per box: size, the paper's k and level, the strongest level, and each level's response."""
    out: dict[str, dict[str, object]] = {}
    for row in rows:
        label = str(row["box"])
        entry = out.setdefault(
            label,
            {
                "box": label,
                "size √(wh), px": round(float(row["size_px"]), 1),  # type: ignore[arg-type]
                "paper k": None,
                "paper level": row["rule_level"],
                "strongest level": row["strongest"],
                "agree": "✓" if row["rule_level"] == row["strongest"] else "✗",
            },
        )
        x0, y0, x1, y1 = row["xyxy"]  # type: ignore[misc]
        if x1 > x0 and y1 > y0:
            entry["paper k"] = assign_level_k(x1 - x0, y1 - y0)
        entry[str(row["level"])] = round(float(row["relative"]), 2)  # type: ignore[arg-type]
    return [out[k] for k in out if all(level in out[k] for level in levels)]


def show_probe_page(settings: S.Settings) -> None:
    """The "Scale probe" page below its title."""
    source = st.segmented_control(
        "Probe on", PROBE_SOURCES, default=PROBE_SCALES, key=S.KEY_PROBE_SOURCE, persist_state="session"
    )
    if source == PROBE_OWN:
        if settings.image is None:
            st.info("Choose an image in the sidebar first, then enter its boxes here.")
            return
        image, digest, name = settings.image, settings.image_digest, settings.image_name
        h, w = image.shape[:2]
        st.markdown(
            f"Enter boxes in the pixels of **{name}** as loaded ({w} × {h} px): one row per object, "
            "`x0, y0` top-left, `x1, y1` bottom-right (exclusive). Add rows at the bottom of the table."
        )
        table = st.data_editor(
            default_boxes(w, h),
            num_rows="dynamic",
            key=f"{S.KEY_PROBE_BOXES}_{digest[:12]}",
            column_config={
                "label": st.column_config.TextColumn("label"),
                **{c: st.column_config.NumberColumn(c, min_value=0, step=1, format="%d") for c in BOX_COLUMNS[1:]},
            },
            width=620,
        )
        boxes, problems = parse_boxes(table, w, h)
        for problem in problems:
            st.warning(problem)
    else:
        loaded = cache.load_scales()
        image, digest = loaded.image, loaded.digest
        boxes = list(cache.scales_boxes())
        st.markdown(
            "The synthetic **scales** image: one target shape at 32, 64, 128 and 256 px (boxes known exactly). "
            "Its shapes double in size from left to right, so by the paper's rule each should move one level up."
        )
    if not boxes:
        st.info("No valid box to probe yet.")
        return
    analysis = views.load_analysis(settings, settings.config(), image=image, digest=digest)
    if analysis is None:
        return
    net_image = analysis.backbone.image
    scaled = scale_boxes(boxes, image.shape[:2], net_image.shape[:2])
    levels = analysis.fpn.levels
    rows = box_responses(levels, scaled, net_image.shape[:2], reduction=settings.reduction)
    table = probe_table(rows, list(levels))
    nh, nw = net_image.shape[:2]
    st.subheader("Which level responds most strongly inside each object?")
    st.latex(r"k = \left\lfloor 4 + \log_2\!\left(\sqrt{w h}\,/\,224\right) \right\rfloor")
    st.caption(
        f"The paper's rule (eq. 1), clamped to the levels present among p2..p5. Sizes are in the pixels of the "
        f"network input ({nw} × {nh} px; the boxes were scaled from the image). Per-level columns: mean response "
        "inside the box in standard deviations above that level's average (comparable across levels)."
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "agree": st.column_config.TextColumn("rule = strongest?"),
            **{level: st.column_config.NumberColumn(f"{level} response", format="%.2f") for level in levels},
        },
    )
    left, right = st.columns([3, 2], gap="large")
    with right:
        agree = sum(1 for r in table if r["agree"] == "✓")
        st.markdown(f"The strongest level matches the paper's rule for **{agree} of {len(table)}** boxes.")
        st.markdown(
            "**Reading the table:** *paper k* is the rule before clamping; *paper level* clamps it to the levels "
            "present. Small objects should peak on fine levels (p2, p3), large ones on coarse levels. "
            "The paper's 224 refers to ImageNet images, so on a small network input most boxes fall to the "
            "finest level."
        )
        if not analysis.model.provenance.pretrained:
            st.caption("With random weights the responses reflect image statistics, not learned object features.")
    with left:
        order = sorted(range(len(table)), key=lambda i: float(table[i]["size √(wh), px"]))  # type: ignore[arg-type]
        sizes = [float(table[i]["size √(wh), px"]) for i in order]  # type: ignore[arg-type]
        series = {level: [float(table[i][level]) for i in order] for level in levels}  # type: ignore[arg-type]
        views.show_figure(
            line_figure,
            sizes,
            series,
            title="Response per level vs object size",
            xlabel="object size √(w·h), px in the network input",
            ylabel="response (std above level mean)",
            logx=len(set(sizes)) == len(sizes) and min(sizes) > 0,
            spec=views.figure_spec(settings, analysis, "probe-lines", analysis.model.config, digest, tuple(scaled)),
            download_name="probe_response_vs_size.png",
            key="download_probe_lines",
        )
    _show_stride_grids(analysis, scaled)


def _show_stride_grids(analysis: cache.Analysis, boxes: Sequence[Box]) -> None:
    """One image per level with its stride grid (one cell per feature-map position) and the boxes."""
    st.subheader("What stride means: one cell per feature-map position")
    st.caption(
        "Each grid cell is one position of the level's feature map; coarse levels see the image in big cells. "
        "Boxes in orange."
    )
    net_image = analysis.backbone.image
    with_boxes = draw_boxes(net_image, boxes)
    levels = list(analysis.fpn.levels.items())
    per_row = 2
    for start in range(0, len(levels), per_row):
        cols = st.columns(per_row, gap="medium")
        for col, (name, tensor) in zip(cols, levels[start : start + per_row], strict=False):
            fh, fw = (int(s) for s in tensor.shape[-2:])
            stride = stride_of(name)
            grid = stride_grid(with_boxes, stride, feature_hw=(fh, fw), color=(255, 255, 255), alpha=0.75)
            with col:
                views.show_image(
                    grid,
                    caption=f"{name} · stride {stride} · grid {fw} × {fh} = {fw * fh} cells",
                    download_name=f"stride_grid_{name}.png",
                    key=f"download_grid_{name}",
                )


# -------------------------------------------------------------------------------- export


def export_settings(settings: S.Settings) -> dict[str, object]:
    """``build_export``'s keyword arguments from the sidebar."""
    return {
        "cmap": settings.colormap,
        "alpha": settings.alpha,
        "reduction": settings.reduction,
        "scope": settings.scope,
        "scale": float(settings.export_scale),
        "source": settings.image_name or None,
    }


def export_bundle(settings: S.Settings, analysis: cache.Analysis) -> cache.ExportBundle:
    """The cached "Export all" bundle for the current analysis and sidebar."""
    options = export_settings(settings)
    spec = views.figure_spec(settings, analysis, "export", analysis.model.config, tuple(sorted(options.items())))
    return cache.get_export(spec, options, analysis)


def export_file_name(settings: S.Settings) -> str:
    """``"fpn_export_chelsea_d256_512px_2x.zip"``."""
    stem = "".join(c if c.isalnum() else "_" for c in (settings.image_name or "image").rsplit(".", 1)[0])[:40]
    return f"fpn_export_{stem}_d{settings.width}_{settings.size}px_{settings.export_scale}x.zip"


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
    analysis = views.load_analysis(settings)
    if analysis is None:
        return
    with st.spinner(f"Rendering every map and overlay at {settings.export_scale}× (cached afterwards)…"):
        bundle = export_bundle(settings, analysis)
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
    cols[1].metric("Files", len(bundle.files))
    cols[2].metric("Zip size", f"{len(bundle.archive) / 2**20:.1f} MB")
    cols[3].metric("Resolution", f"{settings.export_scale}× ({100 * settings.export_scale} dpi)")
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
    st.download_button(
        "Export all (zip)",
        lambda: export_bundle(settings, analysis).archive,
        file_name=export_file_name(settings),
        mime="application/zip",
        key=S.KEY_OVERLAY_ZIP,
        on_click="ignore",
        icon=":material/folder_zip:",
        help="Input, every map and overlay, a slide and metadata.json; see the Export page for the list.",
    )


def zip_names(archive: bytes) -> list[str]:
    """The file names in a zip (for checks and captions)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return zf.namelist()
