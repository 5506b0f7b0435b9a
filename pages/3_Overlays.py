"""Overlays: each stage's or level's map upsampled onto the image, ready to screenshot."""

from __future__ import annotations

import streamlit as st

from fpn_core.figures import overlay_figure
from ui import export_page, views
from ui import state as S

settings = views.start_page(
    "Overlays",
    "🖼️",
    "Each map is upsampled to the input and blended over it with the sidebar's colour map and alpha. "
    "Titles carry the level, stride, shape, width and weights, so a downloaded PNG explains itself.",
)
analysis = views.load_analysis(settings)
if analysis is not None:
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left:
        group = st.segmented_control(
            "Show", S.OVERLAY_GROUPS, default=S.GROUP_LEVELS, key=S.KEY_OVERLAY_GROUP, persist_state="session"
        )
    with right:
        export_page.overlays_zip_button(settings, analysis)
    features = analysis.backbone.stages if group == S.GROUP_STAGES else analysis.fpn.levels
    maps = views.reduced_maps(features, settings.reduction)
    ranges = views.ranges_for(maps, settings.scope)
    summary = analysis.model.provenance.summary()
    cols = st.columns(2, gap="large")
    for i, (name, tensor) in enumerate(features.items()):
        c, h, w = (int(s) for s in tensor.shape[-3:])
        width = f"d = {c}" if name.startswith("p") else f"C = {c}"
        with cols[i % 2]:
            views.show_figure(
                overlay_figure,
                analysis.backbone.image,
                maps[name],
                title=f"{name} · stride {views.stride_of(name)} · {c} × {h} × {w} · {width}\n"
                f"{settings.reduction_label} · {summary}",
                rng=ranges[name],
                alpha=settings.alpha,
                cmap=settings.colormap,
                colorbar_label=settings.reduction_label,
                spec=views.figure_spec(settings, analysis, "overlay", analysis.model.config, name, settings.alpha),
                download_name=f"overlay_{name}_d{settings.width}_{settings.size}px.png",
                key=f"download_overlay_{name}",
            )
