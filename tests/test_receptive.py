"""Receptive fields: the theoretical RF from the modules (hand-checked), the ERF inside it and peaking at
the picked cell, a read-only model, identical results from threads, and ``inspect --point``."""

from __future__ import annotations

import copy
import io
import itertools
import json
import threading

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fpn_core import PyramidConfig, build_pyramid, load_image, run_pyramid
from fpn_core import receptive as rf_mod
from fpn_core.cli import common as cli_common
from fpn_core.export import METADATA_NAME, build_export
from fpn_core.levels import stride_of
from fpn_core.point import analyse_point
from fpn_core.receptive import cell_at, erf_maps, level_sources, map_point, theoretical_rf
from tests.conftest import run_cli

SIZE = 256
ALL = ("c1", "c2", "c3", "c4", "c5")


@pytest.fixture(scope="module")
def image(sample) -> np.ndarray:
    return load_image(sample)


@pytest.fixture(scope="module")
def model(random_pyramid):
    return random_pyramid(out_channels=16)


@pytest.fixture(scope="module")
def model_c2_no_top_down(random_pyramid):
    return random_pyramid(out_channels=16, stages=("c2", "c3", "c4", "c5"), ablation="no-top-down")


@pytest.fixture(scope="module")
def erf(model, image):
    return erf_maps(model, image, (250, 150), size=SIZE, names=(*ALL, *model.config.level_names))


# --------------------------------------------------------------------------- theoretical RF


def _span(line) -> int:
    interior = (line.lo == line.ulo) & (line.hi == line.uhi)
    return int((line.uhi - line.ulo + 1)[interior].max())


def test_stem_rf_matches_the_hand_count(model):
    # conv1 7x7 stride 2: a c1 cell sees 7 pixels; jump 2.
    line = rf_mod._walk(model.backbone.stem, rf_mod._input_line(512), axis=0)
    assert _span(line) == 7 and line.jump == 2
    # maxpool 3x3 stride 2: 7 + (3 - 1) * 2 = 11; jump 4.
    line = rf_mod._walk(model.backbone.maxpool, line, axis=0)
    assert _span(line) == 11 and line.jump == 4
    # layer1: three bottlenecks, one 3x3 stride 1 each: 11 + 3 * 2 * 4 = 35.
    line = rf_mod._walk(model.backbone.layer1, line, axis=0)
    assert _span(line) == 35 and line.jump == 4


def test_theoretical_rf_of_every_stage_and_level(model, model_c2_no_top_down):
    rf = theoretical_rf(model)
    # layer2: 35 + 2*4 (3x3 stride 2 at jump 4) + 3 * 2*8 = 91; layer3: 91 + 2*8 + 5 * 2*16 = 267;
    # layer4: 267 + 2*16 + 2 * 2*32 = 427 (torchvision's ResNet-50 puts the stride on the 3x3).
    assert {k: rf[k] for k in ALL} == {"c1": 7, "c2": 35, "c3": 91, "c4": 267, "c5": 427}
    # p5: 1x1 lateral then 3x3 at stride 32 on c5: 427 + 2 * 32; p6 subsamples p5 (kernel 1).
    assert rf["p5"] == rf["p6"] == 491
    # The top-down path makes a p3 cell see far more than a c3 cell.
    assert rf["p3"] > 4 * rf["c3"]
    # Without the top-down path, p3 is the 3x3 (stride 8) of c3's lateral: 91 + 16.
    alone = theoretical_rf(model_c2_no_top_down)
    assert alone["p2"] == 35 + 2 * 4 and alone["p3"] == 91 + 2 * 8 and alone["p4"] == 267 + 2 * 16


def test_theoretical_rf_follows_the_modules(model):
    # A dilated stem conv (padding kept "same") widens c1 from 7 to 13: nothing is typed in.
    changed = copy.deepcopy(model)
    conv = changed.backbone.stem[0]
    conv.dilation, conv.padding = (2, 2), (6, 6)
    assert theoretical_rf(changed)["c1"] == 13
    assert theoretical_rf(changed)["c2"] == 35 + 6


