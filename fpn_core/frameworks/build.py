"""Turn a :class:`FrameworkCheckpoint` into the engine's :class:`~fpn_core.pyramid.Pyramid`.

The modules stay torchvision's: a ``ResNet`` in a :class:`~fpn_core.backbone.ResNetBackbone` and
the engine's ``FPN`` (a ``FeaturePyramidNetwork``). The framework's conventions become:

- **stride in 1x1**: the first block of layer2..layer4 gets its stride 2 on ``conv1`` and 1 on
  ``conv2`` (torchvision's ``Bottleneck`` reads the strides from its convolutions only);
- **BGR input**: the input channels of ``conv1``'s weights are reversed and the mean and std
  reordered, so the backbone takes the RGB image every page gives it and computes exactly what
  the framework computes on the BGR image (``conv1`` is linear in its input channels);
- **mean/std on 0-255**: divided by 255 for the engine's ``(image/255 - mean) / std`` (std 1 -> 1/255);
- **extra levels**: ``LastLevelMaxPool`` or :class:`P6P7` (from C5 or P5, with or without a ReLU
  before P7; torchvision's ``LastLevelP6P7`` always applies the ReLU and takes P5 only when the
  widths match).

- **padding**: both frameworks zero-pad the normalized input at the bottom and right to a multiple
  of 32 (``Conventions.size_divisibility``); the backbone keeps that divisor and
  ``fpn_core.pyramid.prepare_input`` pads the same way, so detectron2's ``scale_factor=2``
  upsampling and torchvision's size-matched one agree, and the border maps equal the framework's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from ..backbone import RESNET50_FEATURE_INFO, ResNetBackbone, fold_batchnorms
from ..device import resolve_device
from ..fpn import FPN
from ..levels import FeatureInfo, FeatureSpec, stride_of
from ..pyramid import Pyramid, PyramidConfig, build_fpn, with_fpn
from ..weights import Provenance
from .record import ExtraLevels, FrameworkCheckpoint, FrameworkError


class P6P7(LastLevelP6P7):
    """P6 and P7 by 3x3 stride-2 convolutions, from C5 or P5, with or without a ReLU before P7.

    The state dict keys are torchvision's ``LastLevelP6P7`` ones (``p6.*``, ``p7.*``). The
    choices it adds: mmdetection's RetinaNet takes C5 and applies no ReLU
    (``add_extra_convs='on_input'``, ``relu_before_extra_convs=False``); detectron2 takes C5
    (``in_feature="res5"``) and applies one.

    Args:
        in_channels: channels of the source (2048 for C5, the FPN width for P5).
        out_channels: the FPN width.
        source: ``"c5"`` (the top backbone stage) or ``"p5"`` (the top FPN output).
        relu_before_p7: apply a ReLU to P6 before the P7 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, *, source: str, relu_before_p7: bool) -> None:
        if source not in ("c5", "p5"):
            raise ValueError(f"source must be c5 or p5, got {source!r}")
        super().__init__(in_channels, out_channels)
        self.use_P5 = source == "p5"
        self.relu_before_p7 = relu_before_p7

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        p6 = self.p6(p[-1] if self.use_P5 else c[-1])
        p7 = self.p7(F.relu(p6) if self.relu_before_p7 else p6)
        return [*p, p6, p7], [*names, "p6", "p7"]  # torchvision's names; the FPN always ends at c5 here


def build_extra_levels(extra: ExtraLevels, out_channels: int) -> ExtraFPNBlock | None:
    """The extra block of a checkpoint's FPN (``extra_blocks.*`` in the state dict)."""
    if extra.kind == "none":
        return None
    if extra.kind == "maxpool":
        return LastLevelMaxPool()
    assert extra.source is not None
    in_channels = 2048 if extra.source == "c5" else out_channels
    return P6P7(in_channels, out_channels, source=extra.source, relu_before_p7=extra.relu_before_p7)


