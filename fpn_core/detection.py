"""Object detection on the pyramid, every detection traced to the level that found it.

The two detectors are torchvision's own ``FasterRCNN`` and ``RetinaNet`` classes, built on
fpn_core's ``ResNetBackbone`` and ``FPN`` (a ``FeaturePyramidNetwork`` subclass). Their
state dicts are torchvision's, key for key, so torchvision's COCO checkpoints load strictly and
the outputs equal torchvision's.

Why the steps are run here one by one instead of calling ``model(images)``: torchvision's
forward returns boxes, scores and labels, and drops which proposal or anchor (hence which
level) produced each box. Hooks could catch that, but the model is shared read-only by every
session of the dashboard; so :func:`run_heads` calls torchvision's own components (transform,
backbone, RPN head, box coder, RoIAlign, box head, RetinaNet head) in torchvision's order, and
only re-does the few lines of bookkeeping (proposal filtering, post-processing) that keep the
index of each box's source. Nothing is written to the model during a run, not even
torchvision's lazy caches (``AnchorGenerator.cell_anchors``, ``MultiScaleRoIAlign.scales``).

Caching: :func:`run_detector_features` (backbone + FPN, the expensive part) runs once per image,
size and weights; :func:`run_heads` runs the heads on those features; :func:`filter_detections`
re-applies a score threshold without running anything. :func:`detect` does all three.

Weights: ``weights="coco"`` tries the operator's file (``operator_file=``; the CLI and the
dashboard read it from ``FPN_FASTERRCNN_WEIGHTS`` / ``FPN_RETINANET_WEIGHTS``), then torchvision's
COCO_V1 file in the torch hub cache, then its download when allowed, else the detector runs
untrained and its provenance says so
(:func:`how_to_get_weights` says what to place where). :func:`detector_pyramid` hands a
detector's backbone and FPN to the views that teach the pyramid.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_Weights,
    RetinaNet,
    RetinaNet_ResNet50_FPN_Weights,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import _multiscale_roi_align, _setup_scales

from .backbone import RESNET50_FEATURE_INFO, ResNetBackbone, fold_batchnorms
from .device import device_slot, resolve_device
from .fpn import FPN
from .images import check_rgb
from .levels import level_name, stage_index, torchvision_key_to_level
from .probe import assign_level_k
from .pyramid import Pyramid, PyramidConfig, with_fpn
from .weights import (
    COCO,
    RETINANET_COCO,
    Progress,
    Provenance,
    WeightFile,
    WeightsError,
    download_allowed,
    find_or_download,
    hub_checkpoint_dir,
    load_state_dict_file,
)

__all__ = [
    "DETECTORS",
    "DETECTOR_NAMES",
    "DETECTOR_WEIGHTS",
    "TOP_K_PROPOSALS",
    "Detections",
    "DetectorBackbone",
    "DetectorFeatures",
    "DetectorSpec",
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

#: What ``build_detector``'s ``weights=`` accepts besides a path to a checkpoint.
DETECTOR_WEIGHTS: tuple[str, ...] = ("coco", "random")
#: Proposals kept per level for display (the RPN itself keeps up to 1000 over all levels).
TOP_K_PROPOSALS = 10
#: torchvision's detection input size: shorter side 800, longer side at most 1333.
DEFAULT_MIN_SIZE, DEFAULT_MAX_SIZE = 800, 1333
#: Limits of a chosen input size (the long side), in pixels.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 64, 1333


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

    @property
    def title(self) -> str:
        """For captions: the detector its checkpoint's record names."""
        return self.weights.detector or self.name


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


# --------------------------------------------------------------------------- the model


class DetectorBackbone(nn.Module):
    """torchvision's ``BackboneWithFPN``, with fpn_core's backbone and FPN inside.

    Same attribute names (``body``, ``fpn``, ``out_channels``), so the state dict keys are
    torchvision's (``backbone.body.*``, ``backbone.fpn.*``), and the same output keys
    (``'0'..'3'`` then ``'pool'``, or ``'0'..'2'`` then ``'p6'``, ``'p7'``).
    """

    def __init__(self, body: ResNetBackbone, fpn: FPN, stages: Sequence[str]) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.stages = tuple(stages)
        self.out_channels = fpn.layer_blocks[0][0].out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        c = self.body(x)
        return self.fpn(OrderedDict((str(i), c[s]) for i, s in enumerate(self.stages)))


