"""A/B comparison: common levels, difference maps, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpn_core import PyramidConfig
from fpn_core.compare import PRESETS, compare_levels


def test_identical_sides_correlate_perfectly_and_differ_by_nothing():
    t = torch.randn(1, 32, 10, 12)
    (row,) = compare_levels({"p3": t}, {"p3": t.clone()})
    assert row.stats["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert np.abs(row.difference).max() == pytest.approx(0.0, abs=1e-6)


def test_different_widths_compare_on_reduced_maps_and_only_common_levels():
    gen = torch.Generator().manual_seed(0)
    a = {"p3": torch.randn(1, 256, 8, 8, generator=gen), "p4": torch.randn(1, 256, 4, 4, generator=gen)}
    b = {"p4": torch.randn(1, 64, 4, 4, generator=gen), "p5": torch.randn(1, 64, 2, 2, generator=gen)}
    rows = compare_levels(a, b)
    assert [r.level for r in rows] == ["p4"]
    assert rows[0].difference.shape == (4, 4)
    assert rows[0].stats["A channels"] == 256 and rows[0].stats["B channels"] == 64
    assert abs(rows[0].stats["correlation"]) < 0.99


def test_scaled_pattern_has_no_standardized_difference():
    t = torch.rand(1, 16, 6, 6)
    (row,) = compare_levels({"p2": t}, {"p2": 5 * t + 3})
    assert np.abs(row.difference).max() < 1e-4


def test_presets_are_valid_configs():
    for a, b in PRESETS.values():
        PyramidConfig(**a)
        PyramidConfig(**b)
