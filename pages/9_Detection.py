"""Detection: torchvision's Faster R-CNN and RetinaNet on the pyramid, every box traced to its level."""

from __future__ import annotations

from fpn_core.detection.specs import DETECTION_INTRO
from ui import detection_page, frame

settings = frame.settings()
frame.header(
    "Detection",
    DETECTION_INTRO,
)
detection_page.show_detection_page(settings)
