"""Overlays: each stage's or level's map upsampled onto the image, ready to screenshot."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import overlay_figure
from fpn_core.levels import stride_of
from fpn_core.maps import OVERLAYS_INTRO
from ui import captions, export_page, frame, loading, panels
from ui import settings as S


@st.fragment
def show_overlays(settings: S.Settings) -> None:
    """The group picker and the overlays: picking a group reruns only this part of the page."""
    analysis = loading.load_analysis(settings)
    if analysis is None:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left:
        group = st.segmented_control("Show", S.OVERLAY_GROUPS, default=S.GROUP_LEVELS, key=S.KEY_OVERLAY_GROUP)
    with right:
        export_page.overlays_zip_button(settings, analysis)
    style, label = settings.style, settings.aggregation_label
    stages = group == S.GROUP_STAGES
    features = analysis.output.stages if stages else analysis.output.levels
    group_name = loading.GROUP_STAGES if stages else loading.GROUP_LEVELS
    images, maps, ranges = loading.overlay_images(analysis, group_name, style)
    weights = captions.weights_line(analysis)
    cols = st.columns(2, gap="large")
    for i, (name, tensor) in enumerate(features.items()):
        c, h, w = (int(s) for s in tensor.shape[-3:])
        width = f"d = {c}" if name.startswith("p") else f"C = {c}"
        title = f"{name} · stride {stride_of(name)} · {c} × {h} × {w} · {width}"
        with cols[i % 2]:
            panels.show_panel(
                images[name],
                title=title,
                caption=f"{label} · alpha {style.alpha:g} · {weights}",
                scale=panels.ColorScale(style.colormap, ranges[name], label),
                download=panels.Download(
                    overlay_figure,
                    (analysis.output.image, maps[name]),
                    {
                        "title": f"{title}\n{label} · {weights}",
                        "rng": ranges[name],
                        "alpha": style.alpha,
                        "colormap": style.colormap,
                        "colorbar_label": label,
                    },
                    file_name=f"overlay_{name}_d{settings.config.out_channels}_{settings.size}px.png",
                    key=f"download_overlay_{name}",
                ),
                export_scale=settings.export_scale,
            )


settings = frame.settings()
frame.header(
    "Overlays",
    OVERLAYS_INTRO,
)
show_overlays(settings)
