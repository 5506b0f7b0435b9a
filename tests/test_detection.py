"""Detection on the pyramid: equal to torchvision's models, every box traced to its level.

Every test makes its own weights in torchvision's key layout (torchvision's model built with
``weights=None, weights_backbone=None``, then randomized), so nothing downloads. Images are
small (long side 320) to keep the tests fast on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import initLevelMapper

import fpn_core.detection as detection
import fpn_core.weights as weights
from fpn_core import FPN, ResNetBackbone, cli, load_image
from fpn_core.detection import (
    DETECTORS,
    build_detector,
    detect,
    filter_detections,
    paper_level,
    run_detector_features,
    run_heads,
)
from fpn_core.export import build_export
from fpn_core.weights import WeightFile
from tests.conftest import named_by_hash, run_cli_process

ROOT = Path(__file__).resolve().parents[1]
SIZE = 320  # network input long side in these tests (torchvision's default is 800)
REL = 1e-3
BUILDERS = {"faster-rcnn": fasterrcnn_resnet50_fpn, "retinanet": retinanet_resnet50_fpn}


# --------------------------------------------------------------------------- fixtures


def _randomize(model: torch.nn.Module, name: str, seed: int = 1) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and FPN biases (identity BN would let a broken fold pass),
    and heads that score some boxes high enough to be detections."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.6)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
        for m in model.backbone.fpn.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.copy_(torch.randn(m.bias.numel(), generator=gen) * 0.1)
        if name == "retinanet":  # torchvision's prior makes every score 0.01, below the 0.05 cut
            cls = model.head.classification_head.cls_logits
            cls.bias.fill_(-2.0)
            cls.weight.mul_(4.0)
    return model.eval()


def _torchvision(name: str, seed: int = 0) -> torch.nn.Module:
    """torchvision's own model at the tests' input size, with random (seeded) weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BUILDERS[name](weights=None, weights_backbone=None, min_size=SIZE, max_size=SIZE)
    return _randomize(model, name, seed + 1)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_image(ROOT / "samples" / "chelsea.jpg")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Per detector: torchvision's model and the path of its state dict (built once per module)."""
    made = {}

    def get(name: str):
        if name not in made:
            ref = _torchvision(name)
            path = tmp_path_factory.mktemp("weights") / f"{name}-random.pth"
            torch.save(ref.state_dict(), path)
            made[name] = (ref, path)
        return made[name]

    return get


@pytest.fixture(scope="module")
def ours(pair):
    """Per (detector, optimize): our detector loaded from the same file as torchvision's."""
    made = {}

    def get(name: str, optimize: bool = True):
        if (name, optimize) not in made:
            _, path = pair(name)
            made[name, optimize] = build_detector(name, weights=str(path), optimize=optimize, allow_download=False)
        return made[name, optimize]

    return get


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255)


