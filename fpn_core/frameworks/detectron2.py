"""detectron2 checkpoints: a model-zoo ``.pkl`` (``{"model": {name: numpy array}, "__author__": ...}``)
or a ``.pth`` with ``{"model": state_dict}`` -> :class:`FrameworkCheckpoint`.

Keys (behind ``backbone.bottom_up.`` in a detector; bare in a backbone converted from torchvision):

- stem ``stem.conv1`` -> ``conv1``, ``stem.conv1.norm`` -> ``bn1``;
- blocks ``res{2..5}.{k}.conv{1,2,3}`` -> ``layer{1..4}.{k}.conv{1,2,3}``, ``.norm`` -> ``bn{1,2,3}``;
  ``res{n}.0.shortcut`` -> ``downsample.0``, ``shortcut.norm`` -> ``downsample.1``;
- FPN ``backbone.fpn_lateral{2..5}`` -> ``inner_blocks.{i}.0``, ``backbone.fpn_output{2..5}`` -> ``layer_blocks.{i}.0``;
- RetinaNet ``backbone.top_block.p6`` / ``p7`` -> ``extra_blocks.p6`` / ``p7``: P6 from C5
  (``in_feature="res5"``; from P5 when P6 takes the FPN width), with a ReLU before P7
  (detectron2's ``LastLevelP6P7`` always applies it). Without a top block: ``LastLevelMaxPool``.

Conventions (``detectron2/config/defaults.py``): the model zoo's MSRA-initialised ResNets have
``STRIDE_IN_1X1=True`` (stride 2 on the 1x1 ``conv1``), take BGR input on 0-255 minus
``PIXEL_MEAN`` (103.530, 116.280, 123.675) with ``PIXEL_STD`` 1, and use FrozenBatchNorm
(eps 1e-5). A file converted from torchvision (``__author__ == "torchvision"``, or
``matching_heuristics``, as ``tools/convert-torchvision-to-d2.py`` writes) has torchvision's
conventions: stride on the 3x3, RGB, ImageNet mean and std.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .backbones import check_resnet50, other_backbone_type
from .fpn_keys import add_p6p7, conv_at, map_fpn
from .record import (
    DETECTRON2,
    MSRA_CONVENTIONS,
    TORCHVISION_CONVENTIONS,
    ConventionOverrides,
    ExtraLevels,
    FrameworkCheckpoint,
    FrameworkError,
    apply_overrides,
)

_BOTTOM_UP = "backbone.bottom_up."
_BLOCK = re.compile(r"^res([2-5])\.(\d+)\.(conv[123]|shortcut)(\.norm)?\.(\w+)$")
_STEM = re.compile(r"^stem\.conv1(\.norm)?\.(\w+)$")
#: Detectron1 / Caffe2 blob names (``res2_0_branch2a_w``), which detectron2 renames by heuristics.
_CAFFE2 = re.compile(r"^(res\d_\d+_branch|conv1_w$|res_conv1_bn_)")


def _model(obj: Any) -> Mapping | None:
    model = obj.get("model") if isinstance(obj, Mapping) else None
    return model if isinstance(model, Mapping) else None


def looks_like_detectron2(obj: Any) -> bool:
    """A detectron2 checkpoint: ``{"model": ...}`` with ``backbone.*`` keys (not torchvision's
    ``backbone.body.*``), or the bare ``stem.*``/``res*`` names of a converted backbone."""
    model = _model(obj)
    if model is None:
        return False
    keys = [k for k in model if isinstance(k, str)]
    if any(k.startswith("backbone.body.") for k in keys):
        return False
    return any(k.startswith(("backbone.", "stem.", "res2.")) or _CAFFE2.match(k) for k in keys)


def _tensor(value: Any, key: str, where: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        array = value if value.flags.writeable else value.copy()
        return torch.from_numpy(array).float()
    raise FrameworkError(f"{where}: {key} is a {type(value).__name__}, not an array of floats")


def _resnet_name(key: str) -> str | None:
    """detectron2's ResNet name (no prefix) -> torchvision's; None for a classifier; unknown names unchanged."""
    m = _STEM.match(key)
    if m:
        return f"bn1.{m.group(2)}" if m.group(1) else f"conv1.{m.group(2)}"
    m = _BLOCK.match(key)
    if m:
        stage, block, conv, norm, param = m.groups()
        layer = f"layer{int(stage) - 1}.{block}"
        if conv == "shortcut":
            return f"{layer}.downsample.{1 if norm else 0}.{param}"
        return f"{layer}.bn{conv[-1]}.{param}" if norm else f"{layer}.{conv}.{param}"
    if key.startswith(("stem.fc.", "fc.", "linear.")):
        return None
    return key


def read_detectron2(obj: Mapping, path: str, overrides: ConventionOverrides) -> FrameworkCheckpoint:
    """Map a detectron2 checkpoint (loaded safely) to the neutral record.

    Raises:
        FrameworkError: Detectron1/Caffe2 names, another backbone (named), an FPN that does not fit.
    """
    model = _model(obj)
    assert model is not None
    where = f"the detectron2 file {path}"
    keys = [k for k in model if isinstance(k, str)]
    if any(_CAFFE2.match(k) for k in keys):
        raise FrameworkError(
            f"{where} uses Detectron1/Caffe2 blob names (e.g. res2_0_branch2a_w), which detectron2 renames "
            "by heuristics while loading; FPN Explorer reads detectron2's own names "
            "(backbone.bottom_up.res2.0.conv1...)"
        )
    prefix = _BOTTOM_UP if any(k.startswith(_BOTTOM_UP) for k in keys) else ""
    other = other_backbone_type(keys)
    if other or not (prefix or any(k.startswith(("stem.", "res2.")) for k in keys)):
        what = other or "a backbone that is not a ResNet (no bottom_up stem)"
        raise FrameworkError(f"{where} holds {what}; FPN Explorer shows ResNet-50 only")
    resnet: dict[str, Tensor] = {}
    for key in keys:
        if not key.startswith(prefix) or (prefix and not key.startswith(_BOTTOM_UP)):
            continue
        name = _resnet_name(key.removeprefix(prefix))
        if name is not None and not name.endswith("num_batches_tracked"):
            resnet[name] = _tensor(model[key], key, where)
    check_resnet50(resnet, where)

    levels = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(r"backbone\.fpn_lateral(\d)\.weight", k)))
    fpn_state, stages, width, extra = None, ("c2", "c3", "c4", "c5"), 256, ExtraLevels("maxpool")
    if levels:
        tensors = {
            k: _tensor(model[k], k, where) for k in keys if k.startswith(("backbone.fpn_", "backbone.top_block."))
        }
        laterals = [conv_at(tensors, f"backbone.fpn_lateral{k}", where) for k in levels]
        outputs = [conv_at(tensors, f"backbone.fpn_output{k}", where) for k in levels]
        fpn = map_fpn(laterals, outputs, where)
        if "backbone.top_block.p6.weight" in tensors:
            p6, p7 = (conv_at(tensors, f"backbone.top_block.{p}", where) for p in ("p6", "p7"))
            fpn, extra = add_p6p7(fpn, p6, p7, relu_before_p7=True, where=where)
        fpn_state, stages, width = fpn.state, fpn.stages, fpn.out_channels

    author = obj.get("__author__")
    author = author if isinstance(author, str) else None
    converted = author == "torchvision" or bool(obj.get("matching_heuristics"))
    if converted:
        base = replace(TORCHVISION_CONVENTIONS, source=f"converted from torchvision (__author__ {author!r})")
        origin = "detectron2 file converted from torchvision"
    else:
        base = replace(MSRA_CONVENTIONS, source="detectron2 defaults (MSRA-initialised ResNet)")
        origin = "detectron2 model zoo" if author else "detectron2 checkpoint"
    conventions = apply_overrides(base, overrides)
    return FrameworkCheckpoint(DETECTRON2, path, origin, resnet, fpn_state, stages, width, extra, conventions)
