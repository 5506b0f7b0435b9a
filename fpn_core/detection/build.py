"""Building and loading the detectors: torchvision's eight detector classes and heads on our backbone and FPN.

Weights: ``weights="coco"`` tries the operator's file (``operator_file=``; the CLI and the
dashboard read it from the spec's variable, e.g. ``FPN_FASTERRCNN_WEIGHTS``), then torchvision's
COCO_V1 file in the torch hub cache, then its download when allowed, else the detector runs
untrained and its provenance says so
(:func:`~fpn_core.detection.specs.how_to_get_weights` says what to place where).
``weights=PATH`` with no name reads the detector's kind, classes and layout from the file
(:func:`fpn_core.checkpoints.inspect_checkpoint`).
:func:`detector_pyramid` hands a detector's backbone and FPN to the views that teach the pyramid.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from ..backbone import RESNET50_FEATURE_INFO, ResNetBackbone, fold_batchnorms
from ..checkpoints import CheckpointInfo, inspect_checkpoint, names_by_label
from ..device import resolve_device
from ..fpn import FPN
from ..pyramid import Pyramid, PyramidConfig, trained_fpn, with_fpn
from ..weights import (
    Candidate,
    Progress,
    Provenance,
    WeightsError,
    resolve_weights,
    weight_candidates,
)
from .specs import DetectorSpec, detector_spec

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTOR_WEIGHTS",
    "FPN_WIDTH",
    "Detector",
    "DetectorBackbone",
    "build_detector",
    "detector_pyramid",
]

#: What ``build_detector``'s ``weights=`` accepts besides a path to a checkpoint.
DETECTOR_WEIGHTS: tuple[str, ...] = ("coco", "random")
#: The width of every torchvision detector's FPN.
FPN_WIDTH = 256
#: The detector ``build_detector`` makes when given neither a name nor a checkpoint file.
DEFAULT_DETECTOR = "faster-rcnn"


@dataclass(frozen=True, eq=False)
class Detector:
    """A built detector: torchvision's model, what it is, where its weights came from, how it was prepared.

    Shared read-only by every session (compared and hashed by identity).

    Attributes:
        model: torchvision's detector class (``spec.family.model_class``) on fpn_core's backbone and
            FPN, in eval mode, without gradients. Treat it as read-only.
        spec: what the detector is (:class:`~fpn_core.detection.specs.DetectorSpec`).
        provenance: its weights, where from, and why any earlier option failed.
        folded: BatchNorm folded into the convolutions and ``channels_last`` (same outputs, faster).
        classes: the name of each label ``0 .. num_classes - 1`` (COCO's categories, or a fine-tuned
            checkpoint's own: its list, its sidecar ``<stem>.classes.txt``, or ``class 1``, …).
        checkpoint: what the user's checkpoint file is (read from its keys and shapes), or None for
            torchvision's published files and the random init.
    """

    model: nn.Module
    spec: DetectorSpec
    provenance: Provenance
    folded: bool
    classes: tuple[str, ...] = ()
    checkpoint: CheckpointInfo | None = None

    @property
    def num_classes(self) -> int:
        """The classifier's outputs, background included."""
        return len(self.classes) if self.classes else self.spec.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


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


def _assemble(spec: DetectorSpec, seed: int, num_classes: int, num_keypoints: int | None) -> nn.Module:
    """What ``spec.builder`` assembles, on our backbone and FPN, with torchvision's own random init (seeded):
    its class, its heads (``spec.heads``), the FPN's norm layer and extra block."""
    with torch.random.fork_rng(devices=[]):  # same weights for the same seed; the caller's RNG untouched
        torch.manual_seed(seed)
        # FrozenBatchNorm2d as torchvision's trained detectors use: it also accepts and drops the
        # num_batches_tracked of a BatchNorm2d state dict, so both layouts load strictly.
        body = ResNetBackbone(
            resnet50(weights=None, norm_layer=FrozenBatchNorm2d), mean=spec.weights.mean, std=spec.weights.std
        )
        fpn = FPN(RESNET50_FEATURE_INFO.channels(spec.stages), FPN_WIDTH, spec.extra_block(), spec.fpn_norm)
        kwargs: dict[str, object] = dict(spec.heads(FPN_WIDTH, num_classes))
        if num_keypoints is not None:
            kwargs["num_keypoints"] = num_keypoints
        return spec.model_class(
            DetectorBackbone(body, fpn, spec.stages),
            num_classes=num_classes,
            image_mean=list(spec.weights.mean),
            image_std=list(spec.weights.std),
            **kwargs,
        )


def _fit(
    spec: DetectorSpec,
    seed: int,
    state: Mapping[str, Tensor] | None,
    num_classes: int | None = None,
    num_keypoints: int | None = None,
) -> nn.Module:
    """A fresh detector carrying ``state``, loaded strictly (torchvision's key upgrades for old files
    still apply); the seeded random init for None.

    Raises:
        WeightsError: missing or unexpected keys, or wrong shapes.
    """
    classes = spec.num_classes if num_classes is None else num_classes
    det = _assemble(spec, seed, classes, spec.num_keypoints if num_keypoints is None else num_keypoints)
    if state is not None:
        try:
            det.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines()[1:3]]
            raise WeightsError(f"does not fit {spec.title} (strict load): {' '.join(lines)[:300]}") from None
    return det


