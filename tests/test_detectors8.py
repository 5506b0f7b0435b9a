"""All eight of torchvision's ResNet-50-FPN detectors: equal to torchvision's own models, every level traced.

For each detector the test makes a state dict with torchvision's own builder (``weights=None,
weights_backbone=None``, random weights, BatchNorm statistics that are not trivial), saves it, and
opens the file alone with ``build_detector(weights=PATH)`` (BatchNorm folded, ``channels_last``).
torchvision's model runs once per detector with hooks that keep its intermediate tensors (the RoI
heads' proposals and ``LevelMapper``, the dense heads' outputs and anchors), so each detection's
level is checked against torchvision's own tensors, not against the size of its box.

The models are big and the machine small: each is built once per module, on a small image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import detection as tvd

from fpn_core import PyramidConfig, build_pyramid, load_image
from fpn_core.checkpoints import CheckpointError
from fpn_core.detection import (
    DETECTORS,
    FCOS_LESSON,
    FCOS_REGRESSION_RANGES,
    build_detector,
    detect,
    detector_pyramid,
    run_detector_features,
)
from fpn_core.detection.build import _assemble
from fpn_core.weights import WeightsError

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224  # network input (min_size = max_size on both models); torchvision's default is 800
REL = 1e-3


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics everywhere (a broken fold cannot pass), FPN biases, and dense heads
    whose scores pass torchvision's own thresholds (its prior makes every RetinaNet/FCOS score 0.01)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.GroupNorm) and m.weight is not None:
                n = m.weight.numel()
                m.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.6)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
        for m in model.backbone.fpn.modules():
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.numel(), generator=gen) * 0.1)
        head = getattr(model, "head", None)
        if head is not None:
            cls = head.classification_head.cls_logits
            cls.bias.fill_(-2.0)
            cls.weight.mul_(4.0)
    return model.eval()


def _torchvision(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        builder = getattr(tvd, DETECTORS[name].builder)
        model = builder(weights=None, weights_backbone=None, min_size=SIZE, max_size=SIZE, **kwargs)
    return _randomize(model, seed + 1)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_image(ROOT / "samples" / "chelsea.jpg")


class Run:
    """torchvision's model on the image, with the intermediate tensors its forward made."""

    def __init__(self, model: torch.nn.Module, image: np.ndarray) -> None:
        self.model = model
        seen: dict[str, object] = {}
        hooks = []
        rh = getattr(model, "roi_heads", None)
        if rh is not None:  # the proposals RoIAlign pools (its LevelMapper is set by this call)
            pool = rh.box_roi_pool
            hooks.append(pool.register_forward_pre_hook(lambda m, a: seen.update(proposals=a[1][0])))
        else:
            hooks.append(model.head.register_forward_hook(lambda m, a, out: seen.update(head=out)))
            hooks.append(model.anchor_generator.register_forward_hook(lambda m, a, out: seen.update(anchors=out)))
            hooks.append(model.backbone.register_forward_hook(lambda m, a, out: seen.update(maps=out)))
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
        with torch.inference_mode():
            self.out = model([tensor])[0]
        for h in hooks:
            h.remove()
        self.seen = seen


@pytest.fixture(scope="module")
def made(tmp_path_factory, image):
    """Per detector: torchvision's run, the file of its state dict, and ours opened from that file alone."""
    cache: dict[str, tuple[Run, Path, object]] = {}

    def get(name: str):
        if name not in cache:
            ref = _torchvision(name)
            path = tmp_path_factory.mktemp("det") / f"{name}.pth"
            torch.save(ref.state_dict(), path)
            ours = build_detector(weights=str(path), allow_download=False)  # folded, channels_last
            cache[name] = (Run(ref, image), path, ours)
        return cache[name]

    return get


