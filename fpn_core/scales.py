"""The synthetic "scales" image: one target shape at several known sizes.

It shows that each pyramid level responds to objects of a different size; the boxes say
where each shape is, so the scale probe can measure every level's response inside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Box", "ScalesImage", "make_scales_image"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates; ``x1`` and ``y1`` are exclusive.

    Attributes:
        label: What the box holds, e.g. ``"64 px"``.
        x0: Left edge (inclusive).
        y0: Top edge (inclusive).
        x1: Right edge (exclusive).
        y1: Bottom edge (exclusive).
    """

    label: str
    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(
                f"Box corners must satisfy x0 <= x1 and y0 <= y1, got ({self.x0}, {self.y0}, {self.x1}, {self.y1})"
            )

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        """Area in pixels."""
        return self.width * self.height

    @property
    def sqrt_area(self) -> float:
        """Square root of the area: the object size the FPN paper assigns levels by."""
        return math.sqrt(self.area)

    def clip(self, w: int, h: int) -> Box:
        """Returns this box clipped to an image of width ``w`` and height ``h``."""
        return Box(
            self.label,
            min(max(self.x0, 0), w),
            min(max(self.y0, 0), h),
            min(max(self.x1, 0), w),
            min(max(self.y1, 0), h),
        )


@dataclass(frozen=True)
class ScalesImage:
    """A synthetic image with the same shape at several known sizes.

    Attributes:
        image: ``uint8`` RGB array of shape ``(H, W, 3)``.
        boxes: One box per drawn shape, smallest first.
    """

    image: np.ndarray
    boxes: tuple[Box, ...]


_SCALE_SIZES = (32, 64, 128, 256)
_SHAPE_DARK = np.array([30, 45, 110], dtype=np.float32)  # navy
_SHAPE_LIGHT = np.array([250, 245, 235], dtype=np.float32)  # off-white
_SHAPE_ACCENT = np.array([235, 90, 20], dtype=np.float32)  # orange


def make_scales_image(
    width: int = 768,
    height: int = 512,
    seed: int = 0,
    *,
    sizes: Sequence[int] = _SCALE_SIZES,
) -> ScalesImage:
    """Draws one "target" shape at several sizes on a mildly textured background.

    The shape is a navy disc with an off-white ring, a navy centre and an orange
    cross: strong edges at every scale, so CNN features respond to it. Shapes are placed
    left to right, smallest first, centred vertically. The result is deterministic for a
    given ``seed``.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        seed: Seed of the background texture.
        sizes: Diameter of each shape in pixels.

    Returns:
        The image and one :class:`Box` per shape, labelled like ``"32 px"``.

    Raises:
        ValueError: If a size is below 4 px or the shapes do not fit in the image.
    """
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 4:
        raise ValueError(f"sizes must be at least 4 px each, got {sizes}")
    margin = 8
    need_w = sum(sizes) + margin * (len(sizes) + 1)
    need_h = max(sizes) + 2 * margin
    if width < need_w or height < need_h:
        raise ValueError(
            f"a {width} x {height} image cannot hold shapes of {sizes} px; it needs at least {need_w} x {need_h}"
        )

    image = _textured_background(width, height, seed)
    gap = (width - sum(sizes)) / (len(sizes) + 1)
    boxes: list[Box] = []
    x = gap
    for size in sizes:
        x0 = round(x)
        y0 = (height - size) // 2
        _draw_target(image, x0, y0, size)
        boxes.append(Box(f"{size} px", x0, y0, x0 + size, y0 + size))
        x += size + gap
    return ScalesImage(np.ascontiguousarray(np.rint(image).astype(np.uint8)), tuple(boxes))


def _textured_background(width: int, height: int, seed: int) -> np.ndarray:
    """A warm grey with smooth low-contrast blotches and faint grain, float32 RGB."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, size=(max(2, height // 32), max(2, width // 32), 3))
    smooth = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 2.0, size=(height, width, 1)).astype(np.float32)
    base = np.array([196, 190, 178], dtype=np.float32)
    return np.clip(base + 9.0 * smooth + grain, 0, 255).astype(np.float32)


def _draw_target(image: np.ndarray, x0: int, y0: int, size: int) -> None:
    """Paints the target shape into ``image[y0:y0+size, x0:x0+size]`` in place.

    Layers are painted back to front, each weighted by how much of a pixel it covers,
    so the edges are anti-aliased and the shape spans exactly ``size`` pixels.
    """
    radius = size / 2.0
    coords = np.arange(size, dtype=np.float32) + 0.5 - radius
    dx, dy = np.meshgrid(coords, coords)
    dist = np.hypot(dx, dy)
    half_bar = max(1.0, size / 16.0) / 2.0

    def inside(signed_px: np.ndarray) -> np.ndarray:
        # signed_px > 0 inside the edge; a pixel straddling the edge is partly covered
        return np.clip(signed_px + 0.5, 0.0, 1.0)[..., None]

    disc = inside(radius - dist)
    bar = np.maximum(inside(half_bar - np.abs(dx)), inside(half_bar - np.abs(dy)))
    layers = (
        (disc, _SHAPE_DARK),
        (inside(0.72 * radius - dist), _SHAPE_LIGHT),
        (inside(0.36 * radius - dist), _SHAPE_DARK),
        (np.minimum(bar, disc), _SHAPE_ACCENT),
    )
    patch = image[y0 : y0 + size, x0 : x0 + size]
    for coverage, color in layers:
        patch *= 1.0 - coverage
        patch += coverage * color
