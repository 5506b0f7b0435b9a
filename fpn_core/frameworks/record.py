"""The neutral record of a checkpoint from another framework, and the conventions it runs with.

Whatever the file (an mmdetection ``.pth``, a detectron2 zoo ``.pkl``), reading it gives one
:class:`FrameworkCheckpoint`: the ResNet-50 tensors under torchvision's names, the FPN tensors
under torchvision's ``FeaturePyramidNetwork`` names, the extra levels above the top one, and the
:class:`Conventions` the framework trained with (where the stride sits, channel order, mean
and std). Building a pyramid from it (:func:`fpn_core.frameworks.build_framework_pyramid`)
needs nothing else.

Conventions come, first found wins, from explicit overrides, the sidecar file
``<stem>.conventions.json`` beside the checkpoint, what the file itself says (mmdetection's
saved config, detectron2's ``__author__``), and the framework's defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..weights import WeightsError

MMDETECTION, DETECTRON2 = "mmdetection", "detectron2"
FRAMEWORKS: tuple[str, ...] = (MMDETECTION, DETECTRON2)
INPUT_FORMATS: tuple[str, ...] = ("RGB", "BGR")

#: torchvision's (and mmdetection's default) ImageNet normalization, on 0-255, RGB order.
IMAGENET_MEAN_255: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD_255: tuple[float, float, float] = (58.395, 57.12, 57.375)
#: detectron2's PIXEL_MEAN for the MSRA models (and mmdetection's caffe style), on 0-255, BGR order; std 1.
MSRA_MEAN_255_BGR: tuple[float, float, float] = (103.530, 116.280, 123.675)
UNIT_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)


class FrameworkError(WeightsError):
    """A checkpoint of another framework that cannot be shown; the message says why and what to do."""


@dataclass(frozen=True)
class Conventions:
    """How a framework's ResNet-50 sees its input and where its stride sits.

    Attributes:
        input_format: ``"RGB"`` or ``"BGR"``: the channel order of the network's input.
        mean, std: per-channel normalization on 0-255 pixel values, in ``input_format`` order.
        stride_in_1x1: the stride 2 of each stage's first block sits on the 1x1 ``conv1``
            (MSRA/caffe), not on the 3x3 ``conv2`` (torchvision, mmdetection's pytorch style).
        bn_eps: the BatchNorm (FrozenBatchNorm) eps.
        source: where these conventions come from, for the provenance.
        size_divisibility: the normalized input is zero-padded at the bottom and right to a multiple
            of this (detectron2's ``ImageList.from_tensors`` with the FPN's 32; mmdetection's
            ``pad_size_divisor`` / ``Pad(size_divisor=32)``); 1 for none.
    """

    input_format: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stride_in_1x1: bool
    bn_eps: float = 1e-5
    source: str = "framework defaults"
    size_divisibility: int = 32

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be RGB or BGR, got {self.input_format!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(not s > 0 for s in self.std):
            raise ValueError(f"mean and std need 3 values, std positive; got {self.mean} and {self.std}")
        if self.size_divisibility < 1:
            raise ValueError(f"size_divisibility must be at least 1, got {self.size_divisibility}")

    def describe(self) -> str:
        """E.g. ``stride in 1×1, BGR input, mean (103.53, 116.28, 123.675), std 1``."""
        where = "stride in 1×1" if self.stride_in_1x1 else "stride in 3×3"
        std = "1" if self.std == UNIT_STD else _triple(self.std)
        pad = f", padded to a multiple of {self.size_divisibility}" if self.size_divisibility > 1 else ""
        return f"{where}, {self.input_format} input, mean {_triple(self.mean)}, std {std}{pad}"


def _triple(values: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


TORCHVISION_CONVENTIONS = Conventions("RGB", IMAGENET_MEAN_255, IMAGENET_STD_255, stride_in_1x1=False)
MSRA_CONVENTIONS = Conventions("BGR", MSRA_MEAN_255_BGR, UNIT_STD, stride_in_1x1=True)


@dataclass(frozen=True)
class ExtraLevels:
    """What the FPN adds above its top level.

    Attributes:
        kind: ``"none"``, ``"maxpool"`` (P6 = stride-2 subsampling of the top output, torchvision's
            ``LastLevelMaxPool``) or ``"p6p7"`` (two 3x3 stride-2 convolutions, P6 then P7 on P6).
        source: for ``"p6p7"``: ``"c5"`` (the top backbone stage: mmdetection ``on_input``,
            detectron2 ``in_feature="res5"``) or ``"p5"`` (the top output: ``on_output``).
        relu_before_p7: for ``"p6p7"``: a ReLU between P6 and the P7 conv (detectron2 always;
            mmdetection only with ``relu_before_extra_convs=True``).
    """

    kind: str = "maxpool"
    source: str | None = None
    relu_before_p7: bool = False

    def describe(self) -> str:
        if self.kind == "none":
            return "no extra level"
        if self.kind == "maxpool":
            return "P6 max-pool (stride-2 subsampling)"
        relu = "a ReLU" if self.relu_before_p7 else "no ReLU"
        return f"P6/P7 convolutions from {self.source.upper() if self.source else '?'}, {relu} before P7"


@dataclass(frozen=True)
class FrameworkCheckpoint:
    """One checkpoint of another framework, in torchvision's names, with its conventions.

    Attributes:
        framework: ``"mmdetection"`` or ``"detectron2"``.
        path: the file read.
        origin: what the file says it is, e.g. ``"mmdetection v3 (3.3.0)"``, ``"detectron2 model zoo"``.
        resnet_state: torchvision ResNet-50 names (``conv1.weight``, ``layer1.0.bn1.running_mean``...), no ``fc``.
        fpn_state: torchvision ``FeaturePyramidNetwork`` names (``inner_blocks.{i}.0.weight``,
            ``layer_blocks.{i}.0.bias``; ``extra_blocks.p6.weight``...), or None for a backbone-only file.
        stages: the stages the FPN was trained on (``c2..c5``; RetinaNet ``c3..c5``).
        out_channels: the FPN's width.
        extra: the levels above the top one.
        conventions: input format, normalization, stride placement, BatchNorm eps.
        classes: the class names the file carries (mmdetection), else empty.
    """

    framework: str
    path: str
    origin: str
    resnet_state: dict[str, Tensor]
    fpn_state: dict[str, Tensor] | None
    stages: tuple[str, ...]
    out_channels: int
    extra: ExtraLevels
    conventions: Conventions
    classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def backbone_description(self) -> str:
        """For the provenance, e.g. ``detectron2 model zoo, MSRA ResNet-50 (stride in 1×1), BGR input``."""
        c = self.conventions
        net = "MSRA ResNet-50 (stride in 1×1)" if c.stride_in_1x1 else "ResNet-50 (stride in 3×3)"
        if (c.mean, c.std) == (IMAGENET_MEAN_255, IMAGENET_STD_255):
            norm = "ImageNet mean/std"
        elif c.std == UNIT_STD:
            norm = f"minus mean {_triple(c.mean)}, std 1"
        else:
            norm = f"mean {_triple(c.mean)}, std {_triple(c.std)}"
        pad = f", padded to a multiple of {c.size_divisibility}" if c.size_divisibility > 1 else ""
        return f"{self.origin} `{os.path.basename(self.path)}`, {net}, {c.input_format} input, {norm}{pad}"

    @property
    def fpn_description(self) -> str:
        """For the provenance, e.g. ``trained in detectron2 on c2, c3, c4, c5 (width 256, P6 max-pool ...)``."""
        if self.fpn_state is None:
            return f"the {self.framework} file has no FPN"
        return (
            f"trained in {self.framework} on {', '.join(self.stages)} "
            f"(width {self.out_channels}, {self.extra.describe()})"
        )

    @property
    def levels(self) -> tuple[str, ...]:
        """The output levels, fine to coarse: e.g. ``p3..p7`` for RetinaNet."""
        names = [f"p{s[1:]}" for s in self.stages]
        top = int(self.stages[-1][1:])
        extra = {"none": 0, "maxpool": 1, "p6p7": 2}[self.extra.kind]
        return (*names, *(f"p{top + i}" for i in range(1, extra + 1)))


# --------------------------------------------------------------------------- overrides and the sidecar

#: The sidecar beside a checkpoint that sets its conventions: ``model_final.pkl`` -> ``model_final.conventions.json``.
SIDECAR_SUFFIX = ".conventions.json"


@dataclass(frozen=True)
class ConventionOverrides:
    """Conventions a user sets for a file whose own are unknown or wrong (None: keep the file's).

    Attributes:
        input_format: ``"RGB"`` or ``"BGR"`` (CLI ``--input-format``).
        stride_in_1x1: True or False (CLI ``--stride-in-1x1 yes|no``).
        relu_before_p7: for P6/P7 from P5, whether a ReLU precedes P7 (mmdetection's
            ``relu_before_extra_convs``), when the file's config does not say.
        mean, std: the normalization on 0-255, in the input format's channel order (sidecar only;
            e.g. detectron2 trained from a torchvision backbone uses ImageNet's std).
        source: where they were set (for the provenance).
    """

    input_format: str | None = None
    stride_in_1x1: bool | None = None
    relu_before_p7: bool | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    source: str = "override"

    def __post_init__(self) -> None:
        if self.input_format is not None:
            object.__setattr__(self, "input_format", parse_input_format(self.input_format))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                triple = tuple(float(v) for v in value)
                if len(triple) != 3 or (name == "std" and any(not v > 0 for v in triple)):
                    raise ValueError(f"{name} needs 3 values (std positive), got {value!r}")
                object.__setattr__(self, name, triple)

    @property
    def empty(self) -> bool:
        return all(getattr(self, n) is None for n in ("input_format", "stride_in_1x1", "relu_before_p7", "mean", "std"))

    def merged_over(self, other: ConventionOverrides) -> ConventionOverrides:
        """These overrides, with ``other``'s where these say nothing."""
        pick = lambda a, b: a if a is not None else b  # noqa: E731
        sources = [o.source for o in (self, other) if not o.empty]
        return ConventionOverrides(
            pick(self.input_format, other.input_format),
            pick(self.stride_in_1x1, other.stride_in_1x1),
            pick(self.relu_before_p7, other.relu_before_p7),
            pick(self.mean, other.mean),
            pick(self.std, other.std),
            " and ".join(sources) or self.source,
        )


def parse_input_format(value: str) -> str:
    """``"rgb"``/``"RGB"`` -> ``"RGB"``; the same for BGR.

    Raises:
        ValueError: naming the bad value.
    """
    upper = str(value).strip().upper()
    if upper not in INPUT_FORMATS:
        raise ValueError(f"input format must be RGB or BGR, got {value!r}")
    return upper


def parse_yes_no(value: str | bool) -> bool:
    """``yes``/``no``/``true``/``false``/``1``/``0`` (any case), or a bool, as a bool.

    Raises:
        ValueError: naming the bad value.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


def sidecar_path(path: str | os.PathLike) -> Path:
    """``dir/model_final.pkl`` -> ``dir/model_final.conventions.json``."""
    p = Path(path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike) -> ConventionOverrides:
    """The conventions set in the sidecar beside ``path``, or empty overrides when there is none.

    The sidecar is JSON with any of ``"input_format": "RGB" | "BGR"``, ``"stride_in_1x1": true | false``
    (or ``"yes"``/``"no"``), ``"relu_before_p7": true | false``, and ``"mean"`` / ``"std"``: three
    numbers on 0-255 in the input format's channel order.

    Raises:
        FrameworkError: the sidecar exists but is not such a JSON object.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return ConventionOverrides(source="none")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        unknown = sorted(set(data) - {"input_format", "stride_in_1x1", "relu_before_p7", "mean", "std"})
        if unknown:
            raise ValueError(f"unknown keys {', '.join(unknown)}")
        return ConventionOverrides(
            input_format=data.get("input_format"),
            stride_in_1x1=None if data.get("stride_in_1x1") is None else parse_yes_no(data["stride_in_1x1"]),
            relu_before_p7=None if data.get("relu_before_p7") is None else parse_yes_no(data["relu_before_p7"]),
            mean=data.get("mean"),
            std=data.get("std"),
            source=f"sidecar {side.name}",
        )
    except (ValueError, TypeError, OSError) as exc:
        raise FrameworkError(
            f"the sidecar {side} could not be used ({exc}); it must be a JSON object with "
            '"input_format": "RGB" or "BGR" and/or "stride_in_1x1": true or false'
        ) from None


def apply_overrides(conventions: Conventions, overrides: ConventionOverrides) -> Conventions:
    """``conventions`` with the input format, stride placement, mean and std the user set.

    Switching the input format alone keeps each channel's statistics (the mean and std are
    reordered with the channels).
    """
    if all(getattr(overrides, n) is None for n in ("input_format", "stride_in_1x1", "mean", "std")):
        return conventions
    mean, std, fmt = conventions.mean, conventions.std, conventions.input_format
    if overrides.input_format is not None and overrides.input_format != fmt:
        mean, std, fmt = mean[::-1], std[::-1], overrides.input_format
    mean = overrides.mean or mean
    std = overrides.std or std
    stride = conventions.stride_in_1x1 if overrides.stride_in_1x1 is None else overrides.stride_in_1x1
    return Conventions(
        fmt, mean, std, stride, conventions.bn_eps, f"{conventions.source}, {overrides.source}",
        conventions.size_divisibility,
    )  # fmt: skip
