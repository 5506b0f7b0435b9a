"""Detection: torchvision's Faster R-CNN and RetinaNet on the pyramid, every box traced to its level."""

from __future__ import annotations

from fpn_core.paper import LEVEL_RULE
from ui import detection_page, frame

settings = frame.settings()
frame.header(
    "Detection",
    "What the pyramid is for: torchvision's COCO detectors run on the same ResNet-50 + FPN, and every box is "
    "colored by the **pyramid level that found it**. Small objects should come from fine levels (p2, p3), large "
    f"ones from coarse levels, as the FPN paper's rule {LEVEL_RULE} says.",
)
detection_page.show_detection_page(settings)