def _match(ours, ref: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """Pairs (ours, torchvision's) of equal detections: same label, boxes within 1e-3 of the image
    size, scores within 1e-3 relative. Every torchvision detection clearly above the last one is
    matched; near-ties at the cut-off (the 100th, or the score threshold) may swap and are left out,
    on both sides: "clearly above" allows the same 1e-3 as the scores."""
    assert len(ours) == len(ref["scores"]), (len(ours), len(ref["scores"]))
    scale = float(ref["boxes"].abs().max())
    cut = float(ref["scores"].min()) + 1e-3
    pairs = []
    for j, (box, score, label) in enumerate(zip(ref["boxes"], ref["scores"], ref["labels"], strict=True)):
        if score < cut:
            continue
        err = (ours.boxes - box).abs().amax(dim=1) / scale
        err[ours.labels != label] = float("inf")
        i = int(err.argmin())
        assert float(err[i]) <= REL, f"no detection of ours matches {box.tolist()} ({int(label)}, {float(score):.4f})"
        assert abs(float(ours.scores[i]) - float(score)) <= REL * float(score)
        pairs.append((i, j))
    # and ours has none clearly above the cut that torchvision lacks (clearly: by more than the score tolerance)
    clear = set(torch.nonzero(ours.scores >= cut * (1 + REL)).flatten().tolist())
    assert clear <= {i for i, _ in pairs}, sorted(clear - {i for i, _ in pairs})
    return pairs


def _ours(det, image, ref_model):
    """Our detections at torchvision's own threshold of that model."""
    return detect(det, image, 0.0, size=SIZE)


# --------------------------------------------------------------------------- equality


@pytest.mark.parametrize("name", list(DETECTORS))
def test_equals_torchvision_from_the_file_alone(name, made, image):
    run, path, det = made(name)
    spec = DETECTORS[name]
    assert det.spec is spec and det.folded and det.checkpoint is not None and det.checkpoint.kind == name
    assert type(det.model) is spec.model_class is type(run.model)
    assert f"your checkpoint {path.name}" in det.provenance.backbone and "COCO" not in det.provenance.backbone
    out = _ours(det, image, run.model)
    expected = run.out
    assert len(expected["scores"]) >= 5, "the random weights must give detections to compare"
    pairs = _match(out, expected)
    assert len(pairs) >= 3
    assert out.names == tuple(det.classes[int(i)] for i in out.labels)
    if "masks" in expected:
        assert out.masks is not None and out.masks.shape == (len(out), *image.shape[:2])
        ours_m = out.masks[[i for i, _ in pairs]]
        ref_m = expected["masks"][[j for _, j in pairs], 0]
        # Pasting resamples each 28×28 mask into its box: a box 0.02 px off moves an edge pixel's value by a
        # few thousandths. Inside, the masks are equal; at 0.5 (the drawn mask) they agree to 1e-4 of pixels.
        diff = (ours_m - ref_m).abs()
        assert float(diff.max()) <= 1e-2 and float(diff.mean()) <= 1e-5, (float(diff.max()), float(diff.mean()))
        assert float(((ours_m >= 0.5) != (ref_m >= 0.5)).float().mean()) <= 1e-4
        assert float(out.masks.min()) >= 0.0 and float(out.masks.max()) <= 1.0
    else:
        assert out.masks is None and out.mask_probs is None
    if "keypoints" in expected:
        assert out.keypoints is not None and out.keypoints.shape == (len(out), spec.num_keypoints, 3)
        ours_k = out.keypoints[[i for i, _ in pairs]]
        ref_k = expected["keypoints"][[j for _, j in pairs]]
        err = float(((ours_k - ref_k).abs() / ref_k.abs().clamp_min(1.0)).max())
        assert err <= REL, err
    else:
        assert out.keypoints is None


def test_a_fine_tuned_faster_rcnn_with_its_own_classes(tmp_path, image):
    """torchvision's fine-tuning tutorial: ``num_classes=2``, names in a sidecar; equal to torchvision's."""
    ref = _torchvision("faster-rcnn", seed=3, num_classes=2)
    path = tmp_path / "pennfudan.pth"
    torch.save(ref.state_dict(), path)
    (tmp_path / "pennfudan.classes.txt").write_text("pedestrian\n")
    det = build_detector(weights=str(path), allow_download=False)
    assert det.spec.name == "faster-rcnn" and det.num_classes == 2
    assert det.classes == ("__background__", "pedestrian")
    assert det.provenance.backbone == "your checkpoint pennfudan.pth (2 classes)"
    assert "COCO" not in det.provenance.fpn and det.provenance.fpn_pretrained
    run = Run(ref, image)
    out = _ours(det, image, ref)
    assert len(_match(out, run.out)) >= 3
    assert set(out.names) == {"pedestrian"}
    # names given over the sidecar (the CLI's --classes)
    named = build_detector(weights=str(path), allow_download=False, class_names=["person"])
    assert named.classes == ("__background__", "person")


# --------------------------------------------------------------------------- levels, from torchvision's tensors


@pytest.mark.parametrize("name", [n for n, s in DETECTORS.items() if s.family.proposals])
def test_rcnn_levels_are_levelmapper_on_torchvisions_proposals(name, made, image):
    run, _, det = made(name)
    out = _ours(det, image, run.model)
    proposals = run.seen["proposals"]
    mapper = run.model.roi_heads.box_roi_pool.map_levels  # torchvision's LevelMapper, set by its forward
    scale = float(proposals.abs().max())
    k_min = int(DETECTORS[name].pooled_levels[0][1])
    for source, level in zip(out.source_boxes, out.levels, strict=True):
        err = (proposals - source).abs().amax(dim=1)
        j = int(err.argmin())
        assert float(err[j]) <= REL * scale, "a detection's proposal is not one of torchvision's"
        assert level == f"p{int(mapper([proposals[j : j + 1]])[0]) + k_min}"
    assert set(out.levels) <= set(DETECTORS[name].pooled_levels)


@pytest.mark.parametrize("name", [n for n, s in DETECTORS.items() if not s.family.proposals])
def test_dense_levels_are_their_anchors_or_locations(name, made, image):
    run, _, det = made(name)
    spec = DETECTORS[name]
    out = _ours(det, image, run.model)
    assert len(out) >= 3 and out.levels == out.anchor_levels
    head, anchors, maps = run.seen["head"], run.seen["anchors"][0], list(run.seen["maps"].values())
    per_position = head["cls_logits"].shape[1] // sum(m.shape[-2] * m.shape[-1] for m in maps)
    sizes = [m.shape[-2] * m.shape[-1] * per_position for m in maps]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    fcos = "bbox_ctrness" in head
    for i, level in enumerate(out.levels):
        k = spec.levels.index(level)
        mine = anchors[starts[k] : starts[k] + sizes[k]]
        hit = torch.where((mine - out.source_boxes[i]).abs().amax(dim=1) <= 1e-3)[0]
        assert hit.numel() == 1, f"detection {i}'s anchor or location is not on {level}"
        at = starts[k] + int(hit)
        prob = torch.sigmoid(head["cls_logits"][0, at, int(out.labels[i])])
        score = torch.sqrt(prob * torch.sigmoid(head["bbox_ctrness"][0, at, 0])) if fcos else prob
        assert abs(float(score) - float(out.scores[i])) <= REL * float(score)
    # objectness per level: what the head ranks by, the best class at each position
    for k, level in enumerate(spec.levels):
        h, w = maps[k].shape[-2:]
        cls = torch.sigmoid(head["cls_logits"][0, starts[k] : starts[k] + sizes[k]])
        if fcos:
            cls = torch.sqrt(cls * torch.sigmoid(head["bbox_ctrness"][0, starts[k] : starts[k] + sizes[k]]))
        expected = cls.reshape(h, w, -1).amax(dim=-1)
        assert torch.allclose(out.objectness[level], expected, rtol=REL, atol=1e-5), level


def test_the_fcos_lesson_is_torchvisions_regression_ranges():
    spec = DETECTORS["fcos"]
    assert spec.training_rule == FCOS_LESSON and "regression range" in FCOS_LESSON
    # torchvision's FCOS.compute_loss: [4 s, 8 s] for the level of stride s = its anchor size; first from 0, last to ∞
    sizes = [s[0] for s in tvd.fcos_resnet50_fpn(weights=None, weights_backbone=None).anchor_generator.sizes]
    ranges = list(FCOS_REGRESSION_RANGES.values())
    assert list(FCOS_REGRESSION_RANGES) == list(spec.levels)
    assert ranges[0] == (0.0, 8.0 * sizes[0]) and ranges[-1] == (4.0 * sizes[-1], float("inf"))
    assert all(r == (4.0 * s, 8.0 * s) for r, s in zip(ranges[1:-1], sizes[1:-1], strict=True))
    for _, hi in ranges[:-1]:
        assert f"{int(hi)}" in FCOS_LESSON
    assert "⌊4 + log2(√(wh)/224)⌋" in FCOS_LESSON


# --------------------------------------------------------------------------- the same file, every page


@pytest.mark.parametrize("name", list(DETECTORS))
def test_the_pyramid_is_the_detectors_own(name, made, image):
    _, path, det = made(name)
    feats = run_detector_features(det, image, size=SIZE)
    x = torch.randn(1, 3, 128, 160)
    if det.folded:
        x = x.contiguous(memory_format=torch.channels_last)
    pyr = detector_pyramid(det)
    with torch.inference_mode():
        expected = det.model.backbone(x)
        got = pyr(x)
    assert list(got) == list(feats.levels) == list(DETECTORS[name].levels)
    for (level, g), e in zip(got.items(), expected.values(), strict=True):
        assert float((g - e).abs().max()) <= 1e-4 * max(1.0, float(e.abs().max())), level
    assert path.name in pyr.provenance.backbone
    # build_pyramid from the file alone: the same backbone and FPN, labelled as the user's file
    own = build_pyramid(PyramidConfig(weights=str(path), stages=DETECTORS[name].stages))
    assert path.name in own.provenance.backbone and "COCO" not in own.provenance.fpn
    assert own.provenance.fpn_pretrained and list(own.level_info.names()) == list(DETECTORS[name].levels)
    with torch.inference_mode():
        again = own(x.contiguous())
    for (level, g), e in zip(again.items(), expected.values(), strict=True):
        assert float((g - e).abs().max()) <= 1e-4 * max(1.0, float(e.abs().max())), level


# --------------------------------------------------------------------------- refusals


def test_a_file_alone_that_fits_nothing_is_one_plain_message(tmp_path):
    pickled = tmp_path / "whole.pth"
    torch.save(torch.nn.Conv2d(3, 4, 1), pickled)
    truncated = tmp_path / "cut.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    other = tmp_path / "classifier.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 2048)}, other)
    for path, words in ((pickled, "state_dict()"), (truncated, "truncated"), (other, "fits none")):
        with pytest.raises(WeightsError) as caught:
            build_detector(weights=str(path), allow_download=False)
        message = str(caught.value)
        assert words in message and "\x1b" not in message and "\n" not in message, message
    with pytest.raises(CheckpointError):
        build_detector(weights=str(other))