def _reference(ref: torch.nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return ref([_tensor(image)])[0]


def _ref_features(ref: torch.nn.Module, image: np.ndarray):
    with torch.inference_mode():
        images, _ = ref.transform([_tensor(image)])
        return images, ref.backbone(images.tensors)


def _match(ours_boxes, ours_scores, ours_labels, ref: dict[str, torch.Tensor]) -> int:
    """Every reference detection clearly above the last one has an equal detection of ours, and
    the counts agree. Boxes within 1e-3 of the image size, scores within 1e-3 relative.

    Near-ties (random weights give many) may come out in another order, so boxes are matched by
    label and position rather than by rank; detections at the cut-off (the 100th or 300th, or the
    score threshold) may legitimately swap with a near-equal one and are left out.

    Returns:
        How many detections were matched.
    """
    assert len(ours_scores) == len(ref["scores"]), (len(ours_scores), len(ref["scores"]))
    scale = float(ref["boxes"].abs().max())
    cut = float(ref["scores"].min()) + 1e-3
    matched = 0
    for box, score, label in zip(ref["boxes"], ref["scores"], ref["labels"], strict=True):
        if score < cut:
            continue
        same = (ours_labels == label) & ((ours_boxes - box).abs().amax(dim=1) <= REL * scale)
        assert same.any(), f"no detection of ours matches {box.tolist()} ({int(label)}, {float(score):.4f})"
        assert float((ours_scores[same] - score).abs().min()) <= REL * float(score)
        matched += 1
    # none of ours clearly above the cut (by more than the score tolerance) is left unmatched
    assert int((ours_scores >= cut * (1 + REL)).sum()) <= matched <= int((ours_scores >= cut * (1 - REL)).sum())
    return matched


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_is_torchvisions_and_loads_strictly(name):
    tv = BUILDERS[name](weights=None, weights_backbone=None)
    det = build_detector(name, weights="random", optimize=False, allow_download=False)
    tv_keys = {k for k in tv.state_dict() if not k.endswith("num_batches_tracked")}
    assert isinstance(det, detection.Detector) and det.spec is DETECTORS[name]
    model = det.model
    assert set(model.state_dict()) == tv_keys
    model.load_state_dict(tv.state_dict(), strict=True)  # BatchNorm2d layout, num_batches_tracked included
    assert type(model) is type(tv) is det.spec.model_class  # torchvision's own class
    assert isinstance(model.backbone.fpn, FPN) and isinstance(model.backbone.body, ResNetBackbone)
    assert det.device == next(model.parameters()).device
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.folded = True  # a record, not a module with attributes stuck on


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "folded-channels-last"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_equals_torchvision(name, optimize, pair, ours, image):
    ref, _ = pair(name)
    det = ours(name, optimize)
    assert det.folded == optimize
    has_norm = any(isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)) for m in det.model.modules())
    assert has_norm == (not optimize)  # folded away, or still there
    # the pyramid itself
    feats = run_detector_features(det, image, size=SIZE)
    images, ref_maps = _ref_features(ref, image)
    assert feats.input_hw == tuple(images.image_sizes[0])
    assert list(feats.maps) == list(ref_maps)
    for key, r in ref_maps.items():
        err = float((feats.maps[key] - r).abs().max() / r.abs().max())
        assert err <= REL, (key, err)
    # the detections
    expected = _reference(ref, image)
    assert len(expected["scores"]) > 20, "the random weights must give detections to compare"
    out = detect(det, image, 0.0, size=SIZE)
    assert _match(out.boxes, out.scores, out.labels, expected) > 10
    assert out.names == tuple(DETECTORS[name].categories[int(i)] for i in out.labels)
    # and at a threshold: torchvision's output filtered
    half = float(expected["scores"].median())
    kept = {k: v[expected["scores"] >= half] for k, v in expected.items()}
    hi = detect(det, image, half, size=SIZE)
    assert abs(len(hi) - len(kept["scores"])) <= 1  # a near-tie at the median may fall either side
    assert all(s >= half for s in hi.scores.tolist())


def test_every_score_kept_equals_torchvision_at_threshold_zero(pair, ours, image):
    """``min_score=0`` keeps every anchor (the live view of an untrained detector): the path that skips
    the mask and its copies gives torchvision's detections with ``score_thresh = 0``."""
    ref, _ = pair("retinanet")
    det = ours("retinanet")
    before = ref.score_thresh
    ref.score_thresh = 0.0
    try:
        expected = _reference(ref, image)
    finally:
        ref.score_thresh = before
    out = run_heads(det, run_detector_features(det, image, size=SIZE), min_score=0.0)
    assert len(expected["scores"]) == ref.detections_per_img  # every anchor passed: the cap decides
    assert _match(out.boxes, out.scores, out.labels, expected) > 100


def test_default_size_is_torchvisions_800(ours, image):
    feats = run_detector_features(ours("retinanet"), image)
    h, w = image.shape[:2]
    assert min(feats.input_hw) == 800 and max(feats.input_hw) <= 1333
    assert abs(feats.input_hw[1] / feats.input_hw[0] - w / h) < 0.01
    assert all(s % 32 == 0 for s in feats.padded_hw)
    with pytest.raises(ValueError, match="size must be from"):
        run_detector_features(ours("retinanet"), image, size=10)
    with pytest.raises(ValueError, match="uint8"):
        detect(ours("retinanet"), image.astype(np.float32))


