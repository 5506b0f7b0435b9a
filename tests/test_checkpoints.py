"""Checkpoints recognised from keys and shapes: the eight detectors, class names, refusals, a models folder.

The eight files are state dicts of torchvision's own builders (``weights=None, weights_backbone=None``),
each with its own number of classes, written once per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import detection

from fpn_core.checkpoints import (
    BACKGROUND,
    EXTRA_MAXPOOL,
    EXTRA_P6P7_FROM_C5,
    EXTRA_P6P7_FROM_P5,
    CheckpointError,
    CheckpointInfo,
    class_names,
    describe_state,
    inspect_checkpoint,
    list_models,
    models_dir_from_env,
    template_shapes,
)
from fpn_core.detectors import DETECTORS
from fpn_core.weights import WeightsError, read_checkpoint

#: Each kind with its own class count (faster-rcnn: the fine-tuning tutorial's 2), keypoints, and FPN layout.
EXPECTED = {
    "faster-rcnn": (2, None, ("c2", "c3", "c4", "c5"), False, EXTRA_MAXPOOL),
    "faster-rcnn-v2": (4, None, ("c2", "c3", "c4", "c5"), True, EXTRA_MAXPOOL),
    "retinanet": (5, None, ("c3", "c4", "c5"), False, EXTRA_P6P7_FROM_P5),
    "retinanet-v2": (6, None, ("c3", "c4", "c5"), False, EXTRA_P6P7_FROM_C5),
    "fcos": (7, None, ("c3", "c4", "c5"), False, EXTRA_P6P7_FROM_P5),
    "mask-rcnn": (8, None, ("c2", "c3", "c4", "c5"), False, EXTRA_MAXPOOL),
    "mask-rcnn-v2": (9, None, ("c2", "c3", "c4", "c5"), True, EXTRA_MAXPOOL),
    "keypoint-rcnn": (3, 5, ("c2", "c3", "c4", "c5"), False, EXTRA_MAXPOOL),
}


def _build(kind: str) -> nn.Module:
    classes, keypoints, *_ = EXPECTED[kind]
    kwargs = {"num_keypoints": keypoints} if keypoints else {}
    torch.manual_seed(0)
    builder = getattr(detection, DETECTORS[kind].builder)
    return builder(weights=None, weights_backbone=None, num_classes=classes, **kwargs)


@pytest.fixture(scope="module")
def eight(tmp_path_factory) -> Path:
    """A folder with the eight detectors' state dicts, ``<kind>.pth``."""
    folder = tmp_path_factory.mktemp("models")
    for kind in DETECTORS:
        torch.save(_build(kind).state_dict(), folder / f"{kind}.pth")
    return folder


def _meta_state(kind: str, classes: int, keypoints: int | None = None) -> dict[str, torch.Tensor]:
    """A state dict with the shapes torchvision's builder gives (no data: recognition reads shapes only)."""
    return {k: torch.empty(s, device="meta") for k, s in template_shapes(kind, classes, keypoints).items()}


def test_the_eight_names_are_the_issues():
    assert list(DETECTORS) == [
        "faster-rcnn",
        "faster-rcnn-v2",
        "retinanet",
        "retinanet-v2",
        "fcos",
        "mask-rcnn",
        "mask-rcnn-v2",
        "keypoint-rcnn",
    ]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_detector_is_recognised_from_its_file(eight, kind):
    classes, keypoints, stages, norm, extra = EXPECTED[kind]
    info = inspect_checkpoint(eight / f"{kind}.pth")
    assert info.kind == kind
    assert (info.num_classes, info.num_keypoints) == (classes, keypoints)
    assert (info.fpn_stages, info.fpn_out_channels, info.fpn_norm, info.extra_block) == (stages, 256, norm, extra)
    assert info.class_names == (BACKGROUND, *(f"class {i}" for i in range(1, classes)))
    assert info.names_from == "numbered" and info.format == "torchvision"
    assert info.label.startswith(f"{kind}.pth — {DETECTORS[kind].title}, {classes} classes")


