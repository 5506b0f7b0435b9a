"""The models folder in the dashboard (issues 18 and 19): listed in the sidebar, driving every page.

The folder is written here: a torchvision Faster R-CNN with 2 classes (the fine-tuning tutorial's
model, random weights) with a sidecar of class names, and an mmdetection RetinaNet file made from a
torchvision ResNet-50 state dict in mmdetection's key layout. ``FPN_MODELS_DIR`` names it; the
dashboard runs in this process (AppTest), at input size 128.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import detection, resnet50

from fpn_core.detection.figure import COCO_SKELETON, draw_keypoints, skeleton_for, tint_masks
from fpn_core.frameworks.listing import HEADS_NOT_RUN, list_models_everywhere
from tests.conftest import HOME, open_page, run_cli
from tests.test_frameworks import C2_C5, C3_C5, as_numpy, d2_state, mmdet_state, neck_convs
from ui import detection_page, models
from ui import settings as S

FPN_PAGE = "pages/2_FPN_outputs.py"
DETECTION_PAGE = "pages/9_Detection.py"
TORCHVISION_FILE, MMDET_FILE = "pennfudan.pth", "retina_mmdet.pth"
TORCHVISION_LABEL = "pennfudan.pth — Faster R-CNN, 2 classes"
MMDET_LABEL = "retina_mmdet.pth — mmdetection RetinaNet, 4 classes"


def _resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(18)
    return {k: v for k, v in resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}


def write_torchvision_file(folder: Path) -> Path:
    """torchvision's fine-tuning tutorial model: Faster R-CNN, 2 classes, names in a sidecar."""
    torch.manual_seed(0)
    model = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    path = folder / TORCHVISION_FILE
    torch.save(model.state_dict(), path)
    (folder / "pennfudan.classes.txt").write_text("pedestrian\n", encoding="utf-8")
    return path