# --------------------------------------------------------------------------- levels


def test_faster_rcnn_levels_are_levelmappers_on_the_real_proposals(pair, ours, image):
    ref, _ = pair("faster-rcnn")
    det = ours("faster-rcnn")
    out = detect(det, image, 0.0, size=SIZE)
    assert len(out) > 10
    # LevelMapper (torchvision's, and the paper's formula by hand) on each detection's proposal
    mapped = initLevelMapper(2, 5)([out.source_boxes]) + 2
    assert [f"p{int(k)}" for k in mapped] == list(out.levels)
    for (x1, y1, x2, y2), level in zip(out.source_boxes.tolist(), out.levels, strict=True):
        k = math.floor(4 + math.log2(math.sqrt((x2 - x1) * (y2 - y1)) / 224) + 1e-6)
        assert level == f"p{min(5, max(2, k))}"
        assert level == f"p{paper_level(x2 - x1, y2 - y1)}"
    assert set(out.levels) <= {"p2", "p3", "p4", "p5"}  # RoIAlign never pools from p6
    assert len(set(out.levels)) >= 2, "the test image should exercise more than one level"
    # the proposals are torchvision's RPN proposals, and each one scores its detection
    images, maps = _ref_features(ref, image)
    with torch.inference_mode():
        proposals = ref.rpn(images, maps)[0][0]
        pooled = ref.roi_heads.box_roi_pool(maps, [out.source_boxes], images.image_sizes)
        logits, _ = ref.roi_heads.box_predictor(ref.roi_heads.box_head(pooled))
    scale = float(proposals.abs().max())
    for box in out.source_boxes:
        assert float((proposals - box).abs().amax(dim=1).min()) <= REL * scale
    probs = logits.softmax(-1)[torch.arange(len(out)), out.labels]
    assert torch.allclose(probs, out.scores, rtol=REL, atol=1e-5)
    # the RPN's proposals per level add up to what it sends to the RoI heads
    assert sum(p.count for p in out.proposals.values()) == len(proposals)
    assert set(out.anchor_levels) <= set(DETECTORS["faster-rcnn"].levels)


def test_retinanet_levels_are_the_anchors_levels(pair, ours, image):
    ref, _ = pair("retinanet")
    out = detect(ours("retinanet"), image, 0.0, size=SIZE)
    assert len(out) > 10
    assert out.levels == out.anchor_levels
    images, maps = _ref_features(ref, image)
    feats = list(maps.values())
    with torch.inference_mode():
        heads = ref.head(feats)
        anchors = ref.anchor_generator(images, feats)[0]
    per_level = [m.shape[-2] * m.shape[-1] * 9 for m in feats]
    starts = dict(zip(DETECTORS["retinanet"].levels, np.cumsum([0, *per_level[:-1]]).tolist(), strict=True))
    levels_seen = set()
    for i, level in enumerate(out.levels):
        lo = starts[level]
        mine = anchors[lo : lo + per_level[list(starts).index(level)]]
        hit = torch.where((mine == out.source_boxes[i]).all(dim=1))[0]
        assert hit.numel() == 1, f"detection {i}'s anchor is not on {level}"
        logit = heads["cls_logits"][0, lo + int(hit), int(out.labels[i])]
        assert abs(float(torch.sigmoid(logit)) - float(out.scores[i])) <= REL * float(out.scores[i])
        levels_seen.add(level)
    assert levels_seen <= set(DETECTORS["retinanet"].levels)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_objectness_and_anchors_per_level(name, pair, ours, image):
    ref, _ = pair(name)
    out = detect(ours(name), image, 0.5, size=SIZE)
    _, maps = _ref_features(ref, image)
    spec = DETECTORS[name]
    assert tuple(out.objectness) == spec.levels == tuple(out.anchors)
    for level, m in zip(spec.levels, maps.values(), strict=True):
        obj = out.objectness[level]
        assert obj.shape == m.shape[-2:] and 0 <= float(obj.min()) <= float(obj.max()) <= 1
        anchors = out.anchors[level]
        assert anchors.count == m.shape[-2] * m.shape[-1] * anchors.per_position
    if name == "faster-rcnn":
        with torch.inference_mode():
            logits, _ = ref.rpn.head(list(maps.values()))
        for level, lg in zip(spec.levels, logits, strict=True):
            assert torch.allclose(out.objectness[level], torch.sigmoid(lg[0]).amax(0), atol=1e-4)
        assert out.anchors["p2"].sizes == (32.0,) and out.anchors["p6"].sizes == (512.0,)
        assert out.anchors["p4"].aspect_ratios == (0.5, 1.0, 2.0) and out.anchors["p4"].per_position == 3
        assert all(len(p.boxes) <= detection.TOP_K_PROPOSALS for p in out.proposals.values())
    else:
        assert out.proposals == {}
        assert out.anchors["p3"].sizes == (32.0, 40.0, 50.0) and out.anchors["p7"].per_position == 9
    counts = out.count_per_level()
    assert list(counts) == list(spec.levels) and sum(counts.values()) == len(out)


