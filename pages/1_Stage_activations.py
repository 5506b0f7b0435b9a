"""Stage activations: what each ResNet-50 stage c1..c5 responds to, map by map."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import map_figure
from ui import views

TOP_CHANNELS = 16

settings = views.start_page(
    "Stage activations",
    "🧱",
    "The bottom-up path: each ResNet-50 stage halves the resolution and widens the channels. "
    f"Left: one map per stage, reduced over all channels. Right: the {TOP_CHANNELS} most active channels "
    "(highest mean), each on its own 0–1 scale.",
)
analysis = views.load_analysis(settings)
if analysis is not None:
    stages = analysis.backbone.stages
    info = analysis.model.feature_info
    maps = views.reduced_maps(stages, settings.reduction)
    ranges = views.ranges_for(maps, settings.scope)
    for name, tensor in stages.items():
        st.subheader(f"{name} · stride {info[name].reduction} · {int(tensor.shape[1])} channels")
        st.markdown(views.feature_caption(name, tensor, what=views.stage_description(name, info)))
        left, right = st.columns(2, gap="large")
        with left:
            views.show_figure(
                map_figure,
                maps[name],
                title=f"{name}: {settings.reduction_label}",
                rng=ranges[name],
                cmap=settings.colormap,
                colorbar_label=settings.reduction_label,
                spec=views.figure_spec(settings, analysis, "stage-map", name),
                download_name=f"stage_{name}_map.png",
            )
        with right:
            views.show_figure(
                views.top_channels_figure,
                tensor,
                k=TOP_CHANNELS,
                name=name,
                cmap=settings.colormap,
                spec=views.figure_spec(settings, analysis, "stage-grid", name),
                download_name=f"stage_{name}_top_channels.png",
            )
        st.divider()
