"""A framework's FPN tensors under torchvision's ``FeaturePyramidNetwork`` names.

torchvision 0.29 names a lateral ``inner_blocks.{i}.0.weight`` / ``.bias`` and an output conv
``layer_blocks.{i}.0.*`` (each a ``Conv2dNormActivation``), ``i`` counting stages fine to coarse;
the extra block's convolutions are ``extra_blocks.p6.*`` and ``extra_blocks.p7.*`` (the names of
torchvision's ``LastLevelP6P7``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from .record import ExtraLevels, FrameworkError

#: The ResNet-50 stage whose channels a lateral 1x1 takes in.
STAGE_OF_CHANNELS: dict[int, str] = {256: "c2", 512: "c3", 1024: "c4", 2048: "c5"}
STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")


@dataclass(frozen=True)
class Conv:
    """One convolution's tensors, as the framework stores them."""

    weight: Tensor
    bias: Tensor | None


@dataclass(frozen=True)
class MappedFpn:
    """The FPN in torchvision's names, and what it is built on."""

    state: dict[str, Tensor]
    stages: tuple[str, ...]
    out_channels: int


def conv_at(state: Mapping[str, Tensor], prefix: str, where: str) -> Conv:
    """The conv ``{prefix}.weight`` (and ``.bias``) of a framework's state dict.

    Raises:
        FrameworkError: the FPN has norm layers in its convolutions (no bias), which this reader
            does not map.
    """
    weight, bias = state[f"{prefix}.weight"], state.get(f"{prefix}.bias")
    if bias is None:
        raise FrameworkError(
            f"{where}: the FPN convolution {prefix} has no bias (an FPN with norm layers); "
            "FPN Explorer reads the plain FPN of R50-FPN models"
        )
    return Conv(weight, bias)


def map_fpn(laterals: list[Conv], outputs: list[Conv], where: str) -> MappedFpn:
    """Laterals and outputs fine to coarse -> ``inner_blocks.{i}.0.*`` / ``layer_blocks.{i}.0.*``.

    The stages come from the laterals' input channels; they must be contiguous and end at c5.

    Raises:
        FrameworkError: mismatched counts, unknown widths or non-contiguous stages.
    """
    if not laterals or len(laterals) != len(outputs):
        raise FrameworkError(f"{where}: {len(laterals)} lateral and {len(outputs)} output convolutions in the FPN")
    stages = []
    for conv in laterals:
        c_in = int(conv.weight.shape[1])
        if c_in not in STAGE_OF_CHANNELS or tuple(conv.weight.shape[2:]) != (1, 1):
            raise FrameworkError(f"{where}: an FPN lateral of shape {tuple(conv.weight.shape)} fits no ResNet-50 stage")
        stages.append(STAGE_OF_CHANNELS[c_in])
    first = STAGES.index(stages[0])
    if tuple(stages) != STAGES[first : first + len(stages)] or stages[-1] != "c5" or len(stages) < 2:
        raise FrameworkError(
            f"{where}: the FPN is built on {', '.join(stages)}; a contiguous run ending at c5 is needed"
        )
    out_channels = int(laterals[0].weight.shape[0])
    state: dict[str, Tensor] = {}
    for i, (lat, out) in enumerate(zip(laterals, outputs, strict=True)):
        if int(lat.weight.shape[0]) != out_channels or tuple(out.weight.shape) != (out_channels, out_channels, 3, 3):
            raise FrameworkError(f"{where}: FPN level {i} has widths that differ from {out_channels}")
        state[f"inner_blocks.{i}.0.weight"], state[f"inner_blocks.{i}.0.bias"] = lat.weight, lat.bias  # type: ignore[assignment]
        state[f"layer_blocks.{i}.0.weight"], state[f"layer_blocks.{i}.0.bias"] = out.weight, out.bias  # type: ignore[assignment]
    return MappedFpn(state, tuple(stages), out_channels)


def add_p6p7(
    fpn: MappedFpn, p6: Conv, p7: Conv, *, relu_before_p7: bool, where: str, source: str | None = None
) -> tuple[MappedFpn, ExtraLevels]:
    """Add the P6/P7 convolutions as ``extra_blocks.p6.*`` / ``extra_blocks.p7.*``.

    The source is read from P6's input channels: 2048 is C5, the FPN width is P5 (unless
    ``source`` says so already).

    Raises:
        FrameworkError: shapes that fit neither.
    """
    d = fpn.out_channels
    c_in = int(p6.weight.shape[1])
    src = source or ("c5" if c_in == 2048 else "p5" if c_in == d else None)
    want_in = 2048 if src == "c5" else d
    if src is None or tuple(p6.weight.shape) != (d, want_in, 3, 3) or tuple(p7.weight.shape) != (d, d, 3, 3):
        raise FrameworkError(
            f"{where}: the extra P6/P7 convolutions have shapes {tuple(p6.weight.shape)} and "
            f"{tuple(p7.weight.shape)}; expected 3×3 convs from C5 (2048) or P5 ({d}) to {d}"
        )
    state = dict(fpn.state)
    for name, conv in (("p6", p6), ("p7", p7)):
        state[f"extra_blocks.{name}.weight"], state[f"extra_blocks.{name}.bias"] = conv.weight, conv.bias  # type: ignore[assignment]
    return MappedFpn(state, fpn.stages, d), ExtraLevels("p6p7", src, relu_before_p7)
