"""Checkpoints of mmdetection and detectron2 (issue 19): read safely, equal to each framework's own network.

Every file is made here from torchvision state dicts (random weights, BatchNorm statistics that
are not trivial) in each framework's layout. The references are written in this file from the
framework's raw key names and torchvision's ResNet with that framework's conventions (stride on
the 1x1, BGR minus PIXEL_MEAN, P6/P7 with and without the ReLU), independently of the code under test.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50, resnet101

from fpn_core.frameworks import (
    ConventionOverrides,
    FrameworkError,
    build_framework_pyramid,
    framework_of,
    is_framework_checkpoint,
    load_checkpoint_object,
    read_framework_checkpoint,
    sniff_framework,
)
from fpn_core.frameworks.mmdet import conventions_from_config
from fpn_core.images import resize_long_side
from fpn_core.pyramid import PyramidConfig, prepare_input

TOLERANCE = 1e-3
SIZE = 256  # the image is 256 x 192: multiples of 32, as both frameworks pad to
MSRA_MEAN_BGR = (103.530, 116.280, 123.675)
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
COCO3 = ("person", "bicycle", "car")


# --------------------------------------------------------------------------- weights made here


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    """A ResNet-50 state dict with random weights and BatchNorm statistics far from (0, 1)."""
    torch.manual_seed(19)
    model = resnet50(weights=None)
    gen = torch.Generator().manual_seed(19)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(1000)
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _conv(c_out: int, c_in: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(c_out, c_in, k, k, generator=gen) / (c_in * k * k) ** 0.5
    return w, torch.randn(c_out, generator=gen) * 0.1


def neck_convs(in_channels: list[int], d: int = 256, extra: int = 0, extra_in: int = 2048) -> dict[str, list]:
    """Random laterals, outputs and extra convs (weights, biases) of an FPN."""
    return {
        "lateral": [_conv(d, c, 1, 100 + i) for i, c in enumerate(in_channels)],
        "output": [_conv(d, d, 3, 200 + i) for i in range(len(in_channels))],
        "extra": [_conv(d, extra_in if i == 0 else d, 3, 300 + i) for i in range(extra)],
    }


C2_C5, C3_C5 = [256, 512, 1024, 2048], [512, 1024, 2048]


def mmdet_state(resnet: dict, neck: dict) -> dict[str, torch.Tensor]:
    """mmdetection's names: ``backbone.<torchvision name>``, ``neck.lateral_convs.{i}.conv``, ``neck.fpn_convs.{i}``."""
    state = {f"backbone.{k}": v for k, v in resnet.items()}
    for i, (w, b) in enumerate(neck["lateral"]):
        state[f"neck.lateral_convs.{i}.conv.weight"], state[f"neck.lateral_convs.{i}.conv.bias"] = w, b
    for i, (w, b) in enumerate(neck["output"] + neck["extra"]):
        state[f"neck.fpn_convs.{i}.conv.weight"], state[f"neck.fpn_convs.{i}.conv.bias"] = w, b
    state["rpn_head.rpn_conv.weight"] = torch.zeros(256, 256, 3, 3)  # heads are ignored
    return state


def d2_name(key: str) -> str | None:
    """torchvision's ResNet name -> detectron2's (as tools/convert-torchvision-to-d2.py renames them)."""
    if key.endswith("num_batches_tracked"):
        return None
    if not key.startswith("layer"):
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def d2_state(resnet: dict, neck: dict | None, first_level: int = 2, prefix: str = "backbone.bottom_up.") -> dict:
    state = {prefix + name: v for k, v in resnet.items() if (name := d2_name(k))}
    if neck is not None:
        for i, ((lw, lb), (ow, ob)) in enumerate(zip(neck["lateral"], neck["output"], strict=True)):
            k = first_level + i
            state[f"backbone.fpn_lateral{k}.weight"], state[f"backbone.fpn_lateral{k}.bias"] = lw, lb
            state[f"backbone.fpn_output{k}.weight"], state[f"backbone.fpn_output{k}.bias"] = ow, ob
        for name, (w, b) in zip(("p6", "p7"), neck["extra"], strict=False):
            state[f"backbone.top_block.{name}.weight"], state[f"backbone.top_block.{name}.bias"] = w, b
        state["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(81, 1024)
    return state


def as_numpy(state: dict) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in state.items()}


# --------------------------------------------------------------------------- the references


