"""Where a level's signal comes from: the exact share of each backbone stage in each pyramid level.

Why it is exact. The FPN has no non-linearity: each level is a 3x3 convolution of a sum (or
mean) of upsampled 1x1 laterals, and nearest or bilinear upsampling, the merges, the ablations
and the p6 subsampling are all linear. So the FPN is an affine map ``f(c) = A c + b`` of its
inputs, and each level splits exactly as

    p_k = sum_j contribution(c_j -> p_k) + bias_k,   contribution(c_j) = f(only c_j) - f(0),
    bias_k = f(0),

where "only c_j" keeps stage j and zeroes the others. All of these come from one batched FPN
pass (batch = one row of zeros plus one row per stage), which costs a few times a plain FPN
pass and never touches the shared module (no bias is removed, nothing is edited).

Shares. A stage's share of a level is the L1 norm of its contribution divided by the sum of
the L1 norms of all stages' contributions; at a cell, the same over that cell's channels. The
bias term is left out (it is the same for every image). Shares are in [0, 1] and sum to 1; they
say how much signal each stage sends into the level, not whether the signals add or cancel.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .device import device_slot
from .levels import STAGE_COLORS, stride_of, torchvision_key_to_level
from .receptive import level_sources

__all__ = [
    "TEACH_SHARES",
    "Contributions",
    "composite_map",
    "describe_shares",
    "overlay_composite",
    "shares_table",
    "stage_contributions",
]


#: What the Receptive fields page says about stage shares (the lecture deck's notes read it too).
TEACH_SHARES = (
    "**Why the split is exact.** The FPN has no non-linearity: each p_k is a 3×3 convolution of a "
    "sum of upsampled 1×1 laterals. So p_k splits *exactly* into one contribution per backbone stage c_j "
    "(j ≥ k) plus a constant bias. A stage's **share** is the size (L1 norm) of its contribution over all the "
    "shares' total: over the whole level, or over one cell's channels at the picked point. Shares say how much "
    "signal each stage sends, not whether the signals add up or cancel."
)


@dataclass(frozen=True)
class Contributions:
    """Each stage's exact contribution to each pyramid level.

    Attributes:
        stages: the FPN's input stages, fine to coarse.
        levels: the output levels, fine to coarse.
        sources: level -> the stages that reach it (an ablation cuts some; p6 has its top stage).
        parts: level -> stage -> contribution tensor ``(1, d, h, w)``, for the stages that reach it.
        bias: level -> the bias term ``(1, d, h, w)`` (the FPN's output for all-zero inputs).
        strength: level -> stage -> ``(h, w)`` float32 L1 norm of the contribution over channels.
        shares: level -> stage -> share of the whole level (L1; sums to 1 over the stages).
    """

    stages: tuple[str, ...]
    levels: tuple[str, ...]
    sources: dict[str, tuple[str, ...]]
    parts: dict[str, dict[str, Tensor]]
    bias: dict[str, Tensor]
    strength: dict[str, dict[str, np.ndarray]]
    shares: dict[str, dict[str, float]]

    def without_tensors(self) -> Contributions:
        """A copy without ``parts`` and ``bias`` (the per-channel tensors): shares, strengths and
        composites only, a tenth of the bytes, for a cache that pickles (``st.cache_data``)."""
        return dataclasses.replace(self, parts={}, bias={})

    def total(self, level: str) -> Tensor:
        """The sum of the contributions and the bias: equal to the level itself (up to float rounding)."""
        out = self.bias[level].clone()
        for part in self.parts[level].values():
            out += part
        return out

    def shares_at(self, level: str, cell: tuple[int, int]) -> dict[str, float]:
        """Each stage's share of one cell ``(row, col)`` of ``level`` (L1 over its channels; sums to 1).

        Returns an empty dict when no stage sends anything to that cell.
        """
        r, c = cell
        return _normalise({s: float(m[r, c]) for s, m in self.strength[level].items()})

    def composite(self, level: str, *, gamma: float = 0.5) -> np.ndarray:
        """The composite map of ``level``: :func:`composite_map` of its strengths."""
        return composite_map(self.strength[level], gamma=gamma)

    def dominant(self, level: str) -> np.ndarray:
        """``(h, w)`` index into ``sources[level]`` of the stage with the largest contribution per cell."""
        return np.stack(list(self.strength[level].values())).argmax(axis=0)


def _normalise(values: Mapping[str, float]) -> dict[str, float]:
    total = sum(values.values())
    if not total > 0:
        return {}
    return {k: v / total for k, v in values.items()}


def stage_contributions(
    fpn: nn.Module, stages: Mapping[str, Tensor], config, *, keep_tensors: bool = True
) -> Contributions:
    """Split every level of ``fpn`` into one exact contribution per input stage plus a bias term.

    Args:
        fpn: the model's FPN (``FPN`` with any upsample, merge, ablation, p6); read-only.
        stages: backbone maps by name (e.g. ``PyramidOutput.stages``); those in ``config.stages`` are used.
        config: the ``PyramidConfig`` the FPN was built for (its ``stages`` name the inputs).
        keep_tensors: keep the per-channel ``parts`` and ``bias`` tensors (False: only strengths,
            shares and composites, as ``Contributions.without_tensors``).

    Returns:
        A :class:`Contributions`; ``total(level)`` equals the level within float rounding
        (when the tensors are kept).
    """
    names = tuple(config.stages)
    sources = level_sources(fpn, names)
    device = next(fpn.parameters()).device
    n = len(names)
    with device_slot(device), torch.inference_mode():
        inputs: OrderedDict[str, Tensor] = OrderedDict()
        for i, name in enumerate(names):
            feat = stages[name].to(device)
            # Row 0: all stages zero (the bias term); row i + 1: stage i alone.
            batch = feat.new_zeros((n + 1, *feat.shape[1:]))
            batch[i + 1] = feat[0]
            if feat.is_contiguous(memory_format=torch.channels_last):
                batch = batch.contiguous(memory_format=torch.channels_last)
            inputs[name] = batch
        outs = fpn(inputs)
        parts: dict[str, dict[str, Tensor]] = {}
        bias: dict[str, Tensor] = {}
        strength: dict[str, dict[str, np.ndarray]] = {}
        shares: dict[str, dict[str, float]] = {}
        for key, out in outs.items():
            level = torchvision_key_to_level(key, names)
            bias[level] = out[0:1].contiguous()
            parts[level] = {
                s: (out[i + 1 : i + 2] - out[0:1]).contiguous() for i, s in enumerate(names) if s in sources[level]
            }
            strength[level] = {s: t[0].abs().sum(0).float().cpu().numpy() for s, t in parts[level].items()}
            shares[level] = _normalise({s: float(m.sum(dtype=np.float64)) for s, m in strength[level].items()})
    levels = tuple(parts)
    return Contributions(
        stages=names,
        levels=levels,
        sources={lv: sources[lv] for lv in levels},
        parts=parts if keep_tensors else {},
        bias=bias if keep_tensors else {},
        strength=strength,
        shares=shares,
    )


def composite_map(strength: Mapping[str, np.ndarray], *, gamma: float = 0.5) -> np.ndarray:
    """One RGB map showing where each stage dominates a level.

    Each cell's color is the stages' app-wide colors (``levels.STAGE_COLORS``) blended by
    their shares at that cell, so a cell that is 90% c3 looks almost pure c3; its brightness is
    the cell's total strength relative to the level's strongest cell, raised to ``gamma`` (so
    weak cells are dark but not invisible).

    Args:
        strength: stage -> ``(h, w)`` non-negative contribution strength (e.g. ``Contributions.strength[level]``).
        gamma: brightness exponent, in (0, 1].

    Returns:
        ``(h, w, 3)`` uint8 RGB.
    """
    if not strength:
        raise ValueError("composite_map needs at least one stage")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    stack = np.stack([np.asarray(m, dtype=np.float64) for m in strength.values()])  # (n, h, w)
    colors = np.array([STAGE_COLORS[s] for s in strength], dtype=np.float64)  # (n, 3)
    total = stack.sum(axis=0)
    weights = np.divide(stack, total, out=np.zeros_like(stack), where=total > 0)
    rgb = np.einsum("nhw,nc->hwc", weights, colors)
    peak = total.max()
    brightness = (total / peak) ** gamma if peak > 0 else np.zeros_like(total)
    return np.clip(np.rint(rgb * brightness[..., None]), 0, 255).astype(np.uint8)


def overlay_composite(image: np.ndarray, composite: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """The composite map blown up to the image (nearest, so cells stay visible) and blended over it.

    Args:
        image: ``(H, W, 3)`` uint8, the network input the map belongs to.
        composite: ``(h, w, 3)`` uint8 from :func:`composite_map`.
        alpha: weight of the composite, in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    h, w = image.shape[:2]
    ch, cw = composite.shape[:2]
    rows = np.minimum(np.arange(h) * ch // h, ch - 1)
    cols = np.minimum(np.arange(w) * cw // w, cw - 1)
    big = composite[rows][:, cols].astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * big
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _percentages(shares: Mapping[str, float]) -> dict[str, int]:
    """Whole percentages that add up to 100 (largest remainders get the leftover points)."""
    raw = {k: v * 100 for k, v in shares.items()}
    floors = {k: int(np.floor(v)) for k, v in raw.items()}
    left = 100 - sum(floors.values())
    for k in sorted(raw, key=lambda k: raw[k] - floors[k], reverse=True)[:left]:
        floors[k] += 1
    return floors


def describe_shares(level: str, shares: Mapping[str, float], *, where: str = "at this point") -> str:
    """One plain-English sentence reading the shares, e.g.
    ``"At this point 62% of p3 comes from c3, 30% from c4 and 8% from c5."``

    Args:
        level: the level, e.g. ``"p3"``.
        shares: stage -> share (summing to 1), fine to coarse, e.g. from ``shares_at``.
        where: how the sentence starts, e.g. ``"over the whole level,"``.

    Returns:
        The sentence, starting with a capital and ending with a full stop.
    """
    start = where[:1].upper() + where[1:]
    pct = {s: p for s, p in _percentages(shares).items() if p > 0} if shares else {}
    if not pct:
        return f"{start} no stage sends any signal to {level}: it holds only its bias."
    if len(pct) == 1:
        (stage,) = pct
        return f"{start} all of {level} comes from {stage} (stride {stride_of(stage)})."
    items = list(pct.items())
    first = f"{items[0][1]}% of {level} comes from {items[0][0]}"
    rest = [f"{p}% from {s}" for s, p in items[1:]]
    tail = rest[0] if len(rest) == 1 else ", ".join(rest[:-1]) + f" and {rest[-1]}"
    joiner = " and " if len(rest) == 1 else ", "
    return f"{start} {first}{joiner}{tail}."


def shares_table(contributions: Contributions, cells: Mapping[str, tuple[int, int]] | None = None) -> dict:
    """Shares as plain data: per level ``{"level": {...}, "at_point": {...}}`` (for JSON and metadata)."""
    out = {}
    for level in contributions.levels:
        entry: dict[str, object] = {"level": dict(contributions.shares[level])}
        if cells is not None and level in cells:
            entry["at_point"] = contributions.shares_at(level, cells[level])
        out[level] = entry
    return out
