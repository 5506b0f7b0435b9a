"""Where a level looks: the theoretical and the effective receptive field of every stage and level.

Why two kinds. The *theoretical* receptive field (RF) of a cell is every input pixel that can
change it at all: what the kernel sizes, strides and dilations allow. It is computed here from
the modules themselves, by following, for each cell along one image axis, the first and last
input pixel it depends on, through every convolution, pooling, residual branch, lateral 1x1,
top-down upsampling and 3x3 of the FPN (a merge takes the union of its inputs). Nothing is
typed in: change a kernel and the numbers follow.

The *effective* receptive field (ERF; Luo et al., "Understanding the Effective Receptive Field
in Deep Convolutional Neural Networks", NeurIPS 2016) is how much each input pixel actually
moves the cell: the gradient of the cell's activation with respect to the input, reduced over
the color channels. It fills only a roughly Gaussian blob in the middle of the theoretical
square, because the many paths through a stack of convolutions overlap most at the centre.

The shared model stays read-only here: only a private copy of the input requires a gradient,
no parameter does, no hook is registered, and the model is never switched to training mode.
One forward pass serves every requested stage and level; each then needs one backward pass
(``torch.autograd.grad`` on the retained graph). Batching those backward passes with
``is_grads_batched`` was measured slower on the CPU (about 3.5 s against 1.5 s for eight targets at
512 px), so they run one after the other.

Coordinates: a point is ``(x, y)`` in pixels of the image as loaded (before resizing); maps and
boxes are in pixels of the network input (the resized image); radii are given in both.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from .device import device_slot
from .levels import level_of, stage_of, stride_of, torchvision_key_to_level
from .paper import TABLE1
from .pyramid import DEFAULT_SIZE, Pyramid, prepare_input

__all__ = [
    "ERF_MASSES",
    "ERF_PERCENTILE",
    "INTRO",
    "MAGNITUDES",
    "TEACH_ERF",
    "TEACH_FPN",
    "TEACH_RF",
    "ErfResult",
    "RfBox",
    "cell_at",
    "default_names",
    "erf_maps",
    "erf_overlay",
    "erf_values",
    "growth_text",
    "level_sources",
    "map_point",
    "rf_boxes",
    "run_erf",
    "theoretical_rf",
]

#: How the gradient's three color channels become one map: sum of absolute values, or of squares.
MAGNITUDES: tuple[str, ...] = ("abs", "squared")
#: The shares of gradient mass whose radius is reported ("50": half the mass lies within r50).
ERF_MASSES: tuple[str, ...] = ("50", "90")
#: The backbone's recorded maps and the modules that make each one, in the order of
#: ``ResNetBackbone.forward`` (a test checks the walk against the real tensors' shapes).
_BACKBONE_PATH: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("c1", ("stem",)),
    ("c2", ("maxpool", "layer1")),
    ("c3", ("layer2",)),
    ("c4", ("layer3",)),
    ("c5", ("layer4",)),
)
#: Length of the 1-D line on which the network's RF sizes are measured: long enough that the
#: coarsest map has cells whose RF touches no border.
_RF_LINE = 4096
#: Modules that act on each position alone and so leave the receptive field as it is.
_POINTWISE = (nn.BatchNorm2d, FrozenBatchNorm2d, nn.ReLU, nn.Identity, nn.Dropout)


# --------------------------------------------------------------------------- the theoretical RF


@dataclass(frozen=True)
class _Line:
    """One axis of a map: for each cell, the first and last input pixel it depends on.

    Attributes:
        lo, hi: inclusive bounds, clipped to the image (zero padding adds no dependency).
        ulo, uhi: the same as if the image went on forever (padding read as pixels further
            out); their midpoint is the cell's RF centre, their span the unclipped RF size.
        jump: input pixels between neighbouring cells (the map's stride).
        sources: the FPN inputs (stage names) the cells depend on; empty inside the backbone.
    """

    lo: np.ndarray
    hi: np.ndarray
    ulo: np.ndarray
    uhi: np.ndarray
    jump: int
    sources: frozenset[str] = frozenset()

    @property
    def n(self) -> int:
        return len(self.lo)


def _input_line(length: int) -> _Line:
    idx = np.arange(length, dtype=np.int64)
    return _Line(idx, idx, idx, idx, 1)


def _extend(values: np.ndarray, idx: np.ndarray, jump: int) -> np.ndarray:
    """``values[idx]``, extrapolated by ``jump`` per cell beyond either end."""
    n = len(values)
    inside = values[np.clip(idx, 0, n - 1)]
    return np.where(idx < 0, values[0] + idx * jump, np.where(idx >= n, values[-1] + (idx - n + 1) * jump, inside))


def _window(line: _Line, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> _Line:
    """A sliding window (convolution or pooling) of kernel ``k``, stride ``s``, padding ``p``, dilation ``d``."""
    n, span = line.n, d * (k - 1)
    if ceil_mode:
        n_out = -(-(n + 2 * p - span - 1) // s) + 1
        if (n_out - 1) * s >= n + p:  # PyTorch: the last window must start inside the input or left padding
            n_out -= 1
    else:
        n_out = (n + 2 * p - span - 1) // s + 1
    if n_out < 1:
        raise ValueError(f"a window of kernel {k} and stride {s} leaves no cell on a map of {n}")
    first = np.arange(n_out, dtype=np.int64) * s - p
    last = first + span
    # The first and last taps that land on the map (the others read zero padding).
    first_in = np.where(first < 0, first + d * ((-first + d - 1) // d), first)
    last_in = np.where(last > n - 1, last - d * ((last - (n - 1) + d - 1) // d), last)
    return _Line(
        lo=line.lo[first_in],
        hi=line.hi[last_in],
        ulo=_extend(line.ulo, first, line.jump),
        uhi=_extend(line.uhi, last, line.jump),
        jump=line.jump * s,
        sources=line.sources,
    )


def _union(a: _Line, b: _Line) -> _Line:
    """Two branches added cell by cell: each cell depends on what either depends on."""
    if a.n != b.n:
        raise ValueError(f"cannot merge maps of {a.n} and {b.n} cells")
    return _Line(
        np.minimum(a.lo, b.lo),
        np.maximum(a.hi, b.hi),
        np.minimum(a.ulo, b.ulo),
        np.maximum(a.uhi, b.uhi),
        min(a.jump, b.jump),
        a.sources | b.sources,
    )


def _resample(line: _Line, n_out: int, mode: str, jump: int) -> _Line:
    """``F.interpolate`` to ``n_out`` cells; which coarse cells feed each fine one is read off the op itself."""
    n_in = line.n
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, 1, n_in)
    if mode == "nearest":
        weights = F.interpolate(eye, size=(1, n_out), mode="nearest")
    else:
        weights = F.interpolate(eye, size=(1, n_out), mode=mode, align_corners=False)
    feeds = weights[:, 0, 0, :].numpy() != 0  # (n_in, n_out): coarse cell j feeds fine cell i
    big = np.iinfo(np.int64).max

    def lowest(values: np.ndarray) -> np.ndarray:
        return np.where(feeds, values[:, None], big).min(axis=0)

    def highest(values: np.ndarray) -> np.ndarray:
        return np.where(feeds, values[:, None], -big).max(axis=0)

    return _Line(lowest(line.lo), highest(line.hi), lowest(line.ulo), highest(line.uhi), jump, line.sources)


def _pair(value: int | Sequence[int], axis: int) -> int:
    return int(value if isinstance(value, int) else value[axis])


def _walk(module: nn.Module, line: _Line, axis: int) -> _Line:
    """Follow one axis of the receptive field through ``module``.

    Raises:
        TypeError: for a module whose spatial footprint is not known here (say which).
    """
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):
            raise TypeError(f"cannot follow the receptive field through padding={module.padding!r}")
        return _window(
            line,
            _pair(module.kernel_size, axis),
            _pair(module.stride, axis),
            _pair(module.padding, axis),
            _pair(module.dilation, axis),
        )
    if isinstance(module, nn.MaxPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        return _window(
            line,
            _pair(module.kernel_size, axis),
            _pair(stride, axis),
            _pair(module.padding, axis),
            _pair(module.dilation, axis),
            module.ceil_mode,
        )
    if isinstance(module, Bottleneck | BasicBlock):
        main = line
        convs = ("conv1", "bn1", "conv2", "bn2") + (("conv3", "bn3") if isinstance(module, Bottleneck) else ())
        for name in convs:
            main = _walk(getattr(module, name), main, axis)
        shortcut = _walk(module.downsample, line, axis) if module.downsample is not None else line
        return _union(main, shortcut)
    if isinstance(module, nn.Sequential):
        for child in module:
            line = _walk(child, line, axis)
        return line
    if isinstance(module, _POINTWISE):
        return line
    raise TypeError(f"cannot follow the receptive field through a {type(module).__name__}")


def _backbone_lines(backbone: nn.Module, length: int, axis: int) -> dict[str, _Line]:
    line = _input_line(length)
    lines: dict[str, _Line] = {}
    for name, modules in _BACKBONE_PATH:
        for attr in modules:
            line = _walk(getattr(backbone, attr), line, axis)
        lines[name] = line
    return lines


def _fpn_lines(fpn: nn.Module, stage_lines: Mapping[str, _Line], axis: int) -> dict[str, _Line]:
    """The FPN's levels, following ``FPN.forward_steps`` (its ablations, upsampling, p6)."""
    stages = list(stage_lines)
    feats = [dataclasses.replace(stage_lines[s], sources=frozenset({s})) for s in stages]
    n = len(feats)
    ablation = getattr(fpn, "ablation", "full")
    upsample = getattr(fpn, "upsample", "nearest")
    inner = [_walk(fpn.inner_blocks[i], feats[i], axis) for i in range(n)]
    merged: list[_Line] = [inner[-1]] * n
    last = inner[-1]
    for idx in range(n - 2, -1, -1):
        lateral = None if ablation == "no-lateral" else inner[idx]
        if ablation == "no-top-down":
            assert lateral is not None
            merged[idx] = lateral
            continue
        top_down = _resample(last, feats[idx].n, upsample, feats[idx].jump)
        last = top_down if lateral is None else _union(lateral, top_down)
        merged[idx] = last
    outputs = [0] if ablation == "finest-only" else list(range(n))
    levels = {level_of(stages[i]): _walk(fpn.layer_blocks[i], merged[i], axis) for i in outputs}
    extra = fpn.extra_blocks
    if extra is None or ablation == "finest-only":
        return levels
    top_level = level_of(stages[-1])
    if isinstance(extra, LastLevelMaxPool):
        # torchvision's p6: max_pool2d(kernel_size=1, stride=2), a subsampling.
        levels[torchvision_key_to_level("pool", stages)] = _window(levels[top_level], 1, 2, 0)
    elif isinstance(extra, LastLevelP6P7):
        # p6: a 3x3 stride-2 conv on the top level (use_P5) or on the top stage; p7: another on p6
        # (a ReLU between them, or none, changes no receptive field).
        k = int(top_level[1:])
        p6 = _walk(extra.p6, levels[top_level] if extra.use_P5 else feats[-1], axis)
        levels[f"p{k + 1}"], levels[f"p{k + 2}"] = p6, _walk(extra.p7, p6, axis)
    else:
        raise TypeError(f"cannot follow the receptive field through a {type(extra).__name__}")
    return levels


def _lines(model: Pyramid, length: int, axis: int) -> dict[str, _Line]:
    """``c1..c5`` and the model's levels along one axis of an input ``length`` pixels long."""
    lines = _backbone_lines(model.backbone, length, axis)
    lines.update(_fpn_lines(model.fpn, {s: lines[s] for s in model.config.stages}, axis))
    return lines


def theoretical_rf(model: Pyramid) -> dict[str, int]:
    """The theoretical receptive field of every stage ``c1..c5`` and level, from the modules.

    The size is the side, in network-input pixels, of the square of input pixels that can
    reach one cell far from the borders (for a level, the largest over cell positions, since
    nearest upsampling makes neighbouring cells see slightly different spans).

    Args:
        model: from ``build_pyramid``.

    Returns:
        Name -> RF side in pixels, e.g. ``{"c1": 7, "c2": 35, ...}`` for ResNet-50.
    """
    sizes: dict[str, int] = {}
    for axis in (0, 1):
        for name, line in _lines(model, _RF_LINE, axis).items():
            interior = (line.lo == line.ulo) & (line.hi == line.uhi)
            span = (line.uhi - line.ulo + 1)[interior] if interior.any() else line.uhi - line.ulo + 1
            sizes[name] = max(sizes.get(name, 0), int(span.max()))
    return sizes


def level_sources(fpn: nn.Module, stages: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Which input stages reach each output level of ``fpn`` (read off the same walk as the RF).

    For the full FPN on c3..c5: ``{"p3": ("c3", "c4", "c5"), "p4": ("c4", "c5"), "p5": ("c5",),
    "p6": ("c5",)}``; an ablation cuts some of them.
    """
    lines = {s: _Line(*(np.arange(0, 1024, stride_of(s), dtype=np.int64),) * 4, stride_of(s)) for s in stages}
    return {
        name: tuple(s for s in stages if s in line.sources) for name, line in _fpn_lines(fpn, lines, axis=0).items()
    }


@dataclass(frozen=True)
class RfBox:
    """One cell's theoretical receptive field in network-input pixels.

    Attributes:
        x0, y0, x1, y1: the square clipped to the image, half-open (``x0 <= x < x1``).
        cx, cy: the centre of the unclipped square (pixel-index coordinates: pixel ``i`` spans
            ``[i - 0.5, i + 0.5]``), where the ERF is expected to peak.
        size: the side of the unclipped square.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    cx: float
    cy: float
    size: int


def rf_boxes(model: Pyramid, input_hw: tuple[int, int], cells: Mapping[str, tuple[int, int]]) -> dict[str, RfBox]:
    """The theoretical RF of one cell per name, on a network input of ``input_hw`` pixels.

    Args:
        model: from ``build_pyramid``.
        input_hw: ``(height, width)`` of the network input.
        cells: name -> ``(row, col)`` of the cell.

    Returns:
        Name -> its cell's ``RfBox``.
    """
    rows, cols = _lines(model, input_hw[0], 0), _lines(model, input_hw[1], 1)
    boxes = {}
    for name, (r, c) in cells.items():
        ly, lx = rows[name], cols[name]
        boxes[name] = RfBox(
            x0=int(lx.lo[c]),
            y0=int(ly.lo[r]),
            x1=int(lx.hi[c]) + 1,
            y1=int(ly.hi[r]) + 1,
            cx=float(lx.ulo[c] + lx.uhi[c]) / 2,
            cy=float(ly.ulo[r] + ly.uhi[r]) / 2,
            size=int(max(lx.uhi[c] - lx.ulo[c], ly.uhi[r] - ly.ulo[r]) + 1),
        )
    return boxes


# --------------------------------------------------------------------------- points and cells


def map_point(point: Sequence[float], image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, float]:
    """An image point ``(x, y)`` in the pixels of the image as loaded, in network-input pixels.

    Raises:
        ValueError: if the point is not two finite numbers inside the image.
    """
    if len(point) != 2:
        raise ValueError(f"a point is (x, y), got {tuple(point)!r}")
    x, y = (float(v) for v in point)
    h, w = image_hw
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
        raise ValueError(f"point ({x:g}, {y:g}) is outside the {w} × {h} px image (x 0..{w}, y 0..{h})")
    return x * input_hw[1] / w, y * input_hw[0] / h


def cell_at(input_point: tuple[float, float], stride: int, map_hw: tuple[int, int]) -> tuple[int, int]:
    """``(row, col)`` of the cell whose stride-grid square holds ``input_point`` (x, y in network pixels)."""
    x, y = input_point
    return (
        min(max(int(y // stride), 0), map_hw[0] - 1),
        min(max(int(x // stride), 0), map_hw[1] - 1),
    )


#: What the Receptive fields page says (the intro under the point picker and the three lessons);
#: the lecture deck's notes read the same text.
INTRO = (
    "Pick a point on the image. For the cell under it in every backbone stage **c2..c5** and pyramid level "
    "**p_k**, the page shows **where that cell looks** (its receptive field, theoretical and effective) and, for "
    "each level, **where its signal comes from** (the exact share of each backbone stage). Both are properties "
    "of the network itself, so they are meaningful even with random weights."
)

TEACH_RF = (
    "**What a receptive field is.** A cell of a feature map is computed from a patch of the input image: every "
    "pixel that can change it at all. That patch is its **theoretical receptive field** (the white square): its "
    "side follows from the kernel sizes, strides and dilations of every layer on the way, and is computed here "
    "from the modules themselves. Each stride-2 stage doubles the step between cells, and each 3×3 convolution "
    "after it widens the patch by two steps, so the square grows quickly from c2 to c5."
)
TEACH_ERF = (
    "**Why the effective one is much smaller, and roughly Gaussian** (Luo et al., *Understanding the Effective "
    "Receptive Field in Deep Convolutional Neural Networks*, NeurIPS 2016). The color shows how much each input "
    "pixel actually moves the cell: the gradient of the cell's activation with respect to the pixels. A pixel near "
    "the centre reaches the cell along many more paths through the stacked convolutions than a pixel at the edge "
    "of the square, so the gradient piles up in the middle, like repeated blurring tends to a Gaussian. Its "
    "**effective radius** (r50 and r90: the radii holding 50% and 90% of the gradient mass) covers only a "
    "fraction of the theoretical square, and that fraction shrinks as the network gets deeper."
)
TEACH_FPN = (
    "**Why the top-down path gives fine levels a large context: the FPN paper's point.** A c3 cell sees only what "
    "the first three stages can see. Its level p3 also receives c4 and c5, upsampled and added (Lin et al., "
    "*Feature Pyramid Networks for Object Detection*, CVPR 2017, section 3). So a p3 cell keeps c3's fine, "
    "stride-8 position and yet looks as far as a c5 cell: compare the c3 and p3 panels. The paper's Table 1 shows "
    f"what this buys: without the top-down path, recall on small objects drops from {TABLE1['full'].ar_small} to "
    f"{TABLE1['no-top-down'].ar_small} (AR1k, COCO)."
)


# --------------------------------------------------------------------------- the effective RF


@dataclass(frozen=True)
class ErfResult:
    """Effective receptive fields of one cell per stage and level, at one picked point.

    Attributes:
        image: the resized RGB image the network saw (maps and boxes align with it).
        point: ``(x, y)`` as asked, in pixels of the image as loaded.
        input_point: the same point in network-input pixels.
        scale: ``(sx, sy)``, image pixels per network-input pixel.
        channel: the channel whose activation was differentiated (None: the sum over channels).
        magnitude: ``"abs"`` or ``"squared"``: how color channels were reduced.
        names: the stages and levels, in order.
        maps: name -> ``(h, w)`` float32 gradient magnitude in network-input pixels (not normalised).
        cells: name -> ``(row, col)`` of the cell whose stride-grid square holds the point.
        boxes: name -> that cell's theoretical RF (``RfBox``, network-input pixels).
        theoretical_rf_px: name -> the network's theoretical RF side (``theoretical_rf``), network-input px.
        radii_px: name -> ``{"50": r, "90": r}``: radius around the RF centre holding that share of
            the gradient mass, in pixels of the image as loaded (None where the gradient is zero).
        radii_input_px: the same radii in network-input pixels.
        ratio: name -> ``2 * r90 / theoretical RF side`` (network-input px): how much of the
            theoretical square the ERF fills, as the 90% diameter over the side.
    """

    image: np.ndarray
    point: tuple[float, float]
    input_point: tuple[float, float]
    scale: tuple[float, float]
    channel: int | None
    magnitude: str
    names: tuple[str, ...]
    maps: dict[str, np.ndarray]
    cells: dict[str, tuple[int, int]]
    boxes: dict[str, RfBox]
    theoretical_rf_px: dict[str, int]
    radii_px: dict[str, dict[str, float | None]]
    radii_input_px: dict[str, dict[str, float | None]]
    ratio: dict[str, float | None]


def default_names(model: Pyramid) -> tuple[str, ...]:
    """The backbone stages ``c2..c5`` and the model's levels: what the page shows."""
    return ("c2", "c3", "c4", "c5", *model.level_info.names())


def _check_options(model: Pyramid, names: Sequence[str], channel: int | None, magnitude: str) -> None:
    if magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {', '.join(MAGNITUDES)}, got {magnitude!r}")
    known = [name for name, _ in _BACKBONE_PATH] + model.level_info.names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"names must be some of {', '.join(known)}, got {', '.join(unknown) or 'none'}")
    if channel is not None:
        widths = {n: model.config.out_channels if n.startswith("p") else model.feature_info[n].num_chs for n in names}
        narrowest = min(widths.values())
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < narrowest:
            raise ValueError(
                f"channel must be an int from 0 to {narrowest - 1} for {', '.join(names)}, got {channel!r}"
            )


def _radii(mass: np.ndarray, box: RfBox, scale: tuple[float, float]) -> tuple[dict, dict]:
    """Radii around the RF centre holding 50% and 90% of ``mass``, in image and network pixels."""
    # The gradient is zero outside the theoretical RF, so only the box needs sorting.
    sub = mass[box.y0 : box.y1, box.x0 : box.x1].astype(np.float64)
    total = sub.sum()
    if not total > 0:
        return dict.fromkeys(ERF_MASSES), dict.fromkeys(ERF_MASSES)
    ys, xs = np.mgrid[box.y0 : box.y1, box.x0 : box.x1]
    dx, dy = xs - box.cx, ys - box.cy
    out = {}
    for unit, (sx, sy) in (("image", scale), ("input", (1.0, 1.0))):
        dist = np.hypot(dx * sx, dy * sy).ravel()
        order = np.argsort(dist, kind="stable")
        cum = np.cumsum(sub.ravel()[order])
        out[unit] = {
            q: float(dist[order][min(int(np.searchsorted(cum, int(q) / 100 * total)), len(cum) - 1)])
            for q in ERF_MASSES
        }
    return out["image"], out["input"]


def run_erf(
    model: Pyramid,
    resized: np.ndarray,
    x: Tensor,
    input_point: tuple[float, float],
    *,
    names: Sequence[str],
    channel: int | None = None,
    magnitude: str = "abs",
    scale: tuple[float, float] = (1.0, 1.0),
    point: tuple[float, float] | None = None,
) -> tuple[ErfResult, OrderedDict[str, Tensor]]:
    """The ERF maps on a prepared input; also returns the backbone stages (detached) it computed.

    Most callers want :func:`erf_maps`; this is the part that ``analyse_point`` shares, so the
    contributions reuse the stages of the same forward pass.
    """
    names = tuple(names)
    _check_options(model, names, channel, magnitude)
    config = model.config
    device = model.device
    with device_slot(device), torch.inference_mode(False), torch.enable_grad():
        # A private input leaf is the only tensor that requires a gradient.
        leaf = x.detach().clone().requires_grad_(True)
        stages = model.backbone(leaf)
        feats: dict[str, Tensor] = dict(stages)
        if any(n.startswith("p") for n in names):
            outs, _ = model.fpn.forward_steps(OrderedDict((s, stages[s]) for s in config.stages))
            feats.update((torchvision_key_to_level(k, config.stages), v) for k, v in outs.items())
        cells = {n: cell_at(input_point, stride_of(n), tuple(feats[n].shape[-2:])) for n in names}
        maps: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            r, c = cells[name]
            cell = feats[name][0, :, r, c]
            target = cell.sum() if channel is None else cell[channel]
            (grad,) = torch.autograd.grad(target, leaf, retain_graph=i < len(names) - 1)
            grad = grad[0].float()
            reduced = grad.abs().sum(0) if magnitude == "abs" else grad.square().sum(0)
            maps[name] = reduced.cpu().numpy().astype(np.float32, copy=False)
        detached = OrderedDict((k, v.detach()) for k, v in stages.items())
        del feats, stages, leaf
    input_hw = (int(x.shape[-2]), int(x.shape[-1]))
    boxes = rf_boxes(model, input_hw, cells)
    rf = theoretical_rf_cached(model)
    radii_px, radii_in, ratio = {}, {}, {}
    for name in names:
        radii_px[name], radii_in[name] = _radii(maps[name], boxes[name], scale)
        r90 = radii_in[name]["90"]
        ratio[name] = None if r90 is None else 2 * r90 / rf[name]
    result = ErfResult(
        image=resized,
        point=point if point is not None else (input_point[0] * scale[0], input_point[1] * scale[1]),
        input_point=input_point,
        scale=scale,
        channel=channel,
        magnitude=magnitude,
        names=names,
        maps=maps,
        cells=cells,
        boxes=boxes,
        theoretical_rf_px={n: rf[n] for n in names},
        radii_px=radii_px,
        radii_input_px=radii_in,
        ratio=ratio,
    )
    return result, detached


_rf_cache: dict[tuple[int, int, object], dict[str, int]] = {}


def theoretical_rf_cached(model: Pyramid) -> dict[str, int]:
    """:func:`theoretical_rf`, remembered per (backbone, FPN) pair while both live."""
    key = (id(model.backbone), id(model.fpn), model.config)
    found = _rf_cache.get(key)
    if found is None:
        found = theoretical_rf(model)
        if len(_rf_cache) > 64:  # ids can be reused after a model dies; keep the table small
            _rf_cache.clear()
        _rf_cache[key] = found
    return dict(found)


def erf_maps(
    model: Pyramid,
    image: np.ndarray,
    point: Sequence[float],
    *,
    size: int = DEFAULT_SIZE,
    names: Sequence[str] | None = None,
    channel: int | None = None,
    magnitude: str = "abs",
) -> ErfResult:
    """Effective receptive fields (Luo et al. 2016) of the cells under one point, per stage and level.

    For each name, the cell is the one whose stride-grid square holds the point; its
    activation (the sum over channels, or ``channel``) is differentiated with respect to the
    input pixels, and the gradient's color channels are reduced by ``magnitude``.

    Args:
        model: from ``build_pyramid``; used read-only (no parameter gets a gradient, no hook).
        image: RGB uint8 ``(H, W, 3)``, as loaded.
        point: ``(x, y)`` in pixels of ``image``.
        size: the long side of the network input (64 to 1024).
        names: stages and levels (default ``c2..c5`` and the model's levels).
        channel: one channel's activation instead of the sum over channels.
        magnitude: ``"abs"`` (sum of |gradient| over colors) or ``"squared"``.

    Returns:
        An :class:`ErfResult`.

    Raises:
        ValueError: a point outside the image, an unknown name, magnitude or channel.
    """
    names = tuple(names) if names is not None else default_names(model)
    return erf_at_point(model, image, point, size=size, names=names, channel=channel, magnitude=magnitude)[0]


def erf_at_point(
    model: Pyramid,
    image: np.ndarray,
    point: tuple[float, float],
    *,
    size: int,
    names: tuple[str, ...],
    channel: int | None,
    magnitude: str,
) -> tuple[ErfResult, Mapping[str, Tensor]]:
    """:func:`erf_maps` for the given ``names``, plus the backbone stages of the same forward pass."""
    _check_options(model, names, channel, magnitude)
    resized, x = prepare_input(image, size, model.backbone)
    (h0, w0), (h, w) = image.shape[:2], resized.shape[:2]
    return run_erf(
        model,
        resized,
        x,
        map_point(point, (h0, w0), (h, w)),
        names=names,
        channel=channel,
        magnitude=magnitude,
        scale=(w0 / w, h0 / h),
        point=(float(point[0]), float(point[1])),
    )


#: The share of the gradient's nonzero values below the top of the ERF's color scale: a few
#: pixels (the strided convolutions' checkerboard) spike far above the rest, and scaling to
#: the very peak would leave the whole field dark.
ERF_PERCENTILE = 99.0


def erf_values(erf_map: np.ndarray) -> np.ndarray:
    """An ERF map as the values its overlay shows, in [0, 1]: divided by its own
    :data:`ERF_PERCENTILE` of nonzero values (clipped to 1), then the square root, so the
    tails of the roughly Gaussian field stay visible. All zero when the map is."""
    nonzero = erf_map[erf_map > 0]
    top = float(np.percentile(nonzero, ERF_PERCENTILE)) if nonzero.size else 0.0
    if top <= 0:
        return np.zeros(np.shape(erf_map), dtype=np.float32)
    return np.sqrt(np.clip(erf_map / top, 0.0, 1.0)).astype(np.float32)


def erf_overlay(
    image: np.ndarray,
    erf_map: np.ndarray,
    *,
    box: RfBox | None = None,
    alpha: float = 0.85,
    colormap: str = "inferno",
) -> np.ndarray:
    """An ERF over the image as a plain RGB array: color where the gradient is, the photo untouched elsewhere.

    The map is shown as :func:`erf_values` and blended with an opacity that grows with the
    value (``alpha`` at the top). The cell's theoretical RF square, when given, is drawn as a
    white outline and its centre as a cyan cross. No matplotlib: fast enough to redraw on
    every click; the download (``fpn_core.figures.erf_figure``) shows this same image.

    Args:
        image: ``(H, W, 3)`` uint8 network input (``ErfResult.image``).
        erf_map: ``(H, W)`` map (``ErfResult.maps[name]``).
        box: the cell's ``RfBox`` (``ErfResult.boxes[name]``).
        alpha: the largest opacity of the color.
        colormap: matplotlib color map name.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    import cv2

    from .maps import colorize

    value = erf_values(erf_map)
    color = colorize(value, colormap).astype(np.float32)
    weight = (alpha * value)[..., None]
    out = np.ascontiguousarray(np.rint(image * (1.0 - weight) + color * weight).astype(np.uint8))
    if box is not None:
        cv2.rectangle(out, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), (255, 255, 255), 1)
        cx, cy = round(box.cx), round(box.cy)
        cv2.drawMarker(out, (cx, cy), (0, 255, 255), markerType=cv2.MARKER_CROSS, markerSize=9, thickness=1)
    return out


def growth_text(erf: ErfResult) -> str:
    """How the theoretical RF and the ERF's r90 change, finest to coarsest level and c_k to p_k (markdown)."""
    rf, r90 = erf.theoretical_rf_px, {n: erf.radii_input_px[n]["90"] for n in erf.names}
    levels = [n for n in erf.names if n.startswith("p") and r90[n] is not None]
    parts = []
    if len(levels) >= 2:
        first, last = levels[0], levels[-1]
        parts.append(
            f"From **{first}** to **{last}** the theoretical RF goes from {rf[first]} to {rf[last]} px and the "
            f"ERF's r90 from {r90[first]:.0f} to {r90[last]:.0f} px."
        )
    if levels:
        level = levels[0]
        stage = stage_of(level)
        if stage in rf and r90.get(stage) is not None:
            parts.append(
                f"At the same stride, **{stage}** sees {rf[stage]} px (r90 {r90[stage]:.0f} px) but **{level}** "
                f"{rf[level]} px (r90 {r90[level]:.0f} px): the top-down path brings the coarser stages' context."
            )
    return " ".join(parts)
