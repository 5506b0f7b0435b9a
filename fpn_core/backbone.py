"""torchvision's ResNet-50 as a feature extractor that records its stem and stages by name."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from . import packed
from .levels import FeatureInfo, FeatureSpec
from .timing import NULL_RECORDER, Recorder
from .weights import (
    WEIGHT_FILES,
    Progress,
    Provenance,
    Resolved,
    WeightsError,
    checkpoint_part,
    resolve_weights,
    weight_candidates,
)

#: What ResNet-50 records: the stem (c1) and the four stages, with channels and stride.
RESNET50_FEATURE_INFO = FeatureInfo(
    [
        FeatureSpec("c1", "stem", 64, 2),
        FeatureSpec("c2", "layer1", 256, 4),
        FeatureSpec("c3", "layer2", 512, 8),
        FeatureSpec("c4", "layer3", 1024, 16),
        FeatureSpec("c5", "layer4", 2048, 32),
    ]
)


#: What the Stage activations page says the backbone stages are (the lecture deck's notes read it too).
STAGES_INTRO = "The bottom-up path: each ResNet-50 stage halves the resolution and widens the channels."


class ResNetBackbone(nn.Module):
    """The bottom-up pathway: a torchvision ResNet-50 without its classifier.

    ``forward`` returns every recorded feature map (``c1..c5``). The model is meant to be
    shared read-only: nothing per request is registered on it; a ``Recorder`` passed to
    ``forward`` times or counts each stage instead of hooks.

    The submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1``...), so the state
    dict is torchvision's ResNet-50 one without ``fc``, and the body of torchvision's detectors
    (``backbone.body.*``) loads into it as it is.

    Attributes:
        feature_info: names, channels and strides of ``c1..c5``.
        provenance: where the weights came from (set by the builder).
        mean, std: the input normalization of the weights' record (``fpn_core.weights.WeightFile``).
        fpn_state: COCO-trained FPN tensors when the weights came from a detection checkpoint, else None.
        fpn_stages: the stages those FPN tensors were trained on (Faster R-CNN c2..c5, RetinaNet c3..c5).
        fpn_source: names a user's checkpoint those tensors came from (``"your checkpoint x.pth"``), or
            None for torchvision's published files.
    """

    def __init__(self, resnet: ResNet, *, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = resnet.conv1, resnet.bn1, resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.feature_info = RESNET50_FEATURE_INFO
        self.mean, self.std = mean, std
        #: The normalized input is zero-padded (bottom, right) to a multiple of this: 1 for torchvision's
        #: own pyramids; the framework's divisor for mmdetection and detectron2 files (both pad to 32).
        self.size_divisibility = 1
        self.provenance: Provenance | None = None
        self.fpn_state: dict[str, Tensor] | None = None
        self.fpn_stages: tuple[str, ...] = ()
        self.fpn_source: str | None = None
        self.folded = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def stem(self) -> nn.Sequential:
        """The stem that makes ``c1``: ``conv1``, ``bn1`` (Identity once folded), ``relu`` (a view, read-only)."""
        return nn.Sequential(self.conv1, self.bn1, self.relu)

    def forward(self, x: Tensor, recorder: Recorder = NULL_RECORDER) -> OrderedDict[str, Tensor]:
        out: OrderedDict[str, Tensor] = OrderedDict()
        with recorder.step("c1"):
            if self.folded:  # bn1 is Identity
                x = out["c1"] = packed.conv2d(self.conv1, x, relu=True)
            else:
                x = out["c1"] = self.relu(self.bn1(self.conv1(x)))
        with recorder.step("c2"):
            x = out["c2"] = self._stage(self.layer1, self.maxpool(x))
        with recorder.step("c3"):
            x = out["c3"] = self._stage(self.layer2, x)
        with recorder.step("c4"):
            x = out["c4"] = self._stage(self.layer3, x)
        with recorder.step("c5"):
            out["c5"] = self._stage(self.layer4, x)
        return out

    def _stage(self, layer: nn.Sequential, x: Tensor) -> Tensor:
        """One stage. Folded (``bn*`` are Identity), torchvision's ``Bottleneck.forward`` with each ReLU
        and the residual add run inside the convolutions (``fpn_core.packed``)."""
        if not self.folded:
            return layer(x)
        for block in layer:
            identity = x if block.downsample is None else packed.conv2d(block.downsample[0], x)
            y = packed.conv2d(block.conv1, x, relu=True)
            y = packed.conv2d(block.conv2, y, relu=True)
            x = packed.conv2d(block.conv3, y, add=identity)
        return x

    def stage_modules(self) -> dict[str, nn.Module]:
        """The module that computes each recorded feature (for parameter counts)."""
        return {
            "c1": self.stem,
            "c2": self.layer1,
            "c3": self.layer2,
            "c4": self.layer3,
            "c5": self.layer4,
        }


def fold_batchnorms(backbone: ResNetBackbone) -> ResNetBackbone:
    """Fold every (frozen, eval-mode) BatchNorm into the convolution before it, in place.

    At inference a BatchNorm is an affine map per channel, so ``bn(conv(x))`` equals one
    convolution with scaled weights and a bias. This removes 53 elementwise passes over the
    activations. Call it once, at load, on a model in eval mode. Both ``nn.BatchNorm2d`` and
    torchvision's ``FrozenBatchNorm2d`` (the detectors' norm layer) are folded.
    """

    def fuse(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
        if isinstance(bn, nn.Identity):
            return conv
        assert isinstance(bn, (nn.BatchNorm2d, FrozenBatchNorm2d)), type(bn)
        return fuse_conv_bn_eval(conv, bn)  # type: ignore[arg-type]  (FrozenBatchNorm2d has the same buffers)

    backbone.eval()
    with torch.no_grad():
        backbone.conv1 = fuse(backbone.conv1, backbone.bn1)
        backbone.bn1 = nn.Identity()
        for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
            for block in layer:
                assert isinstance(block, Bottleneck)
                for i in (1, 2, 3):
                    conv, bn = getattr(block, f"conv{i}"), getattr(block, f"bn{i}")
                    setattr(block, f"conv{i}", fuse(conv, bn))
                    setattr(block, f"bn{i}", nn.Identity())
                if block.downsample is not None:
                    block.downsample[0] = fuse(block.downsample[0], block.downsample[1])
                    block.downsample[1] = nn.Identity()
    backbone.folded = True
    return backbone


# --------------------------------------------------------------------------- the ResNet-50's weights


def load_resnet(
    weights: str = "imagenet",
    *,
    operator_file: str | None = None,
    seed: int = 0,
    allow_download: bool | None = None,
    progress: Progress | None = None,
) -> Resolved[ResNet]:
    """torchvision's ResNet-50 with the best weights available (:func:`fpn_core.weights.resolve_weights`).

    The chain: what was asked for (a key of ``WEIGHT_FILES`` or a path), the operator's file, the
    ImageNet file (hub cache, then download), then a seeded random init.
    ``Resolved.state`` keeps a detection checkpoint's ``backbone.fpn.*`` tensors for the FPN.
    """
    chain = weight_candidates(weights, WEIGHT_FILES["imagenet"], records=WEIGHT_FILES, operator_file=operator_file)
    return resolve_weights(
        chain,
        lambda state: _fit_resnet(state, seed),
        requested=weights,
        seed=seed,
        allow_download=allow_download,
        progress=progress,
    )


def _fit_resnet(state: Mapping[str, Tensor] | None, seed: int) -> ResNet:
    """A fresh ResNet-50 carrying ``state`` (a ResNet-50 state dict, or a detection checkpoint's
    ``backbone.body``), loaded strictly; torchvision's init from a seeded generator for None."""
    resnet = resnet50(weights=None)
    if state is None:
        gen = torch.Generator().manual_seed(seed)  # the same weights in every process
        with torch.no_grad():
            for m in resnet.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        return resnet
    if any(k.startswith("backbone.body.") for k in state):
        state = checkpoint_part(state, "backbone.body.")
        # Detection checkpoints have no classifier and use FrozenBatchNorm (no batch counter).
        optional = lambda k: k.startswith("fc.") or k.endswith("num_batches_tracked")  # noqa: E731
    else:
        optional = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).split("\n\t")[1:3]
        raise WeightsError(f"does not fit ResNet-50: {'; '.join(detail) or exc}") from None
    missing = [k for k in missing if not optional(k)]
    if missing or unexpected:
        raise WeightsError(
            f"does not fit ResNet-50 (strict load): "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return resnet