def test_a_fine_tuned_faster_rcnn_with_a_sidecar_of_names(eight, tmp_path):
    path = tmp_path / "pennfudan.pth"
    os.link(eight / "faster-rcnn.pth", path)  # fasterrcnn_resnet50_fpn(num_classes=2), as in the tutorial
    (tmp_path / "pennfudan.classes.txt").write_text("person\n\n", encoding="utf-8")
    info = inspect_checkpoint(path)
    assert info.class_names == (BACKGROUND, "person") and info.class_names[1] == "person"
    assert info.names_from == "pennfudan.classes.txt"
    assert info.label == "pennfudan.pth — Faster R-CNN, 2 classes"


def test_the_checkpoints_own_list_wins_over_a_sidecar(tmp_path):
    state = _build("retinanet").state_dict()  # 5 classes: labels 1..4 named
    path = tmp_path / "mine.pth"
    optimizer = {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.01}]}
    torch.save({"model": state, "classes": ["cat", "dog", "bird", "fish"], "epoch": 7, "optimizer": optimizer}, path)
    (tmp_path / "mine.classes.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    info = inspect_checkpoint(path)
    assert info.kind == "retinanet" and info.names_from == "checkpoint"
    assert info.class_names == (BACKGROUND, "cat", "dog", "bird", "fish")
    loaded, extras = read_checkpoint(path, mmap=True)
    assert extras == {"classes": ["cat", "dog", "bird", "fish"], "epoch": 7}  # the optimizer holds tensors: left out
    assert torch.equal(
        loaded["head.classification_head.cls_logits.bias"], state["head.classification_head.cls_logits.bias"]
    )


def test_class_lists_are_indexed_by_label(tmp_path):
    path = tmp_path / "x.pth"
    coco = detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    names, source = class_names(path, 91, {"categories": coco})  # torchvision's 91, background first
    assert names == tuple(coco) and names[1] == "person" and source == "checkpoint"
    with pytest.raises(CheckpointError, match=r"5 names.*3 classes.*give 2 names"):
        class_names(path, 3, {"classes": ["a", "b", "c", "d", "e"]})
    (tmp_path / "x.classes.txt").write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="line 2 is blank"):
        class_names(path, 3, {})


def test_v2_is_told_by_its_norm_layers_and_a_mixed_layout_is_refused():
    assert describe_state(_meta_state("faster-rcnn-v2", 3)).kind == "faster-rcnn-v2"
    mixed = _meta_state("faster-rcnn", 3)  # a v1 FPN (no norm) under the v2 4-conv box head
    mixed = {k: v for k, v in mixed.items() if not k.startswith("roi_heads.box_head.")}
    mixed |= {k: v for k, v in _meta_state("faster-rcnn-v2", 3).items() if k.startswith("roi_heads.box_head.")}
    with pytest.raises(CheckpointError) as err:
        describe_state(mixed, path="mixed.pth")
    message = str(err.value)
    assert "mixed.pth fits none" in message and "Faster R-CNN v2" in message
    assert "First misfit: backbone.fpn.inner_blocks.0.1.weight is missing" in message


def test_a_wrong_shape_is_named():
    state = _meta_state("mask-rcnn", 4)
    state["roi_heads.box_head.fc6.weight"] = torch.empty(512, 12544, device="meta")
    with pytest.raises(
        CheckpointError,
        match=r"roi_heads\.box_head\.fc6\.weight has shape \(512, 12544\), "
        r"Mask R-CNN expects \(1024, 12544\)",
    ):
        describe_state(state)


def test_a_file_that_fits_nothing_says_what_it_looks_like(tmp_path):
    path = tmp_path / "classifier.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        inspect_checkpoint(path)
    message = str(err.value)
    assert "classifier.pth fits none of torchvision's eight" in message
    assert "image classifier" in message and "10 classes" in message
    assert "First misfit: conv1.weight is not a key of any of them" in message
    parallel = {f"module.{k}": v for k, v in _meta_state("fcos", 3).items()}
    with pytest.raises(CheckpointError, match=r"DataParallel.*model\.module\.state_dict\(\)"):
        describe_state(parallel)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_whole_pickled_model_is_refused_in_plain_words(tmp_path, zip_format):
    path = tmp_path / "whole.pth"
    torch.save(torchvision.ops.FeaturePyramidNetwork([8, 16], 8), path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsError) as err:
        inspect_checkpoint(path)
    message = str(err.value)
    assert "\x1b" not in message and "[1m" not in message  # no terminal escape codes copied from torch
    assert "whole pickled model" in message and "FeaturePyramidNetwork" in message
    assert "never unpickled" in message and "torch.save(model.state_dict()" in message


