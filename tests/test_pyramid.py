"""The engine: shapes and metadata, torchvision equivalence, determinism, ablations, timing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from fpn_core import (
    ABLATIONS,
    FPN,
    FPN_STAGES,
    PyramidConfig,
    build_backbone,
    build_pyramid,
    count_flops,
    count_parameters,
    run_backbone,
    run_fpn,
    run_pyramid,
)
from fpn_core.fpn import fpn_parameters
from fpn_core.levels import torchvision_key_to_level, validate_stages
from tests.conftest import ROOT

STAGE_SETS = [
    ("c2", "c3"),
    ("c3", "c4"),
    ("c4", "c5"),
    ("c2", "c3", "c4"),
    ("c3", "c4", "c5"),
    ("c2", "c3", "c4", "c5"),
]


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (150, 210, 3), dtype=np.uint8)  # odd size on purpose


@pytest.fixture(scope="module")
def stages(random_backbone, image):
    return run_backbone(random_backbone, image, size=200)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    return (a - b).abs().max().item() <= rel * max(b.abs().max().item(), 1e-6)


def test_backbone_metadata_matches_real_tensors(random_backbone, stages):
    info = random_backbone.feature_info
    assert info.names() == ["c1", "c2", "c3", "c4", "c5"]
    h, w = stages.image.shape[:2]
    for spec in info:
        t = stages.stages[spec.name]
        assert t.shape[1] == spec.num_chs, spec
        assert t.shape[2] == math.ceil(h / spec.reduction) and t.shape[3] == math.ceil(w / spec.reduction), spec


@pytest.mark.parametrize("out_channels", [16, 64, 256])
@pytest.mark.parametrize("stage_set", STAGE_SETS)
def test_levels_have_declared_channels_and_strides(random_pyramid, stages, out_channels, stage_set):
    config = PyramidConfig(out_channels=out_channels, stages=stage_set, weights="random")
    model = random_pyramid(config)
    fp = run_fpn(model.fpn, stages.stages, config)
    assert list(fp.levels) == config.level_names == model.level_info.names()
    h, w = stages.image.shape[:2]
    for spec in model.level_info:
        t = fp.levels[spec.name]
        assert t.shape[1] == out_channels == spec.num_chs
        assert t.shape[2:] == (math.ceil(h / spec.reduction), math.ceil(w / spec.reduction)), (spec, t.shape)
    assert isinstance(model.fpn, FeaturePyramidNetwork)


def test_default_output_equals_torchvision_fpn(random_pyramid, stages):
    config = PyramidConfig(stages=FPN_STAGES, weights="random")
    model = random_pyramid(config)
    fp = run_fpn(model.fpn, stages.stages, config)
    tv = FeaturePyramidNetwork([256, 512, 1024, 2048], 256, LastLevelMaxPool()).eval()
    tv.load_state_dict(model.fpn.state_dict(), strict=True)  # interchangeable state dicts
    inputs = OrderedDict((str(i), stages.stages[s].contiguous()) for i, s in enumerate(FPN_STAGES))
    with torch.inference_mode():
        ref = tv(inputs)
    assert [torchvision_key_to_level(k, FPN_STAGES) for k in ref] == list(fp.levels) == ["p2", "p3", "p4", "p5", "p6"]
    for key, level in zip(ref, fp.levels, strict=True):
        assert _close(fp.levels[level], ref[key]), level


def test_optimized_backbone_equals_plain_torchvision_resnet(image):
    """BatchNorm folding and channels_last change speed, not results."""
    plain = build_backbone("random", optimize=False, allow_download=False)
    fast = build_backbone("random", optimize=True, allow_download=False)
    # give BatchNorm non-trivial statistics so the fold is really exercised
    gen = torch.Generator().manual_seed(1)
    plain2 = build_backbone("random", optimize=False, allow_download=False)
    with torch.no_grad():
        for m in plain2.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    from fpn_core.backbone import fold_batchnorms

    folded = fold_batchnorms(__import__("copy").deepcopy(plain2)).to(memory_format=torch.channels_last)
    folded.folded = True
    a = run_backbone(plain2, image, size=128).stages
    b = run_backbone(folded, image, size=128).stages
    for name in a:
        assert _close(b[name], a[name], 1e-3), name
    assert (
        run_backbone(plain, image, size=128).stages["c5"].shape
        == run_backbone(fast, image, size=128).stages["c5"].shape
    )


def test_same_config_gives_same_weights_twice_and_in_a_fresh_process():
    config = PyramidConfig(out_channels=64, weights="random", seed=3)
    a = build_pyramid(config, allow_download=False)
    torch.manual_seed(12345)  # the global RNG must not matter
    b = build_pyramid(config, allow_download=False)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    code = (
        "import torch; from fpn_core import *; "
        "m = build_pyramid(PyramidConfig(out_channels=64, weights='random', seed=3), allow_download=False); "
        "print(float(m.fpn.layer_blocks[0][0].weight.double().sum()), "
        "float(m.backbone.layer4[0].conv2.weight.double().sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    fpn_sum, bb_sum = map(float, out.stdout.split())
    assert fpn_sum == pytest.approx(float(a.fpn.layer_blocks[0][0].weight.double().sum()), rel=1e-12)
    assert bb_sum == pytest.approx(float(a.backbone.layer4[0].conv2.weight.double().sum()), rel=1e-12)
    c = build_pyramid(PyramidConfig(out_channels=64, weights="random", seed=4), allow_download=False)
    assert not torch.equal(c.fpn.layer_blocks[0][0].weight, a.fpn.layer_blocks[0][0].weight)


def test_steps_are_recorded_and_consistent(random_pyramid, stages):
    config = PyramidConfig(out_channels=32, weights="random")
    model = random_pyramid(config)
    fp = run_fpn(model.fpn, stages.stages, config)
    assert list(fp.steps) == ["p3", "p4", "p5"]
    top = fp.steps["p5"]
    assert top.top_down is None and torch.equal(top.merged, top.lateral)
    for level in ("p3", "p4"):
        st = fp.steps[level]
        assert st.top_down.shape == st.lateral.shape
        assert torch.allclose(st.merged, st.lateral + st.top_down)
        assert torch.equal(st.output, fp.levels[level])


@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_ablations_change_the_computation(random_pyramid, stages, ablation):
    config = PyramidConfig(out_channels=32, weights="random", ablation=ablation)
    model = random_pyramid(config)
    fp = run_fpn(model.fpn, stages.stages, config)
    fpn = model.fpn
    with torch.inference_mode():
        if ablation == "no-top-down":
            for i, stage in enumerate(config.stages):
                alone = fpn.layer_blocks[i](fpn.inner_blocks[i](stages.stages[stage]))
                assert _close(fp.levels[f"p{stage[1]}"], alone), stage
        elif ablation == "no-lateral":
            assert fp.steps["p3"].lateral is None
            expected = fpn.layer_blocks[0](
                torch.nn.functional.interpolate(fp.steps["p4"].merged, size=fp.steps["p3"].merged.shape[-2:])
            )
            assert _close(fp.levels["p3"], expected)
        elif ablation == "finest-only":
            assert list(fp.levels) == ["p3"]
        else:
            assert list(fp.levels) == ["p3", "p4", "p5", "p6"]
    full = run_fpn(
        random_pyramid(out_channels=32).fpn,
        stages.stages,
        PyramidConfig(out_channels=32, weights="random"),
    )
    if ablation in ("no-top-down", "no-lateral"):
        assert not _close(fp.levels["p3"], full.levels["p3"], 1e-3)
    else:  # the finest level of "finest-only" is the full FPN's, computed without the others
        assert _close(fp.levels["p3"], full.levels["p3"])


@pytest.mark.parametrize(("option", "value"), [("upsample", "bilinear"), ("merge", "mean")])
def test_upsample_and_merge_options(random_pyramid, stages, option, value):
    config = PyramidConfig(out_channels=32, weights="random", **{option: value})
    fp = run_fpn(random_pyramid(config).fpn, stages.stages, config)
    st = fp.steps["p3"]
    if option == "merge":
        assert torch.allclose(st.merged, (st.lateral + st.top_down) / 2, atol=1e-5)
    else:
        nearest = torch.nn.functional.interpolate(fp.steps["p4"].merged, size=st.lateral.shape[-2:], mode="nearest")
        assert not torch.allclose(st.top_down, nearest)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"out_channels": 12},
        {"out_channels": 520},
        {"out_channels": 100},
        {"stages": ("c3",)},
        {"stages": ("c2", "c4")},
        {"stages": ("c5", "c4")},
        {"stages": ("c1", "c2")},
        {"upsample": "cubic"},
        {"merge": "max"},
        {"ablation": "none"},
    ],
)
def test_bad_config_names_the_bad_value(kwargs):
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values()))).strip("()").split(",")[0].strip("'")):
        PyramidConfig(**kwargs)


def test_validate_stages_accepts_every_contiguous_run():
    for run in STAGE_SETS:
        assert validate_stages(run) == run


def test_timings_are_complete_positive_and_add_up(random_pyramid, image):
    model = random_pyramid(out_channels=64, stages=FPN_STAGES)
    out = run_pyramid(model, image, size=160, repeats=3, warmup=1)
    expected = {"c1", "c2", "c3", "c4", "c5", "p6.pool"}
    for level in ("p2", "p3", "p4", "p5"):
        expected |= {f"{level}.lateral", f"{level}.output"}
    for level in ("p2", "p3", "p4"):
        expected |= {f"{level}.top_down"}
    assert set(out.timings_ms) == expected | {"total"}
    assert all(v > 0 for v in out.timings_ms.values())
    parts = sum(v for k, v in out.timings_ms.items() if k != "total")
    assert parts == pytest.approx(out.timings_ms["total"], rel=0.10)
    assert out.repeats == 3


def test_flops_and_parameters_per_step(random_pyramid, image):
    model = random_pyramid(out_channels=256, stages=FPN_STAGES)
    flops = count_flops(model, image, size=224)
    assert set(flops) >= {"c1", "c5", "p2.lateral", "p2.output"}
    assert flops["c4"] > flops["c1"] > 0 and flops["p2.top_down"] == 0
    params = count_parameters(model)
    fpn_params = sum(v for k, v in params.items() if k.startswith("p"))
    d = 256
    assert fpn_params == 36 * d * d + 3848 * d == fpn_parameters(FPN_STAGES, d)  # FPN_FACTS.md: 3,344,384 at d=256
    for stages, d in ((("c3", "c4", "c5"), 64), (("c2", "c3"), 16)):
        model = random_pyramid(out_channels=d, stages=stages)
        assert sum(p.numel() for p in model.fpn.parameters()) == fpn_parameters(stages, d)


def test_flops_counted_on_fake_tensors_equal_a_real_pass(random_pyramid, image):
    from torch.utils.flop_counter import FlopCounterMode

    from fpn_core.pyramid import prepare_input

    model = random_pyramid(out_channels=32, stages=("c3", "c4", "c5"))
    _, x = prepare_input(image, 160, model.backbone)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        stages = model.backbone(x)
        model.fpn(OrderedDict((s, stages[s]) for s in model.config.stages))
    assert sum(count_flops(model, image, size=160).values()) == counter.get_total_flops() > 0


def test_tiny_and_extreme_images_work(random_pyramid):
    model = random_pyramid(out_channels=16)
    for shape in [(1, 1, 3), (8, 8, 3), (12, 4000, 3)]:
        out = run_pyramid(model, np.full(shape, 128, np.uint8), size=256)
        assert min(out.image.shape[:2]) >= 32
        assert all(t.shape[-1] >= 1 and t.shape[-2] >= 1 for t in out.levels.values())


def test_device_error_falls_back_to_cpu(monkeypatch, random_pyramid, image):
    """An accelerator failure reruns on the CPU with a notice (injected: the backbone claims cuda)."""
    import fpn_core.pyramid as pyr

    model = random_pyramid(out_channels=16)
    backbone = model.backbone
    calls = {"n": 0}
    real_forward = type(backbone).forward

    def failing_forward(self, x, recorder=pyr.NULL_RECORDER):
        calls["n"] += 1
        if self is backbone:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, x, recorder)

    monkeypatch.setattr(type(backbone), "forward", failing_forward)
    monkeypatch.setattr(
        type(backbone),
        "device",
        property(lambda self: torch.device("cuda") if self is backbone else torch.device("cpu")),
    )
    monkeypatch.setattr(pyr, "prepare_input", lambda img, size, bb: (img, torch.zeros(1, 3, 64, 64)))
    monkeypatch.setattr(pyr, "cpu_copy", lambda m: __import__("copy").deepcopy(m))
    monkeypatch.setattr(pyr, "synchronize", lambda device: None)  # no CUDA here: only the error is injected
    cpu_timer = pyr.StepTimer
    monkeypatch.setattr(pyr, "StepTimer", lambda device: cpu_timer(torch.device("cpu")))
    out = pyr.run_pyramid(model, image, size=64)
    assert calls["n"] == 2
    assert any("CPU" in n for n in out.notices)
    assert out.levels["p3"].shape[1] == 16


def test_fpn_core_does_not_import_streamlit(fresh_imports):
    """In a fresh interpreter, with every engine module imported (the CLI, detectors, deck ...)."""
    assert {"fpn_core.maps", "fpn_core.figures", "fpn_core.cli.deck", "fpn_core.detection"} <= set(
        fresh_imports["engine_modules"]
    )
    assert not fresh_imports["streamlit_after_engine"]


def test_pyramidfpn_is_a_torchvision_fpn():
    fpn = FPN([512, 1024], 64, LastLevelMaxPool(), seed=0)
    assert isinstance(fpn, FeaturePyramidNetwork)
    assert set(fpn.state_dict()) == set(FeaturePyramidNetwork([512, 1024], 64, LastLevelMaxPool()).state_dict())


@pytest.mark.parametrize("norm", [None, torch.nn.BatchNorm2d])
def test_seeded_fpn_is_torchvisions_fpn_drawn_from_the_seed(norm) -> None:
    """``FPN(seed=...)`` is built on the meta device and drawn once: its tensors are exactly those of
    torchvision's FPN re-initialised from the same seeded generator (kaiming a=1, zero bias, default norms)."""
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

    from fpn_core.fpn import FPN

    ours = FPN([512, 1024, 2048], 64, LastLevelP6P7(2048, 64), norm, seed=7)
    ref = FeaturePyramidNetwork([512, 1024, 2048], 64, LastLevelP6P7(2048, 64), norm)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_uniform_(m.weight, a=1, generator=gen)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
    mine, theirs = ours.state_dict(), ref.state_dict()
    assert list(mine) == list(theirs)
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key
    assert all(not t.is_meta for t in mine.values())


def test_served_app_waits_passively_unless_the_operator_says_otherwise() -> None:
    """``ui`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (OpenMP reads it once); an operator's value wins."""
    code = "import os, ui, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
