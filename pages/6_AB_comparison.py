"""A/B comparison: two pyramid configurations on the same image, and their difference per level."""

from __future__ import annotations

from ui import ab_page, frame

settings = frame.settings()
frame.header(
    "A/B comparison",
    "Two configurations side by side on the sidebar's image and input size. Both start from the sidebar's "
    "settings; change either side, or pick a preset. The backbone pass is shared whenever the weights match.",
)
ab_page.show_ab_page(settings)