def test_rf_walk_predicts_the_real_map_sizes(model, model_c2_no_top_down, image):
    for m in (model, model_c2_no_top_down):
        for size in (97, 256):
            out = run_pyramid(m, image, size=size)
            h, w = out.image.shape[:2]
            rows, cols = rf_mod._lines(m, h, 0), rf_mod._lines(m, w, 1)
            for name, t in {**out.stages, **out.levels}.items():
                assert (rows[name].n, cols[name].n) == tuple(t.shape[-2:]), (name, size)


def test_level_sources_follow_the_ablations(model, model_c2_no_top_down):
    assert level_sources(model.fpn, model.config.stages) == {
        "p3": ("c3", "c4", "c5"),
        "p4": ("c4", "c5"),
        "p5": ("c5",),
        "p6": ("c5",),
    }
    alone = level_sources(model_c2_no_top_down.fpn, model_c2_no_top_down.config.stages)
    assert alone == {"p2": ("c2",), "p3": ("c3",), "p4": ("c4",), "p5": ("c5",), "p6": ("c5",)}


# --------------------------------------------------------------------------- effective RF


def test_erf_is_nonzero_exactly_inside_the_theoretical_rf(erf):
    for name in erf.names:
        support = np.nonzero(erf.maps[name])
        box = erf.boxes[name]
        assert support[0].size, name
        # Nothing outside the square the kernels allow, and (random weights, sum over channels)
        # every row and column of that square reached.
        assert (support[0].min(), support[0].max() + 1) == (box.y0, box.y1), name
        assert (support[1].min(), support[1].max() + 1) == (box.x0, box.x1), name


def test_top_down_path_lets_p3_see_beyond_c3(erf):
    c3 = erf.boxes["c3"]
    p3 = erf.maps["p3"]
    outside = p3.copy()
    outside[c3.y0 : c3.y1, c3.x0 : c3.x1] = 0
    assert outside.sum() > 0.2 * p3.sum()  # much of p3's gradient comes from beyond c3's square
    assert erf.radii_px["p3"]["90"] > 2 * erf.radii_px["c3"]["90"]


@pytest.mark.parametrize("point", [(250, 150), (60, 40), (400, 280)])
def test_erf_peaks_at_the_picked_cell(model, image, point):
    result = erf_maps(model, image, point, size=SIZE, names=ALL[1:])
    ix, iy = result.input_point
    for name in result.names:
        s = stride_of(name)
        r, c = result.cells[name]
        assert c * s <= ix < (c + 1) * s and r * s <= iy < (r + 1) * s  # the grid square holds the point
        box = result.boxes[name]
        assert abs(box.cx - c * s) <= s and abs(box.cy - r * s) <= s  # the RF is centred on that cell
        # The ERF, smoothed over one stride, peaks within a stride and a half of that centre
        # (a theoretical square is 7 to 427 px wide here).
        smooth = cv2.blur(result.maps[name].astype(np.float64), (s + 1, s + 1))
        py, px = np.unravel_index(smooth.argmax(), smooth.shape)
        assert abs(px - box.cx) <= 1.5 * s and abs(py - box.cy) <= 1.5 * s, (name, px, py, box)


def test_radii_grow_with_depth_and_stay_inside_the_rf(erf):
    r90 = [erf.radii_input_px[n]["90"] for n in ("c1", "c2", "c3", "c4", "c5")]
    assert all(a < b for a, b in itertools.pairwise(r90))
    for name in erf.names:
        r50, r90 = erf.radii_px[name]["50"], erf.radii_px[name]["90"]
        assert 0 <= r50 <= r90
        # Luo et al.: the effective RF fills only part of the theoretical one.
        assert erf.radii_input_px[name]["90"] <= erf.theoretical_rf_px[name] / 2 * 2**0.5
        assert erf.ratio[name] == pytest.approx(2 * erf.radii_input_px[name]["90"] / erf.theoretical_rf_px[name])


