"""Figures: every maker gives a matplotlib Figure that renders to a PNG, without pyplot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fpn_core.figures import (
    bar_figure,
    figure_to_png,
    grid_figure,
    line_figure,
    map_figure,
    maps_row_figure,
    overlay_figure,
    slide_figure,
    step_row_figure,
)
from fpn_core.maps import MapRange, channel_grid, map_range

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)


@pytest.fixture
def levels() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(f"p{k}", rng.random((64 // 2**k, 96 // 2**k)).astype(np.float32) * k) for k in (2, 3, 4)]


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
        return img.size


def all_texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def test_overlay_figure_colorbar_is_in_map_units(image: np.ndarray) -> None:
    map_ = np.linspace(40.0, 250.0, 12, dtype=np.float32).reshape(3, 4)
    fig = overlay_figure(image, map_, title="p4: channel mean", colorbar_label="mean activation")
    assert isinstance(fig, Figure)
    colorbar_axes = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbar_axes) == 1
    low, high = sorted(colorbar_axes[0].get_ylim())
    assert low == pytest.approx(40.0)
    assert high == pytest.approx(250.0)
    texts = all_texts(fig)
    assert "p4: channel mean" in texts
    assert "mean activation" in texts
    assert png_size(figure_to_png(fig))[0] > 300


def test_map_figure_shows_the_map_at_its_resolution() -> None:
    map_ = np.arange(12, dtype=np.float32).reshape(3, 4)
    fig = map_figure(map_, title="p5", rng=MapRange(0.0, 20.0))
    shown = fig.axes[0].get_images()[0]
    assert shown.get_array().shape == (3, 4)
    assert shown.get_clim() == (0.0, 20.0)
    assert "4 × 3 cells" in all_texts(fig)
    png_size(figure_to_png(fig))


def test_maps_row_figure_shared_range_has_one_colorbar(levels: list[tuple[str, np.ndarray]]) -> None:
    shared = map_range([m for _, m in levels])
    fig = maps_row_figure(levels, rngs=[shared] * len(levels), suptitle="pyramid")
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    assert [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"] == ["p2", "p3", "p4"]
    png_size(figure_to_png(fig))

    per_level = [map_range([m]) for _, m in levels]
    fig = maps_row_figure(levels, rngs=per_level)
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 3
    with pytest.raises(ValueError, match="one per map"):
        maps_row_figure(levels, rngs=per_level[:2])


def test_step_row_figure_explains_a_missing_step_in_its_panel(levels: list[tuple[str, np.ndarray]]) -> None:
    (_, p2), (_, p3), _ = levels
    panels = [("lateral 1×1", p2, ""), ("top-down input", None, "no top-down input"), ("merged", p3, "")]
    shared = map_range([p2, p3])
    fig = step_row_figure(panels, rngs=[shared, None, shared], colormap="viridis", suptitle="p2", colorbar_label="mean")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in axes] == ["lateral 1×1", "top-down input", "merged"]
    assert [t.get_text() for t in axes[1].texts] == ["no top-down input"]
    assert len(axes[1].images) == 0 and len(axes[0].images) == 1
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1
    png_size(figure_to_png(fig))

    per_panel = [map_range([p2]), None, map_range([p3])]
    fig = step_row_figure(panels, rngs=per_panel, colormap="viridis", suptitle="p2", colorbar_label="mean")
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 2
    with pytest.raises(ValueError, match="'nope'"):
        step_row_figure(panels, rngs=per_panel, colormap="nope", suptitle="p2", colorbar_label="mean")


def test_grid_figure_numbers_each_channel() -> None:
    feature = np.random.default_rng(2).random((20, 6, 8)).astype(np.float32)
    mosaic, indices = channel_grid(feature, k=6, cols=3)
    fig = grid_figure(mosaic, indices, title="top channels", cols=3)
    texts = all_texts(fig)
    for channel in indices:
        assert f"ch {channel}" in texts
    png_size(figure_to_png(fig))
    with pytest.raises(ValueError, match="tiles"):
        grid_figure(mosaic, indices, title="wrong cols", cols=4)


def test_slide_figure_is_16_by_9_with_every_level(image: np.ndarray, levels: list[tuple[str, np.ndarray]]) -> None:
    rng = map_range([m for _, m in levels])
    fig = slide_figure(image, levels, rngs=[rng] * len(levels), alpha=0.5, colormap="jet", suptitle="FPN levels")
    width, height = fig.get_size_inches()
    assert width / height == pytest.approx(16 / 9)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    for name in ("input", "p2", "p3", "p4"):
        assert name in titles
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_images()]
    assert len(panels) == 4
    assert all(p.get_images()[0].get_array().shape[:2] == image.shape[:2] for p in panels)
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1
    png_size(figure_to_png(fig))

    per_level = slide_figure(
        image, levels, rngs=[map_range([m]) for _, m in levels], alpha=0.4, colormap="viridis", suptitle="per level"
    )
    assert len([ax for ax in per_level.axes if ax.get_label() == "<colorbar>"]) == 3


def test_bar_figure_colors_groups_and_labels_values() -> None:
    fig = bar_figure(
        ["conv1", "layer1", "fpn"], [1.5, 12.25, 3.0], title="time", xlabel="ms", groups=["backbone", "backbone", "fpn"]
    )
    ax = fig.axes[0]
    bars = ax.patches
    assert bars[0].get_facecolor() == bars[1].get_facecolor() != bars[2].get_facecolor()
    texts = all_texts(fig)
    assert {"1.5", "12.2", "3"} <= set(texts)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["backbone", "fpn"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "layer1", "fpn"]
    assert bars[0].get_y() < bars[2].get_y()  # first label on top (y axis inverted)
    png_size(figure_to_png(fig))
    with pytest.raises(ValueError, match="2 values"):
        bar_figure(["a", "b", "c"], [1.0, 2.0], title="t", xlabel="x")


def test_line_figure_draws_each_series() -> None:
    fig = line_figure(
        [256, 512, 1024], {"backbone": [10, 40, 160], "fpn": [2, 8, 33]}, title="t", xlabel="px", ylabel="ms", logx=True
    )
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["backbone", "fpn"]
    assert ax.get_xscale() == "log"
    png_size(figure_to_png(fig))
    with pytest.raises(ValueError, match="'fpn' has 2 values"):
        line_figure([1, 2, 3], {"fpn": [1, 2]}, title="t", xlabel="x", ylabel="y")


def _screen_download(fig: Figure, scale: int) -> bytes:
    """A page's PNG download of ``fig`` (``ui.panels``: drawn when pressed, at the sidebar's scale)."""
    from ui import panels

    return panels.render_download_png(panels.Download(lambda: fig), scale)


@pytest.mark.parametrize("render", [lambda fig, scale: figure_to_png(fig, scale=scale), _screen_download])
def test_a_scale_multiplies_the_pixels(render) -> None:
    """The one check that a resolution multiplier grows a figure's PNG, by the engine and by a page's download."""
    map_ = np.arange(20, dtype=np.float32).reshape(4, 5)
    one = png_size(render(map_figure(map_, title="scale 1"), 1))
    two = png_size(render(map_figure(map_, title="scale 1"), 2))
    assert two[0] / one[0] == pytest.approx(2.0, rel=0.03)
    assert two[1] / one[1] == pytest.approx(2.0, rel=0.03)


def test_figure_to_png_refuses_a_scale_of_zero() -> None:
    with pytest.raises(ValueError, match="scale"):
        figure_to_png(map_figure(np.ones((2, 2)), title="t"), scale=0)


def test_figure_to_png_releases_the_figure() -> None:
    fig = map_figure(np.ones((2, 2)), title="t")
    figure_to_png(fig)
    assert fig.axes == []


def test_figures_never_import_pyplot(fresh_imports) -> None:
    """In a fresh interpreter, after every engine module and a figure drawn to PNG: no pyplot."""
    assert fresh_imports["figure_is_png"]
    assert not fresh_imports["pyplot_after_figure"]


def test_screen_panels_are_arrays_sized_for_a_column_and_cheaper_than_figures() -> None:
    """What replaced the screen figures: a colored array, crisp when enlarged, shrunk when huge."""
    from fpn_core.maps import MapRange, colorize, normalize
    from ui import panels

    small = np.arange(16 * 12, dtype=np.float32).reshape(12, 16)
    scale = panels.ColorScale("viridis", MapRange(0.0, float(small.max())), "channel mean")
    image = panels.enlarge(colorize(normalize(small, scale.rng), "viridis"))
    assert image.dtype == np.uint8 and image.shape == (12 * 24, 16 * 24, 3)  # a whole factor: 384 // 16
    # Nearest neighbour: every cell is one flat 24 x 24 block (no blur between cells).
    assert (image[:24, :24] == image[0, 0]).all() and not (image[:24, 24:48] == image[0, 0]).all()
    huge = np.zeros((2000, 1000, 3), dtype=np.uint8)
    assert max(panels.enlarge(huge).shape[:2]) == panels.DISPLAY_LONG_SIDE
    strip = panels.colorbar_strip("magma")
    assert strip.shape == (10, 256, 3) and not strip.flags.writeable
    assert tuple(strip[0, 0]) != tuple(strip[0, -1])  # low values left, high values right


def test_erf_figure_shows_the_screen_overlay(image: np.ndarray) -> None:
    """The ERF download shows the very image the page shows (``fpn_core.receptive.erf_overlay``)."""
    from fpn_core.figures import erf_figure
    from fpn_core.receptive import erf_overlay

    erf = np.zeros(image.shape[:2], dtype=np.float32)
    erf[10:20, 12:24] = np.linspace(0.1, 1.0, 120, dtype=np.float32).reshape(10, 12)
    fig = erf_figure(image, erf, title="p3", box=(5, 5, 30, 30), cell_square=(12, 10, 20, 18), center=(17.0, 14.0))
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), erf_overlay(image, erf))
    np.testing.assert_array_equal(erf_overlay(image, erf)[0, 0], image[0, 0])  # no gradient: the photo untouched
    assert len(fig.axes[0].patches) == 2 and any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    png_size(figure_to_png(fig))
