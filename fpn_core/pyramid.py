"""Build and run ResNet-50 + FPN: configuration, builders, and the analysis results."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .backbone import RESNET50_FEATURE_INFO, ResNetBackbone, fold_batchnorms, load_resnet
from .device import device_slot, is_device_error, resolve_device, synchronize
from .fpn import (
    ABLATIONS,
    FPN,
    MERGE_MODES,
    UPSAMPLE_MODES,
    LevelSteps,
    build_extra_block,
    extra_block_of,
    extra_steps,
    norm_layer_of,
    validate_out_channels,
)
from .images import resize_long_side, to_tensor
from .levels import (
    DEFAULT_STAGES,
    FeatureInfo,
    FeatureSpec,
    level_above,
    level_of,
    step_key,
    stride_of,
    torchvision_key_to_level,
    validate_stages,
)
from .timing import NULL_RECORDER, FlopRecorder, Recorder, StepTimer, median_run
from .weights import (
    IMAGENET,
    Progress,
    Provenance,
    checkpoint_part,
    fpn_weights,
    select_fpn_levels,
    trained_fpn_stages,
)

DEFAULT_SIZE = 512
MIN_SIZE, MAX_SIZE = 64, 1024


@dataclass(frozen=True)
class PyramidConfig:
    """Everything that defines a pyramid. Frozen and hashable, so it can key caches.

    Attributes:
        out_channels: FPN width d, a multiple of 8 from 16 to 512.
        stages: a contiguous run of two or more of ``c2..c5``.
        upsample: ``"nearest"`` or ``"bilinear"``.
        merge: ``"sum"`` or ``"mean"``.
        p6: add the stride-2 subsampled level above the top one.
        ablation: one of ``fpn.ABLATIONS``.
        weights: ``"imagenet"``, ``"coco-fpn"``, ``"random"`` or a path to a local file.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` or None for the best present.
        seed: seed of every random init.
        optimize: fold BatchNorm into the convolutions and use channels_last (same outputs).
    """

    out_channels: int = 256
    stages: tuple[str, ...] = DEFAULT_STAGES
    upsample: str = "nearest"
    merge: str = "sum"
    p6: bool = True
    ablation: str = "full"
    weights: str = "imagenet"
    device: str | None = None
    seed: int = 0
    optimize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", validate_stages(self.stages))
        validate_out_channels(self.out_channels)
        for name, value, choices in (
            ("upsample", self.upsample, UPSAMPLE_MODES),
            ("merge", self.merge, MERGE_MODES),
            ("ablation", self.ablation, tuple(ABLATIONS)),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")

    @property
    def recorded_levels(self) -> list[str]:
        """The names the FPN's recorded steps use: one level per input stage, then the extra level above."""
        names = [level_of(s) for s in self.stages]
        return [*names, level_above(names[-1])]

    @property
    def level_names(self) -> list[str]:
        """The output levels, fine to coarse (p6 included when enabled)."""
        if self.ablation == "finest-only":
            return [level_of(self.stages[0])]
        names = self.recorded_levels
        return names if self.p6 else names[:-1]

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "stages": list(self.stages)}


# --------------------------------------------------------------------------- building


def build_backbone(
    weights: str = "imagenet",
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    optimize: bool = True,
    allow_download: bool | None = None,
    progress: Progress | None = None,
    operator_file: str | None = None,
) -> ResNetBackbone:
    """Build the ResNet-50 backbone with the best weights available, and record where they came from.

    Args:
        weights: ``"imagenet"`` (operator file, hub cache, download, random), ``"coco-fpn"`` or
            ``"coco-retinanet"`` (the COCO Faster R-CNN or RetinaNet checkpoint from cache or
            download, else the imagenet chain), ``"random"``, or a path to a local file.
        device: where to put it (None: ``FPN_DEVICE`` or the best present).
        seed: seed of the random init used when no file loads.
        optimize: fold BatchNorm into the convolutions and use channels_last.
        allow_download: None reads ``FPN_ALLOW_DOWNLOAD`` (default on).
        progress: called with (bytes done, bytes total) during a download.
        operator_file: the operator's local file (``FPN_WEIGHTS``, read by the CLI and the
            dashboard), tried before the ImageNet file.

    Returns:
        A read-only, eval-mode backbone with ``.provenance`` set.
    """
    loaded = load_resnet(
        weights, operator_file=operator_file, seed=seed, allow_download=allow_download, progress=progress
    )
    record = loaded.record or IMAGENET  # the normalization of the file's record (ImageNet's for any other)
    backbone = ResNetBackbone(loaded.model, mean=record.mean, std=record.std).eval().requires_grad_(False)
    backbone.provenance = loaded.provenance
    fpn_state = checkpoint_part(loaded.state or {}, "backbone.fpn.")
    backbone.fpn_state = fpn_state or None
    backbone.fpn_stages = trained_fpn_stages(fpn_state)
    if fpn_state and loaded.record is None and loaded.provenance.path:  # a user's detection checkpoint
        backbone.fpn_source = f"your checkpoint {Path(loaded.provenance.path).name}"
    if optimize:
        fold_batchnorms(backbone)
    dev = device if isinstance(device, torch.device) else resolve_device(device)[0]
    backbone.to(dev, memory_format=torch.channels_last if optimize else torch.contiguous_format)
    return backbone


def build_fpn(config: PyramidConfig, backbone: ResNetBackbone | None = None) -> tuple[FPN, str, bool]:
    """Build the FPN for ``config``; trained when the backbone carries a detector's FPN tensors and d=256.

    A trained FPN is the detector's own: its norm layers (the v2 R-CNNs' BatchNorm) and, with
    ``config.p6`` and the detector's top stage, its extra block (max-pool P6; P6/P7 from P5 or C5).

    Returns:
        The FPN (eval mode, on the backbone's device), a description of its weights, and
        whether they are trained.
    """
    desc, trained = describe_fpn_weights(config, backbone)
    if trained:
        assert backbone is not None and backbone.fpn_state is not None
        fpn = trained_fpn(config, backbone.fpn_state, backbone.fpn_stages)
    else:
        fpn = FPN(
            RESNET50_FEATURE_INFO.channels(config.stages),
            config.out_channels,
            build_extra_block(config.p6),
            upsample=config.upsample,
            merge=config.merge,
            ablation=config.ablation,
            seed=config.seed,
        )
    fpn.eval().requires_grad_(False)
    if backbone is not None:
        fmt = torch.channels_last if backbone.folded else torch.contiguous_format
        fpn.to(backbone.device, memory_format=fmt)
    return fpn, desc, trained


def trained_fpn(config: PyramidConfig, state: Mapping[str, Tensor], trained_stages: tuple[str, ...]) -> FPN:
    """An FPN for ``config`` carrying a detector's trained FPN tensors (torchvision's keys), loaded strictly.

    Its norm layer is the detector's; its extra block is the detector's own when ``config.p6`` and
    ``config.stages`` end at the detector's top stage (its P6/P7 read that stage), else the max-pool p6.

    Raises:
        ValueError: a stage the trained FPN has no lateral for.
    """
    own_extra = config.p6 and config.stages[-1] == trained_stages[-1]
    extra = extra_block_of(state) if own_extra else build_extra_block(config.p6)
    fpn = FPN(
        RESNET50_FEATURE_INFO.channels(config.stages),
        config.out_channels,
        extra,
        norm_layer_of(state),
        upsample=config.upsample,
        merge=config.merge,
        ablation=config.ablation,
    )
    fpn.load_state_dict(select_fpn_levels(state, config.stages, trained_stages, extra=own_extra), strict=True)
    return fpn.eval().requires_grad_(False)


def describe_fpn_weights(config: PyramidConfig, backbone: ResNetBackbone | None) -> tuple[str, bool]:
    """What :func:`build_fpn` gives ``config`` on ``backbone``: a description, and whether it is trained
    (:func:`fpn_core.weights.fpn_weights` on the backbone's checkpoint; nothing is built)."""
    trained = backbone.fpn_stages if backbone is not None and backbone.fpn_state else ()
    source = backbone.fpn_source if backbone is not None else None
    return fpn_weights(config.stages, config.out_channels, config.seed, trained, source)


class Pyramid(nn.Module):
    """A backbone and an FPN, with the configuration and provenance that made them.

    Attributes:
        backbone: the ResNet-50 feature extractor (``backbone.feature_info`` lists c1..c5).
        fpn: an instance of ``torchvision.ops.FeaturePyramidNetwork``.
        config: the ``PyramidConfig``.
        provenance: backbone and FPN weights, where from, and why any fallback happened.
        level_info: names, channels and strides of the output levels: the inputs' levels, then the
            levels the FPN's extra block adds (p6; p6 and p7 for a RetinaNet or FCOS FPN).
    """

    def __init__(self, backbone: ResNetBackbone, fpn: FPN, config: PyramidConfig, provenance: Provenance):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.config = config
        self.provenance = provenance
        levels = fpn.output_levels([level_of(s) for s in config.stages])
        self.level_info = FeatureInfo(
            [FeatureSpec(name, "fpn", config.out_channels, stride_of(name)) for name in levels]
        )

    @property
    def feature_info(self) -> FeatureInfo:
        return self.backbone.feature_info

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        stages = self.backbone(x)
        out = self.fpn(OrderedDict((s, stages[s]) for s in self.config.stages))
        return OrderedDict((torchvision_key_to_level(k, self.config.stages), v) for k, v in out.items())


def assemble_pyramid(backbone: ResNetBackbone, config: PyramidConfig) -> Pyramid:
    """Build the FPN for ``config`` on an existing backbone (the backbone is not rebuilt)."""
    fpn, desc, trained = build_fpn(config, backbone)
    return with_fpn(backbone, fpn, config, desc, trained)


def with_fpn(backbone: ResNetBackbone, fpn: FPN, config: PyramidConfig, desc: str, trained: bool) -> Pyramid:
    """Put a backbone and an already built FPN together (both may come from caches)."""
    assert backbone.provenance is not None
    provenance = dataclasses.replace(backbone.provenance, fpn=desc, fpn_pretrained=trained)
    return Pyramid(backbone, fpn, config, provenance)


def build_pyramid(
    config: PyramidConfig | None = None,
    *,
    allow_download: bool | None = None,
    progress: Progress | None = None,
    operator_file: str | None = None,
) -> Pyramid:
    """Build ResNet-50 + FPN for ``config`` (default ``PyramidConfig()``); the keywords are :func:`build_backbone`'s."""
    config = config or PyramidConfig()
    backbone = build_backbone(
        config.weights,
        device=config.device,
        seed=config.seed,
        optimize=config.optimize,
        allow_download=allow_download,
        progress=progress,
        operator_file=operator_file,
    )
    return assemble_pyramid(backbone, config)


# --------------------------------------------------------------------------- running


@dataclass
class BackboneResult:
    """The bottom-up pass on one image.

    Attributes:
        image: the resized RGB uint8 image the network saw (overlays align with it).
        stages: ``c1..c5`` feature maps (1, C, H/s, W/s).
        timings_ms: median milliseconds per stage.
        total_ms: median milliseconds of the whole pass, measured around it.
        device: where it ran.
        notices: anything the user should know (e.g. a CPU fallback).
    """

    image: np.ndarray
    stages: OrderedDict[str, Tensor]
    timings_ms: dict[str, float]
    total_ms: float
    device: str
    notices: list[str] = field(default_factory=list)


@dataclass
class FpnResult:
    """The top-down pass: levels ``p*``, the steps per level, median milliseconds per step and in all."""

    levels: OrderedDict[str, Tensor]
    steps: OrderedDict[str, LevelSteps]
    timings_ms: dict[str, float]
    total_ms: float
    notices: list[str] = field(default_factory=list)


@dataclass
class PyramidOutput:
    """One full analysis: a backbone pass and the FPN pass on its stages.

    ``timings_ms`` holds every step and ``"total"`` (median milliseconds): the backbone's and
    the FPN's medians, each measured around the whole pass.
    """

    backbone: BackboneResult
    fpn: FpnResult
    config: PyramidConfig
    provenance: Provenance
    repeats: int

    @classmethod
    def compose(cls, model: Pyramid, backbone: BackboneResult, fpn: FpnResult, *, repeats: int) -> PyramidOutput:
        """The analysis of ``model`` from its two passes (``run_pyramid``, or passes cached apart)."""
        return cls(backbone, fpn, model.config, model.provenance, repeats)

    @property
    def image(self) -> np.ndarray:
        return self.backbone.image

    @property
    def stages(self) -> OrderedDict[str, Tensor]:
        return self.backbone.stages

    @property
    def levels(self) -> OrderedDict[str, Tensor]:
        return self.fpn.levels

    @property
    def steps(self) -> OrderedDict[str, LevelSteps]:
        return self.fpn.steps

    @property
    def timings_ms(self) -> dict[str, float]:
        bb, fp = self.backbone, self.fpn
        return {**bb.timings_ms, **fp.timings_ms, "total": bb.total_ms + fp.total_ms}

    @property
    def device(self) -> str:
        return self.backbone.device

    @property
    def notices(self) -> list[str]:
        return [*self.backbone.notices, *self.fpn.notices]


def prepare_input(image: np.ndarray, size: int, backbone: ResNetBackbone) -> tuple[np.ndarray, Tensor]:
    """Resize to the long side ``size`` (64 to 1024) and normalize with the weights' mean/std.

    A backbone with ``size_divisibility > 1`` (an mmdetection or detectron2 file) gets its input
    padded as that framework pads it: see :func:`pad_input`. The returned image is the one the
    network saw, padding included, so every map lines up with it.

    Raises:
        ValueError: ``size`` out of range.
    """
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"size must be from {MIN_SIZE} to {MAX_SIZE} pixels, got {size}")
    resized = resize_long_side(image, int(size))
    tensor = to_tensor(resized, backbone.mean, backbone.std)
    resized, tensor = pad_input(resized, tensor, backbone)
    fmt = torch.channels_last if backbone.folded else torch.contiguous_format
    return resized, tensor.to(backbone.device, memory_format=fmt)


def pad_input(image: np.ndarray, x: Tensor, backbone: ResNetBackbone) -> tuple[np.ndarray, Tensor]:
    """Pad the normalized input ``x`` with zeros at the bottom and right to ``backbone.size_divisibility``.

    That is what detectron2 (``ImageList.from_tensors``) and mmdetection (``pad_size_divisor``) do
    before their backbone: zero is the mean color after normalization. ``image`` (RGB uint8, the
    size of ``x``) is padded to match with the mean color, for display. Unchanged for a divisor of 1.
    """
    divisor = int(getattr(backbone, "size_divisibility", 1))
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % divisor, -w % divisor
    if pad_h == 0 and pad_w == 0:
        return image, x
    fill = [round(255 * m) for m in backbone.mean]
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=fill)
    return image, F.pad(x, (0, pad_w, 0, pad_h))


M = TypeVar("M", bound=nn.Module)
_cpu_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cpu_lock = threading.Lock()


def cpu_copy(module: M) -> M:
    """A CPU copy of a shared module, made once (used when its accelerator fails)."""
    if next(module.parameters()).device.type == "cpu":
        return module
    with _cpu_lock:
        if module not in _cpu_copies:
            _cpu_copies[module] = copy.deepcopy(module).to("cpu")
        return _cpu_copies[module]


def _repeat(run: Callable[[Recorder], object], device: torch.device, repeats: int, warmup: int) -> tuple[object, dict]:
    """Run ``warmup`` untimed then ``repeats`` timed passes.

    Returns the last result and the timings of the median run (by total time): per-step
    milliseconds plus ``"total"``, measured around the whole pass. Taking every step from one
    run, rather than a median per step, keeps the parts consistent with the total.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    result = None
    for _ in range(warmup):
        result = run(NULL_RECORDER)
    runs = []
    for _ in range(repeats):
        timer = StepTimer(device)
        synchronize(device)
        t0 = time.perf_counter()
        result = run(timer)
        synchronize(device)
        total = (time.perf_counter() - t0) * 1e3
        runs.append({**timer.result(), "total": total})
    return result, median_run(runs)


def run_backbone(
    backbone: ResNetBackbone, image: np.ndarray, *, size: int = DEFAULT_SIZE, repeats: int = 1, warmup: int = 0
) -> BackboneResult:
    """Resize, normalize and run the backbone on ``image`` (RGB uint8), timing each stage.

    A device error (e.g. CUDA out of memory) reruns on the CPU with a notice.
    """
    notices: list[str] = []
    resized, x = prepare_input(image, size, backbone)

    def go(model: ResNetBackbone, inp: Tensor) -> tuple[OrderedDict[str, Tensor], dict]:
        with device_slot(model.device), torch.inference_mode():
            return _repeat(lambda rec: model(inp, rec), model.device, repeats, warmup)  # type: ignore[return-value]

    try:
        stages, times = go(backbone, x)
    except Exception as exc:
        if not is_device_error(exc) or backbone.device.type == "cpu":
            raise
        notices.append(
            f"The {backbone.device.type.upper()} failed ({str(exc).splitlines()[0][:120]}); "
            "this analysis ran on the CPU."
        )
        backbone = cpu_copy(backbone)
        stages, times = go(backbone, x.to("cpu"))
    total = times.pop("total")
    return BackboneResult(resized, stages, times, total, str(backbone.device), notices)


def run_fpn(
    fpn: FPN, stages: Mapping[str, Tensor], config: PyramidConfig, *, repeats: int = 1, warmup: int = 0
) -> FpnResult:
    """Run the FPN on backbone stages, keeping every step, timing each (names ``p*.lateral`` ...)."""
    notices: list[str] = []
    names = config.recorded_levels

    def go(model: FPN, feats: Mapping[str, Tensor]):
        device = next(model.parameters()).device
        inputs = OrderedDict((s, feats[s].to(device)) for s in config.stages)
        with device_slot(device), torch.inference_mode():
            return _repeat(lambda rec: model.forward_steps(inputs, rec, names), device, repeats, warmup)

    try:
        (outs, steps), times = go(fpn, stages)
    except Exception as exc:
        if not is_device_error(exc) or next(fpn.parameters()).device.type == "cpu":
            raise
        notices.append(f"The accelerator failed ({str(exc).splitlines()[0][:120]}); the FPN ran on the CPU.")
        (outs, steps), times = go(cpu_copy(fpn), {k: v.to("cpu") for k, v in stages.items()})
    total = times.pop("total")
    levels = OrderedDict((torchvision_key_to_level(k, config.stages), v) for k, v in outs.items())
    step_map = OrderedDict((level_of(s), st) for s, st in zip(config.stages, steps, strict=True))
    return FpnResult(levels, step_map, times, total, notices)


def run_pyramid(
    model: Pyramid, image: np.ndarray, *, size: int = DEFAULT_SIZE, repeats: int = 1, warmup: int = 0
) -> PyramidOutput:
    """Analyse one image: backbone stages, pyramid levels, every FPN step, and timings.

    Args:
        model: from ``build_pyramid``.
        image: RGB uint8 (H, W, 3), e.g. from ``load_image``.
        size: the long side the image is resized to (64 to 1024).
        repeats: timed runs; timings are their median.
        warmup: untimed runs first (use 1 for honest timings on a cold model).

    Returns:
        A ``PyramidOutput``; ``timings_ms["total"]`` is the backbone's and the FPN's medians,
        each measured around the whole pass (so the parts can be checked against it).
    """
    bb = run_backbone(model.backbone, image, size=size, repeats=repeats, warmup=warmup)
    fp = run_fpn(model.fpn, bb.stages, model.config, repeats=repeats, warmup=warmup)
    return PyramidOutput.compose(model, bb, fp, repeats=repeats)


# --------------------------------------------------------------------------- counting


def count_parameters(model: Pyramid) -> dict[str, int]:
    """Parameters per step: ``c1..c5``, ``p*.lateral`` / ``p*.output`` (top-down has none), and the
    extra levels' (``p6.pool`` none; ``p6.extra`` / ``p7.extra`` their convolutions)."""
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in model.backbone.stage_modules().items()}
    for i, stage in enumerate(model.config.stages):
        level = level_of(stage)
        counts[f"{level}.lateral"] = sum(p.numel() for p in model.fpn.inner_blocks[i].parameters())
        counts[f"{level}.output"] = sum(p.numel() for p in model.fpn.layer_blocks[i].parameters())
    for level, (step, _, module) in extra_steps(model.fpn.extra_blocks, model.config.stages[-1]).items():
        counts[step_key(level, step)] = sum(p.numel() for p in module.parameters()) if module is not None else 0
    return counts


def count_flops(model: Pyramid, image: np.ndarray, *, size: int = DEFAULT_SIZE) -> dict[str, int]:
    """Floating-point operations per step on this image, counted by ``FlopCounterMode``.

    The keys match ``run_pyramid``'s ``timings_ms`` (without ``"total"``). One forward pass on fake
    tensors (``FakeTensorMode``): FLOPs depend on shapes only, so nothing is computed and the count
    is the one a real pass gives, in a fraction of its time.
    """
    recorder = FlopRecorder()
    _, x = prepare_input(image, size, model.backbone)
    names = model.config.recorded_levels
    with FakeTensorMode(allow_non_fake_inputs=True) as fake, torch.inference_mode():
        stages = model.backbone(fake.from_tensor(x), recorder)
        inputs = OrderedDict((s, stages[s]) for s in model.config.stages)
        model.fpn.forward_steps(inputs, recorder, names)
    return dict(recorder.flops)