def test_every_spec_is_what_its_builder_assembles():
    """Keys and shapes of our assembly equal torchvision's builder's, for each of the eight."""
    for spec in DETECTORS.values():
        with torch.device("meta"):
            tv = getattr(tvd, spec.builder)(weights=None, weights_backbone=None)
            model = _assemble(spec, 0, spec.num_classes, spec.num_keypoints)
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert ours == theirs, spec.name
        assert type(model) is type(tv) is spec.model_class
        assert spec.weights.filename.startswith(spec.builder.split("_resnet")[0])


# --------------------------------------------------------------------------- the command line


def test_cli_detect_reads_the_kind_from_the_file_and_reports_masks(made, image, capsys, tmp_path):
    from fpn_core import cli

    _, path, det = made("mask-rcnn")
    argv = ["detect", str(ROOT / "samples" / "chelsea.jpg"), "--weights", str(path), "--size", str(SIZE)]
    assert cli.main([*argv, "--score", "0", "--json", "--no-download"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = detect(det, image, 0.0, size=SIZE)
    assert report["detector"] == "mask-rcnn" and len(report["detections"]) == len(expected)
    summary = expected.mask_summary()
    assert [r["mask"] for r in report["detections"]] == summary
    row = next(r for r in report["detections"] if r["mask"]["area"] > 0)
    x1, y1, x2, y2 = row["mask"]["box"]
    assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
    assert report["weights"]["backbone"].startswith(f"your checkpoint {path.name}")
    # --classes names the labels; the table shows each mask's area
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"thing {i}" for i in range(1, 91)) + "\n")
    assert cli.main([*argv, "--score", "0", "--classes", str(names)]) == 0
    text = capsys.readouterr().out
    assert "mask px" in text and "thing " in text


def test_cli_detect_keypoints_as_lists(made, capsys):
    from fpn_core import cli

    _, path, _ = made("keypoint-rcnn")
    argv = ["detect", str(ROOT / "samples" / "chelsea.jpg"), "--weights", str(path), "--size", str(SIZE)]
    assert cli.main([*argv, "--score", "0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["detections"]
    assert rows and all(len(r["keypoints"]) == DETECTORS["keypoint-rcnn"].num_keypoints for r in rows)
    assert all(len(kp) == 3 and all(isinstance(v, float) for v in kp) for kp in rows[0]["keypoints"])
    assert "mask" not in rows[0]
    assert cli.main(["detect", str(ROOT / "samples" / "chelsea.jpg"), "--weights", "random", "--detector", "yolo"]) == 2
    assert "fcos" in capsys.readouterr().err  # the choices are the eight