def test_a_truncated_file_gets_one_message(eight, tmp_path):
    path = tmp_path / "cut.pth"
    with (eight / "fcos.pth").open("rb") as fh:
        path.write_bytes(fh.read(1 << 20))
    with pytest.raises(WeightsError, match="looks truncated or corrupt") as err:
        inspect_checkpoint(path)
    assert "\x1b" not in str(err.value)


def test_an_old_non_zip_file_is_read_without_mmap(tmp_path):
    state = {"a": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / "old.pt"
    torch.save({"state_dict": state, "classes": ["x"]}, path, _use_new_zipfile_serialization=False)
    loaded, extras = read_checkpoint(path, mmap=True)
    assert torch.equal(loaded["a"], state["a"]) and extras == {"classes": ["x"]}


def test_the_folder_listing_reports_bad_files_among_good_ones(eight, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for kind in ("fcos", "keypoint-rcnn", "mask-rcnn-v2"):
        os.link(eight / f"{kind}.pth", folder / f"{kind}.pth")
    os.link(eight / "retinanet-v2.pth", folder / "retina.pt")
    with (eight / "faster-rcnn.pth").open("rb") as fh:
        (folder / "broken.pth").write_bytes(fh.read(4096))
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, folder / "stranger.pth")
    (folder / "fcos.classes.txt").write_text("\n".join(f"n{i}" for i in range(1, 7)), encoding="utf-8")
    (folder / "notes.txt").write_text("not a checkpoint", encoding="utf-8")
    listing = list_models(folder)
    assert [i.path.name for i in listing] == ["fcos.pth", "keypoint-rcnn.pth", "mask-rcnn-v2.pth", "retina.pt"]
    assert [i.kind for i in listing] == ["fcos", "keypoint-rcnn", "mask-rcnn-v2", "retinanet-v2"]
    assert len(listing) == 4 and listing.models[0].class_names[6] == "n6"
    problems = {p.path.name: p.message for p in listing.problems}
    assert set(problems) == {"broken.pth", "stranger.pth"}
    assert "truncated or corrupt" in problems["broken.pth"]
    assert "fits none" in problems["stranger.pth"] and "conv1.weight" in problems["stranger.pth"]
    missing = list_models(tmp_path / "nowhere")
    assert not missing.models and "does not exist" in missing.problems[0].message


def test_a_foreign_reader_is_asked_about_files_torchvision_does_not_know(tmp_path):
    torch.save({"neck.lateral_convs.0.conv.weight": torch.zeros(4, 8, 1, 1)}, tmp_path / "mmdet.pth")
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pth")
    seen = []

    def reader(path, state, extras):
        seen.append(path.name)
        if not any(k.startswith("neck.") for k in state):
            return None
        return CheckpointInfo(
            path,
            "faster-rcnn",
            2,
            (BACKGROUND, "x"),
            "numbered",
            ("c2",),
            4,
            False,
            EXTRA_MAXPOOL,
            format="mmdetection",
        )

    listing = list_models(tmp_path, readers=[reader])
    assert sorted(seen) == ["mmdet.pth", "other.pth"]
    assert [(i.path.name, i.format) for i in listing] == [("mmdet.pth", "mmdetection")]
    assert [p.path.name for p in listing.problems] == ["other.pth"]


def test_models_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FPN_MODELS_DIR", raising=False)
    assert models_dir_from_env() is None
    (tmp_path / "models").mkdir()
    assert models_dir_from_env() == Path("models")
    monkeypatch.setenv("FPN_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert models_dir_from_env() == tmp_path / "elsewhere"  # named but missing: the listing says so
