"""The architecture diagram's DOT source, checked without streamlit or a model."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fpn_core import RESNET50_FEATURE_INFO, PyramidConfig, build_pyramid, run_pyramid
from fpn_core.diagram import DiagramShapes, architecture_dot
from fpn_core.levels import level_of, stride_of

H, W = 96, 128
D = 64


def _hw(name: str) -> tuple[int, int]:
    s = stride_of(name)
    return math.ceil(H / s), math.ceil(W / s)


def _shapes(config: PyramidConfig) -> DiagramShapes:
    """The shapes a run of ``config`` on an H × W input has, from the strides alone."""
    levels = [level_of(s) for s in config.stages]
    outputs = levels[:1] if config.ablation == "finest-only" else levels
    if config.p6 and config.ablation != "finest-only":
        outputs = [*outputs, f"p{int(levels[-1][1:]) + 1}"]
    top_down = [] if config.ablation == "no-top-down" else levels[:-1]
    return DiagramShapes(
        input_hw=(H, W),
        stages={n: (1, RESNET50_FEATURE_INFO[n].num_chs, *_hw(n)) for n in ("c1", "c2", "c3", "c4", "c5")},
        levels={n: (1, D, *_hw(n)) for n in outputs},
        top_down={n: (1, D, *_hw(n)) for n in top_down},
    )


def _dot(**kwargs) -> str:
    config = PyramidConfig(out_channels=D, weights="random", **kwargs)
    return architecture_dot(config, RESNET50_FEATURE_INFO, _shapes(config))


def _nodes(dot: str) -> set[str]:
    return set(re.findall(r"^  (\w+) \[", dot, re.M))


def _edges(dot: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^  (\w+) -> (\w+)", dot, re.M))


def test_c3_to_c5_with_p6():
    dot = _dot()
    assert dot.startswith("digraph FPN {") and dot.endswith("}")
    assert _nodes(dot) >= {"img", "c1", "c5", "lat_p3", "lat_p5", "m_p3", "m_p4", "m_p5", "conv_p3", "p3", "p6"}
    assert "lat_p2" not in _nodes(dot)
    assert {("img", "c1"), ("c4", "c5"), ("c3", "lat_p3"), ("m_p4", "m_p3"), ("conv_p3", "p3"), ("p5", "p6")} <= _edges(
        dot
    )
    assert f"image\\n3 × {H} × {W}" in dot
    assert f"p3\\n{D} × 12 × 16\\nstride 8" in dot and "c5 (layer4)\\n2048 × 3 × 4\\nstride 32" in dot
    assert "1×1 conv\\n2048 → 64" in dot and 'm_p4 [label="+"' in dot
    assert re.search(r'^  c2 \[.*fillcolor="#F7F7F7"', dot, re.M)  # a stage the FPN does not use is greyed


def test_c2_to_c5_without_p6():
    dot = _dot(stages=("c2", "c3", "c4", "c5"), p6=False, merge="mean", upsample="bilinear")
    assert {"lat_p2", "m_p2", "conv_p2", "p2", "p5"} <= _nodes(dot)
    assert "p6" not in _nodes(dot) and ("m_p3", "m_p2") in _edges(dot)
    assert 'm_p2 [label="mean"' in dot and "2× bilinear" in dot
    assert re.search(r'^  c2 \[.*fillcolor="#DCE8F7"', dot, re.M)


@pytest.mark.parametrize(
    ("ablation", "merges", "outputs"),
    [
        ("full", {"m_p3", "m_p4"}, {"p3", "p4", "p5", "p6"}),
        ("no-top-down", set(), {"p3", "p4", "p5", "p6"}),
        ("no-lateral", {"m_p3", "m_p4"}, {"p3", "p4", "p5", "p6"}),
        ("finest-only", {"m_p3", "m_p4"}, {"p3"}),
    ],
)
def test_ablations_draw_what_runs(ablation, merges, outputs):
    dot = _dot(ablation=ablation)
    top_down_edges = {b for a, b in _edges(dot) if a.startswith("m_") and b.startswith("m_")}
    assert top_down_edges == merges
    assert {n for n in _nodes(dot) if re.fullmatch(r"p\d", n)} == outputs
    assert {n for n in _nodes(dot) if n.startswith("conv_")} == {f"conv_{p}" for p in outputs - {"p6"}}


def test_shapes_of_a_run_are_its_tensors():
    config = PyramidConfig(out_channels=16, weights="random", ablation="no-top-down")
    out = run_pyramid(build_pyramid(config, allow_download=False), np.zeros((70, 90, 3), np.uint8), size=96)
    shapes = DiagramShapes.of(out)
    assert shapes.input_hw == out.image.shape[:2]
    assert shapes.stages == {n: tuple(t.shape) for n, t in out.stages.items()}
    assert shapes.levels == {n: tuple(t.shape) for n, t in out.levels.items()}
    assert shapes.top_down == {}  # no top-down path in this ablation
