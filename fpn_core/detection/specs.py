"""The two detectors as data: which checkpoint, which stages and levels, where an operator puts the weights.

Also the FPN paper's level rule for one box (:func:`paper_level`), which tables and plots set
beside the level a detection really came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, RetinaNet_ResNet50_FPN_Weights

from ..paper import LEVEL_RULE
from ..probe import assign_level_k
from ..weights import COCO, RETINANET_COCO, WeightFile, hub_checkpoint_dir

__all__ = [
    "DETECTION_INTRO",
    "DETECTORS",
    "DETECTOR_NAMES",
    "DetectorSpec",
    "detector_spec",
    "how_to_get_weights",
    "paper_level",
]


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: its name, its torchvision checkpoint, and which pyramid it runs on.

    Attributes:
        name: ``"faster-rcnn"`` or ``"retinanet"``.
        weights: the torchvision COCO_V1 checkpoint's record (file name, URL, mean/std, title, eps).
        categories: class names by label id, the weights' ``meta["categories"]`` (91, with "N/A").
        stages: the backbone stages feeding the FPN.
        levels: the pyramid levels the heads read, fine to coarse.
        pooled_levels: the levels RoIAlign pools from (Faster R-CNN: p2..p5, never p6; RetinaNet: none).
        env: environment variable an operator can set to a local checkpoint.
        box_ap: COCO val2017 box AP of the published weights.
        file_mb: size of the checkpoint, for "what to place where" messages.
        level_meaning: what "the level of a detection" means for this detector (pages, deck notes).
        objectness: what its per-level objectness maps show.
    """

    name: str
    weights: WeightFile
    categories: tuple[str, ...]
    stages: tuple[str, ...]
    levels: tuple[str, ...]
    pooled_levels: tuple[str, ...]
    env: str
    box_ap: float
    file_mb: int
    level_meaning: str
    objectness: str

    @property
    def title(self) -> str:
        """For captions: the detector its checkpoint's record names."""
        return self.weights.detector or self.name


#: What the Detection page says detection is for here (the lecture deck's notes read it too).
DETECTION_INTRO = (
    "What the pyramid is for: torchvision's COCO detectors run on the same ResNet-50 + FPN, and every box is "
    "colored by the **pyramid level that found it**. Small objects should come from fine levels (p2, p3), large "
    f"ones from coarse levels, as the FPN paper's rule {LEVEL_RULE} says."
)

DETECTORS: dict[str, DetectorSpec] = {
    "faster-rcnn": DetectorSpec(
        "faster-rcnn",
        COCO,
        tuple(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]),
        ("c2", "c3", "c4", "c5"),
        ("p2", "p3", "p4", "p5", "p6"),
        ("p2", "p3", "p4", "p5"),
        "FPN_FASTERRCNN_WEIGHTS",
        37.0,
        160,
        "Level: where RoIAlign pooled the box's proposal (torchvision's LevelMapper).",
        "RPN objectness (max over 3 anchors)",
    ),
    "retinanet": DetectorSpec(
        "retinanet",
        RETINANET_COCO,
        tuple(RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["categories"]),
        ("c3", "c4", "c5"),
        ("p3", "p4", "p5", "p6", "p7"),
        (),
        "FPN_RETINANET_WEIGHTS",
        36.4,
        130,
        "Level: the level of the anchor that produced the box.",
        "top class probability (max over 9 anchors)",
    ),
}
DETECTOR_NAMES: tuple[str, ...] = tuple(DETECTORS)


def detector_spec(name: str) -> DetectorSpec:
    """The spec of a detector by name.

    Raises:
        ValueError: naming the bad value.
    """
    if name not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTOR_NAMES)}, got {name!r}")
    return DETECTORS[name]


def how_to_get_weights(name: str) -> str:
    """What an operator places where for a trained detector (for an "untrained detector" notice).

    Raises:
        ValueError: an unknown detector name.
    """
    spec = detector_spec(name)
    wf = spec.weights
    return (
        f"{spec.title} runs untrained. For COCO weights, place {wf.filename} (about {spec.file_mb} MB, "
        f"from {wf.url}) in {hub_checkpoint_dir()}, or name any local copy with {spec.env}=PATH."
    )


def paper_level(width: float, height: float) -> int:
    """The FPN paper's level for a box (:func:`fpn_core.probe.assign_level_k`), clamped to 2..5.

    This is torchvision's ``LevelMapper`` for one box, its small epsilon included, as a plain
    number for tables and plots.
    """
    if width <= 0 or height <= 0:
        return 2
    return min(5, max(2, assign_level_k(float(width), float(height), eps=1e-6)))
