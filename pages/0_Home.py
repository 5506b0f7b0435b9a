"""Home: what a Feature Pyramid Network is, and the live model as a diagram."""

from __future__ import annotations

import streamlit as st

from fpn_core import FPN_STAGES, count_parameters
from fpn_core.diagram import DiagramShapes, architecture_dot
from fpn_core.fpn import fpn_parameters
from fpn_core.paper import LEVEL_RULE, WHAT_AN_FPN_IS
from fpn_core.report import PART_BACKBONE, step_table
from ui import captions, frame, loading

settings = frame.settings()
frame.header(
    "FPN Explorer",
    "See what a **Feature Pyramid Network** (FPN) does inside a detector, on your own image: "
    "change the pyramid in the sidebar and every view follows.",
)

analysis = loading.load_analysis(settings)
out = analysis.output if analysis is not None else None

left, right = st.columns([5, 6], gap="large")
with left:
    st.subheader("What an FPN is")
    st.markdown(WHAT_AN_FPN_IS)
    st.caption(
        f"Small objects are assigned to fine levels: a box of size w × h goes to level {LEVEL_RULE} (paper, eq. 1)."
    )

with right:
    st.subheader("Your pyramid, live")
    if analysis is not None and out is not None and settings.image is not None:
        analysis_name = settings.image.name
        config = analysis.model.config
        st.markdown(
            f"Input **{analysis_name}** resized to "
            f"**{analysis.output.image.shape[1]} × {analysis.output.image.shape[0]} px**; "
            f"FPN on **{captions.join_names(config.stages)}**, width **d = {config.out_channels}**, "
            f"{config.upsample} upsampling, {config.merge} merge{', with p6' if config.p6 else ''}. "
            "Shapes are channels × height × width."
        )
        dot = architecture_dot(config, analysis.model.feature_info, DiagramShapes.of(out))
        st.graphviz_chart(dot, width="stretch")
        st.download_button(
            "Download diagram (Graphviz .dot)",
            dot,
            file_name="fpn_architecture.dot",
            mime="text/vnd.graphviz",
            key="download_architecture",
            on_click="ignore",
            icon=":material/download:",
            help="The diagram's source; `dot -Tpng -Gdpi=200 fpn_architecture.dot -o fpn.png` makes a slide image.",
        )

if analysis is not None and out is not None:
    st.subheader("Parameters")
    table = step_table(analysis.model, out, {}, count_parameters(analysis.model))  # FLOPs: the Timing page's
    backbone_total, fpn_total = table.backbone.params, table.fpn.params
    d = analysis.model.config.out_channels
    cols = st.columns(3)
    cols[0].metric("Backbone (ResNet-50 stages)", f"{backbone_total:,}")
    cols[1].metric(f"FPN at d = {d}", f"{fpn_total:,}")
    cols[2].metric("FPN share", f"{fpn_total / (fpn_total + backbone_total):.1%}")
    st.caption(
        "The FPN's parameters grow with d² (each 3×3 conv has 9·d² weights): on c2..c5 they are "
        f"{fpn_parameters(FPN_STAGES, 256):,} at d = 256 and {fpn_parameters(FPN_STAGES, 128):,} at d = 128. "
        "ResNet-50 with its classifier has 25,557,032 "
        f"(torchvision). Backbone weights: {analysis.model.provenance.backbone}. "
        f"FPN weights: {analysis.model.provenance.fpn}."
    )
    with st.expander("Parameters per part"):
        rows = [{"part": f"backbone {r.key}", "parameters": r.params} for r in table.part(PART_BACKBONE)]
        rows += [
            {"part": "FPN lateral 1×1 convs", "parameters": table.lateral_params},
            {"part": "FPN output 3×3 convs", "parameters": table.output_params},
            {"part": "backbone total", "parameters": backbone_total},
            {"part": "FPN total", "parameters": fpn_total},
        ]
        st.dataframe(rows, hide_index=True, width="content")
