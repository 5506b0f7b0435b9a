"""The Timing page's panel: milliseconds, FLOPs and output sizes per step, measured on request."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fpn_core.figures import bar_figure
from fpn_core.report import LEVEL_BAR_TEXT, PART_BACKBONE, PART_FPN, StepTable, timing_title
from ui import cache, panels
from ui import settings as S


def timing_rows(table: StepTable) -> list[dict[str, object]]:
    """One table row per step: milliseconds, GFLOPs, GFLOP/s, output MB and device."""
    rows = []
    for row in table.rows:
        gflops = row.flops / 1e9
        rows.append(
            {
                "step": row.key,
                "part": row.part,
                "ms": round(row.ms, 3),
                "GFLOPs": round(gflops, 4),
                "GFLOP/s": round(gflops / (row.ms / 1e3), 1) if row.ms > 0 else None,
                "output MB": round(row.output_mb, 3),
                "device": table.device,
            }
        )
    return rows


@st.fragment
def show_timing_panel(settings: S.Settings) -> None:
    """Measure and show the timing panel; its controls rerun only this fragment.

    Args:
        settings: the sidebar settings (the analysis comes from the caches, not from arguments,
            so the fragment keeps no tensors alive between reruns).
    """
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    repeats = int(
        left.number_input(
            "Timed runs (median; one warm-up run first, not counted)",
            min_value=1,
            max_value=50,
            value=S.DEFAULT_REPEATS,
            step=1,
            key=S.KEY_REPEATS,
        )
    )
    if right.button("Measure again", key=S.KEY_MEASURE, icon=":material/timer:", help="Rerun only the measurement."):
        st.session_state[S.TIMING_RUNS] = st.session_state.get(S.TIMING_RUNS, 0) + 1
    image = settings.image
    if image is None:
        return
    analysis = cache.get_analysis(settings.config, image.array, image.digest, settings.size)
    with st.spinner(f"Timing {repeats} runs after one warm-up run…"):
        key = cache.TimingKey(analysis.key, repeats, st.session_state.get(S.TIMING_RUNS, 0))
        table = cache.timing_report(key, analysis, image.array)
    for notice in table.notices:
        st.warning(notice)
    backbone_ms, fpn_ms, total = table.backbone.ms, table.fpn.ms, table.total.ms
    gflop = table.total.flops / 1e9
    cols = st.columns(5)
    cols[0].metric("Backbone", f"{backbone_ms:.1f} ms", border=True)
    cols[1].metric("FPN", f"{fpn_ms:.1f} ms", border=True)
    cols[2].metric("FPN share of total", f"{fpn_ms / total:.1%}" if total > 0 else "–", border=True)
    cols[3].metric("GFLOP/s achieved", f"{gflop / (total / 1e3):.0f}" if total > 0 else "–", border=True)
    cols[4].metric("Device", table.device.upper(), border=True)
    if st.toggle(
        "Compare with the plain forward",
        key=S.KEY_COMPARE_PLAIN,
        help="Times the same ResNet-50 without BatchNorm folded into the convolutions, without the "
        "channels_last memory layout and without packed convolutions (each weight reordered once for oneDNN, "
        "the ReLUs and residual adds run inside the convolutions): the engine's optimizations.",
    ):
        with st.spinner("Timing the plain backbone…"):
            plain_ms = cache.time_plain_backbone(analysis.key.backbone.model, image.array, settings.size, repeats)
        speedup = plain_ms / backbone_ms if backbone_ms > 0 else float("nan")
        st.metric(
            "Optimized backbone speedup",
            f"{speedup:.2f}×",
            delta=f"{plain_ms - backbone_ms:.1f} ms saved per image ({plain_ms:.1f} ms plain)",
            border=True,
        )

    per_level: dict[str, float] = {}
    groups: dict[str, str] = {}
    # Backbone stages first, then the FPN levels fine to coarse (the FPN runs coarse to fine).
    for row in sorted(table.rows, key=lambda r: (r.part != PART_BACKBONE, r.level)):
        label = f"{row.level} (FPN)" if row.part == PART_FPN else row.level
        per_level[label] = per_level.get(label, 0.0) + row.ms
        groups[label] = row.part
    left, right = st.columns([1, 1], gap="large")
    with left:
        title = timing_title(table.repeats, table.device)
        st.markdown(f"**{title}**")
        st.bar_chart(
            pd.DataFrame(
                {"step": list(per_level), "ms": list(per_level.values()), "part": [groups[k] for k in per_level]}
            ),
            x="step",
            y="ms",
            color="part",
            horizontal=True,
            height=34 * len(per_level) + 60,
        )
        st.caption(" · ".join(f"{label}: {ms:.1f} ms" for label, ms in per_level.items()))
        panels.download_button(
            panels.Download(
                bar_figure,
                (list(per_level), list(per_level.values())),
                {"title": title, "xlabel": "milliseconds", "groups": [groups[label] for label in per_level]},
                file_name="timing.png",
                key="download_timing",
            ),
            settings.export_scale,
        )
        st.caption(LEVEL_BAR_TEXT)
    with right:
        rows = timing_rows(table)
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            height=36 * (len(rows) + 1) + 4,  # every row visible, no inner scrolling
            column_config={
                "ms": st.column_config.NumberColumn("ms", format="%.2f"),
                "GFLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
                "GFLOP/s": st.column_config.NumberColumn("GFLOP/s", format="%.1f"),
                "output MB": st.column_config.NumberColumn("output MB", format="%.2f"),
            },
        )
        st.caption(
            f"Input {settings.size} px long side, d = {settings.config.out_channels}. GFLOPs are counted by torch's "
            "FlopCounterMode for this input shape (one multiply-add = 2 FLOPs). The whole-pass medians above "
            "are measured around each pass, so they can differ slightly from the sum of the steps."
        )
