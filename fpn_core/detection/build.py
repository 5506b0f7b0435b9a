"""Building and loading the detectors: torchvision's ``FasterRCNN`` / ``RetinaNet`` on our backbone and FPN.

Weights: ``weights="coco"`` tries the operator's file (``operator_file=``; the CLI and the
dashboard read it from ``FPN_FASTERRCNN_WEIGHTS`` / ``FPN_RETINANET_WEIGHTS``), then torchvision's
COCO_V1 file in the torch hub cache, then its download when allowed, else the detector runs
untrained and its provenance says so
(:func:`~fpn_core.detection.specs.how_to_get_weights` says what to place where).
:func:`detector_pyramid` hands a detector's backbone and FPN to the views that teach the pyramid.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from ..backbone import RESNET50_FEATURE_INFO, ResNetBackbone, fold_batchnorms
from ..device import resolve_device
from ..fpn import FPN
from ..pyramid import Pyramid, PyramidConfig, with_fpn
from ..weights import (
    Progress,
    Provenance,
    WeightFile,
    WeightsError,
    download_allowed,
    find_or_download,
    load_state_dict_file,
)
from .specs import DetectorSpec, detector_spec

__all__ = ["DETECTOR_WEIGHTS", "DetectorBackbone", "build_detector", "detector_pyramid"]

#: What ``build_detector``'s ``weights=`` accepts besides a path to a checkpoint.
DETECTOR_WEIGHTS: tuple[str, ...] = ("coco", "random")


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
