"""Export: one zip with the input, every map and overlay, a slide and metadata.json."""

from __future__ import annotations

from ui import export_page, frame

settings = frame.settings()
frame.header(
    "Export",
    "Everything for slides in one download, at the sidebar's **Export resolution**: the input image, every "
    "stage and level map, every overlay, a composite slide and `metadata.json` (configuration, weights, "
    "shapes, statistics, timings).",
)
export_page.show_export_page(settings)