def build_framework_resnet(record: FrameworkCheckpoint) -> ResNet:
    """torchvision's ResNet-50 carrying the record's weights, with its stride placement, eps and channel order.

    Built on the meta device and given the record's tensors (as float32) without a random init
    first; the classifier ``fc`` is an ``Identity`` (detection files have none).

    Raises:
        FrameworkError: the tensors do not load strictly.
    """
    with torch.device("meta"):
        resnet = resnet50(weights=None)
    resnet.fc = nn.Identity()  # type: ignore[assignment]
    state = {k: v.float() if v.is_floating_point() else v for k, v in record.resnet_state.items()}
    if record.conventions.input_format == "BGR":
        state["conv1.weight"] = state["conv1.weight"].flip(1)  # the model sees RGB: the BGR net on the same pixels
    for name, buffer in resnet.named_buffers():
        if name.endswith("num_batches_tracked"):
            state.setdefault(name, torch.zeros((), dtype=buffer.dtype))
    try:
        resnet.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise FrameworkError(f"{record.path}: the ResNet-50 tensors do not load ({str(exc).splitlines()[0]})") from None
    for m in resnet.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = record.conventions.bn_eps
    if record.conventions.stride_in_1x1:
        for layer in (resnet.layer2, resnet.layer3, resnet.layer4):
            first = layer[0]
            assert isinstance(first, Bottleneck)
            first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
    return resnet


def rgb_normalization(record: FrameworkCheckpoint) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the [0, 1] RGB input that :func:`build_framework_resnet`'s model expects."""
    c = record.conventions
    mean, std = (c.mean[::-1], c.std[::-1]) if c.input_format == "BGR" else (c.mean, c.std)
    return tuple(v / 255.0 for v in mean), tuple(v / 255.0 for v in std)


def build_framework_pyramid(record: FrameworkCheckpoint, config: PyramidConfig | None = None) -> Pyramid:
    """The trained ResNet-50 + FPN of another framework's checkpoint, as the engine's ``Pyramid``.

    The pyramid's stages, width and extra levels are the checkpoint's (its FPN was trained on
    them); ``config`` supplies the rest: upsampling, merge and ablation (the teaching options),
    device, seed and ``optimize``. A backbone-only file gets the engine's FPN for ``config``,
    random init. The returned ``pyramid.config`` says what was built (``weights`` is the file).

    Args:
        record: from :func:`fpn_core.frameworks.read_framework_checkpoint`.
        config: the options; None for ``PyramidConfig()``.

    Returns:
        An eval-mode, read-only ``Pyramid`` with a provenance that names the framework and its conventions.
    """
    config = config or PyramidConfig()
    resnet = build_framework_resnet(record)
    mean, std = rgb_normalization(record)
    backbone = ResNetBackbone(resnet, mean=mean, std=std).eval().requires_grad_(False)  # type: ignore[arg-type]
    backbone.size_divisibility = record.conventions.size_divisibility
    backbone.provenance = Provenance(
        requested=record.path,
        backbone=f"{record.backbone_description} (conventions from {record.conventions.source})",
        source="local file",
        path=record.path,
        pretrained=True,
    )
    if config.optimize:
        fold_batchnorms(backbone)
    device = resolve_device(config.device)[0]
    fmt = torch.channels_last if config.optimize else torch.contiguous_format
    backbone.to(device, memory_format=fmt)

    if record.fpn_state is None:
        built = dataclasses.replace(config, weights=record.path)
        fpn, desc, trained = build_fpn(built, backbone)
        return with_fpn(backbone, fpn, built, f"{desc}; {record.fpn_description}", trained)

    built = dataclasses.replace(
        config,
        stages=record.stages,
        out_channels=record.out_channels,
        p6=record.extra.kind != "none",
        weights=record.path,
    )
    fpn = FPN(
        RESNET50_FEATURE_INFO.channels(record.stages),
        record.out_channels,
        build_extra_levels(record.extra, record.out_channels),
        upsample=config.upsample,
        merge=config.merge,
        ablation=config.ablation,
    )
    fpn.load_state_dict(record.fpn_state, strict=True)
    fpn.eval().requires_grad_(False).to(device, memory_format=fmt)
    pyramid = with_fpn(backbone, fpn, built, record.fpn_description, True)
    pyramid.level_info = _level_info(record.levels if config.ablation != "finest-only" else record.levels[:1], built)
    return pyramid


def _level_info(levels: Sequence[str], config: PyramidConfig) -> FeatureInfo:
    """Channels and strides of the levels actually built (P7 included, which ``PyramidConfig`` does not name)."""
    return FeatureInfo([FeatureSpec(name, "fpn", config.out_channels, stride_of(name)) for name in levels])
