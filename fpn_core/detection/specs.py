"""The two detectors as data: which checkpoint, which stages and levels, where an operator puts the weights.

Everything that differs between detectors is here, as data (:class:`HeadFamily`, :class:`DetectorSpec`):
the builder and the runner read it, and no code elsewhere asks a detector for its name.
Also the FPN paper's level rule for one box (:func:`paper_level`), which tables and plots set
beside the level a detection really came from.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_Weights,
    RetinaNet,
    RetinaNet_ResNet50_FPN_Weights,
)
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from ..paper import LEVEL_RULE
from ..probe import assign_level_k
from ..weights import COCO, RETINANET_COCO, WeightFile, hub_checkpoint_dir

__all__ = [
    "DETECTION_INTRO",
    "DETECTORS",
    "DETECTOR_NAMES",
    "RCNN",
    "RETINANET",
    "DetectorSpec",
    "HeadFamily",
    "detector_spec",
    "how_to_get_weights",
    "paper_level",
]


@dataclass(frozen=True)
class HeadFamily:
    """A kind of detection head, as data: torchvision's class, how its heads run, how a box's level is found.

    The runner (``fpn_core.detection.run``) keeps one heads function per family; texts may name the
    detector as ``{title}``.

    Attributes:
        key: a short name (``"rcnn"``, ``"retinanet"``).
        model_class: torchvision's detector class, built as ``model_class(backbone, num_classes, ...)``.
        proposals: whether an RPN proposes boxes per level (two-stage): proposals are reported, RoIAlign
            picks a box's level with the paper's rule.
        score_thresh_attr: where torchvision's model keeps the heads' own score threshold.
        level_source: what a detection's level is, for captions (``"Level: ..."``).
        rule_note: how the level relates to the paper's rule on the final box.
        paper_rule_use: whether and where the detector uses the paper's rule.
        objectness: what its per-level objectness maps show (the Detection page and the deck say it).
    """

    key: str
    model_class: type[nn.Module]
    proposals: bool
    score_thresh_attr: str
    level_source: str
    rule_note: str
    paper_rule_use: str
    objectness: str

    def score_threshold(self, model: nn.Module) -> float:
        """torchvision's own score threshold of the heads (0.05 for both COCO detectors)."""
        return float(operator.attrgetter(self.score_thresh_attr)(model))


RCNN = HeadFamily(
    "rcnn",
    FasterRCNN,
    True,
    "roi_heads.score_thresh",
    "where RoIAlign pooled the box's proposal (torchvision's LevelMapper)",
    "{title} picks the level from the proposal; the box regressed from it can have another size.",
    "{title} applies it to each proposal (p6 serves only the RPN's largest anchors).",
    "RPN objectness (max over 3 anchors)",
)
RETINANET = HeadFamily(
    "retinanet",
    RetinaNet,
    False,
    "score_thresh",
    "the level of the anchor that produced the box",
    "{title}'s level is its anchor's, not this rule.",
    "{title} does not use it: a box's level is its anchor's. The rule is shown for comparison.",
    "top class probability (max over 9 anchors)",
)


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: its name, its torchvision checkpoint, and which pyramid it runs on.

    Attributes:
        name: the detector's name (a key of :data:`DETECTORS`).
        weights: the torchvision COCO_V1 checkpoint's record (file name, URL, mean/std, title, eps).
        categories: class names by label id, the weights' ``meta["categories"]`` (91, with "N/A").
        stages: the backbone stages feeding the FPN.
        levels: the pyramid levels the heads read, fine to coarse.
        pooled_levels: the levels RoIAlign pools from (Faster R-CNN: p2..p5, never p6; RetinaNet: none).
        env: environment variable an operator can set to a local checkpoint.
        box_ap: COCO val2017 box AP of the published weights.
        file_mb: size of the checkpoint, for "what to place where" messages.
        family: the kind of heads (:class:`HeadFamily`).
        extra_block: makes the FPN's block above its top level, as torchvision's builder does
            (Faster R-CNN: max-pool p6; RetinaNet: p6/p7 convs from p5).
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
    family: HeadFamily
    extra_block: Callable[[], ExtraFPNBlock]

    @property
    def title(self) -> str:
        """For captions: the detector its checkpoint's record names."""
        return self.weights.detector or self.name

    @property
    def num_classes(self) -> int:
        """The classifier's outputs (background included): one per category."""
        return len(self.categories)

    @property
    def level_source(self) -> str:
        return self.family.level_source.format(title=self.title)

    @property
    def rule_note(self) -> str:
        return self.family.rule_note.format(title=self.title)

    @property
    def paper_rule_use(self) -> str:
        return self.family.paper_rule_use.format(title=self.title)

    @property
    def objectness(self) -> str:
        return self.family.objectness


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
        RCNN,
        LastLevelMaxPool,
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
        RETINANET,
        partial(LastLevelP6P7, 256, 256),
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