# --------------------------------------------------------------------------- caching and sharing


def test_threshold_only_refilters_cached_heads(ours, image):
    det = ours("faster-rcnn")
    feats = run_detector_features(det, image, size=SIZE)
    full = run_heads(det, feats)
    assert full.score_threshold == pytest.approx(0.05)  # torchvision's own box_score_thresh
    cut = float(full.scores.median())
    direct = detect(det, image, cut, size=SIZE)
    refiltered = filter_detections(full, cut)
    assert torch.equal(refiltered.boxes, direct.boxes) and refiltered.levels == direct.levels
    assert 0 < len(refiltered) < len(full)
    assert filter_detections(refiltered, 0.1).score_threshold == cut  # dropped boxes do not come back
    with pytest.raises(ValueError, match="score threshold"):
        filter_detections(full, 1.5)
    with pytest.raises(ValueError, match="come from faster-rcnn"):
        run_heads(ours("retinanet"), feats)
    noisy = run_heads(det, feats, min_score=0.0)  # what an untrained detector "sees", for the toggle
    assert len(noisy) >= len(full)


def test_model_stays_read_only_and_shareable(ours, image):
    det = ours("faster-rcnn")
    before = {k: v.clone() for k, v in det.model.state_dict().items()}
    cells = [c.clone() for c in det.model.rpn.anchor_generator.cell_anchors]
    results: list = [None, None]

    def run(i: int) -> None:
        results[i] = detect(det, image, 0.3, size=SIZE)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results[0].boxes, results[1].boxes) and results[0].levels == results[1].levels
    model = det.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    # torchvision's lazy caches were never written (its own forward would set them)
    assert model.roi_heads.box_roi_pool.scales is None and model.roi_heads.box_roi_pool.map_levels is None
    assert all(torch.equal(a, b) for a, b in zip(cells, model.rpn.anchor_generator.cell_anchors, strict=True))


def test_detector_pyramid_hands_its_backbone_and_fpn_to_the_other_views(ours, image):
    from fpn_core import PyramidConfig, run_pyramid

    det = ours("faster-rcnn")
    pyr = detection.detector_pyramid(det, PyramidConfig(stages=("c3", "c4", "c5")))
    source = det.model.backbone
    assert pyr.backbone is source.body  # shared, not copied
    for i, j in enumerate((1, 2, 3)):  # c3..c5 are the Faster R-CNN FPN's blocks 1..3
        assert torch.equal(pyr.fpn.inner_blocks[i][0].weight, source.fpn.inner_blocks[j][0].weight)
        assert torch.equal(pyr.fpn.layer_blocks[i][0].bias, source.fpn.layer_blocks[j][0].bias)
    assert pyr.provenance.fpn_pretrained and "Faster R-CNN" in pyr.provenance.fpn
    assert "your checkpoint faster-rcnn-random.pth" in pyr.provenance.fpn and "COCO" not in pyr.provenance.fpn
    out = run_pyramid(pyr, image, size=128)
    assert list(out.levels) == ["p3", "p4", "p5", "p6"]
    retina = detection.detector_pyramid(ours("retinanet"))  # its own P6/P7 convs from P5
    assert retina.config.stages == ("c3", "c4", "c5")
    assert list(run_pyramid(retina, image, size=128).levels) == ["p3", "p4", "p5", "p6", "p7"]
    assert list(retina.level_info.names()) == ["p3", "p4", "p5", "p6", "p7"]
    with pytest.raises(ValueError, match="c2"):  # the detector's FPN has no lateral for it
        detection.detector_pyramid(ours("retinanet"), PyramidConfig(stages=("c2", "c3")))
    with pytest.raises(ValueError, match="256"):
        detection.detector_pyramid(det, PyramidConfig(out_channels=128))


