"""Object detection on the pyramid, every detection traced to the level that found it.

The two detectors are torchvision's own ``FasterRCNN`` and ``RetinaNet`` classes, built on
fpn_core's ``ResNetBackbone`` and ``FPN`` (a ``FeaturePyramidNetwork`` subclass). Their
state dicts are torchvision's, key for key, so torchvision's COCO checkpoints load strictly and
the outputs equal torchvision's.

Where is what:

- ``specs``: the detectors as data (:class:`DetectorSpec`, :class:`HeadFamily`, :data:`DETECTORS`), where their weights
  go (:func:`how_to_get_weights`), the paper's level rule for a box (:func:`paper_level`).
- ``build``: :func:`build_detector` (assemble, load weights, provenance; returns a :class:`Detector`) and
  :func:`detector_pyramid` (a detector's backbone and FPN as a ``Pyramid`` for the other views).
- ``results``: the dataclasses a run returns (:class:`DetectorFeatures`, :class:`Detections`, ...).
- ``run``: :func:`run_detector_features`, :func:`run_heads`, :func:`filter_detections`,
  :func:`detect`: torchvision's steps one by one, keeping each box's source level.
- ``figure``: ``detection_figure``, the boxes drawn in their levels' colors (matplotlib; not imported here).

The ``detect`` command lives with the other commands, in ``fpn_core.cli.detect``.

Import the names below from ``fpn_core.detection``; ``figure`` by its module.
"""

from .build import DETECTOR_WEIGHTS, Detector, DetectorBackbone, build_detector, detector_pyramid
from .results import Detections, DetectorFeatures, LevelAnchors, LevelProposals
from .run import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    TOP_K_PROPOSALS,
    detect,
    filter_detections,
    run_detector_features,
    run_heads,
)
from .specs import (
    DETECTOR_NAMES,
    DETECTORS,
    DetectorSpec,
    HeadFamily,
    detector_spec,
    how_to_get_weights,
    paper_level,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "DETECTORS",
    "DETECTOR_NAMES",
    "DETECTOR_WEIGHTS",
    "MAX_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "TOP_K_PROPOSALS",
    "Detections",
    "Detector",
    "DetectorBackbone",
    "DetectorFeatures",
    "DetectorSpec",
    "HeadFamily",
    "LevelAnchors",
    "LevelProposals",
    "build_detector",
    "detect",
    "detector_pyramid",
    "detector_spec",
    "filter_detections",
    "how_to_get_weights",
    "paper_level",
    "run_detector_features",
    "run_heads",
]
