"""The table of steps and costs that the CLI, the Timing page and the home page share."""

from __future__ import annotations

import numpy as np
import pytest

from fpn_core import (
    FPN_STAGES,
    PyramidConfig,
    PyramidOutput,
    assemble_pyramid,
    build_backbone,
    count_flops,
    count_parameters,
    packed,
    run_backbone,
    run_fpn,
    run_pyramid,
)
from fpn_core.report import Cost, inspect_report, step_table

SIZE = 128


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("random", allow_download=False)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def _table(backbone, image, **config):
    model = assemble_pyramid(backbone, PyramidConfig(out_channels=32, weights="random", **config))
    out = run_pyramid(model, image, size=SIZE)
    return model, out, step_table(model, out, count_flops(model, image, size=SIZE), count_parameters(model))


def test_composed_output_reads_through_to_its_passes(backbone, image):
    model = assemble_pyramid(backbone, PyramidConfig(out_channels=32, weights="random"))
    bb = run_backbone(backbone, image, size=SIZE)
    fp = run_fpn(model.fpn, bb.stages, model.config)
    out = PyramidOutput.compose(model, bb, fp, repeats=1)
    assert out.stages is bb.stages and out.levels is fp.levels and out.steps is fp.steps and out.image is bb.image
    assert out.timings_ms == {**bb.timings_ms, **fp.timings_ms, "total": bb.total_ms + fp.total_ms}
    assert out.device == bb.device and out.config is model.config and out.provenance is model.provenance
    bb.notices.append("backbone note")
    assert out.notices == ["backbone note"]


def test_rows_are_the_steps_that_ran_in_order(backbone, image):
    _, out, table = _table(backbone, image)
    assert [r.key for r in table.rows] == [k for k in out.timings_ms if k != "total"]
    tensors = {**out.stages, **{f"{n}.output": t for n, t in out.levels.items()}, "p6.pool": out.levels["p6"]}
    tensors["p4.top_down"] = out.steps["p4"].merged
    for row in (r for r in table.rows if r.key in tensors):
        assert row.shape == tuple(tensors[row.key].shape)
        assert row.output_mb == tensors[row.key].numel() * 4 / 2**20
    assert [r.key for r in table.part("backbone")] == ["c1", "c2", "c3", "c4", "c5"]
    assert table.rows[5].what == "1x1 lateral conv of c5"
    assert list(table.fpn_steps()) == ["p5", "p4", "p3", "p6"]
    assert [r.step for r in table.fpn_steps()["p4"]] == ["lateral", "top_down", "output"]


def test_totals_are_named_and_add_up(backbone, image):
    model, out, table = _table(backbone, image, stages=FPN_STAGES)
    assert table.backbone.ms == out.backbone.total_ms and table.fpn.ms == out.fpn.total_ms
    assert table.total.ms == out.timings_ms["total"]
    assert table.backbone.params == sum(
        p.numel() for m in model.backbone.stage_modules().values() for p in m.parameters()
    )
    assert table.fpn.params == 36 * 32 * 32 + 3848 * 32 == table.lateral_params + table.output_params
    assert table.total.flops == sum(count_flops(model, image, size=SIZE).values()) > 0
    p4 = table.level_cost("p4")
    rows = table.fpn_steps()["p4"]
    assert p4 == Cost(sum(r.ms for r in rows), sum(r.flops for r in rows), sum(r.params for r in rows))
    assert table.level_cost("c3") == Cost(out.timings_ms["c3"], table.rows[2].flops, table.rows[2].params)


def test_an_ablation_keeps_its_unused_convs_out_of_the_level_sums(backbone, image):
    _, _, full = _table(backbone, image)
    _, _, table = _table(backbone, image, ablation="no-lateral")
    assert [r.step for r in table.fpn_steps()["p4"]] == ["top_down", "output"]
    assert "no lateral to merge (ablation)" in table.fpn_steps()["p4"][0].what
    assert table.level_cost("p4").params < full.level_cost("p4").params
    assert table.fpn.params == full.fpn.params  # the model still holds every lateral conv


def test_inspect_report_reads_the_table(backbone, image):
    model, out, table = _table(backbone, image)
    report = inspect_report(model, out, image, path="x.png", size=SIZE, warmup=1)
    assert report["image"] == {"path": "x.png", "loaded_hw": [90, 120], "input_hw": list(out.image.shape[:2])}
    assert report["run"] == {"size": SIZE, "repeats": 1, "warmup": 1}
    for row in report["levels"]:
        cost = table.level_cost(row["name"])
        assert (row["ms"], row["gflops"], row["params"]) == (cost.ms, cost.flops / 1e9, cost.params)
    assert list(report["steps"]) == list(table.fpn_steps())
    assert report["total_ms"] == table.total.ms


@pytest.mark.parametrize("from_p5", [True, False])
def test_p6_p7_convs_are_their_own_steps_with_their_parameters(backbone, image, from_p5):
    """RetinaNet and FCOS (torchvision's ``LastLevelP6P7``): P6 and P7 are 3x3 stride-2 convs, each a timed
    step with its FLOPs and parameters, and the pyramid equals the block's own forward."""
    import torch
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    model = assemble_pyramid(backbone, PyramidConfig(out_channels=32, weights="random"))
    block = LastLevelP6P7(32 if from_p5 else 2048, 32)
    model.fpn.extra_blocks = block.eval()
    out = run_pyramid(model, image, size=SIZE)
    table = step_table(model, out, count_flops(model, image, size=SIZE), count_parameters(model))
    rows = {r.key: r for r in table.rows}
    conv = 32 * (32 if from_p5 else 2048) * 9 + 32
    assert rows["p6.extra"].params == conv and rows["p7.extra"].params == 32 * 32 * 9 + 32
    assert rows["p6.extra"].what == f"3x3 stride-2 conv on {'p5' if from_p5 else 'c5'}"
    assert rows["p7.extra"].what == "3x3 stride-2 conv on p6 after a ReLU"
    assert rows["p6.extra"].flops > 0 and rows["p7.extra"].flops > 0 and "p6.pool" not in rows
    assert table.level_cost("p7").params == 32 * 32 * 9 + 32

    p, names = [out.levels[k] for k in ("p3", "p4", "p5")], ["p3", "p4", "p5"]
    with torch.inference_mode():
        want, _ = block(list(p), [None, None, out.stages["c5"]], list(names))
    # packed, the tiny p6/p7 maps take oneDNN's kernel instead of torch's THNN one: equal within rounding
    torch.testing.assert_close(out.levels["p6"], want[3], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.levels["p7"], want[4], rtol=1e-4, atol=1e-4)
    with packed.packing(False):  # torch's own kernels: the block's forward bit for bit
        plain = run_pyramid(model, image, size=SIZE)
        with torch.inference_mode():
            want, _ = block([plain.levels[k] for k in names], [None, None, plain.stages["c5"]], list(names))
    assert torch.equal(plain.levels["p6"], want[3]) and torch.equal(plain.levels["p7"], want[4])
