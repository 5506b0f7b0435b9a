"""Scale probe: which pyramid level responds to objects of which size, next to the paper's rule."""

from __future__ import annotations

from fpn_core.paper import LEVEL_RULE
from ui import frame, probe_page

settings = frame.settings()
frame.header(
    "Scale probe",
    f"The FPN paper sends a box of size w × h to level {LEVEL_RULE}. Do the features agree? "
    "Each box is probed on every level, and each level's stride grid shows how coarsely it sees the image.",
)
probe_page.show_probe_page(settings)
