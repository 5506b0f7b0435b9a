"""The eight detectors as data: torchvision's classes and heads, their COCO files, stages, levels and texts.

One table (:data:`DETECTORS`) of torchvision 0.29's ResNet-50-FPN detectors. Each
:class:`DetectorSpec` says what torchvision's builder (``spec.builder``) assembles, so that
``fpn_core.detection`` assembles the same thing on fpn_core's backbone and FPN (its state dict is
torchvision's, key for key), which COCO file it loads, which stages feed its FPN and which levels
its heads read, and how a checkpoint file marks it (``marks``, read by ``fpn_core.checkpoints``).
What differs between kinds of heads (two-stage R-CNN, RetinaNet, FCOS) is a :class:`HeadFamily`.
No code elsewhere asks a detector for its name.

This module sits outside the ``fpn_core.detection`` package because the checkpoint reader
(``fpn_core.checkpoints``) and the pyramid builder read it too, without loading the detection code.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn
from torchvision.models.detection import (
    FCOS,
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    FCOS_ResNet50_FPN_Weights,
    KeypointRCNN,
    KeypointRCNN_ResNet50_FPN_Weights,
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    RetinaNet,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from .weights import COCO, RETINANET_COCO, WeightFile, hub_checkpoint_dir

__all__ = [
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
]

#: FCOS's regression range per level, in network input pixels: a location on that level learns an
#: object when its largest distance to the box's sides falls in the range. torchvision's
#: ``FCOS.compute_loss``: ``[4 s, 8 s]`` for the level of stride ``s``, the finest from 0, the coarsest to ∞.
FCOS_REGRESSION_RANGES: dict[str, tuple[float, float]] = {
    "p3": (0.0, 64.0),
    "p4": (64.0, 128.0),
    "p5": (128.0, 256.0),
    "p6": (256.0, 512.0),
    "p7": (512.0, float("inf")),
}

#: The FCOS lesson: a second level rule, beside the paper's.
FCOS_LESSON = (
    "FCOS has no anchors to match: in training it gives an object to a level by **regression range**. "
    "A location inside the box learns it on the level where the largest of its four distances to the "
    "box's sides (left, top, right, bottom) falls in that level's range: [0, 64] px on P3, [64, 128] on P4, "
    "[128, 256] on P5, [256, 512] on P6 and [512, ∞) on P7 (torchvision's `FCOS.compute_loss`: 4 to 8 "
    "strides). That is a second rule to set beside the FPN paper's k = ⌊4 + log2(√(wh)/224)⌋: the paper "
    "sends a whole box to one level by its size; FCOS asks each location how far it is from the box's edges, "
    "so a long thin object or a location near one edge can land on another level than its size suggests."
)


@dataclass(frozen=True)
class HeadFamily:
    """A kind of detection head, as data: how its heads run, how a box's level is found, how a file counts its classes.

    The runner (``fpn_core.detection.run``) keeps one heads function per family; texts may name the
    detector as ``{title}``.

    Attributes:
        key: a short name (``"rcnn"``, ``"retinanet"``, ``"fcos"``).
        proposals: whether an RPN proposes boxes per level (two-stage): proposals are reported, RoIAlign
            picks a box's level with the paper's rule.
        score_thresh_attr: where torchvision's model keeps the heads' own score threshold.
        level_source: what a detection's level is, for captions (``"Level: ..."``).
        rule_note: how the level relates to the paper's rule on the final box.
        paper_rule_use: whether and where the detector uses the paper's rule.
        training_rule: how training assigns an object to a level (the lesson beside the paper's rule).
        objectness: what the per-level objectness map shows.
        class_key: the classifier weight of a checkpoint whose rows count the classes.
        box_key: for dense heads, the box regression weight (4 rows per anchor): the classifier's rows
            are divided by the anchors per location; None for the R-CNNs (one row per class).
    """

    key: str
    proposals: bool
    score_thresh_attr: str
    level_source: str
    rule_note: str
    paper_rule_use: str
    training_rule: str
    objectness: str
    class_key: str
    box_key: str | None

    def score_threshold(self, model: nn.Module) -> float:
        """torchvision's own score threshold of the heads (0.05; FCOS 0.2)."""
        return float(operator.attrgetter(self.score_thresh_attr)(model))

    def count_classes(self, shapes: dict[str, tuple[int, ...]]) -> int:
        """The classes (background included) a checkpoint's head has, from its shapes."""
        rows = shapes[self.class_key][0]
        if self.box_key is None:
            return rows
        return rows // max(shapes[self.box_key][0] // 4, 1)


_RPN_CLS = "roi_heads.box_predictor.cls_score.weight"
_DENSE_CLS = "head.classification_head.cls_logits.weight"
_DENSE_BOX = "head.regression_head.bbox_reg.weight"

RCNN = HeadFamily(
    "rcnn",
    True,
    "roi_heads.score_thresh",
    "where RoIAlign pooled the box's proposal (torchvision's LevelMapper)",
    "{title} picks the level from the proposal; the box regressed from it can have another size.",
    "{title} applies it to each proposal (p6 serves only the RPN's largest anchors).",
    "{title}'s RPN learns an object on the level whose anchors (32 px on P2 … 512 px on P6) overlap it "
    "best (IoU ≥ 0.7); RoIAlign then pools each proposal from the level the paper's rule gives.",
    "the RPN's objectness after a sigmoid, the highest of the anchors at each position",
    _RPN_CLS,
    None,
)
RETINANET = HeadFamily(
    "retinanet",
    False,
    "score_thresh",
    "the level of the anchor that produced the box",
    "{title}'s level is its anchor's, not this rule.",
    "{title} does not use it: a box's level is its anchor's. The rule is shown for comparison.",
    "{title} learns an object on the level whose anchors (32 px on P3 … 512 px on P7, 9 per position) "
    "overlap it with IoU ≥ 0.5.",
    "the highest class probability over the anchors at each position",
    _DENSE_CLS,
    _DENSE_BOX,
)
FCOS_FAMILY = HeadFamily(
    "fcos",
    False,
    "score_thresh",
    "the level of the location that produced the box",
    "{title}'s level is its location's, not this rule.",
    "{title} does not use it: it assigns objects by regression range. The rule is shown for comparison.",
    FCOS_LESSON,
    "√(class probability × centerness), the highest over the classes at each location: the score FCOS ranks by",
    _DENSE_CLS,
    _DENSE_BOX,
)


# --------------------------------------------------------------------------- what each builder assembles


def _anchors() -> AnchorGenerator:
    """torchvision's ``retinanet._default_anchorgen``: 3 sizes × 3 ratios per level, 32 to 512 px."""
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _rpn_anchors() -> AnchorGenerator:
    """torchvision's ``faster_rcnn._default_anchorgen``: one size × 3 ratios per level, 32 to 512 px."""
    sizes = ((32,), (64,), (128,), (256,), (512,))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _no_heads(out_channels: int, num_classes: int) -> dict[str, nn.Module]:
    """The class's own default heads."""
    return {}


def _rcnn_v2_heads(out_channels: int, num_classes: int, *, mask: bool = False) -> dict[str, nn.Module]:
    """``fasterrcnn_resnet50_fpn_v2`` / ``maskrcnn_resnet50_fpn_v2``: RPN head of 2 convs, 4-conv 1-fc box
    head with BatchNorm (and the 4-conv mask head with BatchNorm), the RPN's default anchors."""
    gen = _rpn_anchors()
    heads: dict[str, nn.Module] = {
        "rpn_anchor_generator": gen,
        "rpn_head": RPNHead(out_channels, gen.num_anchors_per_location()[0], conv_depth=2),
        "box_head": FastRCNNConvFCHead((out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d),
    }
    if mask:
        heads["mask_head"] = MaskRCNNHeads(out_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    return heads


def _retinanet_v2_heads(out_channels: int, num_classes: int) -> dict[str, nn.Module]:
    """``retinanet_resnet50_fpn_v2``: the head with GroupNorm(32) and the GIoU box loss."""
    gen = _anchors()
    anchors = gen.num_anchors_per_location()[0]
    head = RetinaNetHead(out_channels, anchors, num_classes, norm_layer=partial(nn.GroupNorm, 32))
    head.regression_head._loss_type = "giou"  # as the builder sets it (training only)
    return {"anchor_generator": gen, "head": head}


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: its name, torchvision's builder and class, its COCO checkpoint, and its pyramid.

    Attributes:
        name: the detector's name (a key of :data:`DETECTORS`).
        title: for captions (``"Mask R-CNN v2"``).
        builder: the function of ``torchvision.models.detection`` whose model this replicates.
        model_class: torchvision's detector class, built as ``model_class(backbone, num_classes, **heads)``.
        weights: the COCO_V1 checkpoint's record (file name with its hash prefix, URL, mean/std, eps).
        categories: class names by label id, the weights' ``meta["categories"]``.
        stages: the backbone stages feeding the FPN.
        levels: the pyramid levels the heads read, fine to coarse.
        pooled_levels: the levels RoIAlign pools from (R-CNNs: p2..p5, never p6; dense heads: none).
        env: environment variable an operator can set to a local checkpoint.
        box_ap: COCO val2017 box AP of the published weights (torchvision's ``meta["_metrics"]``).
        file_mb: size of the checkpoint, for "what to place where" messages.
        family: the kind of heads (:class:`HeadFamily`).
        extra_block: makes the FPN's block above its top level, as the builder does (max-pool P6;
            P6/P7 from P5 for RetinaNet and FCOS; from C5 for RetinaNet v2).
        heads: ``(fpn width, num_classes) -> keyword arguments`` of the class: the builder's heads
            where they are not the class's defaults.
        fpn_norm: the norm layer in the FPN's convolutions (v2 R-CNNs: BatchNorm), or None.
        marks: the state-dict keys that mark this detector in a checkpoint (the spec with the most
            marks all present wins).
        mask_ap: COCO mask AP (Mask R-CNN), else None.
        keypoint_ap: COCO keypoint AP (Keypoint R-CNN), else None.
        num_keypoints: keypoints per object (Keypoint R-CNN: 17), else None.
        keypoint_names: their names (COCO's), empty otherwise.
    """

    name: str
    title: str
    builder: str
    model_class: type[nn.Module]
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
    heads: Callable[[int, int], dict[str, nn.Module]] = _no_heads
    fpn_norm: Callable[[int], nn.Module] | None = None
    marks: tuple[str, ...] = ()
    mask_ap: float | None = None
    keypoint_ap: float | None = None
    num_keypoints: int | None = None
    keypoint_names: tuple[str, ...] = ()

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
        """What the per-level objectness maps show (the Detection page and the deck say it)."""
        return self.family.objectness

    @property
    def training_rule(self) -> str:
        """How training gives an object to a level (FCOS: regression ranges; see :data:`FCOS_LESSON`)."""
        return self.family.training_rule.format(title=self.title)

    @property
    def metrics(self) -> str:
        """``"box AP 47.4, mask AP 41.8"``: COCO val2017, from torchvision's weights metadata."""
        parts = [f"box AP {self.box_ap}"]
        if self.mask_ap is not None:
            parts.append(f"mask AP {self.mask_ap}")
        if self.keypoint_ap is not None:
            parts.append(f"keypoint AP {self.keypoint_ap}")
        return ", ".join(parts)


def _coco(enum: object, key: str, title: str, stages: tuple[str, ...], legacy_eps: bool) -> WeightFile:
    """The record of a torchvision COCO_V1 file, read from its weights enum (URL, metrics), not retyped."""
    url: str = enum.url  # type: ignore[attr-defined]
    metrics = enum.meta["_metrics"]["COCO-val2017"]  # type: ignore[attr-defined]
    ap = ", ".join(f"{k.split('_')[0]} mAP {v}" for k, v in metrics.items())
    return WeightFile(
        key,
        url.rsplit("/", 1)[1],
        url,
        f"COCO {title} (trained FPN)",
        f"COCO {title} ResNet-50-FPN (torchvision COCO_V1, {ap})",
        fpn_stages=stages,
        fpn_out_channels=256,
        detector=title,
        batchnorm_eps=0.0 if legacy_eps else None,
    )


def _spec(
    name: str,
    title: str,
    builder: str,
    model_class: type[nn.Module],
    enum: object,
    record: WeightFile | None,
    family: HeadFamily,
    extra_block: Callable[[], ExtraFPNBlock],
    env: str,
    *,
    legacy_eps: bool,
    **kwargs: object,
) -> DetectorSpec:
    meta = enum.meta  # type: ignore[attr-defined]
    metrics = meta["_metrics"]["COCO-val2017"]
    stages = ("c2", "c3", "c4", "c5") if family.proposals else ("c3", "c4", "c5")
    levels = ("p2", "p3", "p4", "p5", "p6") if family.proposals else ("p3", "p4", "p5", "p6", "p7")
    if record is None:
        record = _coco(enum, f"coco-{name}", title, stages, legacy_eps)
    keypoints = meta.get("keypoint_names")
    return DetectorSpec(
        name,
        title,
        builder,
        model_class,
        record,
        tuple(meta["categories"]),
        stages,
        levels,
        levels[:-1] if family.proposals else (),
        env,
        float(metrics["box_map"]),
        round(float(meta["_file_size"])),
        family,
        extra_block,
        mask_ap=metrics.get("mask_map"),
        keypoint_ap=metrics.get("kp_map"),
        num_keypoints=len(keypoints) if keypoints else None,
        keypoint_names=tuple(keypoints or ()),
        **kwargs,  # type: ignore[arg-type]
    )


_BOX_HEAD_CONV = "roi_heads.box_head.0.0.weight"
_MASK = "roi_heads.mask_predictor.mask_fcn_logits.weight"
_KEYPOINTS = "roi_heads.keypoint_predictor.kps_score_lowres.weight"
_CTRNESS = "head.regression_head.bbox_ctrness.weight"
_DENSE_NORM = "head.classification_head.conv.0.1.weight"
_p6p7_p5 = partial(LastLevelP6P7, 256, 256)

DETECTORS: dict[str, DetectorSpec] = {
    s.name: s
    for s in (
        _spec(
            "faster-rcnn", "Faster R-CNN", "fasterrcnn_resnet50_fpn", FasterRCNN,
            FasterRCNN_ResNet50_FPN_Weights.COCO_V1, COCO, RCNN, LastLevelMaxPool, "FPN_FASTERRCNN_WEIGHTS",
            legacy_eps=True, marks=(_RPN_CLS,),
        ),
        _spec(
            "faster-rcnn-v2", "Faster R-CNN v2", "fasterrcnn_resnet50_fpn_v2", FasterRCNN,
            FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, None, RCNN, LastLevelMaxPool, "FPN_FASTERRCNN_V2_WEIGHTS",
            legacy_eps=False, heads=_rcnn_v2_heads, fpn_norm=nn.BatchNorm2d, marks=(_RPN_CLS, _BOX_HEAD_CONV),
        ),
        _spec(
            "retinanet", "RetinaNet", "retinanet_resnet50_fpn", RetinaNet,
            RetinaNet_ResNet50_FPN_Weights.COCO_V1, RETINANET_COCO, RETINANET, _p6p7_p5, "FPN_RETINANET_WEIGHTS",
            legacy_eps=True, marks=(_DENSE_CLS,),
        ),
        _spec(
            "retinanet-v2", "RetinaNet v2", "retinanet_resnet50_fpn_v2", RetinaNet,
            RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1, None, RETINANET, partial(LastLevelP6P7, 2048, 256),
            "FPN_RETINANET_V2_WEIGHTS", legacy_eps=False, heads=_retinanet_v2_heads, marks=(_DENSE_CLS, _DENSE_NORM),
        ),
        _spec(
            "fcos", "FCOS", "fcos_resnet50_fpn", FCOS,
            FCOS_ResNet50_FPN_Weights.COCO_V1, None, FCOS_FAMILY, _p6p7_p5, "FPN_FCOS_WEIGHTS",
            legacy_eps=False, marks=(_DENSE_CLS, _CTRNESS),
        ),
        _spec(
            "mask-rcnn", "Mask R-CNN", "maskrcnn_resnet50_fpn", MaskRCNN,
            MaskRCNN_ResNet50_FPN_Weights.COCO_V1, None, RCNN, LastLevelMaxPool, "FPN_MASKRCNN_WEIGHTS",
            legacy_eps=True, marks=(_RPN_CLS, _MASK),
        ),
        _spec(
            "mask-rcnn-v2", "Mask R-CNN v2", "maskrcnn_resnet50_fpn_v2", MaskRCNN,
            MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1, None, RCNN, LastLevelMaxPool, "FPN_MASKRCNN_V2_WEIGHTS",
            legacy_eps=False, heads=partial(_rcnn_v2_heads, mask=True), fpn_norm=nn.BatchNorm2d,
            marks=(_RPN_CLS, _MASK, _BOX_HEAD_CONV),
        ),
        _spec(
            "keypoint-rcnn", "Keypoint R-CNN", "keypointrcnn_resnet50_fpn", KeypointRCNN,
            KeypointRCNN_ResNet50_FPN_Weights.COCO_V1, None, RCNN, LastLevelMaxPool, "FPN_KEYPOINTRCNN_WEIGHTS",
            legacy_eps=True, marks=(_RPN_CLS, _KEYPOINTS),
        ),
    )
}  # fmt: skip
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
