"""Stage contributions: exact (they add up to every level for every configuration), shares that sum to 1,
the stages that reach each level, the composite map's colors, and the sentence."""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fpn_core import RESNET50_FEATURE_INFO, PyramidConfig, build_fpn, run_pyramid
from fpn_core.contributions import composite_map, describe_shares, overlay_composite, stage_contributions
from fpn_core.fpn import ABLATIONS, FPN, MERGE_MODES, UPSAMPLE_MODES
from fpn_core.levels import STAGE_COLORS, stride_of, torchvision_key_to_level
from fpn_core.point import analyse_point

STAGE_SETS = [("c2", "c3", "c4", "c5"), ("c3", "c4", "c5"), ("c2", "c3"), ("c4", "c5")]
#: An odd input size, so no top-down upsampling is an exact 2x.
INPUT_HW = (75, 101)
REL_TOL = 1e-4


def _stages(stages: tuple[str, ...], seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    h, w = INPUT_HW
    for s in stages:
        stride = stride_of(s)
        shape = (1, RESNET50_FEATURE_INFO[s].num_chs, -(-h // stride), -(-w // stride))
        out[s] = torch.randn(shape, generator=gen).relu()  # backbone stages come out of a ReLU
    return out


def _fpn(config: PyramidConfig) -> FPN:
    fpn, _, _ = build_fpn(config)  # a private copy: its biases are changed below
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero biases, so the bias term is really tested
        for m in fpn.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return fpn.eval().requires_grad_(False)


CONFIGS = [
    PyramidConfig(out_channels=16, weights="random", stages=st, upsample=up, merge=me, ablation=ab, p6=p6)
    for st, up, me, ab, p6 in itertools.product(STAGE_SETS, UPSAMPLE_MODES, MERGE_MODES, ABLATIONS, (True, False))
]


@pytest.mark.parametrize(
    "config",
    CONFIGS,
    ids=[f"{','.join(c.stages)}-{c.upsample}-{c.merge}-{c.ablation}-{'p6' if c.p6 else 'nop6'}" for c in CONFIGS],
)
def test_contributions_plus_bias_equal_every_level(config):
    fpn = _fpn(config)
    stages = _stages(config.stages)
    with torch.inference_mode():
        expected = {torchvision_key_to_level(k, config.stages): v for k, v in fpn(stages).items()}
    parts = stage_contributions(fpn, stages, config)
    assert list(parts.levels) == list(expected) == config.level_names
    for level, p in expected.items():
        total = parts.total(level)
        err = float((total - p).abs().max() / p.abs().max())
        assert err <= REL_TOL, (level, err)
        assert float(parts.bias[level].abs().max()) > 0  # the bias term is there, and not the whole level
        shares = parts.shares[level]
        assert set(shares) == set(parts.sources[level])
        assert sum(shares.values()) == pytest.approx(1.0)
        assert all(v > 0 for v in shares.values())


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_sources_are_exactly_the_stages_that_move_a_level(ablation):
    config = PyramidConfig(out_channels=16, weights="random", stages=("c2", "c3", "c4", "c5"), ablation=ablation)
    fpn = _fpn(config)
    stages = _stages(config.stages)
    parts = stage_contributions(fpn, stages, config)
    with torch.inference_mode():
        base = {torchvision_key_to_level(k, config.stages): v for k, v in fpn(stages).items()}
        for s in config.stages:
            nudged = OrderedDict(stages)
            nudged[s] = stages[s] + 1.0
            moved = {torchvision_key_to_level(k, config.stages): v for k, v in fpn(nudged).items()}
            for level in parts.levels:
                changed = not torch.equal(moved[level], base[level])
                assert changed == (s in parts.sources[level]), (ablation, s, level)
    if ablation == "full":
        assert parts.sources["p3"] == ("c3", "c4", "c5") and parts.sources["p6"] == ("c5",)
    if ablation == "finest-only":
        assert parts.levels == ("p2",) and parts.sources["p2"] == config.stages


def test_shares_at_a_cell_are_the_l1_split_there():
    config = PyramidConfig(out_channels=16, weights="random")
    fpn = _fpn(config)
    parts = stage_contributions(fpn, _stages(config.stages), config)
    cell = (3, 5)
    at = parts.shares_at("p3", cell)
    l1 = {s: float(t[0, :, cell[0], cell[1]].abs().sum()) for s, t in parts.parts["p3"].items()}
    assert at == pytest.approx({s: v / sum(l1.values()) for s, v in l1.items()})
    assert sum(at.values()) == pytest.approx(1.0)
    whole = {s: float(t.abs().sum()) for s, t in parts.parts["p3"].items()}
    assert parts.shares["p3"] == pytest.approx({s: v / sum(whole.values()) for s, v in whole.items()}, rel=1e-5)


def test_composite_map_shows_the_dominant_stage_in_its_color():
    strong, weak = np.zeros((2, 3)), np.zeros((2, 3))
    strong[0, 0], weak[1, 2] = 10.0, 10.0  # one cell all c3, one all c4
    strong[1, 1] = weak[1, 1] = 5.0  # half and half, half strength
    rgb = composite_map({"c3": strong, "c4": weak})
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 0]) == STAGE_COLORS["c3"]
    assert tuple(rgb[1, 2]) == STAGE_COLORS["c4"]
    blend = (np.array(STAGE_COLORS["c3"]) + np.array(STAGE_COLORS["c4"])) / 2
    assert np.allclose(rgb[1, 1], blend, atol=1)  # total 10 of 10: full brightness
    assert not rgb[0, 1].any()  # nothing sent: black
    over = overlay_composite(np.full((20, 30, 3), 200, np.uint8), rgb, alpha=1.0)
    assert over.shape == (20, 30, 3) and tuple(over[0, 0]) == STAGE_COLORS["c3"]


def test_sentence_reads_the_shares():
    shares = {"c3": 0.62, "c4": 0.30, "c5": 0.08}
    assert describe_shares("p3", shares) == "At this point 62% of p3 comes from c3, 30% from c4 and 8% from c5."
    thirds = describe_shares("p4", {"c3": 1 / 3, "c4": 1 / 3, "c5": 1 / 3}, where="over the whole level,")
    assert thirds.startswith("Over the whole level, ")
    assert sum(int(p) for p in re.findall(r"(\d+)%", thirds)) == 100
    assert describe_shares("p4", {"c4": 0.4, "c5": 0.6}) == "At this point 40% of p4 comes from c4 and 60% from c5."
    assert describe_shares("p5", {"c5": 1.0}).startswith("At this point all of p5 comes from c5")
    assert "only its bias" in describe_shares("p5", {})


def test_contributions_of_a_real_model_add_up(random_pyramid):
    model = random_pyramid(out_channels=16, upsample="bilinear")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 133, 3), dtype=np.uint8)
    out = run_pyramid(model, image, size=133)
    before = {k: v.clone() for k, v in model.fpn.state_dict().items()}
    point = analyse_point(model, image, (40, 30), size=133)
    for level, p in out.levels.items():
        err = float((point.contributions.total(level) - p).abs().max() / p.abs().max())
        assert err <= REL_TOL, (level, err)
    assert all(torch.equal(before[k], v) for k, v in model.fpn.state_dict().items())
    shares = point.shares_at["p3"]
    assert set(shares) == {"c3", "c4", "c5"} and sum(shares.values()) == pytest.approx(1.0)
    assert point.sentence("p3").startswith("At this point ")
    light = analyse_point(model, image, (40, 30), size=133, keep_tensors=False)
    assert not light.contributions.parts and light.shares_at == point.shares_at


def test_light_copy_keeps_what_a_page_shows():
    import pickle

    config = PyramidConfig(out_channels=16, weights="random")
    parts = stage_contributions(_fpn(config), _stages(config.stages), config)
    light = parts.without_tensors()
    assert not light.parts and not light.bias
    assert light.shares == parts.shares and light.shares_at("p3", (2, 2)) == parts.shares_at("p3", (2, 2))
    assert np.array_equal(light.composite("p4"), parts.composite("p4"))
    assert len(pickle.dumps(light)) < len(pickle.dumps(parts)) / 2
