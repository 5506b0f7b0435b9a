"""Timing: milliseconds, FLOPs and output sizes per backbone stage and per FPN step."""

from __future__ import annotations

import streamlit as st

from ui import state as S
from ui import views

settings = views.start_page(
    "Timing",
    "⏱️",
    "How long each step takes on this machine, and how much work it is. Timings are the median of "
    "several runs after one untimed warm-up run; other sessions on the same server can slow them down.",
)
analysis = views.load_analysis(settings)
if analysis is not None:
    repeats = st.number_input(
        "Timed runs (median; one warm-up run first, not counted)",
        min_value=1,
        max_value=50,
        value=S.DEFAULT_REPEATS,
        step=1,
        key=S.KEY_REPEATS,
        persist_state="session",
        width=360,
    )
    views.show_timing_panel(settings, int(repeats))
