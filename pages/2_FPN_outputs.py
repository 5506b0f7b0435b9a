"""FPN outputs: the pyramid levels side by side, and what the top-down path added to each."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import maps_row_figure
from fpn_core.fpn import LEVELS_INTRO, STEPS_INTRO
from fpn_core.levels import stage_of, stride_of
from ui import captions, frame, loading, panels, step_page

#: The steps each level's row shows here (the merged map is the Step by step page's).
OUTPUT_STEPS = ("stage", "lateral", "top_down", "output")

settings = frame.settings()
frame.header(
    "FPN outputs",
    f"{LEVELS_INTRO} Switch the color scale "
    "in the sidebar to **shared across levels** to compare the levels on one scale.",
)
analysis = loading.load_analysis(settings)
if analysis is not None:
    style, label = settings.style, settings.aggregation_label
    levels = analysis.output.levels
    maps, ranges = loading.level_maps(analysis, style)
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
                "rngs": list(ranges.values()),
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
    st.markdown(
        f"{STEPS_INTRO} The *Step by step* page adds the merged map and the ablations. "
        "Each panel has its own color scale (their units differ)."
    )
    for level in analysis.output.steps:
        st.markdown(f"#### {stage_of(level)} → {level} · stride {stride_of(level)}")
        step_page.show_level_row(
            analysis,
            level,
            settings,
            steps=OUTPUT_STEPS,
            per_panel=True,
            file_name=f"steps_{level}.png",
            key=f"download_steps_{level}",
        )