def write_mmdet_file(folder: Path, resnet: dict[str, torch.Tensor]) -> Path:
    """An mmdetection v2 RetinaNet: P6/P7 on C5 without a ReLU, 3 classes, 9 anchors per location."""
    state = mmdet_state(resnet, neck_convs(C3_C5, extra=2))
    state["bbox_head.retina_cls.weight"] = torch.zeros(9 * 3, 256, 3, 3)
    state["bbox_head.retina_reg.weight"] = torch.zeros(9 * 4, 256, 3, 3)
    meta = {"CLASSES": ["cat", "dog", "bird"], "config": "neck=dict(add_extra_convs='on_input', num_outs=5)"}
    path = folder / MMDET_FILE
    torch.save({"meta": meta, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_torchvision_file(folder)
    write_mmdet_file(folder, _resnet_state())
    return folder


@pytest.fixture
def models_env(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FPN_MODELS_DIR", str(folder))
    return folder


def _text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    return "\n".join(parts + [w.value for w in at.warning] + [i.value for i in at.info])


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ------------------------------------------------------------------------------ the listing


def test_the_listing_names_kind_classes_and_framework(models_env: Path) -> None:
    listing = list_models_everywhere(models_env)
    assert [info.label for info in listing] == [TORCHVISION_LABEL, MMDET_LABEL]
    assert [info.format for info in listing] == ["torchvision", "mmdetection"]
    assert listing.models[0].class_names == ("__background__", "pedestrian")
    assert listing.models[1].class_names[1:] == ("cat", "dog", "bird")
    assert listing.models[1].fpn_stages == ("c3", "c4", "c5")
    assert not listing.problems


def test_a_detectron2_pkl_is_listed_and_a_bad_file_is_reported(tmp_path: Path) -> None:
    with (tmp_path / "model_final.pkl").open("wb") as fh:
        pickle.dump({"model": as_numpy(d2_state(_resnet_state(), neck_convs(C2_C5))), "__author__": "zoo"}, fh)
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 not really a zip")
    listing = list_models_everywhere(tmp_path)
    assert [info.label for info in listing] == ["model_final.pkl — detectron2 Faster R-CNN, 81 classes"]
    assert [p.path.name for p in listing.problems] == ["broken.pth"]


def test_models_dir_flag_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert models.models_dir_flag(["--weights", "x.pth", "--models-dir", "/srv/models"]) == "/srv/models"
    assert models.models_dir_flag(["--weights", "x.pth"]) is None
    monkeypatch.setattr("sys.argv", ["dashboard.py"])
    monkeypatch.setenv("FPN_MODELS_DIR", str(tmp_path))
    assert models.models_dir() == tmp_path
    monkeypatch.setattr("sys.argv", ["dashboard.py", "--models-dir", str(tmp_path / "other")])
    assert models.models_dir() == tmp_path / "other"  # the flag wins


# ------------------------------------------------------------------------------ the sidebar


def test_the_sidebar_lists_the_folder_with_kind_and_classes(models_env: Path) -> None:
    at = open_page(HOME)
    _ok(at)
    weights = at.selectbox(key=S.KEY_WEIGHTS)
    labels = [weights.format_func(o) for o in weights.options] if callable(weights.format_func) else weights.options
    assert TORCHVISION_LABEL in labels and MMDET_LABEL in labels
    assert "ImageNet backbone" in labels[0]  # the built-in choices stay first, as before


def test_a_link_names_a_file_of_the_folder_and_nothing_else(models_env: Path) -> None:
    at = open_page(HOME, weights="file:" + MMDET_FILE)
    _ok(at)
    assert at.selectbox(key=S.KEY_WEIGHTS).value == "file:" + MMDET_FILE
    at = open_page(HOME, weights="file:../pennfudan.pth")
    _ok(at)
    warnings = [w.value for w in at.warning]
    assert any("`weights=file:../pennfudan.pth` in the link is not valid" in w for w in warnings), warnings
    assert at.selectbox(key=S.KEY_WEIGHTS).value == "imagenet"
    assert open_page(HOME, weights="coco-fpn").selectbox(key=S.KEY_WEIGHTS).value == "coco-fpn"  # old links work


# -------------------------------------------------------------------------- feature pages


def test_a_framework_file_drives_the_fpn_page_with_its_provenance_and_p7(models_env: Path) -> None:
    at = open_page(FPN_PAGE, weights="file:" + MMDET_FILE)
    _ok(at)
    text = _text(at)
    assert f"mmdetection v2 `{MMDET_FILE}`" in text, text[:600]
    assert "trained in mmdetection on c3, c4, c5" in text
    assert "COCO-trained" not in text
    titles = "\n".join(c for img in at.image for c in img.captions) + text
    assert "p7" in titles  # the file's extra levels: P6 and P7 on C5


def test_the_live_page_offers_the_files_own_levels(models_env: Path) -> None:
    """The Live page's Level list is the built pyramid's: P7 too for the mmdetection RetinaNet file."""
    at = open_page("pages/11_Live.py", weights="file:" + MMDET_FILE)
    _ok(at)
    level = next(s for s in at.selectbox if s.label == "Level")
    assert list(level.options) == ["p3", "p4", "p5", "p6", "p7"], level.options


def test_a_torchvision_file_drives_the_feature_pages_as_the_users_file(models_env: Path) -> None:
    at = open_page(FPN_PAGE, weights="file:" + TORCHVISION_FILE)
    _ok(at)
    text = _text(at)
    assert TORCHVISION_FILE in text
    assert "COCO-trained" not in text


# ------------------------------------------------------------------------------ detection


def _detection(detector: str):
    at = open_page(HOME)
    at.session_state[S.KEY_DETECTION_SIZE] = detection_page.SIZE_SIDEBAR
    at.session_state[S.KEY_DETECTOR] = detector
    at.session_state[S.KEY_DETECTION_SCORE] = 0.0
    at.switch_page(DETECTION_PAGE).run()
    _ok(at)
    return at


def test_the_detection_page_offers_the_folder_and_runs_the_torchvision_file(models_env: Path) -> None:
    at = _detection("file:" + TORCHVISION_FILE)
    radio = at.radio(key=S.KEY_DETECTOR)
    assert "file:" + TORCHVISION_FILE in radio.options or TORCHVISION_LABEL in radio.options
    text = _text(at)
    assert TORCHVISION_FILE in text
    assert HEADS_NOT_RUN not in text
    assert any("Boxes, colored by the level" in s.value for s in at.subheader)


def test_the_detection_page_explains_why_a_framework_files_heads_are_not_run(models_env: Path) -> None:
    at = _detection("file:" + MMDET_FILE)
    infos = [i.value for i in at.info]
    assert any("its detection heads are not run" in i and "RoIAlign" in i for i in infos), infos
    assert any("background class last" in i and "anchors" in i for i in infos)
    assert not any("Boxes, colored by the level" in s.value for s in at.subheader)


# ------------------------------------------------------------------------------ drawing


def test_masks_are_tinted_in_their_color_only_where_the_mask_holds() -> None:
    image = np.full((20, 30, 3), 100, np.uint8)
    masks = np.zeros((1, 10, 15), np.float32)  # the detections' image at half size: resized to the image
    masks[0, :5, :] = 0.9
    out = tint_masks(image, masks, [(255, 0, 0)], alpha=0.5)
    assert out[0, 0].tolist() == [178, 50, 50]  # 0.5 * 100 + 0.5 * 255, 0.5 * 100 + 0
    assert out[-1, -1].tolist() == [100, 100, 100]
    assert out.shape == image.shape and out.dtype == np.uint8


def test_keypoints_draw_the_coco_skeleton_for_17_and_points_otherwise() -> None:
    assert skeleton_for(17) == COCO_SKELETON and len(COCO_SKELETON) == 19
    assert skeleton_for(5) == ()
    image = np.zeros((64, 64, 3), np.uint8)
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 2] = 1
    kps[0, :, 0], kps[0, :, 1] = 10, 10
    kps[0, 15, :2] = (50, 50)  # left ankle, joined to the left knee (13) at (10, 10)
    out = draw_keypoints(image, kps, [(0, 255, 0)])
    assert out[30, 30].tolist() == [0, 255, 0]  # on the bone between them
    five = draw_keypoints(image, kps[:, :5], [(0, 255, 0)])
    assert five[30, 30].tolist() == [0, 0, 0]  # five points: no bones
    assert five[10, 10].tolist() == [0, 255, 0]


# ------------------------------------------------------------------------------ the CLI


def test_cli_inspect_and_export_open_a_framework_file_with_conventions(capsys, folder: Path, sample, tmp_path) -> None:
    path = folder / MMDET_FILE
    code, out, err = run_cli(capsys, "inspect", sample, "--weights", path, "--size", 128, "--repeats", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "mmdetection v2" in report["weights"]["backbone"] and report["weights"]["pretrained"]
    assert [level["name"] for level in report["levels"]] == ["p3", "p4", "p5", "p6", "p7"]
    code, _, err = run_cli(
        capsys, "inspect", sample, "--weights", path, "--input-format", "BGR", "--size", 128, "--repeats", 1, "--json"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "export", sample, "--weights", path, "--size", 128, "--out", tmp_path / "out")
    assert code == 0, err
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert "mmdetection v2" in meta["weights"]["backbone"]  # the export metadata names the user's file


def test_cli_convention_flags_are_checked_and_detect_refuses_a_framework_file(capsys, folder: Path, sample) -> None:
    code, _, err = run_cli(capsys, "inspect", sample, "--weights", "random", "--input-format", "YUV", "--size", 128)
    assert code == 2 and "--input-format" in err
    code, _, err = run_cli(capsys, "inspect", sample, "--weights", "random", "--stride-in-1x1", "yes", "--size", 128)
    assert code == 2 and "not one" in err  # the flags are for framework files only
    code, out, err = run_cli(capsys, "detect", sample, "--weights", folder / MMDET_FILE, "--no-download")
    assert code == 2 and not out
    assert "mmdetection or detectron2 checkpoint" in err and "not run" in err and "RoIAlign" in err