def _assemble(spec: DetectorSpec, seed: int) -> nn.Module:
    """torchvision's detector class on our backbone and FPN, with torchvision's own random init (seeded)."""
    with torch.random.fork_rng(devices=[]):  # same weights for the same seed; the caller's RNG untouched
        torch.manual_seed(seed)
        # FrozenBatchNorm2d as torchvision's trained detectors use: it also accepts and drops the
        # num_batches_tracked of a BatchNorm2d state dict, so both layouts load strictly.
        body = ResNetBackbone(
            resnet50(weights=None, norm_layer=FrozenBatchNorm2d), mean=spec.weights.mean, std=spec.weights.std
        )
        in_channels = RESNET50_FEATURE_INFO.channels(spec.stages)
        kw = {"image_mean": list(spec.weights.mean), "image_std": list(spec.weights.std)}
        if spec.name == "faster-rcnn":
            fpn = FPN(in_channels, 256, LastLevelMaxPool())
            det = FasterRCNN(DetectorBackbone(body, fpn, spec.stages), num_classes=len(spec.categories), **kw)
        else:
            fpn = FPN(in_channels, 256, LastLevelP6P7(256, 256))
            det = RetinaNet(DetectorBackbone(body, fpn, spec.stages), num_classes=len(spec.categories), **kw)
    return det


def _load(det: nn.Module, spec: DetectorSpec, state: Mapping[str, Tensor], path: str) -> None:
    """Load a checkpoint strictly (torchvision's own key upgrades for old files still apply).

    Raises:
        WeightsError: missing or unexpected keys, or wrong shapes.
    """
    try:
        det.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:3]]
        raise WeightsError(f"{path} does not fit {spec.title} (strict load): {' '.join(lines)[:300]}") from None


def _is_published(path: Path, wf: WeightFile, source: str) -> bool:
    """Whether a file is torchvision's published checkpoint (the one ``wf`` describes)."""
    if source != "local file" or path.name == wf.filename:
        return True  # the hub cache and downloads are hash-checked against this name
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(wf.hash_prefix)


def build_detector(
    name: str = "faster-rcnn",
    *,
    weights: str = "coco",
    device: str | torch.device | None = None,
    seed: int = 0,
    optimize: bool = True,
    allow_download: bool | None = None,
    progress: Progress | None = None,
    operator_file: str | None = None,
) -> nn.Module:
    """Build torchvision's Faster R-CNN or RetinaNet on fpn_core's backbone and FPN.

    Weights are resolved like the backbone's: a path asked for, then the operator's file
    (``operator_file``), then the COCO_V1 file in the torch hub cache (hash-checked), then its download
    when allowed (timeout 15 s), else torchvision's random init (seeded); ``provenance`` says
    which, and why each earlier option failed. Every file is read with
    ``torch.load(weights_only=True)`` and loaded strictly.

    Args:
        name: ``"faster-rcnn"`` or ``"retinanet"``.
        weights: ``"coco"``, ``"random"`` or a path to a checkpoint in torchvision's key layout.
        device: where to put it (None: ``FPN_DEVICE`` or the best present).
        seed: seed of the random init used when no file loads.
        optimize: fold BatchNorm into the convolutions and use channels_last (same outputs).
        allow_download: None reads ``FPN_ALLOW_DOWNLOAD`` (default on).
        progress: called with (bytes done, bytes total) during a download.
        operator_file: the operator's local checkpoint (the CLI and the dashboard read ``spec.env``),
            tried before the COCO_V1 file.

    Returns:
        The ``FasterRCNN`` / ``RetinaNet`` instance in eval mode, without gradients, with
        ``.spec`` (:class:`DetectorSpec`), ``.provenance`` and ``.folded`` set. Treat it as read-only.

    Raises:
        ValueError: an unknown detector name.
    """
    spec = detector_spec(name)
    allow = download_allowed() if allow_download is None else allow_download
    attempts: list[tuple[str, Callable[[], tuple[dict[str, Tensor], str, os.PathLike | str]]]] = []

    def local(path: str) -> Callable[[], tuple[dict[str, Tensor], str, str]]:
        return lambda: (load_state_dict_file(path), "local file", path)

    if weights not in DETECTOR_WEIGHTS:
        attempts.append((f"local file {weights}", local(weights)))
    if weights != "random":
        if operator_file and operator_file != weights:
            attempts.append((f"local file {operator_file} ({spec.env})", local(operator_file)))
        attempts.append(
            (
                spec.weights.description,
                lambda: find_or_download(spec.weights, allow_download=allow, progress=progress, env=spec.env),
            )
        )

    fallbacks: list[str] = []
    provenance = None
    det = None
    for label, attempt in attempts:
        try:
            state, source, path = attempt()
            det = _assemble(spec, seed)
            _load(det, spec, state, str(path))
        except WeightsError as exc:
            fallbacks.append(str(exc))
            det = None  # a failed strict load may have written some tensors: start again from scratch
            continue
        eps = spec.weights.batchnorm_eps
        if eps is not None and _is_published(Path(path), spec.weights, source):
            for m in det.modules():
                if isinstance(m, FrozenBatchNorm2d):
                    m.eps = eps
        desc = label if source != "local file" else f"local file {os.path.basename(str(path))}"
        provenance = Provenance(
            weights,
            desc,
            source,
            str(path),
            True,
            fpn=f"trained with {spec.title} on {', '.join(spec.stages)}",
            fpn_pretrained=True,
            fallbacks=tuple(fallbacks),
        )
        break
    if det is None or provenance is None:
        det = _assemble(spec, seed)
        provenance = Provenance(
            weights,
            f"random init (seed {seed})",
            "random init",
            fpn=f"random init (seed {seed})",
            fallbacks=tuple(fallbacks),
        )

    det.eval().requires_grad_(False)
    body: ResNetBackbone = det.backbone.body
    body.provenance = provenance
    if optimize:
        fold_batchnorms(body)
    dev = device if isinstance(device, torch.device) else resolve_device(device)[0]
    det.to(dev, memory_format=torch.channels_last if optimize else torch.contiguous_format)
    det.spec = spec
    det.provenance = provenance
    det.folded = optimize
    return det


