"""Feature maps to pictures: channel aggregations, value ranges, color maps and overlays.

Pure numpy / OpenCV / matplotlib-colormap code: no figures and no streamlit. Feature
tensors may live on any device; they are reduced there and only the small 2-D result is
copied to the CPU. All images are RGB ``uint8`` (never BGR).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import cv2
import matplotlib
import numpy as np
import torch

from .images import check_rgb

__all__ = [
    "CHANNEL_AGGREGATIONS",
    "COLORMAPS",
    "SCOPES",
    "MapRange",
    "MapStyle",
    "aggregate_channels",
    "channel_grid",
    "check_colormap",
    "colorize",
    "map_range",
    "map_ranges",
    "map_stats",
    "normalize",
    "overlay",
    "top_channels",
    "upsample_map",
]

CHANNEL_AGGREGATIONS = ("mean", "max", "l2", "std", "pc1")
SCOPES = ("per-level", "shared")
#: What the Overlays page says an overlay is (the lecture deck's notes read it too).
OVERLAYS_INTRO = (
    "Each map is upsampled to the input and blended over it with the sidebar's color map and alpha. "
    "Titles carry the level, stride, shape, width and weights, so a screenshot or a downloaded PNG explains itself."
)
COLORMAPS = ("viridis", "magma", "inferno", "plasma", "turbo", "jet", "gray")
TOP_BY = ("mean", "max")

Feature = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class MapStyle:
    """How feature maps become pictures: frozen and hashable, so it keys the screen caches.

    Attributes:
        aggregation: how channels collapse into one map, one of :data:`CHANNEL_AGGREGATIONS`.
        colormap: a matplotlib color map name, e.g. one of :data:`COLORMAPS` (the ones the UI offers).
        alpha: overlay opacity in ``[0, 1]``.
        scope: ``"per-level"`` (each map its own color scale) or ``"shared"``.

    Raises:
        ValueError: naming the first bad field and its value.
    """

    aggregation: str = "mean"
    colormap: str = "viridis"
    alpha: float = 0.5
    scope: str = "per-level"

    def __post_init__(self) -> None:
        check_colormap(self.colormap)
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        for name, value, choices in (
            ("aggregation", self.aggregation, CHANNEL_AGGREGATIONS),
            ("scope", self.scope, SCOPES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _as_float_tensor(feature: Feature) -> torch.Tensor:
    """A float32 tensor view of a torch tensor (on its device) or a numpy array (no copy where possible)."""
    if isinstance(feature, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(feature, dtype=np.float32))
    if isinstance(feature, torch.Tensor):
        return feature.detach().float()
    raise TypeError(f"feature must be a torch.Tensor or numpy array, got {type(feature).__name__}")


def _as_chw(feature: Feature) -> torch.Tensor:
    """A float32 ``(C, H, W)`` view of a ``(C, H, W)`` or ``(1, C, H, W)`` feature.

    Torch tensors stay on their device (so aggregations run there); numpy arrays are
    wrapped without a copy where possible.
    """
    tensor = _as_float_tensor(feature)
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or min(tensor.shape) < 1:
        raise ValueError(f"feature must have shape (C, H, W) or (1, C, H, W), got {tuple(feature.shape)}")
    return tensor


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.cpu().numpy(), dtype=np.float32)


def aggregate_channels(feature: Feature, how: str = "mean") -> np.ndarray:
    """Collapses the channels of a feature map into one 2-D map.

    Args:
        feature: ``(C, H, W)`` or ``(1, C, H, W)`` tensor (any device) or array.
        how: ``"mean"`` (channel average), ``"max"`` (largest channel), ``"l2"``
            (root mean square over channels, ``sqrt(mean(x**2))``: the L2 norm divided by
            ``sqrt(C)``, so levels with different channel counts stay comparable),
            ``"std"`` (population standard deviation over channels) or ``"pc1"`` (the first
            principal component, EigenCAM's idea: every position's channel vector, centred
            over positions, projected onto the direction along which they vary most; the
            sign is fixed so that positive is the side with the larger mean activation).

    Returns:
        A ``float32`` array of shape ``(H, W)``.

    Raises:
        ValueError: If ``how`` is not one of :data:`CHANNEL_AGGREGATIONS` or the shape is wrong.
    """
    if how not in CHANNEL_AGGREGATIONS:
        raise ValueError(f"how must be one of {CHANNEL_AGGREGATIONS}, got {how!r}")
    chw = _as_chw(feature)
    if how == "mean":
        reduced = chw.mean(dim=0)
    elif how == "max":
        reduced = chw.amax(dim=0)
    elif how == "l2":
        reduced = chw.square().mean(dim=0).sqrt()
    elif how == "pc1":
        reduced = _first_component(chw)
    else:
        reduced = chw.std(dim=0, correction=0)
    return _to_numpy(reduced)


def _first_component(chw: torch.Tensor) -> torch.Tensor:
    """Projection of each position onto the first principal component of the channel vectors.

    The positions' channel vectors (rows of ``X``, shape ``(H*W, C)``) are centred, and the top
    eigenvector of the smaller Gram matrix gives the projection: ``X^T X`` (C x C) when there
    are more positions than channels, else ``X X^T`` (HW x HW), whose top eigenvector times
    the square root of its eigenvalue is the same projection. Either way the cost stays at
    most ``min(C, HW)`` cubed. An eigenvector's sign is arbitrary, so it is fixed: positive is
    the side whose positions have the larger mean activation.
    """
    if chw.device.type == "mps":  # no float64 there
        chw = chw.cpu()
    c, h, w = chw.shape
    x = chw.reshape(c, h * w).T.double()  # float64: the Gram matrix sums many products
    x = x - x.mean(dim=0, keepdim=True)
    if h * w >= c:
        _, vectors = torch.linalg.eigh(x.T @ x)
        proj = x @ vectors[:, -1]
    else:
        values, vectors = torch.linalg.eigh(x @ x.T)
        proj = vectors[:, -1] * values[-1].clamp_min(0).sqrt()
    activation = chw.reshape(c, h * w).mean(dim=0).double()
    pos, neg = proj > 0, proj < 0
    if pos.any() and neg.any() and activation[pos].mean() < activation[neg].mean():
        proj = -proj
    return proj.float().reshape(h, w)


@dataclass(frozen=True)
class MapRange:
    """The value range mapped onto a color map's ends.

    ``vmax > vmin`` always holds (a flat map gets a tiny span), so normalising by this
    range never divides by zero.

    Attributes:
        vmin: Value shown with the lowest color.
        vmax: Value shown with the highest color.
    """

    vmin: float
    vmax: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.vmin) and math.isfinite(self.vmax)):
            raise ValueError(f"MapRange needs finite bounds, got ({self.vmin}, {self.vmax})")
        if not self.vmax > self.vmin:
            raise ValueError(f"MapRange needs vmax > vmin, got ({self.vmin}, {self.vmax})")

    @property
    def span(self) -> float:
        """``vmax - vmin``, always positive."""
        return self.vmax - self.vmin


def map_range(maps: Iterable[np.ndarray], clip_percentile: float | None = None) -> MapRange:
    """One value range covering all the given maps.

    Args:
        maps: 2-D maps (any shapes); NaN and infinite values are ignored.
        clip_percentile: ``None`` for the full min..max. With ``p``, the range runs from
            the ``p``-th to the ``(100 - p)``-th percentile of all values together, so a
            few extreme activations do not wash out the rest.

    Returns:
        The range, widened slightly when all values are equal (a flat map).

    Raises:
        ValueError: If ``maps`` is empty or holds no finite value, or ``clip_percentile``
            is outside ``[0, 50)``.
    """
    if clip_percentile is not None and not 0 <= clip_percentile < 50:
        raise ValueError(f"clip_percentile must be in [0, 50), got {clip_percentile}")
    flat = [np.asarray(m, dtype=np.float32).ravel() for m in maps]
    if not flat:
        raise ValueError("map_range needs at least one map, got none")
    values = np.concatenate(flat)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("map_range found no finite values in the given maps")
    if clip_percentile:
        lo, hi = np.percentile(values, [clip_percentile, 100.0 - clip_percentile])
    else:
        lo, hi = values.min(), values.max()
    vmin, vmax = float(lo), float(hi)
    if not vmax - vmin > _min_span(vmin):
        vmax = vmin + _min_span(vmin)
    return MapRange(vmin, vmax)


def _min_span(value: float) -> float:
    # Relative to the value, so the span survives float32 rounding of large values.
    return max(abs(value), 1.0) * 1e-6


def map_ranges(
    maps: Mapping[str, np.ndarray],
    scope: str = "per-level",
    clip_percentile: float | None = None,
) -> dict[str, MapRange]:
    """Value ranges for named maps, each its own or one shared by all.

    Args:
        maps: Level name -> 2-D map.
        scope: ``"per-level"`` gives every map its own range (shows the pattern inside
            each level); ``"shared"`` gives all the same range (shows which level is
            strongest).
        clip_percentile: As in :func:`map_range`.

    Returns:
        Level name -> range, in the order of ``maps``.

    Raises:
        ValueError: If ``scope`` is not one of :data:`SCOPES`.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "shared":
        shared = map_range(maps.values(), clip_percentile)
        return {name: shared for name in maps}
    return {name: map_range([m], clip_percentile) for name, m in maps.items()}


