"""Detection: torchvision's Faster R-CNN and RetinaNet on the pyramid, every box traced to its level."""

from __future__ import annotations

from ui import detection_page, frame

settings = frame.settings()
frame.header(
    "Detection",
    "What the pyramid is for: torchvision's COCO detectors run on the same ResNet-50 + FPN, and every box is "
    "coloured by the **pyramid level that found it**. Small objects should come from fine levels (p2, p3), large "
    "ones from coarse levels, as the FPN paper's rule k = ⌊4 + log2(√(wh)/224)⌋ says.",
)
detection_page.show_detection_page(settings)