def _spec_of(det: nn.Module) -> DetectorSpec:
    spec = getattr(det, "spec", None)
    if not isinstance(spec, DetectorSpec):
        raise TypeError(f"expected a detector from build_detector, got {type(det).__name__}")
    return spec


def _device_of(det: nn.Module) -> torch.device:
    return next(det.parameters()).device


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LevelAnchors:
    """The anchors one pyramid level carries.

    Attributes:
        sizes: anchor side lengths at aspect ratio 1, in network input pixels.
        aspect_ratios: height / width ratios, each combined with each size.
        stride: (vertical, horizontal) spacing of anchor centres in network input pixels, as
            torchvision computes it (padded input size // map size).
        per_position: anchors at each map position (``len(sizes) * len(aspect_ratios)``).
        count: anchors on this level for this input (positions × per_position).
    """

    sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]
    stride: tuple[int, int]
    per_position: int
    count: int


@dataclass(frozen=True)
class LevelProposals:
    """The RPN's proposals from one level that survived its NMS (Faster R-CNN only).

    Attributes:
        count: how many of the (at most 1000) proposals sent to the RoI heads came from this level.
        boxes: the top ``k`` of them by objectness, ``(k, 4)`` x1, y1, x2, y2 in input image pixels.
        scores: their objectness after a sigmoid, ``(k,)``.
    """

    count: int
    boxes: Tensor
    scores: Tensor


@dataclass(frozen=True)
class DetectorFeatures:
    """Backbone + FPN output on one image: what :func:`run_heads` needs, computed once.

    Attributes:
        detector: the detector's name (the heads check it matches).
        maps: the pyramid with torchvision's keys (``'0'..'3', 'pool'`` or ``'0'..'2', 'p6', 'p7'``).
        image_hw: the input image's size.
        input_hw: the resized network input's size, before padding to a multiple of 32.
        padded_hw: the batched tensor's size (what anchors are laid out on).
    """

    detector: str
    maps: OrderedDict[str, Tensor]
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    padded_hw: tuple[int, int]

    @property
    def levels(self) -> OrderedDict[str, Tensor]:
        """The same maps named by level (``p2..p6`` or ``p3..p7``)."""
        stages = DETECTORS[self.detector].stages
        return OrderedDict((torchvision_key_to_level(k, stages), v) for k, v in self.maps.items())


