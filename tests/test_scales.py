"""The synthetic scales image: the same shape at known sizes, and the boxes around them."""

from __future__ import annotations

import numpy as np
import pytest

from fpn_core.scales import Box, ScalesImage, make_scales_image


def test_box_geometry_and_clip() -> None:
    box = Box("64 px", 10, 20, 74, 84)
    assert (box.width, box.height, box.area, box.sqrt_area) == (64, 64, 4096, 64.0)
    clipped = Box("x", -5, -5, 50, 300).clip(40, 100)
    assert (clipped.x0, clipped.y0, clipped.x1, clipped.y1) == (0, 0, 40, 100)
    with pytest.raises(ValueError, match="x0 <= x1"):
        Box("bad", 10, 0, 5, 5)


def test_scales_image_has_four_sizes_of_the_same_shape() -> None:
    scales = make_scales_image()
    assert isinstance(scales, ScalesImage)
    assert scales.image.shape == (512, 768, 3)
    assert scales.image.dtype == np.uint8
    assert [b.label for b in scales.boxes] == ["32 px", "64 px", "128 px", "256 px"]
    assert [b.width for b in scales.boxes] == [32, 64, 128, 256]
    for box in scales.boxes:
        assert box == box.clip(768, 512)  # inside the image
        inside = scales.image[box.y0 : box.y1, box.x0 : box.x1].astype(int)
        # strong contrast: the shape is much darker and brighter than the grey background
        assert inside.max() - inside.min() > 150
    for a, b in zip(scales.boxes, scales.boxes[1:], strict=False):
        assert a.x1 <= b.x0  # no overlap
    background = scales.image[:20, :20].astype(int)
    assert 150 < background.mean() < 230
    assert 1 < background.std() < 20  # mildly textured, not flat


def test_scales_image_is_deterministic_and_seeded() -> None:
    a, b = make_scales_image(seed=0), make_scales_image(seed=0)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.boxes == b.boxes
    assert not np.array_equal(a.image, make_scales_image(seed=1).image)
    with pytest.raises(ValueError, match="needs at least"):
        make_scales_image(width=300, height=200)
