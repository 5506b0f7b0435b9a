"""The scale probe: the paper's level rule, box responses, and the stride grid."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from fpn_core import run_pyramid
from fpn_core.probe import (
    assign_level,
    assign_level_k,
    box_responses,
    grid_cells,
    scale_boxes,
    stride_grid,
)
from fpn_core.scales import Box, make_scales_image

SIZE = 256


@pytest.fixture(scope="module")
def scales():
    return make_scales_image()  # 768 x 512, targets of 32, 64, 128 and 256 px


@pytest.fixture(scope="module")
def output(random_pyramid, scales):
    model = random_pyramid(out_channels=64, stages=("c2", "c3", "c4", "c5"))
    return run_pyramid(model, scales.image, size=SIZE)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("side", "level"),
    [(224, "p4"), (112, "p3"), (448, "p5"), (10, "p2"), (2000, "p5"), (56, "p2"), (223, "p3")],
)
def test_assign_level_follows_the_paper(side, level):
    assert assign_level(side, side) == level


@pytest.mark.parametrize(("side", "k"), [(224, 4), (112, 3), (448, 5), (10, -1), (2000, 7)])
def test_assign_level_k_is_unclamped(side, k):
    assert assign_level_k(side, side) == k


def test_assign_level_uses_the_area_not_a_side():
    assert assign_level(112, 448) == "p4"  # sqrt(112 * 448) = 224


def test_assign_level_clamps_to_the_levels_present():
    assert assign_level(10, 10, levels=("p3", "p4")) == "p3"
    assert assign_level(2000, 2000, levels=("p4", "p3")) == "p4"
    assert assign_level(224, 224, levels=("p2", "p6")) == "p2"  # nearest present, finer on a tie


@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, -1), (math.nan, 10)])
def test_assign_level_refuses_bad_sizes(w, h):
    with pytest.raises(ValueError, match="must be a positive"):
        assign_level(w, h)


def test_assign_level_refuses_stage_names():
    with pytest.raises(ValueError, match="c3"):
        assign_level(100, 100, levels=("c3", "c4"))


# --------------------------------------------------------------------------- boxes


def test_scale_boxes_follows_the_resize():
    boxes = [Box("a", 10, 20, 110, 70), Box("thin", 0, 0, 1, 1)]
    scaled = scale_boxes(boxes, (200, 400), (100, 200))
    assert scaled[0] == Box("a", 5, 10, 55, 35)
    assert scaled[1].width == 1 and scaled[1].height == 1  # a box never vanishes


def test_scale_boxes_clips_to_the_image():
    (box,) = scale_boxes([Box("edge", 350, 150, 420, 230)], (200, 400), (200, 400))
    assert (box.x1, box.y1) == (400, 200)


def test_box_responses_has_one_row_per_box_and_level(scales, output):
    h, w = output.image.shape[:2]
    boxes = scale_boxes(scales.boxes, scales.image.shape[:2], (h, w))
    rows = box_responses(output.levels, boxes, (h, w))

    assert len(rows) == len(boxes) * len(output.levels)
    pairs = {(r["box"], r["level"]) for r in rows}
    assert pairs == {(b.label, name) for b in boxes for name in output.levels}
    for row in rows:
        assert row["cells"] >= 1
        assert math.isfinite(row["relative"]) and math.isfinite(row["response"])
        assert row["strongest"] in output.levels
        box = next(b for b in boxes if b.label == row["box"])
        assert row["size_px"] == pytest.approx(box.sqrt_area)
        assert row["rule_level"] == assign_level(box.width, box.height, ("p2", "p3", "p4", "p5"))


def test_box_responses_finds_the_level_that_responds():
    # p3 is flat except for a hot spot exactly under the box; p4 is noise of a larger scale.
    image_hw = (128, 128)
    box = Box("hot", 32, 32, 64, 64)
    p3 = torch.zeros(1, 8, 16, 16)
    p3[:, :, 4:8, 4:8] = 1.0  # cells of stride 8 covering pixels 32..64
    p4 = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0)) * 100
    rows = box_responses({"p3": p3, "p4": p4}, [box], image_hw)
    by_level = {r["level"]: r for r in rows}

    assert by_level["p3"]["cells"] == 16
    assert by_level["p3"]["response"] == pytest.approx(1.0)
    assert by_level["p3"]["relative"] > 2  # far above p3's own average, whatever p4's scale
    assert rows[0]["strongest"] == "p3"
    assert rows[0]["rule_level"] == "p3"  # k = 1 for 32 px, clamped to the finest level given


def test_box_responses_gives_a_tiny_box_one_cell():
    p5 = torch.arange(16.0).view(1, 1, 4, 4)
    (row,) = box_responses({"p5": p5}, [Box("dot", 40, 40, 41, 41)], (128, 128))
    assert row["cells"] == 1
    assert row["response"] == pytest.approx(float(p5[0, 0, 1, 1]))


# --------------------------------------------------------------------------- stride grid


def _count_cells(grid: np.ndarray) -> int:
    """Regions of untouched (black) pixels, 4-connected: the cells between the grid lines."""
    background = (grid.max(axis=2) == 0).astype(np.uint8)
    count, _ = cv2.connectedComponents(background, connectivity=4)
    return count - 1  # label 0 is the lines


def _count_lines(grid: np.ndarray) -> tuple[int, int]:
    """Rows and columns drawn entirely in the line color: the horizontal and vertical lines."""
    line = grid.min(axis=2) == 255
    return int(line.all(axis=1).sum()), int(line.all(axis=0).sum())


def test_stride_grid_draws_one_cell_per_feature_position(output):
    h, w = output.image.shape[:2]  # 256 x 171: odd, so the maps are not exact divisions
    black = np.zeros_like(output.image)
    for name, tensor in {**output.stages, **output.levels}.items():
        fh, fw = tensor.shape[-2:]
        stride = round(w / fw)
        grid = stride_grid(black, stride, (fh, fw), alpha=1.0)
        assert grid.shape == black.shape and grid.dtype == np.uint8
        assert grid_cells((h, w), (fh, fw)) == fh * fw
        rows, cols = _count_lines(grid)
        assert (rows + 1) * (cols + 1) == fh * fw, name
        if min(h / fh, w / fw) >= 2:  # 1-px lines leave every cell at least one visible pixel
            assert _count_cells(grid) == fh * fw, name


def test_stride_grid_derives_the_map_size_from_the_stride():
    image = np.zeros((100, 130, 3), np.uint8)
    assert _count_cells(stride_grid(image, 32, alpha=1.0)) == math.ceil(100 / 32) * math.ceil(130 / 32)


def test_stride_grid_blends_and_leaves_the_cells_alone():
    image = np.full((64, 64, 3), 100, np.uint8)
    grid = stride_grid(image, 16, (4, 4), color=(200, 0, 0), alpha=0.5)
    assert tuple(grid[16, 5]) == (150, 50, 50)  # a horizontal line pixel
    assert tuple(grid[5, 5]) == (100, 100, 100)
    assert np.array_equal(image, np.full((64, 64, 3), 100, np.uint8))  # input untouched


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"stride": 0}, "stride"), ({"alpha": 2.0}, "alpha"), ({"feature_hw": (65, 4)}, "more cells")],
)
def test_stride_grid_refuses_bad_arguments(kwargs, match):
    args = {"image": np.zeros((64, 64, 3), np.uint8), "stride": 16, "feature_hw": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        stride_grid(**args)
