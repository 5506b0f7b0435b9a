"""Timing: milliseconds, FLOPs and output sizes per backbone stage and per FPN step."""

from __future__ import annotations

from fpn_core.report import TIMING_INTRO
from ui import frame, loading, timing_page

settings = frame.settings()
frame.header(
    "Timing",
    TIMING_INTRO,
)
if loading.load_analysis(settings) is not None:
    timing_page.show_timing_panel(settings)
