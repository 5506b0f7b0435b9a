"""The FPN step-by-step page: each level's c_k -> lateral 1×1 -> top-down -> merge -> 3×3 -> p_k.

The models run through ``ui.cache`` (shared backbone, activations and FPN results); each
panel's title and prose come from the lesson table (``fpn_core.lesson``), and every row goes
through ``ui.panels`` so it has a PNG download at the export resolution. The FPN outputs page
shows the same rows (:func:`show_level_row`) without the merged map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import streamlit as st
import torch

from fpn_core import ABLATIONS
from fpn_core.lesson import STEPS, level_lesson, p6_prose
from fpn_core.levels import level_below, level_of, stage_of, stride_of
from fpn_core.maps import MapStyle, map_range
from fpn_core.paper import ablation_label, ablation_note
from ui import cache, loading, panels
from ui import settings as S


@dataclass(frozen=True)
class StepPanel:
    """One panel of a step-by-step row: a lesson panel (``fpn_core.lesson``) and its map.

    Attributes:
        step: which step (``fpn_core.lesson.STEPS``).
        title: short panel title, e.g. ``"lateral 1×1"``.
        map: the channel-reduced map, or None when the step does not exist (``missing`` says why).
        missing: text shown in place of a missing map.
        caption: markdown under the panel: shape, stride, channels and what the step does.
    """

    step: str
    title: str
    map: np.ndarray | None
    missing: str
    caption: str


def level_panels(analysis: cache.Analysis, level: str, aggregation: str) -> list[StepPanel]:
    """The five panels of one level (``fpn_core.lesson.level_lesson``) with their reduced maps.

    Args:
        analysis: the cached analysis (its configuration says upsampling, merge and ablation).
        level: ``p2..p5``.
        aggregation: channel aggregation of the maps.

    Returns:
        Five panels, left to right; missing steps carry the sentence that explains why.
    """
    stage = stage_of(level)
    out = analysis.output
    maps = {
        **loading.step_maps(analysis, level, aggregation),
        "stage": loading.stage_maps(analysis, MapStyle(aggregation=aggregation))[0][stage],
    }
    lesson = level_lesson(level, out.stages[stage], out.steps[level], analysis.model.config)
    return [
        StepPanel(p.step, p.title, maps[p.step] if p.tensor is not None else None, p.missing, p.caption) for p in lesson
    ]


def show_level_row(
    analysis: cache.Analysis,
    level: str,
    settings: S.Settings,
    *,
    steps: Sequence[str] = STEPS,
    per_panel: bool,
    file_name: str,
    key: str | None = None,
) -> None:
    """One level's row of step panels, captioned from the lesson table, with its PNG download.

    Args:
        analysis: the cached analysis.
        level: ``p2..p5``.
        settings: the sidebar settings (map style, export resolution).
        steps: which of ``fpn_core.lesson.STEPS`` to show, left to right.
        per_panel: each panel on its own color scale; else one scale for the row.
        file_name: the download's file name.
        key: the download button's key.
    """
    style, label = settings.style, settings.aggregation_label
    row = [p for p in level_panels(analysis, level, style.aggregation) if p.step in steps]
    if per_panel:
        rngs = [map_range([p.map]) if p.map is not None else None for p in row]
    else:
        shared = map_range([p.map for p in row if p.map is not None])
        rngs = [shared if p.map is not None else None for p in row]
    panels.show_maps_row(
        [(p.title, p.map, p.missing) for p in row],
        [panels.ColorScale(style.colormap, r, label) if r is not None else None for r in rngs],
        suptitle=f"{stage_of(level)} → {level}: {label}, "
        + ("each panel on its own scale" if per_panel else "one color scale for the row"),
        file_name=file_name,
        export_scale=settings.export_scale,
        key=key,
        captions=[p.caption for p in row],
    )


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
    for level in reversed(list(analysis.output.steps)):
        st.subheader(f"{level} · stride {stride_of(level)} · from {stage_of(level)}")
        show_level_row(
            analysis,
            level,
            settings,
            per_panel=per_panel,
            file_name=f"step_{level}_{ablation}.png",
            key=f"download_step_{level}",
        )
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
    st.markdown(p6_prose(name, below, exact))
    style, label = settings.style, settings.aggregation_label
    maps, _ = loading.level_maps(analysis, style)
    pair = [(f"{n} (stride {stride_of(n)})", maps[n], "") for n in (below, name)]
    scale = panels.ColorScale(style.colormap, map_range([m for _, m, _ in pair]), label)
    left, _ = st.columns([3, 2])
    with left:
        panels.show_maps_row(
            pair,
            [scale, scale],
            suptitle=f"{below} and its subsampling {name}, one color scale",
            file_name=f"{name}_subsampling.png",
            export_scale=settings.export_scale,
            key="download_p6",
        )
