"""mmdetection (v2 and v3) checkpoints: ``{"meta": ..., "state_dict": ...}`` -> :class:`FrameworkCheckpoint`.

Keys:

- ResNet ``backbone.conv1``, ``backbone.bn1``, ``backbone.layer{1..4}.{k}.conv{1,2,3}`` / ``bn{1,2,3}``
  and ``downsample.{0,1}`` are torchvision's names behind ``backbone.``; ``num_batches_tracked`` is dropped.
- Neck ``neck.lateral_convs.{i}.conv`` -> ``inner_blocks.{i}.0``, ``neck.fpn_convs.{i}.conv`` ->
  ``layer_blocks.{i}.0``; with ``add_extra_convs`` the two convolutions after them are P6 and P7
  (``extra_blocks.p6`` / ``p7``).

Conventions (mmdetection's ``ResNet`` and FPN defaults, then what the checkpoint's saved config
says: ``meta["config"]`` in v2, ``meta["cfg"]`` in v3):

- ``style='pytorch'`` (stride 2 on the 3x3 ``conv2``) unless ``style='caffe'`` (on the 1x1 ``conv1``);
- RGB input with ImageNet's mean and std on 0-255 (``to_rgb=True`` / ``bgr_to_rgb=True``);
  ``caffe`` style defaults to BGR, mean (103.53, 116.28, 123.675), std 1; an explicit
  ``mean=[...]``, ``std=[...]`` and ``to_rgb``/``bgr_to_rgb`` in the config win;
- extra levels: none -> one max-pool level (``num_outs`` 5 on four stages); two extra convs ->
  ``add_extra_convs='on_input'`` (P6 from C5, RetinaNet) or ``'on_output'`` (P6 from P5), told
  apart by P6's input channels; ``relu_before_extra_convs`` (default False) puts a ReLU before P7.

Class names come from ``meta["CLASSES"]`` (v2) or ``meta["dataset_meta"]["classes"]`` (v3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .backbones import check_resnet50, other_backbone_type
from .fpn_keys import add_p6p7, conv_at, map_fpn
from .record import (
    IMAGENET_MEAN_255,
    IMAGENET_STD_255,
    MMDETECTION,
    MSRA_MEAN_255_BGR,
    UNIT_STD,
    ConventionOverrides,
    Conventions,
    ExtraLevels,
    FrameworkCheckpoint,
    FrameworkError,
    apply_overrides,
)


def looks_like_mmdet(obj: Any) -> bool:
    """An mmdetection checkpoint: a ``state_dict`` with ``backbone.`` keys (not torchvision's ``backbone.body.``)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        return False
    keys = [k for k in obj["state_dict"] if isinstance(k, str)]
    return any(k.startswith(("backbone.", "neck.")) for k in keys) and not any(
        k.startswith(("backbone.body.", "backbone.bottom_up.")) for k in keys
    )


def _config_text(meta: Mapping) -> str:
    text = meta.get("config", meta.get("cfg", ""))
    return text if isinstance(text, str) else ""


def _find(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return next((g for g in m.groups() if g is not None), None) if m else None


def _triple(pattern: str, text: str) -> tuple[float, float, float] | None:
    found = _find(pattern, text)
    if found is None:
        return None
    try:
        values = tuple(float(v) for v in found.split(","))
    except ValueError:
        return None
    return values if len(values) == 3 else None  # type: ignore[return-value]


def conventions_from_config(text: str) -> Conventions:
    """mmdetection's conventions for a checkpoint whose saved config is ``text`` (may be empty)."""
    style = _find(r"""\bstyle\s*=\s*['"](pytorch|caffe)['"]""", text)
    caffe = style == "caffe"
    to_rgb = _find(r"\b(?:bgr_to_rgb|to_rgb)\s*=\s*(True|False)", text)
    mean = _triple(r"\bmean\s*=\s*\[([^\]]*)\]", text)
    std = _triple(r"\bstd\s*=\s*\[([^\]]*)\]", text)
    rgb = (to_rgb == "True") if to_rgb is not None else not caffe
    default_mean, default_std = (MSRA_MEAN_255_BGR, UNIT_STD) if caffe else (IMAGENET_MEAN_255, IMAGENET_STD_255)
    divisor = _find(r"\b(?:pad_size_divisor|size_divisor)\s*=\s*(\d+)", text)
    said = [what for what, found in (("style", style), ("channel order", to_rgb), ("mean", mean)) if found]
    source = f"the checkpoint's config ({', '.join(said)})" if said else "mmdetection defaults (style pytorch)"
    return Conventions(
        "RGB" if rgb else "BGR",
        mean or default_mean,
        std or default_std,
        stride_in_1x1=caffe,
        source=source,
        size_divisibility=max(1, int(divisor)) if divisor else 32,  # mmdetection's R50-FPN configs pad to 32
    )


def read_mmdet(obj: Mapping, path: str, overrides: ConventionOverrides) -> FrameworkCheckpoint:
    """Map an mmdetection checkpoint (already loaded with ``weights_only=True``) to the neutral record.

    Raises:
        FrameworkError: another backbone (named), an FPN that does not fit, a missing tensor.
    """
    state: Mapping[str, Tensor] = obj["state_dict"]
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    assert isinstance(meta, Mapping)
    where = f"the mmdetection file {path}"
    other = other_backbone_type(state)
    if other:
        raise FrameworkError(f"{where} holds {other} backbone; FPN Explorer shows ResNet-50 only")
    resnet = {
        k.removeprefix("backbone."): v
        for k, v in state.items()
        if k.startswith("backbone.") and not k.endswith("num_batches_tracked")
    }
    check_resnet50(resnet, where)

    text = _config_text(meta)
    n = sum(1 for k in state if re.fullmatch(r"neck\.lateral_convs\.\d+\.conv\.weight", k))
    m = sum(1 for k in state if re.fullmatch(r"neck\.fpn_convs\.\d+\.conv\.weight", k))
    if n == 0:
        raise FrameworkError(f"{where} has no FPN neck (neck.lateral_convs.*); FPN Explorer reads R50-FPN models")
    laterals = [conv_at(state, f"neck.lateral_convs.{i}.conv", where) for i in range(n)]
    outputs = [conv_at(state, f"neck.fpn_convs.{i}.conv", where) for i in range(min(n, m))]
    fpn = map_fpn(laterals, outputs, where)
    if m == n:
        num_outs = _find(r"\bnum_outs\s*=\s*(\d+)", text)
        extra = ExtraLevels("none") if num_outs is not None and int(num_outs) == n else ExtraLevels("maxpool")
    elif m == n + 2:
        how = _find(r"""\badd_extra_convs\s*=\s*(?:['"](\w+)['"]|(True|False))""", text)
        if how == "on_lateral":
            raise FrameworkError(
                f"{where}: its FPN adds P6 on the top lateral (add_extra_convs='on_lateral'), "
                "which FPN Explorer does not build"
            )
        source = {"on_input": "c5", "on_output": "p5"}.get(how or "")
        relu = overrides.relu_before_p7
        if relu is None:
            relu = _find(r"\brelu_before_extra_convs\s*=\s*(True|False)", text) == "True"
        p6, p7 = (conv_at(state, f"neck.fpn_convs.{i}.conv", where) for i in (n, n + 1))
        fpn, extra = add_p6p7(fpn, p6, p7, relu_before_p7=relu, where=where, source=source)
    else:
        raise FrameworkError(
            f"{where}: its FPN has {m - n} extra convolutions above the top level; "
            "FPN Explorer builds none or two (P6, P7)"
        )

    version = str(meta.get("mmdet_version", ""))
    major = version.split(".")[0] if version[:1].isdigit() else ("3" if "dataset_meta" in meta else "2")
    origin = f"mmdetection v{major}" + (f" ({version})" if version else "")
    classes = meta.get("CLASSES")
    if classes is None and isinstance(meta.get("dataset_meta"), Mapping):
        classes = meta["dataset_meta"].get("classes")
    names = tuple(str(c) for c in classes) if isinstance(classes, (list, tuple)) else ()
    conventions = apply_overrides(conventions_from_config(text), overrides)
    return FrameworkCheckpoint(
        MMDETECTION, path, origin, resnet, fpn.state, fpn.stages, fpn.out_channels, extra, conventions, names
    )
