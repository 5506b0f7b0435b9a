"""A/B comparison of two pyramids on the same image: difference maps and statistics per level.

The two sides may differ in width, stages, upsampling, merge, weights or ablation, so they are
compared where both have a level, on channel-reduced maps (one value per position), which have
the same spatial size whatever the width.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .maps import aggregate_channels, upsample_map

#: Natural A/B pairs: (label, changes to side A, changes to side B), as PyramidConfig fields.
PRESETS: dict[str, tuple[dict, dict]] = {
    "Width 256 vs 64": ({"out_channels": 256}, {"out_channels": 64}),
    "COCO-trained vs random FPN": ({"weights": "coco-fpn"}, {"weights": "random"}),
    "Nearest vs bilinear upsampling": ({"upsample": "nearest"}, {"upsample": "bilinear"}),
    "Full FPN vs no top-down path": ({"ablation": "full"}, {"ablation": "no-top-down"}),
}


@dataclass(frozen=True)
class LevelComparison:
    """One level seen by both sides.

    Attributes:
        level: e.g. ``"p3"``.
        a, b: the channel-reduced maps of side A and B (same shape).
        difference: ``b - a`` after each map is standardized (zero mean, unit std), so a change
            of width or weights scale does not swamp the change of pattern.
        stats: numbers for the table (means, stds, correlation, mean |difference|).
    """

    level: str
    a: np.ndarray
    b: np.ndarray
    difference: np.ndarray
    stats: dict[str, float]


def _standardize(m: np.ndarray) -> np.ndarray:
    std = float(m.std())
    return (m - m.mean()) / std if std > 0 else np.zeros_like(m)


def compare_levels(
    levels_a: Mapping[str, torch.Tensor],
    levels_b: Mapping[str, torch.Tensor],
    *,
    aggregation: str = "mean",
) -> list[LevelComparison]:
    """Compare the levels both sides have, fine to coarse.

    Maps of different spatial size (different input stages give the same strides, so this only
    happens with different image sizes) are resized to side A's size.

    Returns:
        One ``LevelComparison`` per common level; empty when the sides share no level.
    """
    out = []
    for level in [name for name in levels_a if name in levels_b]:
        a = aggregate_channels(levels_a[level], aggregation)
        b = aggregate_channels(levels_b[level], aggregation)
        if b.shape != a.shape:
            b = upsample_map(b, a.shape)
        za, zb = _standardize(a), _standardize(b)
        corr = float((za * zb).mean()) if za.any() and zb.any() else float("nan")
        diff = (zb - za).astype(np.float32)
        stats = {
            "A channels": int(levels_a[level].shape[1]),
            "B channels": int(levels_b[level].shape[1]),
            "A mean": float(a.mean()),
            "B mean": float(b.mean()),
            "A std": float(a.std()),
            "B std": float(b.std()),
            "correlation": corr,
            "mean |difference| (std units)": float(np.abs(diff).mean()),
        }
        out.append(LevelComparison(level, a, b, diff, stats))
    return out
