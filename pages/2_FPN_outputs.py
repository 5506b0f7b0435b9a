"""FPN outputs: the pyramid levels side by side, and what the top-down path added to each."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import maps_row_figure
from fpn_core.levels import stage_of
from ui import views

settings = views.start_page(
    "FPN outputs",
    "🔺",
    "Every pyramid level p_k has the same width d, at strides 4 … 64. Switch the colour scale "
    "in the sidebar to **shared across levels** to compare the levels on one scale.",
)
analysis = views.load_analysis(settings)
if analysis is not None:
    levels = analysis.fpn.levels
    steps = analysis.fpn.steps
    stages = analysis.backbone.stages
    maps = views.reduced_maps(levels, settings.reduction)
    ranges = views.ranges_for(maps, settings.scope)
    shared = settings.scope == "shared"
    d = analysis.model.config.out_channels

    st.subheader(f"Pyramid levels at d = {d}, fine to coarse")
    views.show_figure(
        maps_row_figure,
        [(f"{name} (stride {views.stride_of(name)})", m) for name, m in maps.items()],
        rngs=next(iter(ranges.values())) if shared else list(ranges.values()),
        cmap=settings.colormap,
        suptitle=f"{settings.reduction_label} of each level · "
        + ("one shared colour scale" if shared else "each level on its own colour scale"),
        colorbar_label=settings.reduction_label,
        spec=views.figure_spec(settings, analysis, "levels", analysis.model.config),
        download_name="fpn_levels.png",
        key="download_levels",
    )
    cols = st.columns(len(levels))
    for col, (name, tensor) in zip(cols, levels.items(), strict=True):
        col.markdown(views.feature_caption(name, tensor))

    st.subheader("c_k next to p_k: what the top-down path added")
    st.markdown(
        "Each row follows one level: the backbone stage c_k, its **lateral 1×1** projection to d channels, "
        "the **upsampled** map coming down from the level above, and the output **p_k** after the 3×3 conv. "
        "Each panel has its own colour scale (their units differ)."
    )
    for level, step in steps.items():
        stage = stage_of(level)
        panels = [(f"{stage} (input)", views.reduce_channels(stages[stage], settings.reduction))]
        if step.lateral is not None:
            panels.append(("lateral 1×1", views.reduce_channels(step.lateral, settings.reduction)))
        if step.top_down is not None:
            panels.append(("top-down (upsampled)", views.reduce_channels(step.top_down, settings.reduction)))
        if step.output is not None:
            output_map = maps[level] if level in maps else views.reduce_channels(step.output, settings.reduction)
            panels.append((f"{level} (output)", output_map))
        left, right = st.columns([3, 1], gap="medium", vertical_alignment="center")
        with left:
            views.show_figure(
                maps_row_figure,
                panels,
                rngs=[views.map_range([m]) for _, m in panels],
                cmap=settings.colormap,
                suptitle=f"{stage} → {level}",
                spec=views.figure_spec(settings, analysis, "steps", analysis.model.config, level),
                download_name=f"steps_{level}.png",
            )
        with right:
            st.markdown(views.feature_caption(stage, stages[stage]))
            if step.output is not None:
                st.markdown(views.feature_caption(level, step.output))
            if step.top_down is None:
                st.caption("Top level: nothing comes down from above, so p_k is the 3×3 of the lateral alone.")
