"""Live camera: the pyramid on every frame of the browser's camera, streamed back in the level colors."""

from __future__ import annotations

from ui import frame, live_page

settings = frame.settings()
frame.header(
    "Live camera",
    "The pyramid on a moving picture: every camera frame runs through the sidebar's pyramid (or a detector) "
    "and comes back colored by **pyramid level**. Small things answer on fine levels, large ones on coarse "
    "levels: move an object towards the camera and watch the dominant level change.",
)
live_page.show_live_page(settings)