# --------------------------------------------------------------------------- weights
# The resolver (chain, hash check, download, refusals, eps rule) is tested once, in test_weights.py;
# here: that each detector goes through it with its own record, layout and operator variable.


def _use_record(monkeypatch, name: str, filename: str) -> WeightFile:
    """Point a detector's record at a test file name (its hash prefix is the test file's)."""
    wf = dataclasses.replace(DETECTORS[name].weights, filename=filename, url="https://invalid.example/none")
    monkeypatch.setitem(DETECTORS, name, dataclasses.replace(DETECTORS[name], weights=wf))
    return wf


def _small_state(name: str) -> dict[str, torch.Tensor]:
    return _torchvision(name, seed=5).state_dict()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_coco_from_the_hub_cache(name, hub, monkeypatch):
    state = _small_state(name)
    torch.save(state, hub / "x.pth")
    path = named_by_hash(hub / "x.pth", DETECTORS[name].weights.filename.split("-")[0])
    _use_record(monkeypatch, name, path.name)
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    det = build_detector(name, weights="coco", optimize=False, allow_download=True)
    prov = det.provenance
    assert prov.pretrained and prov.fpn_pretrained and prov.source == "torch hub cache"
    assert prov.path == str(path) and not prov.fallbacks
    assert all(torch.equal(v, state[k]) for k, v in det.model.state_dict().items())
    # torchvision's published COCO_V1 files expect BatchNorm eps 0 (its overwrite_eps): the record's eps
    assert {m.eps for m in det.model.modules() if isinstance(m, FrozenBatchNorm2d)} == {0.0}


def test_the_chain_names_the_detectors_file_and_operator_variable(hub):
    det = build_detector("retinanet", weights="coco", allow_download=False)
    prov = det.provenance
    assert not prov.pretrained and prov.source == "random init" and not prov.fpn_pretrained
    spec = DETECTORS["retinanet"]
    reasons = " ".join(prov.fallbacks)
    assert str(hub / spec.weights.filename) in reasons and spec.env in reasons  # where to put it, and how
    for spec in DETECTORS.values():
        help_text = detection.how_to_get_weights(spec.name)
        assert spec.weights.filename in help_text and str(hub) in help_text and spec.env in help_text
        assert f"{spec.file_mb} MB" in help_text


def test_a_checkpoint_of_another_layout_is_refused(hub, tmp_path):
    imagenet = tmp_path / "resnet.pth"
    torch.save(resnet50().state_dict(), imagenet)
    retina = tmp_path / "retina.pth"
    torch.save(_small_state("retinanet"), retina)  # the other detector's checkpoint
    for path in (imagenet, retina):
        det = build_detector("faster-rcnn", weights=str(path), allow_download=False)
        assert not det.provenance.pretrained
        reason = det.provenance.fallbacks[0]  # names the file and the detector it does not fit
        assert str(path) in reason and DETECTORS["faster-rcnn"].title in reason


def test_random_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_detector("retinanet", weights="random", seed=4, optimize=False)
    after = torch.rand(3)
    b = build_detector("retinanet", weights="random", seed=4, optimize=False)
    assert torch.equal(expected, after)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.provenance.source == "random init" and not a.provenance.fallbacks
    with pytest.raises(ValueError, match="yolo"):  # names the bad value
        build_detector("yolo")


