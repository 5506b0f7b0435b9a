"""The FPN step-by-step page: each level's c_k -> lateral 1×1 -> top-down -> merge -> 3×3 -> p_k.

The models run through ``ui.cache`` (shared backbone, activations and FPN results), and every
panel goes through ``ui.panels`` so it has a PNG download at the export resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import streamlit as st
import torch

from fpn_core import ABLATIONS
from fpn_core.figures import maps_row_figure, step_row_figure
from fpn_core.levels import level_above, level_below, level_of, stage_of, stride_of
from fpn_core.maps import MapRange, MapStyle, map_range
from fpn_core.paper import ANCHOR_SIZES, TABLE1, ablation_label, ablation_note
from ui import cache, loading, panels
from ui import settings as S


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


def _shape_line(name: str, tensor: torch.Tensor, stride: int) -> str:
    c, h, w = (int(s) for s in tensor.shape[-3:])
    return f"**{name}** · {c} × {h} × {w} · stride {stride} · {c} channels"


def level_panels(analysis: cache.Analysis, level: str, aggregation: str) -> list[StepPanel]:
    """The five panels of one level: c_k, lateral 1×1, top-down, merged, 3×3 output p_k.

    Args:
        analysis: the cached analysis (its configuration says upsampling, merge and ablation).
        level: ``p2..p5``.
        aggregation: channel aggregation of the maps.

    Returns:
        Five panels, left to right; missing steps carry the sentence that explains why.
    """
    config = analysis.model.config
    step = analysis.output.steps[level]
    stage = stage_of(level)
    stride = stride_of(level)
    c_in = analysis.output.stages[stage]
    maps = loading.step_maps(analysis, level, aggregation)
    stage_map = loading.stage_maps(analysis, MapStyle(aggregation=aggregation))[0][stage]
    top = level == level_of(config.stages[-1])
    above = level_above(level)
    op = "+" if config.merge == "sum" else "mean of"
    panels = [
        StepPanel(
            f"{stage} (backbone)",
            stage_map,
            "",
            _shape_line(stage, c_in, stride) + ": the last residual block of a ResNet-50 stage (after ReLU). "
            "Precise positions, weaker semantics at fine levels.",
        )
    ]
    if step.lateral is not None:
        panels.append(
            StepPanel(
                "lateral 1×1",
                maps["lateral"],
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
                f"map from above, so fine detail is lost (paper: AR1k {TABLE1['no-lateral'].ar}).",
            )
        )
    if step.top_down is not None:
        panels.append(
            StepPanel(
                f"top-down from {above} ↑2×",
                maps["top_down"],
                "",
                _shape_line("top-down", step.top_down, stride)
                + f": the merged map of {above} (before its 3×3) upsampled 2× with {config.upsample} "
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
                f"a bottom-up feature on its own (paper: AR1k {TABLE1['no-top-down'].ar}).",
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
            maps["merged"],
            "",
            _shape_line("merged", step.merged, stride) + f": the input of the 3×3; here it {merged_what}.",
        )
    )
    if step.output is not None:
        panels.append(
            StepPanel(
                f"{level} = 3×3 conv",
                maps["output"],
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
                f"(paper, P2 only: AR1k {TABLE1['finest-only'].ar}).",
            )
        )
    return panels


def p6_explanation(analysis: cache.Analysis) -> tuple[str, str, bool] | None:
    """The extra level and the level it subsamples, and whether it equals every second cell.

    Returns:
        ``(extra, below, exact)``, or None when the pyramid has no extra level.
    """
    inputs = {level_of(s) for s in analysis.model.config.stages}
    extra = [name for name in analysis.output.levels if name not in inputs]
    if not extra:
        return None
    name = extra[0]
    below = level_below(name)
    levels = analysis.output.levels
    exact = below in levels and torch.equal(levels[name], levels[below][..., ::2, ::2])
    return name, below, bool(exact)


@st.fragment
def show_step_by_step_page(settings: S.Settings) -> None:
    """The "FPN step by step" page below its title; its own controls rerun only this fragment."""
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    ablation = str(
        left.selectbox(
            "Ablation (FPN paper, Table 1)", tuple(ABLATIONS), format_func=ablation_label, key=S.KEY_STEPS_ABLATION
        )
    )
    per_panel = right.toggle(
        "Per-panel color scale",
        key=S.KEY_STEPS_PER_PANEL,
        help="Off: one color scale across each row, so the panels compare. On: each panel on its own scale.",
    )
    st.caption(
        ablation_note(ablation) + " With one color scale per row, c_k (after ReLU, often larger values) can "
        "dominate; switch on per-panel scaling to see the pattern inside each panel."
    )
    analysis = loading.load_analysis(settings, replace(settings.config, ablation=ablation))
    if analysis is None:
        return
    style, label = settings.style, settings.aggregation_label
    for level in reversed(list(analysis.output.steps)):
        step_panels = level_panels(analysis, level, style.aggregation)
        present = [p.map for p in step_panels if p.map is not None]
        rngs: MapRange | list[MapRange | None] = (
            [map_range([p.map]) if p.map is not None else None for p in step_panels]
            if per_panel
            else map_range(present)
        )
        scales = (
            panels.ColorScale(style.colormap, rngs, label)
            if isinstance(rngs, MapRange)
            else [panels.ColorScale(style.colormap, r, label) if r is not None else None for r in rngs]
        )
        st.subheader(f"{level} · stride {stride_of(level)} · from {stage_of(level)}")
        panels.show_row(
            [
                (p.title, panels.map_image(p.map, _scale_at(scales, i)) if p.map is not None else None, p.missing)
                for i, p in enumerate(step_panels)
            ],
            scales=scales,
            captions=[p.caption for p in step_panels],
        )
        panels.download_button(
            panels.Download(
                step_row_figure,
                ([(p.title, p.map, p.missing) for p in step_panels],),
                {
                    "rngs": rngs,
                    "colormap": style.colormap,
                    "suptitle": f"{stage_of(level)} → {level}: {label}, "
                    + ("each panel on its own scale" if per_panel else "one color scale for the row"),
                    "colorbar_label": label,
                },
                file_name=f"step_{level}_{ablation}.png",
                key=f"download_step_{level}",
            ),
            settings.export_scale,
        )
    _show_p6(analysis, settings)


def _scale_at(scales: panels.ColorScale | list[panels.ColorScale | None], i: int) -> panels.ColorScale:
    scale = scales if isinstance(scales, panels.ColorScale) else scales[i]
    assert scale is not None  # a present map always has a range
    return scale


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
        f"the region proposal network for the largest anchors ({ANCHOR_SIZES[-1]}²). torchvision writes it as "
        '`F.max_pool2d(x, kernel_size=1, stride=2)`; with a 1×1 window the "max" is over a single value, so it '
        "just keeps every second row and column. "
        + (
            f"Checked on this image: {name} equals {below}[..., ::2, ::2] exactly."
            if exact
            else f"On this image {name} is not exactly every second cell of {below}."
        )
    )
    style, label = settings.style, settings.aggregation_label
    maps, _ = loading.level_maps(analysis, style)
    pair = [(f"{n} (stride {stride_of(n)})", maps[n]) for n in (below, name)]
    scale = panels.ColorScale(style.colormap, map_range([m for _, m in pair]), label)
    left, _ = st.columns([3, 2])
    with left:
        panels.show_row([(title, panels.map_image(m, scale), "") for title, m in pair], scales=scale)
        panels.download_button(
            panels.Download(
                maps_row_figure,
                (pair,),
                {
                    "rngs": scale.rng,
                    "colormap": style.colormap,
                    "suptitle": f"{below} and its subsampling {name}, one color scale",
                    "colorbar_label": label,
                },
                file_name=f"{name}_subsampling.png",
                key="download_p6",
            ),
            settings.export_scale,
        )