@dataclass(frozen=True)
class Detections:
    """What a detector found on one image, each box traced to its pyramid level.

    Attributes:
        detector: ``"faster-rcnn"`` or ``"retinanet"``.
        boxes: ``(N, 4)`` float x1, y1, x2, y2 in the input image's pixels, best score first.
        scores: ``(N,)``.
        labels: ``(N,)`` COCO category ids, as torchvision returns them.
        names: N class names (the weights' ``meta["categories"]``).
        levels: N level names: for Faster R-CNN the level RoIAlign pooled the detection's
            proposal from (torchvision's ``LevelMapper`` on the proposal, in network input
            coordinates); for RetinaNet the level of the anchor that produced it.
        anchor_levels: N level names of the anchor behind each detection: for Faster R-CNN the
            level whose RPN anchor proposed the box (it may differ from ``levels``); for
            RetinaNet the same as ``levels``.
        source_boxes: ``(N, 4)`` the proposal (Faster R-CNN) or anchor (RetinaNet) that produced
            each detection, in network input pixels.
        objectness: ``{level: (H_k, W_k)}``: for Faster R-CNN the RPN objectness after a sigmoid,
            the maximum over the 3 anchors at each position; for RetinaNet the highest class
            probability over the anchors at each position.
        proposals: ``{level: LevelProposals}`` (Faster R-CNN; empty for RetinaNet, which has no RPN).
        anchors: ``{level: LevelAnchors}``: sizes and aspect ratios per level.
        score_threshold: boxes scoring below it were dropped.
        image_hw: the input image's size; input_hw: the network input's size (before padding).
        provenance: the detector's weights.
    """

    detector: str
    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: tuple[str, ...]
    levels: tuple[str, ...]
    anchor_levels: tuple[str, ...]
    source_boxes: Tensor
    objectness: dict[str, Tensor]
    proposals: dict[str, LevelProposals]
    anchors: dict[str, LevelAnchors]
    score_threshold: float
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    provenance: Provenance | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return int(self.scores.numel())

    @property
    def level_names(self) -> tuple[str, ...]:
        """The detector's levels, fine to coarse (every key of ``objectness``)."""
        return tuple(self.objectness)

    def count_per_level(self) -> dict[str, int]:
        """How many detections each level produced (every level of the detector, zeros included)."""
        counts = dict.fromkeys(self.level_names, 0)
        for level in self.levels:
            counts[level] = counts.get(level, 0) + 1
        return counts

    @property
    def input_scale(self) -> float:
        """Network input pixels per image pixel (the transform keeps the aspect ratio)."""
        return self.input_hw[0] / self.image_hw[0]

    def sizes(self) -> list[float]:
        """Box size sqrt(w*h) of each detection, in input image pixels."""
        wh = (self.boxes[:, 2:] - self.boxes[:, :2]).clamp_min(0)
        return [float(v) for v in (wh[:, 0] * wh[:, 1]).sqrt()]

    def as_dict(self) -> dict:
        """Plain JSON-ready data: one row per detection, counts and anchors per level, provenance.

        Each row has ``size`` (√(wh) in image pixels), ``input_size`` (the same in network input
        pixels, where the FPN rule is defined) and ``paper_k`` (the rule on ``input_size``).
        """
        rows = []
        scale = self.input_scale
        for i, size in enumerate(self.sizes()):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            rows.append(
                {
                    "class": self.names[i],
                    "label": int(self.labels[i]),
                    "score": float(self.scores[i]),
                    "box": [x1, y1, x2, y2],
                    "size": size,
                    "input_size": size * scale,
                    "level": self.levels[i],
                    "anchor_level": self.anchor_levels[i],
                    "paper_k": paper_level((x2 - x1) * scale, (y2 - y1) * scale),
                }
            )
        return {
            "detector": self.detector,
            "score_threshold": self.score_threshold,
            "image_hw": list(self.image_hw),
            "input_hw": list(self.input_hw),
            "detections": rows,
            "per_level": self.count_per_level(),
            "proposals_per_level": {k: p.count for k, p in self.proposals.items()},
            "anchors": {
                k: {
                    "sizes": list(a.sizes),
                    "aspect_ratios": list(a.aspect_ratios),
                    "stride": list(a.stride),
                    "per_position": a.per_position,
                }
                for k, a in self.anchors.items()
            },
            "weights": self.provenance.as_dict() if self.provenance else None,
        }


# --------------------------------------------------------------------------- running


def _image_tensor(image: np.ndarray) -> Tensor:
    """An RGB uint8 (H, W, 3) array as torchvision's detectors take it: float (3, H, W) in [0, 1]."""
    check_rgb(image)
    if not image.flags.writeable:  # shared, read-only arrays (the UI's caches): torch wants a writable buffer
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)


