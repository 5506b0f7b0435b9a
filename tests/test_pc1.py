"""The "pc1" channel aggregation: EigenCAM's first principal component, with a fixed sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpn_core.export import check_export_settings
from fpn_core.maps import CHANNEL_AGGREGATIONS, aggregate_channels


def _feature(c: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Noise plus one strong pattern along a random channel direction; the pattern is 1 on the top half."""
    gen = torch.Generator().manual_seed(seed)
    pattern = torch.zeros(h, w)
    pattern[: h // 2] = 1.0
    direction = torch.rand(c, generator=gen) + 0.5  # positive: the pattern raises the mean activation
    x = torch.randn(c, h, w, generator=gen) * 0.2 + direction[:, None, None] * pattern * 2.0
    return x, pattern.numpy()


def _svd_projection(x: torch.Tensor) -> np.ndarray:
    c, h, w = x.shape
    rows = x.reshape(c, h * w).T.double().numpy()
    rows = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    return (rows @ vt[0]).reshape(h, w)


@pytest.mark.parametrize(("c", "h", "w"), [(64, 24, 32), (2048, 6, 9)], ids=["more-positions", "more-channels"])
def test_pc1_is_the_first_principal_component_with_a_fixed_sign(c, h, w):
    x, pattern = _feature(c, h, w)
    pc1 = aggregate_channels(x, "pc1")
    assert pc1.shape == (h, w) and pc1.dtype == np.float32
    expected = _svd_projection(x)
    assert np.allclose(np.abs(pc1), np.abs(expected), atol=1e-3 * np.abs(expected).max())
    # the sign: positive on the side with the larger mean activation (the pattern's half)
    assert pc1[pattern == 1].mean() > 0 > pc1[pattern == 0].mean()
    flipped = aggregate_channels(-x, "pc1")  # now the other half has the larger mean activation
    assert flipped[pattern == 0].mean() > 0 > flipped[pattern == 1].mean()
    assert np.allclose(aggregate_channels(x[None], "pc1"), pc1)  # (1, C, H, W) works too


def test_pc1_is_offered_wherever_reductions_are():
    assert "pc1" in CHANNEL_AGGREGATIONS
    check_export_settings(colormap="jet", alpha=0.5, aggregation="pc1", scope="shared", scale=1.0)
    from fpn_core.cli import build_parser

    args = build_parser().parse_args(["export", "x.jpg", "--out", "o", "--reduction", "pc1"])
    assert args.aggregation == "pc1"