# --------------------------------------------------------------------------- export


def test_export_adds_detections_and_changes_nothing_else(ours, image, random_pyramid):
    from fpn_core import run_pyramid

    model = random_pyramid(out_channels=32)
    out = run_pyramid(model, image, size=128)
    dets = detect(ours("faster-rcnn"), image, 0.3, size=SIZE)
    plain = build_export(out, timings=False)
    with_dets = build_export(out, timings=False, detections=dets)
    assert set(with_dets) - set(plain) == {"detections.png"}
    assert with_dets["detections.png"].startswith(b"\x89PNG")
    meta_plain = json.loads(plain["metadata.json"])
    meta = json.loads(with_dets["metadata.json"])
    assert "detections" not in meta_plain
    rows = meta.pop("detections")["detections"]
    assert meta == meta_plain
    assert [r["level"] for r in rows] == list(dets.levels) and len(rows) == len(dets) > 0
    assert all(with_dets[k] == plain[k] for k in plain if k != "metadata.json")
    assert build_export(out, timings=False) == plain  # deterministic, and unchanged by the call above


# --------------------------------------------------------------------------- command line


def test_cli_detect_json_equals_the_engine(capsys, pair, ours, image):
    _, path = pair("retinanet")
    argv = ["detect", str(ROOT / "samples" / "chelsea.jpg"), "--detector", "retinanet", "--weights", str(path)]
    assert cli.main([*argv, "--size", str(SIZE), "--score", "0.2", "--json", "--no-download"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = detect(ours("retinanet"), image, 0.2, size=SIZE)
    assert [r["level"] for r in report["detections"]] == list(expected.levels)
    assert np.allclose([r["box"] for r in report["detections"]], expected.boxes.numpy(), atol=1e-2)
    assert report["per_level"] == expected.count_per_level() and report["weights"]["source"] == "local file"


def test_cli_detect_table(capsys, pair):
    _, path = pair("faster-rcnn")
    code = cli.main(["detect", str(ROOT / "samples" / "chelsea.jpg"), "--weights", str(path), "--size", str(SIZE)])
    assert code == 0
    text = capsys.readouterr().out
    assert "class" in text and "score" in text and "level" in text and "per level" in text
    for level in ("p2", "p3", "p4", "p5", "p6"):
        assert any(line.startswith(level) for line in text.splitlines()), level


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--detector", "yolo"], "yolo"),
        (["--score", "1.5"], "--score"),
        (["--score", "high"], "--score"),
        (["--size", "10"], "size"),
    ],
)
def test_cli_detect_bad_input_exits_2_with_one_line(capsys, args, named):
    assert cli.main(["detect", str(ROOT / "samples" / "chelsea.jpg"), *args, "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and named in err


def test_cli_detect_bad_image_as_a_process(test_env, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    done = run_cli_process(test_env, "detect", bad)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_each_detector_runs_on_its_records_pyramid():
    """The detector's checkpoint is a published record (the two pyramid choices are the registry's own),
    and its trained FPN is the detector's."""
    for spec in DETECTORS.values():
        if spec.weights.key in weights.WEIGHT_FILES:
            assert weights.WEIGHT_FILES[spec.weights.key] is spec.weights
        assert spec.weights.fpn_stages == spec.stages and spec.weights.fpn_out_channels == 256
        assert spec.title == spec.weights.detector
        assert spec.weights.url.endswith(spec.weights.filename) and spec.weights.hash_prefix
    assert {DETECTORS[n].weights.key for n in BUILDERS} <= set(weights.WEIGHT_FILES)


def test_the_detector_reads_no_environment_for_the_operator_file(hub, tmp_path, monkeypatch):
    path = tmp_path / "mine.pth"
    torch.save(_small_state("retinanet"), path)
    monkeypatch.setenv(DETECTORS["retinanet"].env, str(path))
    det = build_detector("retinanet", weights="coco", optimize=False, allow_download=False)
    assert not det.provenance.pretrained