def run_detector_features(det: nn.Module, image: np.ndarray, *, size: int | None = None) -> DetectorFeatures:
    """Resize, normalize and run the backbone and FPN: the part worth caching.

    Args:
        det: from :func:`build_detector`.
        image: RGB uint8 (H, W, 3).
        size: None for torchvision's detection size (shorter side 800, longer at most 1333,
            what the COCO weights were trained at); else the long side in pixels (64 to 1333).

    Raises:
        ValueError: a bad image or size.
    """
    spec = _spec_of(det)
    if size is not None and not MIN_INPUT_SIZE <= int(size) <= MAX_INPUT_SIZE:
        raise ValueError(f"size must be from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels, got {size}")
    tensor = _image_tensor(image)
    device = _device_of(det)
    transform = det.transform
    if size is not None:  # min = max = size: the long side becomes ``size``
        transform = GeneralizedRCNNTransform(int(size), int(size), list(spec.weights.mean), list(spec.weights.std))
    with device_slot(device), torch.inference_mode():
        images, _ = transform([tensor.to(device)])
        x = images.tensors
        if getattr(det, "folded", False):
            x = x.contiguous(memory_format=torch.channels_last)
        maps = det.backbone(x)
    h, w = images.image_sizes[0]
    return DetectorFeatures(
        spec.name, maps, (int(image.shape[0]), int(image.shape[1])), (int(h), int(w)), tuple(x.shape[-2:])
    )


