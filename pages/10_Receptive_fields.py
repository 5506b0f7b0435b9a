"""Receptive fields: where one cell of each stage and level looks, and where a level's signal comes from."""

from __future__ import annotations

from ui import frame, receptive_page

settings = frame.settings()
frame.header(
    "Receptive fields",
    "What does one cell of p3, p4 or p5 **see**, and how much of it is fine detail from c3 against meaning "
    "brought down from c4 and c5? Click a point: the page answers both for the cell under it.",
)
receptive_page.show_receptive_page(settings)