def reference_stages(resnet: dict, pixels: torch.Tensor, *, stride_in_1x1: bool) -> dict[str, torch.Tensor]:
    """c2..c5 of torchvision's ResNet-50 with the stride on conv1 (MSRA/caffe) or conv2, on prepared pixels."""
    model = resnet50(weights=None)
    model.load_state_dict(resnet, strict=False)
    if stride_in_1x1:
        for layer in (model.layer2, model.layer3, model.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    model.eval()
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(pixels))))
        out = {}
        layers = (model.layer1, model.layer2, model.layer3, model.layer4)
        for name, layer in zip(("c2", "c3", "c4", "c5"), layers, strict=True):
            x = out[name] = layer(x)
    return out


def framework_pixels(image: np.ndarray, *, bgr: bool, mean: tuple, std: tuple) -> torch.Tensor:
    """What the framework feeds its network: 0-255 pixels, channels flipped for BGR, minus mean, over std."""
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)
    if bgr:
        x = x.flip(0)
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).unsqueeze(0)


def mmdet_neck(state: dict, feats: list[torch.Tensor], *, extra: str, relu_before_p7: bool = False) -> list:
    """mmdetection's FPN.forward on its raw keys: size-matched nearest upsampling; max-pool or on_input P6/P7."""
    conv = lambda name, x, **kw: F.conv2d(x, state[f"{name}.conv.weight"], state[f"{name}.conv.bias"], **kw)  # noqa: E731
    with torch.no_grad():
        laterals = [conv(f"neck.lateral_convs.{i}", f) for i, f in enumerate(feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        n = len(laterals)
        outs = [conv(f"neck.fpn_convs.{i}", laterals[i], padding=1) for i in range(n)]
        if extra == "maxpool":
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        elif extra == "on_input":
            outs.append(conv(f"neck.fpn_convs.{n}", feats[-1], stride=2, padding=1))
            p6 = F.relu(outs[-1]) if relu_before_p7 else outs[-1]
            outs.append(conv(f"neck.fpn_convs.{n + 1}", p6, stride=2, padding=1))
    return outs


def d2_fpn(state: dict, feats: list[torch.Tensor], levels: list[int]) -> list:
    """detectron2's FPN.forward on its raw keys: scale_factor=2 upsampling; max-pool, or P6P7 on res5."""
    conv = lambda name, x, **kw: F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], **kw)  # noqa: E731
    with torch.no_grad():
        prev = conv(f"backbone.fpn_lateral{levels[-1]}", feats[-1])
        results = [conv(f"backbone.fpn_output{levels[-1]}", prev, padding=1)]
        for k, f in zip(reversed(levels[:-1]), reversed(feats[:-1]), strict=True):
            prev = conv(f"backbone.fpn_lateral{k}", f) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            results.insert(0, conv(f"backbone.fpn_output{k}", prev, padding=1))
        if "backbone.top_block.p6.weight" in state:
            p6 = conv("backbone.top_block.p6", feats[-1], stride=2, padding=1)
            results += [p6, conv("backbone.top_block.p7", F.relu(p6), stride=2, padding=1)]
        else:
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
    return results


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 192 x 256 RGB image with structure at several scales (and distinct channels, so BGR matters)."""
    yy, xx = np.mgrid[0:192, 0:256].astype(np.float32)
    rng = np.random.default_rng(19)
    r = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 23.0)
    g = 128 + 90 * np.cos((xx + yy) / 31.0)
    b = rng.integers(0, 256, size=(192, 256)).astype(np.float32)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def ours(path, image, **read_kw) -> tuple[OrderedDict, np.ndarray, object]:
    """Our pyramid on ``image`` from the file; the resized image the network saw; the record."""
    record = read_framework_checkpoint(path, **read_kw)
    pyramid = build_framework_pyramid(record, PyramidConfig(device="cpu"))
    resized, x = prepare_input(image, SIZE, pyramid.backbone)
    with torch.no_grad():
        return pyramid(x), resized, (record, pyramid)


def relative_errors(got: OrderedDict, want: dict[str, torch.Tensor]) -> dict[str, float]:
    assert list(got) == list(want), f"levels {list(got)} != {list(want)}"
    return {k: float((got[k].float() - want[k]).abs().max() / want[k].abs().max().clamp_min(1e-12)) for k in want}


# --------------------------------------------------------------------------- equality per layout


def test_mmdet_v2_old_serialization_faster_rcnn(tmp_path, resnet_state, image):
    neck = neck_convs(C2_C5)
    state = mmdet_state(resnet_state, neck)
    meta = {"mmdet_version": "2.28.2", "CLASSES": COCO3, "config": "model = dict(backbone=dict(style='pytorch'))"}
    path = tmp_path / "faster_rcnn_r50_fpn_1x_coco.pth"
    torch.save({"meta": meta, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] != b"PK"  # the old serialization

    got, resized, (record, pyramid) = ours(path, image)
    pixels = framework_pixels(resized, bgr=False, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)
    c = reference_stages(resnet_state, pixels, stride_in_1x1=False)
    want = mmdet_neck(state, [c["c2"], c["c3"], c["c4"], c["c5"]], extra="maxpool")
    errors = relative_errors(got, dict(zip(("p2", "p3", "p4", "p5", "p6"), want, strict=True)))
    assert max(errors.values()) < TOLERANCE, errors
    assert record.framework == "mmdetection" and record.origin == "mmdetection v2 (2.28.2)"
    assert record.classes == COCO3
    assert not record.conventions.stride_in_1x1 and record.conventions.input_format == "RGB"
    assert "mmdetection v2" in pyramid.provenance.backbone and "stride in 3×3" in pyramid.provenance.backbone
    assert pyramid.provenance.fpn_pretrained and "trained in mmdetection" in pyramid.provenance.fpn


def test_mmdet_v3_caffe_style_zip(tmp_path, resnet_state, image):
    """v3 (``dataset_meta``), caffe style from the saved config: stride on the 1x1, BGR minus mean, std 1."""
    neck = neck_convs(C2_C5)
    state = mmdet_state(resnet_state, neck)
    cfg = (
        "model = dict(\n    backbone=dict(type='ResNet', depth=50, style='caffe', norm_eval=True),\n"
        "    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675], "
        "std=[1.0, 1.0, 1.0], bgr_to_rgb=False, pad_size_divisor=32),\n"
        "    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5))\n"
    )
    meta = {"mmdet_version": "3.3.0", "dataset_meta": {"classes": COCO3, "palette": [(1, 2, 3)]}, "cfg": cfg}
    path = tmp_path / "faster-rcnn_r50-caffe_fpn_1x_coco.pth"
    torch.save({"meta": meta, "state_dict": state}, path)

    got, resized, (record, _) = ours(path, image)
    pixels = framework_pixels(resized, bgr=True, mean=MSRA_MEAN_BGR, std=(1.0, 1.0, 1.0))
    c = reference_stages(resnet_state, pixels, stride_in_1x1=True)
    want = mmdet_neck(state, [c["c2"], c["c3"], c["c4"], c["c5"]], extra="maxpool")
    errors = relative_errors(got, dict(zip(("p2", "p3", "p4", "p5", "p6"), want, strict=True)))
    assert max(errors.values()) < TOLERANCE, errors
    assert record.origin == "mmdetection v3 (3.3.0)" and record.classes == COCO3
    assert record.conventions.stride_in_1x1 and record.conventions.input_format == "BGR"


@pytest.mark.parametrize("relu", [False, True], ids=["no-relu", "relu-before-p7"])
def test_mmdet_retinanet_p6_p7_on_c5(tmp_path, resnet_state, image, relu):
    """RetinaNet: c3..c5, ``fpn_convs.3`` is P6 on C5 (2048 in), ``fpn_convs.4`` P7 on P6, ReLU only when configured."""
    neck = neck_convs(C3_C5, extra=2)
    state = mmdet_state(resnet_state, neck)
    cfg = f"neck=dict(start_level=1, add_extra_convs='on_input', relu_before_extra_convs={relu}, num_outs=5)"
    path = tmp_path / "retinanet_r50_fpn_1x_coco.pth"
    torch.save({"meta": {"mmdet_version": "2.25.0", "CLASSES": COCO3, "config": cfg}, "state_dict": state}, path)

    got, resized, (record, pyramid) = ours(path, image)
    pixels = framework_pixels(resized, bgr=False, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)
    c = reference_stages(resnet_state, pixels, stride_in_1x1=False)
    want = mmdet_neck(state, [c["c3"], c["c4"], c["c5"]], extra="on_input", relu_before_p7=relu)
    errors = relative_errors(got, dict(zip(("p3", "p4", "p5", "p6", "p7"), want, strict=True)))
    assert max(errors.values()) < TOLERANCE, errors
    assert record.stages == ("c3", "c4", "c5") and record.extra.source == "c5"
    assert record.extra.relu_before_p7 is relu
    assert pyramid.level_info.names() == ["p3", "p4", "p5", "p6", "p7"]

    # The ReLU before P7 matters on these weights: the other choice does not pass.
    other, _, _ = ours(path, image, overrides=ConventionOverrides(relu_before_p7=not relu))
    assert relative_errors(other, dict(zip(("p3", "p4", "p5", "p6", "p7"), want, strict=True)))["p7"] > 0.01


def test_detectron2_zoo_pkl_msra_conventions(tmp_path, resnet_state, image):
    neck = neck_convs(C2_C5)
    state = d2_state(resnet_state, neck)
    path = tmp_path / "model_final_280758.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": as_numpy(state), "__author__": "Detectron2 Model Zoo"}, fh)

    got, resized, (record, pyramid) = ours(path, image)
    pixels = framework_pixels(resized, bgr=True, mean=MSRA_MEAN_BGR, std=(1.0, 1.0, 1.0))
    c = reference_stages(resnet_state, pixels, stride_in_1x1=True)
    want = d2_fpn(state, [c["c2"], c["c3"], c["c4"], c["c5"]], [2, 3, 4, 5])
    errors = relative_errors(got, dict(zip(("p2", "p3", "p4", "p5", "p6"), want, strict=True)))
    assert max(errors.values()) < TOLERANCE, errors
    assert record.framework == "detectron2" and record.conventions.bn_eps == 1e-5
    text = pyramid.provenance.backbone
    assert "detectron2 model zoo" in text and "MSRA ResNet-50 (stride in 1×1)" in text and "BGR input" in text

    # The conventions matter: torchvision's stride placement or RGB input does not pass.
    for wrong in (ConventionOverrides(stride_in_1x1=False), ConventionOverrides(input_format="RGB")):
        other, _, _ = ours(path, image, overrides=wrong)
        assert relative_errors(other, dict(zip(("p2", "p3", "p4", "p5", "p6"), want, strict=True)))["p2"] > 0.01


def test_both_frameworks_pad_the_input_to_a_multiple_of_32(tmp_path, resnet_state, image):
    """At 240 px the image is 180 x 240: detectron2 and mmdetection pad the normalized input with zeros to
    192 x 256 before their backbone, and so do we; the maps near the border depend on it."""
    neck = neck_convs(C2_C5)
    state = d2_state(resnet_state, neck)
    path = tmp_path / "model_final_pad.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": as_numpy(state), "__author__": "Detectron2 Model Zoo"}, fh)
    record = read_framework_checkpoint(path)
    pyramid = build_framework_pyramid(record, PyramidConfig(device="cpu"))
    assert record.conventions.size_divisibility == 32 and "padded to a multiple of 32" in pyramid.provenance.backbone

    shown, x = prepare_input(image, 240, pyramid.backbone)
    assert x.shape[-2:] == (192, 256) and shown.shape[:2] == (192, 256)  # the image as the network saw it
    unpadded = resize_long_side(image, 240)
    assert unpadded.shape[:2] == (180, 240)
    assert (shown[180:, :] == [124, 116, 104]).all() and (shown[:180, :240] == unpadded).all()  # the mean color
    pixels = F.pad(framework_pixels(unpadded, bgr=True, mean=MSRA_MEAN_BGR, std=(1.0, 1.0, 1.0)), (0, 16, 0, 12))
    c = reference_stages(resnet_state, pixels, stride_in_1x1=True)
    want = dict(
        zip(
            ("p2", "p3", "p4", "p5", "p6"),
            d2_fpn(state, [c[k] for k in ("c2", "c3", "c4", "c5")], [2, 3, 4, 5]),
            strict=True,
        )
    )
    with torch.no_grad():
        got = pyramid(x)
    errors = relative_errors(got, want)
    assert max(errors.values()) < TOLERANCE, errors

    # The live page cuts the padding off again: its maps cover the frame alone, and equal the padded run's there.
    from fpn_core.live import LiveView, _pyramid_levels, process_frame

    live = _pyramid_levels(pyramid, unpadded, 240)
    assert live["p2"].shape[-2:] == (45, 60) and live["p5"].shape[-2:] == (6, 8)
    assert torch.allclose(live["p3"], want["p3"][..., :23, :30], rtol=1e-3, atol=1e-3 * float(want["p3"].abs().max()))
    assert process_frame(pyramid, unpadded, LiveView(size=240)).image.shape == unpadded.shape

    # Without the padding the maps are smaller and their bottom-right cells differ.
    pyramid.backbone.size_divisibility = 1
    _, bare = prepare_input(image, 240, pyramid.backbone)
    with torch.no_grad():
        p5 = pyramid(bare)["p5"]
    assert p5.shape[-2:] == (6, 8)
    assert float((p5 - want["p5"][..., :6, :8]).abs().max() / want["p5"].abs().max()) > 0.01

    # mmdetection: the divisor its config names, 32 when it names none.
    assert conventions_from_config("pad_size_divisor=64,").size_divisibility == 64
    assert conventions_from_config("dict(type='Pad', size_divisor=32)").size_divisibility == 32
    assert conventions_from_config("").size_divisibility == 32


def test_detectron2_retinanet_pth_p6_p7_from_res5_with_relu(tmp_path, resnet_state, image):
    neck = neck_convs(C3_C5, extra=2)
    state = d2_state(resnet_state, neck, first_level=3)
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": 89999}, path)

    got, resized, (record, _) = ours(path, image)
    pixels = framework_pixels(resized, bgr=True, mean=MSRA_MEAN_BGR, std=(1.0, 1.0, 1.0))
    c = reference_stages(resnet_state, pixels, stride_in_1x1=True)
    want = d2_fpn(state, [c["c3"], c["c4"], c["c5"]], [3, 4, 5])
    errors = relative_errors(got, dict(zip(("p3", "p4", "p5", "p6", "p7"), want, strict=True)))
    assert max(errors.values()) < TOLERANCE, errors
    assert record.extra.kind == "p6p7" and record.extra.source == "c5" and record.extra.relu_before_p7


def test_detectron2_converted_from_torchvision_uses_torchvision_conventions(tmp_path, resnet_state, image):
    """``__author__ "torchvision"`` (tools/convert-torchvision-to-d2.py): bare names, RGB, stride on the 3x3."""
    state = d2_state(resnet_state, None, prefix="")
    state["stem.fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "R-50-torchvision.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": as_numpy(state), "__author__": "torchvision", "matching_heuristics": True}, fh)

    record = read_framework_checkpoint(path)
    assert record.fpn_state is None and not record.conventions.stride_in_1x1
    assert record.conventions.input_format == "RGB"
    pyramid = build_framework_pyramid(record, PyramidConfig(device="cpu"))
    resized, x = prepare_input(image, SIZE, pyramid.backbone)
    with torch.no_grad():
        stages = pyramid.backbone(x)
    pixels = framework_pixels(resized, bgr=False, mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)
    want = reference_stages(resnet_state, pixels, stride_in_1x1=False)
    errors = relative_errors(OrderedDict((k, stages[k]) for k in want), want)
    assert max(errors.values()) < TOLERANCE, errors
    assert not pyramid.provenance.fpn_pretrained and "has no FPN" in pyramid.provenance.fpn


def test_sidecar_sets_conventions_and_an_override_wins(tmp_path, resnet_state):
    state = d2_state(resnet_state, neck_convs(C2_C5))
    path = tmp_path / "model_final.pth"
    torch.save({"model": state}, path)
    assert read_framework_checkpoint(path).conventions.input_format == "BGR"
    (tmp_path / "model_final.conventions.json").write_text(json.dumps({"input_format": "RGB", "stride_in_1x1": "no"}))
    record = read_framework_checkpoint(path)
    assert record.conventions.input_format == "RGB" and not record.conventions.stride_in_1x1
    assert record.conventions.mean == (123.675, 116.28, 103.53)  # each channel keeps its statistics
    assert "sidecar model_final.conventions.json" in record.conventions.source
    record = read_framework_checkpoint(path, overrides=ConventionOverrides(input_format="bgr"))
    assert record.conventions.input_format == "BGR" and not record.conventions.stride_in_1x1
    (tmp_path / "model_final.conventions.json").write_text(json.dumps({"input_format": "YUV"}))
    with pytest.raises(FrameworkError, match="sidecar"):
        read_framework_checkpoint(path)


def test_sniffing_tells_frameworks_from_torchvision(tmp_path, resnet_state):
    mm, d2, tv = tmp_path / "mm.pth", tmp_path / "d2.pkl", tmp_path / "tv.pth"
    torch.save({"meta": {}, "state_dict": mmdet_state(resnet_state, neck_convs(C2_C5))}, mm)
    with d2.open("wb") as fh:
        pickle.dump({"model": as_numpy(d2_state(resnet_state, None))}, fh)
    torch.save({f"backbone.body.{k}": v for k, v in resnet_state.items()}, tv)
    assert sniff_framework(mm) == "mmdetection" and sniff_framework(d2) == "detectron2"
    assert sniff_framework(tv) is None and not is_framework_checkpoint(tv)
    assert framework_of(load_checkpoint_object(mm)) == "mmdetection"
    with pytest.raises(FrameworkError, match="not an mmdetection checkpoint"):
        read_framework_checkpoint(tv)


# --------------------------------------------------------------------------- bad files


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pkl_is_refused_and_never_run(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "model_final.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": {"backbone.bottom_up.stem.conv1.weight": _RunsCode(marker)}, "__author__": "x"}, fh)
    with pytest.raises(FrameworkError, match=r"refused.*system.*not a numpy array") as info:
        read_framework_checkpoint(path)
    assert not marker.exists()
    assert not is_framework_checkpoint(path) and not marker.exists()
    assert "\n" not in str(info.value)


def test_malicious_mmdet_meta_is_refused_and_never_run(tmp_path, resnet_state):
    marker = tmp_path / "pwned"
    for legacy in (False, True):
        path = tmp_path / f"evil{legacy}.pth"
        state = {f"backbone.{k}": v for k, v in list(resnet_state.items())[:3]}
        evil = {"meta": {"x": _RunsCode(marker)}, "state_dict": state}
        torch.save(evil, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(FrameworkError, match=r"refused.*system.*never run"):
            read_framework_checkpoint(path)
        assert not marker.exists()


def test_training_checkpoint_with_message_hub_is_refused_with_how_to_publish(tmp_path, monkeypatch, resnet_state):
    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self):
            self._log_history = [1.0, 2.0]

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module.__name__, "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer"):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name, types.ModuleType(name)))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "epoch_12.pth"
    state = {f"backbone.{k}": v for k, v in list(resnet_state.items())[:3]}
    hub = {"log_scalars": {"train/loss": HistoryBuffer()}}
    torch.save({"meta": {"dataset_meta": {"classes": COCO3}}, "state_dict": state, "message_hub": hub}, path)
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.raises(FrameworkError, match=r"HistoryBuffer.*publish_model.*state_dict") as info:
        read_framework_checkpoint(path)
    assert "\x1b[" not in str(info.value)


def test_object_array_is_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    with path.open("wb") as fh:
        pickle.dump({"model": {"backbone.bottom_up.stem.conv1.weight": np.array([1, "a"], dtype=object)}}, fh)
    with pytest.raises(FrameworkError, match="object array"):
        read_framework_checkpoint(path)


def test_resnet101_gets_one_message_naming_its_depth(tmp_path):
    model = resnet101(weights=None)
    state = {f"backbone.{k}": v.half() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "faster_rcnn_r101_fpn_1x_coco.pth"
    torch.save({"meta": {}, "state_dict": {**state, **mmdet_state({}, neck_convs(C2_C5))}}, path)
    with pytest.raises(FrameworkError, match=r"ResNet-101 \(23 blocks in layer3/res4; ResNet-50 has 6\)"):
        read_framework_checkpoint(path)


def test_swin_backbone_is_named(tmp_path):
    state = {
        "backbone.patch_embed.projection.weight": torch.zeros(96, 3, 4, 4),
        "backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table": torch.zeros(169, 3),
        **mmdet_state({}, neck_convs([192, 384, 768])),
    }
    path = tmp_path / "mask_rcnn_swin-t-p4-w7_fpn_1x_coco.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    with pytest.raises(FrameworkError, match="Swin Transformer backbone; FPN Explorer shows ResNet-50 only"):
        read_framework_checkpoint(path)


@pytest.mark.parametrize("kind", ["zip", "legacy", "pkl"])
def test_truncated_file_gets_one_message(tmp_path, resnet_state, kind):
    path = tmp_path / f"model.{'pkl' if kind == 'pkl' else 'pth'}"
    state = mmdet_state(resnet_state, neck_convs(C2_C5))
    if kind == "pkl":
        with path.open("wb") as fh:
            pickle.dump({"model": as_numpy(d2_state(resnet_state, None))}, fh)
    else:
        torch.save({"meta": {}, "state_dict": state}, path, _use_new_zipfile_serialization=kind == "zip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameworkError, match="truncated or corrupt") as info:
        read_framework_checkpoint(path)
    assert "\n" not in str(info.value)