def _anchors(gen: AnchorGenerator, padded_hw: tuple[int, int], maps: Sequence[Tensor]) -> tuple[list[Tensor], list]:
    """torchvision's ``AnchorGenerator.forward`` for one image, without writing its cache.

    Returns:
        The anchors per level ``(H*W*A, 4)`` in network input pixels, and the strides used.
    """
    dtype, device = maps[0].dtype, maps[0].device
    out, strides = [], []
    for fmap, base in zip(maps, gen.cell_anchors, strict=True):
        gh, gw = fmap.shape[-2:]
        sh = torch.empty((), dtype=torch.int64, device=device).fill_(padded_hw[0] // gh)
        sw = torch.empty((), dtype=torch.int64, device=device).fill_(padded_hw[1] // gw)
        shifts_x = torch.arange(0, gw, dtype=torch.int32, device=device) * sw
        shifts_y = torch.arange(0, gh, dtype=torch.int32, device=device) * sh
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        base = base.to(dtype=dtype, device=device)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        strides.append((int(sh), int(sw)))
    return out, strides


def _anchor_info(gen: AnchorGenerator, names: Sequence[str], strides, counts: Sequence[int]) -> dict[str, LevelAnchors]:
    return {
        name: LevelAnchors(
            tuple(float(s) for s in sizes),
            tuple(float(r) for r in ratios),
            stride,
            len(sizes) * len(ratios),
            int(count),
        )
        for name, sizes, ratios, stride, count in zip(names, gen.sizes, gen.aspect_ratios, strides, counts, strict=True)
    }


@dataclass
class _Raw:
    """Detections in network input coordinates, before the final rescale."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    levels: list[str]
    anchor_levels: list[str]
    sources: Tensor
    objectness: dict[str, Tensor]
    proposals: dict[str, tuple[int, Tensor, Tensor]]
    anchors: dict[str, LevelAnchors]


def _faster_rcnn_heads(
    det: FasterRCNN, feats: DetectorFeatures, names: list[str], top_k: int, min_score: float
) -> _Raw:
    """torchvision's RPN and RoI heads (eval), keeping each box's proposal and its levels."""
    rpn, rh = det.rpn, det.roi_heads
    image_shape = feats.input_hw
    maps = list(feats.maps.values())

    # ---- RegionProposalNetwork.forward
    objectness, deltas = rpn.head(maps)
    anchors, strides = _anchors(rpn.anchor_generator, feats.padded_hw, maps)
    per_level = [o[0].numel() for o in objectness]
    obj_maps = {n: torch.sigmoid(o[0]).amax(dim=0) for n, o in zip(names, objectness, strict=True)}
    obj, pred = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(pred.detach(), [torch.cat(anchors)]).view(1, -1, 4)

    # ---- RegionProposalNetwork.filter_proposals, keeping the level of every proposal
    obj = obj.detach().reshape(1, -1)
    lvl = torch.cat([torch.full((n,), i, dtype=torch.int64, device=obj.device) for i, n in enumerate(per_level)])
    lvl = lvl.reshape(1, -1).expand_as(obj)
    top_n_idx = rpn._get_top_n_idx(obj, per_level)
    batch_idx = torch.arange(1, device=obj.device)[:, None]
    obj, lvl, proposals = obj[batch_idx, top_n_idx][0], lvl[batch_idx, top_n_idx][0], proposals[batch_idx, top_n_idx][0]
    prob = torch.sigmoid(obj)
    boxes = box_ops.clip_boxes_to_image(proposals, image_shape)
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    boxes, prob, lvl = boxes[keep], prob[keep], lvl[keep]
    keep = torch.where(prob >= rpn.score_thresh)[0]
    boxes, prob, lvl = boxes[keep], prob[keep], lvl[keep]
    keep = box_ops.batched_nms(boxes, prob, lvl, rpn.nms_thresh)[: rpn.post_nms_top_n()]
    props, prob, lvl = boxes[keep], prob[keep], lvl[keep]

    kept: dict[str, tuple[int, Tensor, Tensor]] = {}
    for i, name in enumerate(names):
        mine = torch.where(lvl == i)[0]  # already sorted by objectness within the level (NMS order)
        kept[name] = (int(mine.numel()), props[mine[:top_k]], prob[mine[:top_k]])

    # ---- RoIHeads.forward: MultiScaleRoIAlign without writing its lazy scale cache
    pool = rh.box_roi_pool
    x_filtered = [feats.maps[k] for k in pool.featmap_names]
    scales, mapper = _setup_scales(x_filtered, [image_shape], pool.canonical_scale, pool.canonical_level)
    box_features = _multiscale_roi_align(x_filtered, [props], pool.output_size, pool.sampling_ratio, scales, mapper)
    class_logits, box_regression = rh.box_predictor(rh.box_head(box_features))

    # ---- RoIHeads.postprocess_detections, keeping the proposal of every box
    num_classes = class_logits.shape[-1]
    pred_boxes = box_ops.clip_boxes_to_image(rh.box_coder.decode(box_regression, [props]), image_shape)
    scores = F.softmax(class_logits, -1)
    labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
    source = torch.arange(props.shape[0], device=scores.device).view(-1, 1).expand_as(scores)
    pred_boxes, scores, labels, source = pred_boxes[:, 1:], scores[:, 1:], labels[:, 1:], source[:, 1:]
    pred_boxes, scores = pred_boxes.reshape(-1, 4), scores.reshape(-1)
    labels, source = labels.reshape(-1), source.reshape(-1)
    inds = torch.where(scores > min_score)[0]
    pred_boxes, scores, labels, source = pred_boxes[inds], scores[inds], labels[inds], source[inds]
    keep = box_ops.remove_small_boxes(pred_boxes, min_size=1e-2)
    pred_boxes, scores, labels, source = pred_boxes[keep], scores[keep], labels[keep], source[keep]
    keep = box_ops.batched_nms(pred_boxes, scores, labels, rh.nms_thresh)[: rh.detections_per_img]
    pred_boxes, scores, labels, source = pred_boxes[keep], scores[keep], labels[keep], source[keep]

    sources = props[source]
    pooled = mapper([sources]) if sources.numel() else torch.zeros(0, dtype=torch.int64)
    k_min = stage_index(DETECTORS["faster-rcnn"].pooled_levels[0])
    return _Raw(
        pred_boxes,
        scores,
        labels,
        [level_name(int(k) + k_min) for k in pooled],
        [names[int(i)] for i in lvl[source]],
        sources,
        obj_maps,
        kept,
        _anchor_info(rpn.anchor_generator, names, strides, [a.shape[0] for a in anchors]),
    )


def _retinanet_heads(det: RetinaNet, feats: DetectorFeatures, names: list[str], min_score: float) -> _Raw:
    """torchvision's RetinaNet head and post-processing (eval), keeping each box's anchor and level."""
    image_shape = feats.input_hw
    maps = list(feats.maps.values())
    head_outputs = det.head(maps)
    anchors, strides = _anchors(det.anchor_generator, feats.padded_hw, maps)
    hw = [m.shape[-2] * m.shape[-1] for m in maps]
    a = head_outputs["cls_logits"].size(1) // sum(hw)
    per_level = [n * a for n in hw]
    logits = head_outputs["cls_logits"][0].split(per_level)
    regression = head_outputs["bbox_regression"][0].split(per_level)
    probs = [torch.sigmoid(cl) for cl in logits]  # once, for the objectness maps and the boxes
    obj_maps = {
        n: p.view(m.shape[-2], m.shape[-1], -1).amax(dim=-1) for n, p, m in zip(names, probs, maps, strict=True)
    }

    boxes_all, scores_all, labels_all, levels_all, anchors_all = [], [], [], [], []
    for i, (br, prob, an) in enumerate(zip(regression, probs, anchors, strict=True)):
        num_classes = prob.shape[-1]
        scores = prob.flatten()
        keep_idxs = scores > min_score
        scores = scores[keep_idxs]
        topk_idxs = torch.where(keep_idxs)[0]
        scores, idxs = scores.topk(min(det.topk_candidates, topk_idxs.size(0)))
        topk_idxs = topk_idxs[idxs]
        anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels = topk_idxs % num_classes
        boxes = det.box_coder.decode_single(br[anchor_idxs], an[anchor_idxs])
        boxes_all.append(box_ops.clip_boxes_to_image(boxes, image_shape))
        scores_all.append(scores)
        labels_all.append(labels)
        levels_all.append(torch.full_like(labels, i))
        anchors_all.append(an[anchor_idxs])
    boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
    level_idx, sources = torch.cat(levels_all), torch.cat(anchors_all)
    keep = box_ops.batched_nms(boxes, scores, labels, det.nms_thresh)[: det.detections_per_img]
    levels = [names[int(i)] for i in level_idx[keep]]
    return _Raw(
        boxes[keep],
        scores[keep],
        labels[keep],
        levels,
        list(levels),
        sources[keep],
        obj_maps,
        {},
        _anchor_info(det.anchor_generator, names, strides, [x.shape[0] for x in anchors]),
    )


def run_heads(
    det: nn.Module, features: DetectorFeatures, *, top_k: int = TOP_K_PROPOSALS, min_score: float | None = None
) -> Detections:
    """Run the detector's heads on cached features: every detection torchvision's model returns.

    Args:
        det: the detector the features came from.
        features: from :func:`run_detector_features`.
        top_k: proposals kept per level for display (Faster R-CNN).
        min_score: the heads' own score threshold (None: torchvision's, 0.05). A lower value
            shows what an untrained detector proposes; outputs then differ from torchvision's.

    Returns:
        :class:`Detections` at ``score_threshold = min_score``; :func:`filter_detections`
        raises the threshold without running anything again.

    Raises:
        ValueError: features of another detector, or a bad ``top_k`` / ``min_score``.
    """
    spec = _spec_of(det)
    if features.detector != spec.name:
        raise ValueError(f"these features come from {features.detector}, not {spec.name}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    base = float(det.roi_heads.score_thresh if spec.name == "faster-rcnn" else det.score_thresh)
    min_score = base if min_score is None else float(min_score)
    if not 0.0 <= min_score < 1.0:
        raise ValueError(f"min_score must be in [0, 1), got {min_score}")
    names = list(features.levels)
    device = _device_of(det)
    with device_slot(device), torch.inference_mode():
        if spec.name == "faster-rcnn":
            raw = _faster_rcnn_heads(det, features, names, top_k, min_score)
        else:
            raw = _retinanet_heads(det, features, names, min_score)
        boxes = resize_boxes(raw.boxes, list(features.input_hw), list(features.image_hw))
        proposals = {
            n: LevelProposals(
                count, resize_boxes(b, list(features.input_hw), list(features.image_hw)).cpu(), s.float().cpu()
            )
            for n, (count, b, s) in raw.proposals.items()
        }
    labels = raw.labels.cpu()
    return Detections(
        detector=spec.name,
        boxes=boxes.float().cpu(),
        scores=raw.scores.float().cpu(),
        labels=labels,
        names=tuple(spec.categories[int(i)] for i in labels),
        levels=tuple(raw.levels),
        anchor_levels=tuple(raw.anchor_levels),
        source_boxes=raw.sources.float().cpu(),
        objectness={k: v.float().cpu() for k, v in raw.objectness.items()},
        proposals=proposals,
        anchors=raw.anchors,
        score_threshold=min_score,
        image_hw=features.image_hw,
        input_hw=features.input_hw,
        provenance=getattr(det, "provenance", None),
    )


def filter_detections(dets: Detections, score_threshold: float) -> Detections:
    """Keep the detections scoring at least ``score_threshold`` (nothing runs again).

    A threshold below the one ``dets`` was made with cannot bring dropped boxes back; the
    result keeps the higher of the two.

    Raises:
        ValueError: a threshold outside [0, 1].
    """
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold!r}")
    threshold = max(float(score_threshold), dets.score_threshold)
    keep = [i for i, s in enumerate(dets.scores.tolist()) if s >= threshold]
    idx = torch.tensor(keep, dtype=torch.int64)
    return replace(
        dets,
        boxes=dets.boxes[idx],
        scores=dets.scores[idx],
        labels=dets.labels[idx],
        names=tuple(dets.names[i] for i in keep),
        levels=tuple(dets.levels[i] for i in keep),
        anchor_levels=tuple(dets.anchor_levels[i] for i in keep),
        source_boxes=dets.source_boxes[idx],
        score_threshold=threshold,
    )


def detect(det: nn.Module, image: np.ndarray, score_threshold: float = 0.5, *, size: int | None = None) -> Detections:
    """Detect objects in one image and trace each to its pyramid level.

    Args:
        det: from :func:`build_detector`.
        image: RGB uint8 (H, W, 3).
        score_threshold: keep detections scoring at least this (0 to 1).
        size: None for torchvision's input size (shorter side 800, longer at most 1333), else
            the long side in pixels.

    Returns:
        :class:`Detections`; boxes, scores and labels equal torchvision's model filtered at
        ``score_threshold``.

    Raises:
        ValueError: a bad image, size or threshold.
    """
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold!r}")
    return filter_detections(run_heads(det, run_detector_features(det, image, size=size)), score_threshold)


# --------------------------------------------------------------------------- the pyramid for other views


def detector_pyramid(det: nn.Module, config: PyramidConfig | None = None) -> Pyramid:
    """The detector's backbone and FPN as a :class:`~fpn_core.pyramid.Pyramid` for every other view.

    A trained detector carries a COCO-trained ResNet-50 and FPN; this hands them to the pages
    that teach the pyramid. The backbone module is shared (read-only, no copy). The FPN is a new
    ``FPN`` for ``config`` (its upsampling, merge, ablation and p6 options) whose lateral
    and output convolutions are the detector's for the chosen stages. RetinaNet's p6/p7 are convs
    of its own that only its head uses; with ``config.p6`` the pyramid's p6 is the usual stride-2
    subsampling of the top level.

    Args:
        det: from :func:`build_detector`.
        config: width 256 and stages among the detector's (Faster R-CNN: c2..c5; RetinaNet:
            c3..c5). Default: the detector's own stages, with p6.

    Raises:
        ValueError: a width other than 256, or a stage the detector's FPN does not have.
    """
    spec = _spec_of(det)
    config = config or PyramidConfig(stages=spec.stages, weights=det.provenance.requested, optimize=det.folded)
    if config.out_channels != 256:
        raise ValueError(f"the detector's FPN has width 256, got out_channels={config.out_channels}")
    missing = [s for s in config.stages if s not in spec.stages]
    if missing:
        raise ValueError(f"{spec.title}'s FPN has no lateral for {', '.join(missing)}; use {', '.join(spec.stages)}")
    body: ResNetBackbone = det.backbone.body
    source: FPN = det.backbone.fpn
    fpn = FPN(
        RESNET50_FEATURE_INFO.channels(config.stages),
        256,
        LastLevelMaxPool() if config.p6 else None,
        upsample=config.upsample,
        merge=config.merge,
        ablation=config.ablation,
    )
    with torch.no_grad():
        for i, stage in enumerate(config.stages):
            j = spec.stages.index(stage)
            fpn.inner_blocks[i].load_state_dict(source.inner_blocks[j].state_dict())
            fpn.layer_blocks[i].load_state_dict(source.layer_blocks[j].state_dict())
    fpn.eval().requires_grad_(False)
    fpn.to(body.device, memory_format=torch.channels_last if body.folded else torch.contiguous_format)
    trained = bool(det.provenance.pretrained)
    desc = f"{'trained' if trained else 'random init'} with {spec.title} for {', '.join(config.stages)}"
    return with_fpn(body, fpn, config, desc, trained)