def test_radii_are_in_image_pixels(model, image):
    small = erf_maps(model, image, (250, 150), size=128, names=("c3",))
    big = erf_maps(model, image, (250, 150), size=256, names=("c3",))
    # The same network on an input twice as large: radii in network pixels match; in image pixels they halve.
    assert small.scale[0] == pytest.approx(2 * big.scale[0], rel=0.02)
    assert small.radii_px["c3"]["90"] > 1.5 * big.radii_px["c3"]["90"]


def test_channel_and_magnitude_options(model, image, erf):
    one = erf_maps(model, image, (250, 150), size=SIZE, names=("p4",), channel=3, magnitude="squared")
    assert one.channel == 3 and one.magnitude == "squared"
    assert not np.allclose(one.maps["p4"], erf.maps["p4"])
    box = one.boxes["p4"]
    inside = np.zeros_like(one.maps["p4"], dtype=bool)
    inside[box.y0 : box.y1, box.x0 : box.x1] = True
    assert not one.maps["p4"][~inside].any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"point": (-1, 5)}, "outside"),
        ({"point": (5, 10_000)}, "outside"),
        ({"point": (float("nan"), 5)}, "outside"),
        ({"magnitude": "max"}, "magnitude"),
        ({"channel": 16}, "channel"),
        ({"names": ("p2",)}, "names"),
    ],
)
def test_bad_options_raise_naming_them(model, image, kwargs, match):
    args = {"point": (10, 10), **kwargs}
    with pytest.raises(ValueError, match=match):
        erf_maps(model, image, args.pop("point"), size=96, **args)


def test_point_to_cell_mapping():
    assert map_point((225.5, 150), (300, 451), (341, 512)) == pytest.approx((225.5 * 512 / 451, 150 * 341 / 300))
    assert cell_at((31.9, 64.0), 32, (4, 4)) == (2, 0)
    assert cell_at((512.0, 341.0), 32, (11, 16)) == (10, 15)  # the far edge belongs to the last cell


# --------------------------------------------------------------------------- read-only, threads


def _hook_counts(model) -> list[int]:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [len(getattr(m, n)) for m in model.modules() for n in names]


