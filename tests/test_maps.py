"""Feature maps to pictures: aggregations, ranges, colors and overlays a user looks at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpn_core.maps import (
    CHANNEL_AGGREGATIONS,
    COLORMAPS,
    MapRange,
    aggregate_channels,
    channel_grid,
    check_colormap,
    colorize,
    map_range,
    map_ranges,
    map_stats,
    normalize,
    overlay,
    top_channels,
    upsample_map,
)


@pytest.fixture
def feature() -> torch.Tensor:
    return torch.randn(1, 8, 5, 7, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)


# ------------------------------------------------------------------ aggregations


def test_reduce_mean_equals_the_channel_average(feature: torch.Tensor) -> None:
    reduced = aggregate_channels(feature, "mean")
    assert reduced.shape == (5, 7)
    assert reduced.dtype == np.float32
    np.testing.assert_allclose(reduced, feature[0].mean(0).numpy(), rtol=1e-6, atol=1e-6)


def _first_principal_component(x: np.ndarray) -> np.ndarray:
    """EigenCAM: positions (rows) centred, projected on the top right singular vector; positive where
    the mean activation is larger."""
    c, h, w = x.shape
    rows = x.reshape(c, h * w).T.astype(np.float64)
    rows = rows - rows.mean(axis=0)
    proj = rows @ np.linalg.svd(rows, full_matrices=False)[2][0]
    mean = x.reshape(c, h * w).mean(axis=0)
    if mean[proj > 0].mean() < mean[proj < 0].mean():
        proj = -proj
    return proj.reshape(h, w)


def test_reductions_match_their_definitions(feature: torch.Tensor) -> None:
    x = feature[0].numpy()
    expected = {
        "mean": x.mean(0),
        "max": x.max(0),
        "l2": np.sqrt((x**2).mean(0)),
        "std": x.std(0),
        "pc1": _first_principal_component(x),
    }
    assert set(expected) == set(CHANNEL_AGGREGATIONS)
    for how, want in expected.items():
        np.testing.assert_allclose(aggregate_channels(feature, how), want, rtol=1e-5, atol=1e-6, err_msg=how)
        # numpy input and (C, H, W) input give the same map
        np.testing.assert_allclose(aggregate_channels(x, how), want, rtol=1e-5, atol=1e-6, err_msg=how)


def test_reduce_accepts_tensors_that_need_grad(feature: torch.Tensor) -> None:
    reduced = aggregate_channels(feature.clone().requires_grad_(True), "l2")
    assert isinstance(reduced, np.ndarray)


def test_reduce_rejects_unknown_reduction_and_bad_shape(feature: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="'median'"):
        aggregate_channels(feature, "median")
    with pytest.raises(ValueError, match=r"\(5, 7\)"):
        aggregate_channels(torch.zeros(5, 7))
    with pytest.raises(ValueError, match="shape"):
        aggregate_channels(torch.zeros(2, 3, 5, 7))  # a batch of two is ambiguous


# ------------------------------------------------------------------ ranges


def test_map_range_spans_all_maps_and_clips_outliers() -> None:
    a = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    b = np.array([[5.0, -2.0]], dtype=np.float32)
    rng = map_range([a, b])
    assert (rng.vmin, rng.vmax) == (-2.0, 5.0)

    values = np.arange(1001, dtype=np.float32).reshape(7, 143)
    clipped = map_range([values], clip_percentile=1)
    assert clipped.vmin == pytest.approx(10.0)
    assert clipped.vmax == pytest.approx(990.0)


def test_map_range_ignores_nan_and_rejects_bad_arguments() -> None:
    assert map_range([np.array([[np.nan, 1.0, 3.0]])]) == MapRange(1.0, 3.0)
    with pytest.raises(ValueError, match="clip_percentile"):
        map_range([np.zeros((2, 2))], clip_percentile=60)
    with pytest.raises(ValueError, match="at least one"):
        map_range([])


def test_flat_map_normalizes_without_nan() -> None:
    flat = np.full((4, 6), 3.5, dtype=np.float32)
    rng = map_range([flat])
    assert rng.vmax > rng.vmin
    normalized = normalize(flat, rng)
    assert not np.isnan(normalized).any()
    assert normalized.min() >= 0
    assert normalized.max() <= 1
    # a flat map still overlays without warnings or NaN colors
    out = overlay(np.zeros((8, 12, 3), np.uint8), flat, alpha=1.0)
    assert out.shape == (8, 12, 3)


def test_map_range_type_guards_against_zero_span() -> None:
    with pytest.raises(ValueError, match="vmax > vmin"):
        MapRange(1.0, 1.0)


def test_shared_scope_gives_identical_ranges_per_level_does_not() -> None:
    maps = {"p2": np.zeros((8, 8)) + np.arange(8), "p3": np.full((4, 4), 100.0) + np.eye(4)}
    shared = map_ranges(maps, "shared")
    assert list(shared) == ["p2", "p3"]
    assert shared["p2"] == shared["p3"] == MapRange(0.0, 101.0)
    per_level = map_ranges(maps, "per-level")
    assert per_level["p2"] == MapRange(0.0, 7.0)
    assert per_level["p3"] == MapRange(100.0, 101.0)
    with pytest.raises(ValueError, match="'global'"):
        map_ranges(maps, "global")


def test_normalize_maps_range_ends_to_zero_and_one_and_clips() -> None:
    out = normalize(np.array([[-1.0, 0.0, 5.0, 10.0, 20.0]]), MapRange(0.0, 10.0))
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]])
    assert out.dtype == np.float32


# ------------------------------------------------------------------ colors and overlay


def test_colorize_gives_rgb_from_the_colormap() -> None:
    out = colorize(np.array([[0.0, 1.0]]), "gray")
    assert out.shape == (1, 2, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    for name in COLORMAPS:
        assert colorize(np.zeros((2, 2)), name).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="'nope'"):
        colorize(np.zeros((2, 2)), "nope")


def test_upsample_map_takes_height_then_width() -> None:
    small = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    big = upsample_map(small, (6, 10))
    assert big.shape == (6, 10)
    assert big.dtype == np.float32
    assert big[0, 0] == pytest.approx(0.0)
    assert big[-1, -1] == pytest.approx(3.0)
    assert big[0, -1] == pytest.approx(1.0)  # top-right stays top-right
    with pytest.raises(ValueError, match="size_hw"):
        upsample_map(small, (0, 4))


def test_overlay_has_the_image_shape(image: np.ndarray) -> None:
    out = overlay(image, np.random.default_rng(1).random((5, 7)))
    assert out.shape == image.shape
    assert out.dtype == np.uint8


def test_overlay_alpha_zero_is_the_image_and_one_is_the_colormap(image: np.ndarray) -> None:
    map_ = np.random.default_rng(2).random((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(overlay(image, map_, alpha=0.0), image)
    rng = MapRange(0.0, 1.0)
    pure = overlay(image, map_, rng=rng, alpha=1.0, colormap="viridis")
    expected = colorize(normalize(upsample_map(map_, image.shape[:2]), rng), "viridis")
    np.testing.assert_array_equal(pure, expected)
    half = overlay(image, map_, rng=rng, alpha=0.5, colormap="viridis").astype(int)
    np.testing.assert_allclose(half, (image.astype(int) + expected) / 2, atol=1)


def test_overlay_is_rgb_not_bgr(image: np.ndarray) -> None:
    # The top of "jet" is dark red: red channel high, blue channel low.
    out = overlay(image, np.ones((3, 3)), rng=MapRange(0.0, 1.0), alpha=1.0, colormap="jet")
    red, green, blue = (int(v) for v in out[10, 10])
    assert red > 100
    assert red > blue + 100
    assert green < 50


def test_overlay_rejects_bad_alpha(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"1\.5"):
        overlay(image, np.ones((3, 3)), alpha=1.5)
    with pytest.raises(ValueError, match="float64"):
        overlay(image.astype(np.float64), np.ones((3, 3)))


# ------------------------------------------------------------------ channels and stats


def test_top_channels_finds_planted_channels() -> None:
    feature = torch.zeros(1, 32, 6, 6)
    feature[0, 17] = 5.0
    feature[0, 3] = 2.0
    feature[0, 29, 0, 0] = 100.0  # one very strong cell: top by max, modest by mean (100/36)
    assert top_channels(feature, k=3) == [17, 29, 3]
    assert top_channels(feature, k=2, by="max") == [29, 17]
    assert len(top_channels(feature, k=100)) == 32  # k clipped to C
    with pytest.raises(ValueError, match="'median'"):
        top_channels(feature, by="median")


def test_channel_grid_tiles_the_top_channels() -> None:
    feature = torch.zeros(10, 4, 5)
    for c in range(10):
        feature[c] = c
        feature[c, 0, 0] = c + 1  # each channel has one bright corner
    mosaic, indices = channel_grid(feature, k=6, cols=3)
    assert indices == [9, 8, 7, 6, 5, 4]
    assert mosaic.shape == (2 * 4 + 1, 3 * 5 + 2)
    assert mosaic.dtype == np.float32
    tile = mosaic[0:4, 0:5]
    assert tile[0, 0] == 1.0  # each tile on its own 0..1
    assert tile[1, 1] == 0.0
    assert np.isnan(mosaic[4]).all()  # separator row
    assert np.isnan(mosaic[:, 5]).all()  # separator column
    assert np.nanmax(mosaic) == 1.0


def test_channel_grid_leaves_unused_slots_empty() -> None:
    mosaic, indices = channel_grid(np.random.default_rng(0).random((5, 3, 3)), k=5)
    assert len(indices) == 5
    assert mosaic.shape == (2 * 3 + 1, 3 * 3 + 2)  # 3 columns, 2 rows
    assert np.isnan(mosaic[4:, 8:]).all()  # the sixth slot


def test_map_stats_reports_sparsity() -> None:
    feature = torch.tensor([[[0.0, 0.0], [2.0, 6.0]]])
    stats = map_stats(feature)
    assert stats == pytest.approx({"mean": 2.0, "std": np.std([0, 0, 2, 6]), "min": 0.0, "max": 6.0, "sparsity": 0.5})
    assert all(isinstance(v, float) for v in stats.values())
    assert map_stats(feature.numpy())["sparsity"] == 0.5


def test_check_colormap_accepts_matplotlib_names_and_names_a_bad_one() -> None:
    for name in (*COLORMAPS, "cividis", "viridis_r"):
        check_colormap(name)
    with pytest.raises(ValueError, match=r"colormap must be a matplotlib color map \(e.g. viridis.*got 'nope'"):
        check_colormap("nope")


@pytest.mark.parametrize("colormap", [*COLORMAPS, "jet", "tab10"])
def test_colorize_gives_matplotlibs_own_bytes(colormap: str) -> None:
    """The table lookup is byte for byte what the color map's ``__call__`` gives, at the ends,
    at entry boundaries, outside [0, 1] (clipped) and for NaN (the "bad" color)."""
    import matplotlib

    rng = np.random.default_rng(0)
    x = rng.random((60, 61), dtype=np.float32) * 1.4 - 0.2
    x[0, :6] = [0.0, 1.0, np.nan, 0.5, 1 / 256, 255 / 256]
    x[1, :2] = [np.nextafter(np.float32(1), np.float32(0)), -0.0]
    expected = matplotlib.colormaps[colormap](np.clip(x, 0.0, 1.0), bytes=True)[..., :3]
    assert np.array_equal(colorize(x, colormap), expected)
