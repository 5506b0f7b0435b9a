"""The detectors as data (from :mod:`fpn_core.detectors`), where an operator puts their weights, the paper's level rule.

The table of the eight detectors (:data:`DETECTORS`, :class:`DetectorSpec`, :class:`HeadFamily`)
lives in :mod:`fpn_core.detectors`, which the checkpoint reader shares; it is offered here for
the detection package. Also the FPN paper's level rule for one box (:func:`paper_level`), which
tables and plots set beside the level a detection really came from.
"""

from __future__ import annotations

from ..detectors import (
    DETECTOR_NAMES,
    DETECTORS,
    FCOS_FAMILY,
    FCOS_LESSON,
    FCOS_REGRESSION_RANGES,
    RCNN,
    RETINANET,
    DetectorSpec,
    HeadFamily,
    detector_spec,
    how_to_get_weights,
)
from ..paper import LEVEL_RULE
from ..probe import assign_level_k

__all__ = [
    "DETECTION_INTRO",
    "DETECTORS",
    "DETECTOR_NAMES",
    "FCOS_FAMILY",
    "FCOS_LESSON",
    "FCOS_REGRESSION_RANGES",
    "RCNN",
    "RETINANET",
    "DetectorSpec",
    "HeadFamily",
    "detector_spec",
    "how_to_get_weights",
    "paper_level",
]


#: What the Detection page says detection is for here (the lecture deck's notes read it too).
DETECTION_INTRO = (
    "What the pyramid is for: torchvision's COCO detectors run on the same ResNet-50 + FPN, and every box is "
    "colored by the **pyramid level that found it**. Small objects should come from fine levels (p2, p3), large "
    f"ones from coarse levels, as the FPN paper's rule {LEVEL_RULE} says."
)


def paper_level(width: float, height: float) -> int:
    """The FPN paper's level for a box (:func:`fpn_core.probe.assign_level_k`), clamped to 2..5.

    This is torchvision's ``LevelMapper`` for one box, its small epsilon included, as a plain
    number for tables and plots.
    """
    if width <= 0 or height <= 0:
        return 2
    return min(5, max(2, assign_level_k(float(width), float(height), eps=1e-6)))