def test_model_stays_read_only(image):
    model = build_pyramid(PyramidConfig(out_channels=16, weights="random"), allow_download=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hook_counts(model)
    modes = [m.training for m in model.modules()]
    with torch.inference_mode():  # a caller inside inference mode still gets its maps
        result = erf_maps(model, image, (100, 100), size=96)
    assert all(m.any() for m in result.maps.values())
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert [m.training for m in model.modules()] == modes  # never switched to training
    assert not model.backbone.training and not model.fpn.training
    assert _hook_counts(model) == hooks
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_backward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_threads_give_identical_results(model, image):
    expected = analyse_point(model, image, (200, 120), size=128)
    results: list = [None] * 4
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = analyse_point(model, image, (200, 120), size=128)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results:
        assert got.erf.cells == expected.erf.cells
        for name in expected.erf.names:
            assert np.array_equal(got.erf.maps[name], expected.erf.maps[name]), name
        assert got.contributions.shares == expected.contributions.shares


# --------------------------------------------------------------------------- CLI and export

FAST = ["--weights", "random", "--no-download", "--size", str(SIZE), "--repeats", "1", "--width", "16"]


def test_inspect_point_json(capsys, sample, model, cli_models):
    code, out, err = run_cli(capsys, "inspect", sample, "--point", "250,150", "--json", *FAST)
    assert code == 0, err
    report = json.loads(out)
    rf = theoretical_rf(model)
    for row in [*report["stages"], *report["levels"]]:
        assert isinstance(row["theoretical_rf_px"], int) and row["theoretical_rf_px"] == rf[row["name"]]
        radii = row["erf_radius_px"]
        assert set(radii) == {"50", "90"} and 0 < radii["50"] <= radii["90"]
    for row in report["levels"]:
        shares = row["stage_shares"]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert all(0 <= v <= 1 for v in shares.values())
    levels = {row["name"]: row for row in report["levels"]}
    assert set(levels["p3"]["stage_shares"]) == {"c3", "c4", "c5"}
    assert set(levels["p5"]["stage_shares"]) == {"c5"}
    assert report["point"]["xy"] == [250, 150]
    assert report["point"]["sentences"]["p3"].startswith("At this point ")


def test_inspect_without_point_adds_nothing(capsys, sample, cli_models):
    code, out, _ = run_cli(capsys, "inspect", sample, "--json", *FAST)
    assert code == 0
    report = json.loads(out)
    assert "point" not in report
    assert not any("theoretical_rf_px" in row for row in [*report["stages"], *report["levels"]])


def test_inspect_point_table(capsys, sample, cli_models):
    code, out, err = run_cli(capsys, "inspect", sample, "--point", "250,150", *FAST)
    assert code == 0, err
    assert "Receptive fields at point (250, 150)" in out
    header = next(line for line in out.splitlines() if line.startswith("name  cell"))
    for column in ("RF px", "ERF r50", "ERF r90", "ERF/RF", "stage shares"):
        assert column in header
    assert "At this point " in out and "% of p3 comes from c3" in out


@pytest.mark.parametrize("bad", ["abc", "1,2,3", "1;2", "-5,10", "10,99999", "nan,3", ""])
def test_bad_point_exits_2_with_one_line(capsys, sample, bad, monkeypatch):
    monkeypatch.setattr(cli_common, "build_pyramid", lambda *a, **k: pytest.fail("built a model for a bad --point"))
    code, out, err = run_cli(capsys, "inspect", sample, f"--point={bad}", *FAST)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "point" in err


def test_export_with_point_adds_maps_and_keeps_the_rest(model, image):
    out = run_pyramid(model, image, size=128)
    plain = build_export(out, timings=False)
    point = analyse_point(model, image, (250, 150), size=128)
    both = build_export(out, timings=False, point=point)
    added = set(both) - set(plain)
    assert {f"receptive/erf_{n}.png" for n in point.erf.names} <= added
    assert {f"contributions/{lv}.png" for lv in model.config.level_names} <= added
    assert {"receptive/erf_radii.png", "contributions/shares.png"} <= added
    for name in added:
        with Image.open(io.BytesIO(both[name])) as img:
            assert img.format == "PNG" and min(img.size) > 50, name
    for name in plain:
        if name != METADATA_NAME:
            assert both[name] == plain[name], name
    meta, plain_meta = json.loads(both[METADATA_NAME]), json.loads(plain[METADATA_NAME])
    assert meta.pop("point")["fields"]["p3"]["theoretical_rf_px"] == theoretical_rf(model)["p3"]
    assert meta == plain_meta
    assert build_export(out, timings=False) == plain  # no point: byte-identical, as before


def test_a_page_can_cache_contributions_and_recompute_only_the_erf(model, image):
    from fpn_core.contributions import stage_contributions
    from fpn_core.point import PointAnalysis

    out = run_pyramid(model, image, size=128)
    cached = stage_contributions(model.fpn, out.stages, model.config)  # once per image, size, config
    for point in ((250, 150), (30, 200)):
        assembled = PointAnalysis(erf_maps(model, image, point, size=128), cached)
        direct = analyse_point(model, image, point, size=128)
        assert assembled.erf.cells == direct.erf.cells
        for level, shares in direct.shares_at.items():
            assert assembled.shares_at[level] == pytest.approx(shares, rel=1e-4)


@pytest.mark.parametrize("use_p5", [False, True])
def test_theoretical_rf_follows_p6_p7_convs(model, use_p5):
    """RetinaNet's extra levels are 3×3 stride-2 convs (on C5, or on P5): each adds 2 × its input's stride."""
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    with_p7 = copy.copy(model)  # a shallow copy: the shared model keeps its own FPN
    with_p7.fpn = copy.copy(model.fpn)
    with_p7.fpn.extra_blocks = LastLevelP6P7(16 if use_p5 else 2048, 16)
    with_p7.fpn.extra_blocks.use_P5 = use_p5
    rf = rf_mod.theoretical_rf(with_p7)
    source = rf["p5"] if use_p5 else rf["c5"]
    assert rf["p6"] == source + 2 * 32
    assert rf["p7"] == rf["p6"] + 2 * 64