def normalize(map_: np.ndarray, rng: MapRange) -> np.ndarray:
    """Scales a map so ``rng.vmin`` -> 0 and ``rng.vmax`` -> 1, clipping outside values.

    Args:
        map_: A map of any shape.
        rng: The range to scale by.

    Returns:
        ``float32`` array in ``[0, 1]`` of the same shape; NaN becomes 0.
    """
    scaled = (np.asarray(map_, dtype=np.float32) - np.float32(rng.vmin)) / np.float32(rng.span)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)


def colorize(map01: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """Colors a ``[0, 1]`` map with a matplotlib color map.

    Args:
        map01: 2-D map with values in ``[0, 1]``.
        colormap: Name of a matplotlib color map, e.g. one of :data:`COLORMAPS`.

    Returns:
        ``uint8`` RGB array of shape ``(H, W, 3)``.

    Raises:
        ValueError: If ``colormap`` is unknown or ``map01`` is not 2-D.
    """
    check_colormap(colormap)
    values = np.asarray(map01, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"map01 must be 2-D, got shape {values.shape}")
    lut, bad = _lookup_table(colormap)
    # matplotlib's own indexing (``Colormap.__call__``): x * N truncated, 1.0 -> the last entry.
    index = np.clip(values, 0.0, 1.0) * np.float32(len(lut))
    nan = np.isnan(index)
    has_nan = bool(nan.any())
    if has_nan:
        index[nan] = 0.0
    np.minimum(index, len(lut) - 1, out=index)
    if len(lut) == 256:  # every color map offered: OpenCV's table lookup, 0.6 ms at 512 x 512
        rgb = cv2.LUT(cv2.cvtColor(index.astype(np.uint8), cv2.COLOR_GRAY2RGB), lut.reshape(256, 1, 3))
    else:
        rgb = np.take(lut, index.astype(np.intp), axis=0)
    if has_nan:
        rgb[nan] = bad
    return rgb


@lru_cache(maxsize=32)
def _lookup_table(colormap: str) -> tuple[np.ndarray, np.ndarray]:
    """A color map's RGB bytes per entry and its "bad" (NaN) color, as matplotlib gives them
    (indexing this table is what ``Colormap.__call__`` does, without its float64 RGBA copy: 3.8 -> 0.6 ms
    at 512 x 512, the same bytes)."""
    lookup = matplotlib.colormaps[colormap]
    lut = np.ascontiguousarray(lookup(np.arange(lookup.N), bytes=True)[:, :3])
    bad = np.asarray(lookup(np.array([np.nan]), bytes=True)[0, :3])
    lut.setflags(write=False)
    bad.setflags(write=False)
    return lut, bad


def check_colormap(colormap: str) -> None:
    """Refuses a name matplotlib has no color map for.

    Raises:
        ValueError: naming ``colormap`` and a few color maps that exist.
    """
    if colormap not in matplotlib.colormaps:
        raise ValueError(f"colormap must be a matplotlib color map (e.g. {', '.join(COLORMAPS)}), got {colormap!r}")


def upsample_map(map_: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resizes a 2-D map to ``(height, width)`` with bilinear interpolation.

    Args:
        map_: 2-D map.
        size_hw: Target ``(height, width)`` (note: OpenCV itself takes ``(w, h)``).

    Returns:
        ``float32`` array of shape ``size_hw``.

    Raises:
        ValueError: If ``map_`` is not 2-D or a target side is not positive.
    """
    values = np.asarray(map_, dtype=np.float32)
    if values.ndim != 2 or min(values.shape) < 1:
        raise ValueError(f"map_ must be a non-empty 2-D array, got shape {values.shape}")
    height, width = (int(s) for s in size_hw)
    if height < 1 or width < 1:
        raise ValueError(f"size_hw must be positive (height, width), got {tuple(size_hw)}")
    if values.shape == (height, width):
        return values.copy()
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)


def overlay(
    image: np.ndarray,
    map_: np.ndarray,
    *,
    rng: MapRange | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """Blends a colored map over an image at the image's resolution.

    The map is upsampled to the image size, normalised by ``rng``, colored, and
    blended: ``(1 - alpha) * image + alpha * color``.

    Args:
        image: ``uint8`` RGB array ``(H, W, 3)``.
        map_: 2-D map, any resolution (typically the image size divided by the stride).
        rng: Range for the color map ends; ``None`` uses this map's own min..max.
        alpha: Weight of the color, ``0`` (image only) to ``1`` (color only).
        colormap: Matplotlib color map name.

    Returns:
        ``uint8`` RGB array with the image's shape.

    Raises:
        ValueError: If ``alpha`` is outside ``[0, 1]``, ``image`` is not ``(H, W, 3)``
            uint8, or ``colormap`` is unknown.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    check_rgb(image)
    height, width = image.shape[:2]
    big = upsample_map(map_, (height, width))
    rng = map_range([big]) if rng is None else rng
    color = colorize(normalize(big, rng), colormap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * color.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _channel_scores(chw: torch.Tensor, by: str) -> torch.Tensor:
    if by not in TOP_BY:
        raise ValueError(f"by must be one of {TOP_BY}, got {by!r}")
    flat = chw.flatten(1)
    return flat.mean(dim=1) if by == "mean" else flat.amax(dim=1)


def top_channels(feature: Feature, k: int = 16, by: str = "mean") -> list[int]:
    """Indices of the most active channels, most active first.

    Args:
        feature: ``(C, H, W)`` or ``(1, C, H, W)`` tensor or array.
        k: How many channels; clipped to ``C``.
        by: ``"mean"`` (average activation over the map) or ``"max"`` (peak activation).

    Returns:
        Up to ``k`` channel indices; ties keep the lower index first.

    Raises:
        ValueError: If ``k`` is not positive or ``by`` is unknown.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    scores = _to_numpy(_channel_scores(_as_chw(feature), by))
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[: min(k, scores.size)]]


def channel_grid(feature: Feature, k: int = 16, cols: int | None = None) -> tuple[np.ndarray, list[int]]:
    """A mosaic of the ``k`` most active channels (by mean activation).

    Each tile is scaled to ``[0, 1]`` on its own (a flat channel is all 0), so the grid
    shows where each channel fires, not how strongly compared to the others. Tiles are
    separated by 1-pixel lines of NaN, and unused slots in the last row are NaN too:
    plotting code can show NaN in a neutral "bad" color.

    Args:
        feature: ``(C, H, W)`` or ``(1, C, H, W)`` tensor or array.
        k: How many channels; clipped to ``C``.
        cols: Tiles per row; ``None`` for a near-square grid.

    Returns:
        The ``float32`` 2-D mosaic of shape ``(rows*H + rows-1, cols*W + cols-1)`` and
        the channel index of each tile, in row-major order.

    Raises:
        ValueError: If ``k`` or ``cols`` is not positive.
    """
    chw = _as_chw(feature)
    indices = top_channels(chw, k)
    n = len(indices)
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"cols must be positive, got {cols}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    tiles = _to_numpy(chw[indices])
    _, h, w = tiles.shape
    mosaic = np.full((rows * h + rows - 1, cols * w + cols - 1), np.nan, dtype=np.float32)
    for slot, tile in enumerate(tiles):
        row, col = divmod(slot, cols)
        y, x = row * (h + 1), col * (w + 1)
        mosaic[y : y + h, x : x + w] = _tile01(tile)
    return mosaic, indices


def _tile01(tile: np.ndarray) -> np.ndarray:
    lo, hi = float(np.nanmin(tile)), float(np.nanmax(tile))
    if not hi > lo:
        return np.zeros_like(tile)
    return np.nan_to_num((tile - lo) / (hi - lo), nan=0.0)


def map_stats(feature: Feature) -> dict[str, float]:
    """Summary numbers of a feature tensor or map.

    Args:
        feature: A tensor (any device) or array of any shape, e.g. ``(1, C, H, W)``.

    Returns:
        ``mean``, ``std`` (population), ``min``, ``max`` and ``sparsity`` (the fraction
        of values that are exactly zero, e.g. switched off by a ReLU), as floats.

    Raises:
        ValueError: If the feature is empty.
    """
    values = _as_float_tensor(feature)
    if values.numel() == 0:
        raise ValueError(f"feature is empty, shape {tuple(values.shape)}")
    stats = torch.stack(
        [
            values.mean(),
            values.std(correction=0),
            values.amin(),
            values.amax(),
            (values == 0).float().mean(),
        ]
    ).cpu()
    keys = ("mean", "std", "min", "max", "sparsity")
    return {key: float(v) for key, v in zip(keys, stats.tolist(), strict=True)}
