"""The scale probe: which pyramid level "sees" an object of a given size.

Three small tools for the teaching views, pure numpy / torch:

- :func:`assign_level` is the FPN paper's rule that sends a region of a given size to one
  pyramid level;
- :func:`box_responses` measures how strongly each level responds inside each box, so the
  rule can be compared with what the maps actually show;
- :func:`stride_grid` draws one cell per feature-map position over the image, so a user
  sees how coarse each level is.

Boxes are in the pixels of the image they were drawn on; the network sees a resized image
(``PyramidOutput.image``), so convert them first with :func:`scale_boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from .images import check_rgb
from .levels import stage_index, stride_of
from .maps import aggregate_channels
from .paper import CANONICAL_LEVEL, CANONICAL_SIZE, LEVEL_RULE
from .scales import Box

__all__ = [
    "CANONICAL_SIZE",
    "GRID_TEXT",
    "PROBE_INTRO",
    "RANDOM_WEIGHTS_TEXT",
    "READING_TEXT",
    "RULE_LEVELS",
    "SCALES_TEXT",
    "assign_level",
    "assign_level_k",
    "box_responses",
    "grid_cells",
    "scale_boxes",
    "stride_grid",
]

#: What the Scale probe page says (its header, the scales image, how to read the table, random weights);
#: the lecture deck's notes read the same text.
PROBE_INTRO = (
    f"The FPN paper sends a box of size w × h to level {LEVEL_RULE}. Do the features agree? "
    "Each box is probed on every level, and each level's stride grid shows how coarsely it sees the image."
)
SCALES_TEXT = (
    "The synthetic **scales** image: one target shape at 32, 64, 128 and 256 px (boxes known exactly). "
    "Its shapes double in size from left to right, so by the paper's rule each should move one level up."
)
READING_TEXT = (
    "**Reading the table:** *paper k* is the rule before clamping; *paper level* clamps it to the levels "
    "present. Small objects should peak on fine levels (p2, p3), large ones on coarse levels. "
    f"The paper's {CANONICAL_SIZE} refers to ImageNet images, so on a small network input most boxes fall "
    "to the finest level."
)
RANDOM_WEIGHTS_TEXT = "With random weights the responses reflect image statistics, not learned object features."
GRID_TEXT = (
    "Each grid cell is one position of the level's feature map; coarse levels see the image in big cells. "
    "Boxes in orange."
)

#: The levels the paper's RoI rule assigns to (p6 only serves the RPN's largest anchors).
RULE_LEVELS: tuple[str, ...] = ("p2", "p3", "p4", "p5")


# --------------------------------------------------------------------------- the paper's rule


def assign_level_k(
    w: float, h: float, *, canonical: int = CANONICAL_SIZE, k0: int = CANONICAL_LEVEL, eps: float = 0.0
) -> int:
    """The unclamped pyramid index of a ``w`` x ``h`` region, by the FPN paper's eq. (1).

    ``k = floor(k0 + log2(sqrt(w * h) / canonical))``: a region of the pre-training size
    goes to ``k0``; each halving of its side moves it one level finer.

    Args:
        w: Region width in input pixels.
        h: Region height in input pixels.
        canonical: The size mapped to ``k0`` (the paper's, :data:`fpn_core.paper.CANONICAL_SIZE`).
        k0: The level a ``canonical``-sized region is assigned to (:data:`fpn_core.paper.CANONICAL_LEVEL`).
        eps: Added before the floor; torchvision's ``LevelMapper`` adds 1e-6 so that an exact
            power-of-two size is not pushed down a level by rounding.

    Returns:
        ``k``, possibly outside the levels a model has (e.g. 7 for a 2000 px region).

    Raises:
        ValueError: If ``w``, ``h`` or ``canonical`` is not a positive finite number.
    """
    for name, value in (("w", w), ("h", h), ("canonical", canonical)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return math.floor(k0 + math.log2(math.sqrt(w * h) / canonical) + eps)


def assign_level(
    w: float,
    h: float,
    levels: Sequence[str] = RULE_LEVELS,
    canonical: int = CANONICAL_SIZE,
    k0: int = CANONICAL_LEVEL,
) -> str:
    """The pyramid level the FPN paper assigns a ``w`` x ``h`` region to.

    :func:`assign_level_k` (the paper's eq. (1), constants in :mod:`fpn_core.paper`), then
    clamped to the levels present: a tiny region goes to the finest level, a huge one to the
    coarsest. With the default ``p2..p5``, a canonical-sized region goes to p4, one of half
    its side to p3, and anything from twice its side up to p5.

    Args:
        w: Region width in input pixels.
        h: Region height in input pixels.
        levels: The levels available, any order (``p2..p5`` as in the paper's RoI heads).
        canonical: The size mapped to ``k0``.
        k0: The level of a ``canonical``-sized region.

    Returns:
        A level name from ``levels``; where ``k`` falls in a gap, the nearest present level
        (the finer one on a tie).

    Raises:
        ValueError: If ``levels`` is empty or holds a name that is not a level, or a size
            is not positive.
    """
    k = assign_level_k(w, h, canonical=canonical, k0=k0)
    if not levels:
        raise ValueError("levels must name at least one pyramid level, got none")
    if any(not name.startswith("p") for name in levels):
        raise ValueError(f"levels must be pyramid levels like 'p3', got {list(levels)}")
    by_index = {stage_index(name): name for name in levels}
    nearest = min(by_index, key=lambda i: (abs(i - k), i))
    return by_index[nearest]


# --------------------------------------------------------------------------- boxes


def scale_boxes(boxes: Sequence[Box], from_hw: tuple[int, int], to_hw: tuple[int, int]) -> list[Box]:
    """Boxes drawn on an image of size ``from_hw``, moved onto the same image resized to ``to_hw``.

    Use it with ``PyramidOutput.image`` (the resized image the network saw): a box on the
    original photo must be scaled before it is compared with feature maps.

    Args:
        boxes: Boxes in ``from_hw`` pixels.
        from_hw: ``(height, width)`` of the image the boxes were drawn on.
        to_hw: ``(height, width)`` of the resized image.

    Returns:
        The boxes, rounded to whole pixels and clipped to ``to_hw``; a box with a positive
        side keeps at least one pixel on that side.

    Raises:
        ValueError: If a size is not positive.
    """
    (fh, fw), (th, tw) = _check_hw("from_hw", from_hw), _check_hw("to_hw", to_hw)
    sx, sy = tw / fw, th / fh
    scaled = []
    for box in boxes:
        x0, y0 = round(box.x0 * sx), round(box.y0 * sy)
        x1, y1 = round(box.x1 * sx), round(box.y1 * sy)
        if box.width > 0:
            x1 = max(x1, x0 + 1)
        if box.height > 0:
            y1 = max(y1, y0 + 1)
        scaled.append(Box(box.label, x0, y0, x1, y1).clip(tw, th))
    return scaled


def _check_hw(name: str, hw: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be a positive (height, width), got {tuple(hw)}")
    return h, w


def _box_cells(box: Box, stride: float, map_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The feature-map cells ``(row0, row1, col0, col1)`` (ends exclusive) a box covers.

    Cell ``i`` covers input pixels ``[i * stride, (i + 1) * stride)``; every cell the box
    touches counts, and at least one cell is always returned.
    """
    mh, mw = map_hw
    c0 = min(int(box.x0 // stride), mw - 1)
    r0 = min(int(box.y0 // stride), mh - 1)
    c1 = min(max(math.ceil(box.x1 / stride), c0 + 1), mw)
    r1 = min(max(math.ceil(box.y1 / stride), r0 + 1), mh)
    return r0, r1, c0, c1


def _level_stride(name: str, image_hw: tuple[int, int], map_hw: tuple[int, int]) -> float:
    """The level's nominal stride (``2**k`` from its name), else the image-to-map ratio."""
    try:
        return float(stride_of(name))
    except ValueError:
        return image_hw[1] / map_hw[1]


def box_responses(
    levels: Mapping[str, Tensor],
    boxes: Sequence[Box],
    image_hw: tuple[int, int],
    aggregation: str = "mean",
) -> list[dict]:
    """How strongly each pyramid level responds inside each box.

    For each level the channels are reduced to one map (:func:`fpn_core.maps.aggregate_channels`)
    and the box is mapped from image pixels to the cells it touches (by the level's stride,
    at least one cell). The raw ``response`` is the map's mean over those cells.

    Raw values do not compare across levels (each level has its own scale, and FPN outputs
    have no ReLU, so a level's channel mean can be near zero or negative, which makes a plain
    ratio to it meaningless). So ``relative`` is the response *relative to the level's own
    average*, in units of the level's spread: ``(response - level mean) / level std`` over
    the whole map. ``relative = 2`` means "two standard deviations above what this level
    shows on average": comparable from level to level.

    Args:
        levels: Level name -> feature map ``(1, C, H, W)`` or ``(C, H, W)``, e.g.
            ``PyramidOutput.levels``.
        boxes: Boxes in the pixels of the image the network saw (see :func:`scale_boxes`).
        image_hw: ``(height, width)`` of that image; boxes are clipped to it.
        aggregation: How channels are reduced, one of ``fpn_core.maps.CHANNEL_AGGREGATIONS``.

    Returns:
        One row per (box, level), boxes in the given order, levels in the mapping's order.
        Each row holds ``box`` (its label), ``xyxy``, ``size_px`` (square root of the box
        area), ``level``, ``stride``, ``cells`` (how many cells were averaged), ``response``,
        ``level_mean``, ``level_std``, ``relative``, ``strongest`` (the level with the
        highest ``relative`` for this box) and ``rule_level`` (the paper's assignment,
        :func:`assign_level`, among the present levels p2..p5; None when none is present or
        the box is empty).

    Raises:
        ValueError: If ``levels`` is empty, ``image_hw`` is not positive or ``aggregation`` is
            unknown.
    """
    if not levels:
        raise ValueError("levels must hold at least one feature map, got none")
    height, width = _check_hw("image_hw", image_hw)
    reduced = {name: aggregate_channels(feature, aggregation) for name, feature in levels.items()}
    summary = {name: (float(m.mean()), float(m.std())) for name, m in reduced.items()}
    rule_levels = [name for name in levels if name in RULE_LEVELS]

    rows: list[dict] = []
    for box in boxes:
        clipped = box.clip(width, height)
        box_rows = []
        for name, map_ in reduced.items():
            stride = _level_stride(name, (height, width), map_.shape)
            r0, r1, c0, c1 = _box_cells(clipped, stride, map_.shape)
            response = float(map_[r0:r1, c0:c1].mean())
            mean, std = summary[name]
            box_rows.append(
                {
                    "box": box.label,
                    "xyxy": (clipped.x0, clipped.y0, clipped.x1, clipped.y1),
                    "size_px": clipped.sqrt_area,
                    "level": name,
                    "stride": stride,
                    "cells": (r1 - r0) * (c1 - c0),
                    "response": response,
                    "level_mean": mean,
                    "level_std": std,
                    "relative": (response - mean) / std if std > 0 else 0.0,
                }
            )
        strongest = max(box_rows, key=lambda row: row["relative"])["level"]
        rule = assign_level(clipped.width, clipped.height, rule_levels) if rule_levels and clipped.area > 0 else None
        for row in box_rows:
            row["strongest"] = strongest
            row["rule_level"] = rule
        rows.extend(box_rows)
    return rows


# --------------------------------------------------------------------------- stride grid


def grid_cells(image_hw: tuple[int, int], feature_hw: tuple[int, int]) -> int:
    """How many cells :func:`stride_grid` draws: one per feature-map position.

    Args:
        image_hw: ``(height, width)`` of the image (checked only).
        feature_hw: ``(height, width)`` of the feature map.

    Returns:
        ``feature_hw[0] * feature_hw[1]``.

    Raises:
        ValueError: If a size is not positive or the map has more cells than the image has
            pixels along a side.
    """
    (ih, iw), (fh, fw) = _check_hw("image_hw", image_hw), _check_hw("feature_hw", feature_hw)
    if fh > ih or fw > iw:
        raise ValueError(f"a {fh} x {fw} feature map has more cells than a {ih} x {iw} image has pixels")
    return fh * fw


def _grid_lines(image_side: int, feature_side: int) -> np.ndarray:
    """Pixel positions of the lines between cells along one axis (``feature_side - 1`` of them).

    Derived from the real map size (``image_side / feature_side`` pixels per cell), not from
    the nominal stride, so the drawn cells are exactly the map's cells even when the image
    side is not a multiple of the stride.
    """
    cell = image_side / feature_side
    return np.unique(np.rint(np.arange(1, feature_side) * cell).astype(int))


def stride_grid(
    image: np.ndarray,
    stride: int,
    feature_hw: tuple[int, int] | None = None,
    color: tuple[int, int, int] = (255, 255, 255),
    alpha: float = 0.6,
) -> np.ndarray:
    """Draws one grid cell per feature-map position over the image.

    Each cell is what one position of a level "sees" at its stride: a coarse level gives
    few big cells, a fine level many small ones. Lines are 1 px wide, blended with
    ``alpha``; there are ``feature_w - 1`` vertical and ``feature_h - 1`` horizontal lines,
    so exactly ``feature_h * feature_w`` cells (:func:`grid_cells`). Cells narrower than
    2 px (c1 on an odd-sized image) are partly covered by their lines.

    Args:
        image: ``uint8`` RGB array ``(H, W, 3)``, the image the network saw.
        stride: The level's nominal stride in pixels (e.g. 16 for p4).
        feature_hw: ``(height, width)`` of the real feature map; None derives it from the
            stride as ResNet does (``ceil(H / stride)``, ``ceil(W / stride)``).
        color: RGB color of the lines.
        alpha: Weight of the line color over the image, in ``[0, 1]``.

    Returns:
        A new ``uint8`` RGB array with the image's shape.

    Raises:
        ValueError: If ``image`` is not ``(H, W, 3)`` uint8, ``stride`` is not positive,
            ``alpha`` is outside ``[0, 1]`` or the map has more cells than the image pixels.
    """
    check_rgb(image)
    if not (isinstance(stride, (int, np.integer)) and stride > 0):
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ih, iw = image.shape[:2]
    if feature_hw is None:
        feature_hw = (math.ceil(ih / stride), math.ceil(iw / stride))
    fh, fw = _check_hw("feature_hw", feature_hw)
    grid_cells((ih, iw), (fh, fw))

    mask = np.zeros((ih, iw), dtype=bool)
    mask[:, _grid_lines(iw, fw)] = True
    mask[_grid_lines(ih, fh), :] = True
    out = image.astype(np.float32)
    line = np.asarray(color, dtype=np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * line
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
