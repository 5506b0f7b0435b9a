"""Timing: milliseconds, FLOPs and output sizes per backbone stage and per FPN step."""

from __future__ import annotations

from ui import frame, loading, timing_page

settings = frame.settings()
frame.header(
    "Timing",
    "How long each step takes on this machine, and how much work it is. Timings are the median of "
    "several runs after one untimed warm-up run; other sessions on the same server can slow them down.",
)
if loading.load_analysis(settings) is not None:
    timing_page.show_timing_panel(settings)