def build_detector(
    name: str | None = None,
    *,
    weights: str | os.PathLike = "coco",
    device: str | torch.device | None = None,
    seed: int = 0,
    optimize: bool = True,
    allow_download: bool | None = None,
    progress: Progress | None = None,
    operator_file: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Detector:
    """Build one of :data:`~fpn_core.detectors.DETECTORS` on fpn_core's backbone and FPN.

    ``build_detector(weights="runs/pennfudan.pth")`` reads the detector's kind, its number of
    classes (and keypoints), its FPN layout and its class names from the file alone (a file without
    names whose head has the COCO file's outputs keeps COCO's names for its label ids)
    (:func:`fpn_core.checkpoints.inspect_checkpoint`); ``build_detector("mask-rcnn-v2")`` loads the
    COCO file. Weights are resolved like the backbone's (:func:`fpn_core.weights.resolve_weights`):
    a path asked for, then the operator's file (``operator_file``), then the COCO_V1 file in the
    torch hub cache (hash-checked), then its download when allowed (timeout 15 s), else
    torchvision's random init (seeded); ``provenance`` says which, and why each earlier option
    failed. A user's checkpoint is "your checkpoint `<file>` (N classes)", never COCO-trained.
    Every file is read with ``torch.load(weights_only=True)`` and loaded strictly.

    Args:
        name: a key of ``DETECTORS``; None: the kind a checkpoint file says, else ``"faster-rcnn"``.
        weights: ``"coco"``, ``"random"`` or a path to a checkpoint in torchvision's key layout.
        device: where to put it (None: ``FPN_DEVICE`` or the best present).
        seed: seed of the random init used when no file loads.
        optimize: fold BatchNorm into the convolutions and use channels_last (same outputs).
        allow_download: None reads ``FPN_ALLOW_DOWNLOAD`` (default on).
        progress: called with (bytes done, bytes total) during a download.
        operator_file: the operator's local checkpoint (the CLI and the dashboard read ``spec.env``),
            tried before the COCO_V1 file.
        class_names: names for labels 1, 2, … (or for every label, background first), over the
            checkpoint's own (the CLI's ``--classes FILE``).

    Returns:
        The :class:`Detector`: torchvision's model in eval mode without gradients, its spec,
        provenance, class names and whether it was folded.

    Raises:
        ValueError: an unknown detector name.
        WeightsError: ``weights=PATH`` without a name, and the file cannot be read or fits none of the
            eight (one plain message: what it looks like and the first key or shape that does not fit).
    """
    weights = os.fspath(weights)
    is_file = weights not in DETECTOR_WEIGHTS
    info: CheckpointInfo | None = None
    if is_file and name is None:
        info = inspect_checkpoint(weights, mmap=True)  # the kind, classes and layout, or one plain message
        name = info.kind
    elif is_file:
        try:
            info = inspect_checkpoint(weights, mmap=True)
        except WeightsError:
            info = None  # the chain below says why it does not fit, then falls back
        if info is not None and info.kind != name:
            info = None
    spec = detector_spec(name or DEFAULT_DETECTOR)
    num_classes = info.num_classes if info else spec.num_classes
    num_keypoints = info.num_keypoints if info else spec.num_keypoints
    classes = info.class_names if info else spec.categories
    if info is not None and info.names_from == "numbered" and num_classes == spec.num_classes:
        classes = spec.categories  # a head with COCO's outputs and no names of its own: COCO's label ids
    if class_names is not None:
        classes = names_by_label(list(class_names), num_classes, "the class names given")
    if info is not None:  # the user's file, its own head: nothing else fits it
        chain = [Candidate(path=weights, env=spec.env)]
        if (num_classes, num_keypoints) == (spec.num_classes, spec.num_keypoints):
            # the COCO file's head: listed so that a copy of it, even renamed, is known by its SHA-256
            # (and gets its legacy BatchNorm eps); it is tried only if the file fails to load
            chain.append(Candidate(record=spec.weights, env=spec.env))
    else:
        chain = weight_candidates(
            weights, spec.weights, records={"coco": None}, operator_file=operator_file, env=spec.env
        )
    resolved = resolve_weights(
        chain,
        lambda state: _fit(spec, seed, state, num_classes, num_keypoints),
        requested=weights,
        seed=seed,
        allow_download=allow_download,
        progress=progress,
    )
    trained = resolved.state is not None
    provenance = resolved.provenance
    if resolved.record is not None and class_names is None:  # a published file, renamed or not: its categories
        classes = spec.categories
    if trained and resolved.record is None:  # a user's file: never called COCO-trained
        file = Path(provenance.path or weights).name
        yours = f"your checkpoint {file} ({num_classes} classes)"
        provenance = dataclasses.replace(provenance, backbone=yours)
        fpn = f"trained with {yours} on {', '.join(spec.stages)}"
    elif trained:
        fpn = f"trained with {spec.title} on {', '.join(spec.stages)}"
    else:
        fpn = f"random init (seed {seed})"
    provenance = dataclasses.replace(provenance, fpn=fpn, fpn_pretrained=trained)
    model = resolved.model.eval().requires_grad_(False)
    body: ResNetBackbone = model.backbone.body
    body.provenance = provenance
    if optimize:
        fold_batchnorms(body)
    dev = device if isinstance(device, torch.device) else resolve_device(device)[0]
    model.to(dev, memory_format=torch.channels_last if optimize else torch.contiguous_format)
    mine = info if trained and resolved.record is None else None
    return Detector(model, spec, provenance, optimize, tuple(classes), mine)


# --------------------------------------------------------------------------- the pyramid for other views


def detector_pyramid(det: Detector, config: PyramidConfig | None = None) -> Pyramid:
    """The detector's backbone and FPN as a :class:`~fpn_core.pyramid.Pyramid` for every other view.

    A detector's checkpoint carries its trained ResNet-50 and FPN; this hands them to the pages
    that teach the pyramid. The backbone module is shared (read-only, no copy). The FPN is a new
    ``FPN`` for ``config`` (its upsampling, merge and ablation options) whose lateral and output
    convolutions, norm layers (the v2 R-CNNs' BatchNorm) and, with ``config.p6``, extra block (max-pool
    P6; P6/P7 from P5 for RetinaNet and FCOS, from C5 for RetinaNet v2) are the detector's own for
    the chosen stages (:func:`fpn_core.pyramid.trained_fpn`). With the detector's own stages the
    pyramid equals ``det.model.backbone(x)``.

    Args:
        det: from :func:`build_detector`.
        config: width 256 and stages among the detector's (R-CNNs: c2..c5; RetinaNet, FCOS: c3..c5).
            Default: the detector's own stages, with its extra block.

    Raises:
        ValueError: a width other than 256, or a stage the detector's FPN does not have.
    """
    spec = det.spec
    config = config or PyramidConfig(stages=spec.stages, weights=det.provenance.requested, optimize=det.folded)
    if config.out_channels != FPN_WIDTH:
        raise ValueError(f"the detector's FPN has width {FPN_WIDTH}, got out_channels={config.out_channels}")
    body: ResNetBackbone = det.model.backbone.body
    fpn = trained_fpn(config, det.model.backbone.fpn.state_dict(), spec.stages)
    fpn.to(body.device, memory_format=torch.channels_last if body.folded else torch.contiguous_format)
    trained = bool(det.provenance.pretrained)
    source = f"your checkpoint {det.checkpoint.path.name} ({spec.title})" if det.checkpoint else spec.title
    desc = f"{'trained' if trained else 'random init'} with {source} for {', '.join(config.stages)}"
    return with_fpn(body, fpn, config, desc, trained)
