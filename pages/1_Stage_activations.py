"""Stage activations: what each ResNet-50 stage c1..c5 responds to, map by map."""

from __future__ import annotations

import streamlit as st

from fpn_core.backbone import STAGES_INTRO
from fpn_core.figures import grid_figure, map_figure
from fpn_core.levels import stride_of
from ui import cache, captions, frame, loading, panels

TOP_CHANNELS = 16

settings = frame.settings()
frame.header(
    "Stage activations",
    f"{STAGES_INTRO} Left: one map per stage, reduced over all channels. "
    f"Right: the {TOP_CHANNELS} most active channels (highest mean), each on its own 0–1 scale.",
)
analysis = loading.load_backbone_pass(settings)
if analysis is not None:
    style, label = settings.style, settings.aggregation_label
    stages = analysis.output.stages
    info = analysis.model.feature_info
    maps, ranges = loading.stage_maps(analysis, style)
    mosaics = cache.channel_mosaics(cache.MosaicsKey(analysis.backbone_key, TOP_CHANNELS), stages)
    weights = captions.weights_line(analysis)
    for name, tensor in stages.items():
        c, h, w = (int(s) for s in tensor.shape[-3:])
        st.subheader(f"{name} · stride {stride_of(name)} · {c} channels")
        st.markdown(captions.feature_caption(name, tensor, what=captions.stage_description(name, info)))
        left, right = st.columns(2, gap="large")
        scale = panels.ColorScale(style.colormap, ranges[name], label)
        with left:
            panels.show_panel(
                panels.map_image(maps[name], scale),
                title=f"{name} · stride {stride_of(name)} · {c} × {h} × {w} · {label}",
                caption=weights,
                scale=scale,
                download=panels.Download(
                    map_figure,
                    (maps[name],),
                    {
                        "title": f"{name}: {label}",
                        "rng": ranges[name],
                        "colormap": style.colormap,
                        "colorbar_label": label,
                    },
                    file_name=f"stage_{name}_map.png",
                ),
                export_scale=settings.export_scale,
            )
        mosaic, indices = mosaics[name]
        tiles = panels.ColorScale(style.colormap, loading.UNIT_RANGE, "each channel scaled to 0–1")
        with right:
            panels.show_panel(
                panels.map_image(mosaic, tiles),
                title=f"{name}: the {len(indices)} most active of {c} channels",
                caption="Channels, row by row: " + ", ".join(str(i) for i in indices),
                scale=tiles,
                download=panels.Download(
                    grid_figure,
                    (mosaic, indices),
                    {
                        "title": f"{name}: the {len(indices)} most active of {c} channels",
                        "cols": 4,
                        "colormap": style.colormap,
                    },
                    file_name=f"stage_{name}_top_channels.png",
                ),
                export_scale=settings.export_scale,
            )
        st.divider()
