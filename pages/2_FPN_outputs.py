"""FPN outputs: the pyramid levels side by side, and what the top-down path added to each."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import maps_row_figure
from fpn_core.fpn import LEVELS_INTRO, STEPS_INTRO
from fpn_core.levels import stage_of, stride_of
from fpn_core.maps import map_range
from ui import captions, frame, loading, panels

settings = frame.settings()
frame.header(
    "FPN outputs",
    f"{LEVELS_INTRO} Switch the color scale "
    "in the sidebar to **shared across levels** to compare the levels on one scale.",
)
analysis = loading.load_analysis(settings)
if analysis is not None:
    style, label = settings.style, settings.aggregation_label
    levels, steps, stages = analysis.fpn.levels, analysis.fpn.steps, analysis.backbone.stages
    maps, ranges = loading.level_maps(analysis, style)
    stage_maps, _ = loading.stage_maps(analysis, style)
    shared = style.scope == "shared"
    d = analysis.model.config.out_channels

    st.subheader(f"Pyramid levels at d = {d}, fine to coarse")
    st.caption(
        f"{label} of each level · "
        + ("one shared color scale" if shared else "each level on its own color scale")
        + f" · {captions.weights_line(analysis)}"
    )
    scales = {name: panels.ColorScale(style.colormap, ranges[name], label) for name in maps}
    cols = st.columns(len(levels))
    weights = captions.weights_line(analysis)
    for col, (name, tensor) in zip(cols, levels.items(), strict=True):
        c, h, w = (int(s) for s in tensor.shape[-3:])
        with col:
            panels.show_panel(
                panels.map_image(maps[name], scales[name]),
                title=f"{name} · stride {stride_of(name)} · {c} × {h} × {w} · d = {c}",
                caption=weights,
                scale=None if shared else scales[name],
            )
            st.markdown(captions.feature_caption(name, tensor))
    if shared:
        panels.show_color_scale(next(iter(scales.values())))
    panels.download_button(
        panels.Download(
            maps_row_figure,
            ([(f"{name} (stride {stride_of(name)})", m) for name, m in maps.items()],),
            {
                "rngs": next(iter(ranges.values())) if shared else list(ranges.values()),
                "colormap": style.colormap,
                "suptitle": f"{label} of each level · "
                + ("one shared color scale" if shared else "each level on its own color scale"),
                "colorbar_label": label,
            },
            file_name="fpn_levels.png",
            key="download_levels",
        ),
        settings.export_scale,
    )

    st.subheader("c_k next to p_k: what the top-down path added")
    st.markdown(f"{STEPS_INTRO} Each panel has its own color scale (their units differ).")
    for level in steps:
        stage = stage_of(level)
        step_maps = loading.step_maps(analysis, level, style.aggregation)
        row = [(f"{stage} (input)", stage_maps[stage])]
        row += [
            (f"{level} (output)" if name == "output" else title, step_maps[name])
            for name, title in loading.STEP_TITLES.items()
            if name in step_maps
        ]
        row_scales = [panels.ColorScale(style.colormap, map_range([m]), label) for _, m in row]
        st.markdown(f"#### {stage} → {level} · stride {stride_of(level)}")
        panels.show_row(
            [(title, panels.map_image(m, sc), "") for (title, m), sc in zip(row, row_scales, strict=True)],
            scales=row_scales,
        )
        notes = [captions.feature_caption(stage, stages[stage])]
        if steps[level].output is not None:
            notes.append(captions.feature_caption(level, steps[level].output))
        if steps[level].top_down is None:
            notes.append("Top level: nothing comes down from above, so p_k is the 3×3 of the lateral alone.")
        st.caption("  \n".join(notes))
        panels.download_button(
            panels.Download(
                maps_row_figure,
                (row,),
                {"rngs": [sc.rng for sc in row_scales], "colormap": style.colormap, "suptitle": f"{stage} → {level}"},
                file_name=f"steps_{level}.png",
            ),
            settings.export_scale,
        )
