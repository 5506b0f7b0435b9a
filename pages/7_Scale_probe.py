"""Scale probe: which pyramid level responds to objects of which size, next to the paper's rule."""

from __future__ import annotations

from fpn_core.probe import PROBE_INTRO
from ui import frame, probe_page

settings = frame.settings()
frame.header(
    "Scale probe",
    PROBE_INTRO,
)
probe_page.show_probe_page(settings)
