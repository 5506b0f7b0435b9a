"""mmdetection and detectron2 files in a models folder: what each is, in a :class:`CheckpointInfo`.

:func:`fpn_core.checkpoints.list_models` recognises torchvision's eight detectors; the files of the
other two frameworks reach it through its ``readers=`` hook (:func:`framework_reader`), and
detectron2's zoo ``.pkl`` files, which ``torch.load`` cannot read, through :func:`list_models_everywhere`.

A framework file is described by its backbone and FPN (what the feature pages show) and by its
head, read from the head's key names and shapes only (its heads are never run here):
``roi_head.bbox_head.fc_cls`` / ``roi_heads.box_predictor.cls_score`` (R-CNN; ``mask_head``,
``keypoint_head``), ``bbox_head.retina_cls`` / ``head.cls_score`` (RetinaNet),
``bbox_head.conv_centerness`` (FCOS). Classes are counted as torchvision counts them, background
included, so every label of the folder reads alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoints import (
    BACKGROUND,
    EXTRA_MAXPOOL,
    EXTRA_P6P7_FROM_C5,
    EXTRA_P6P7_FROM_P5,
    MODEL_PATTERNS,
    CheckpointInfo,
    CheckpointProblem,
    ModelsListing,
    list_models,
)
from ..weights import WeightsError
from .read import framework_of, load_checkpoint_object, read_framework_checkpoint
from .record import DETECTRON2, ConventionOverrides, FrameworkCheckpoint

#: The files a models folder lists: torchvision's and mmdetection's ``.pth``/``.pt``, detectron2's ``.pkl``.
FOLDER_PATTERNS: tuple[str, ...] = (*MODEL_PATTERNS, "*.pkl")
#: Why the Detection page does not run the heads of these files (their heads differ from torchvision's).
HEADS_NOT_RUN = (
    "FPN Explorer shows its ResNet-50 and FPN on every feature page, but does not run its detection heads: "
    "mmdetection's and detectron2's heads differ from torchvision's in ways that change the boxes: RoIAlign "
    "with aligned=True and sampling ratio 0, the background class last instead of first, class-specific box "
    "regression without a background row, and anchors placed with other offsets. Loading them into "
    "torchvision's heads would draw wrong boxes with no error, so they are not run."
)


def _shape(model: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = model.get(key)
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def head_of(model: Mapping[str, Any], framework: str) -> tuple[str, int | None]:
    """The head a framework's state dict carries, by its key names and shapes: (title, object classes or None)."""
    keys = [k for k in model if isinstance(k, str)]
    if framework == DETECTRON2:
        cls, retina, reg = "roi_heads.box_predictor.cls_score.weight", "head.cls_score.weight", "head.bbox_pred.weight"
        mask, kps, prefix = "roi_heads.mask_head.", "roi_heads.keypoint_head.", "roi_heads."
    else:
        cls, retina = "roi_head.bbox_head.fc_cls.weight", "bbox_head.retina_cls.weight"
        reg = "bbox_head.retina_reg.weight"
        mask, kps, prefix = "roi_head.mask_head.", "roi_head.keypoint_head.", "roi_head."
    if any(k.startswith("bbox_head.conv_centerness") for k in keys):
        shape = _shape(model, "bbox_head.conv_cls.weight")
        return "FCOS", shape[0] if shape else None
    if (shape := _shape(model, retina)) is not None:
        reg_shape = _shape(model, reg)
        anchors = max(reg_shape[0] // 4, 1) if reg_shape else 1
        return "RetinaNet", shape[0] // anchors
    if (shape := _shape(model, cls)) is not None:
        title = "Mask R-CNN" if any(k.startswith(mask) for k in keys) else "Faster R-CNN"
        title = "Keypoint R-CNN" if any(k.startswith(kps) for k in keys) else title
        return title, shape[0] - 1  # one row is the background (last in both frameworks)
    if any(k.startswith(prefix) or k.startswith("rpn") for k in keys):
        return "R-CNN", None
    return "backbone and FPN", None


def _extra_block(record: FrameworkCheckpoint) -> str:
    if record.extra.kind == "p6p7":
        return EXTRA_P6P7_FROM_C5 if record.extra.source == "c5" else EXTRA_P6P7_FROM_P5
    return EXTRA_MAXPOOL if record.extra.kind == "maxpool" else record.extra.kind


def framework_info(
    path: str | os.PathLike, overrides: ConventionOverrides | None = None, *, obj: Any = None
) -> CheckpointInfo:
    """What an mmdetection or detectron2 file is, as a :class:`CheckpointInfo` (``format`` names the framework).

    ``kind`` reads e.g. ``"mmdetection RetinaNet"`` (not one of torchvision's eight: the Detection
    page does not run it); the FPN fields are the record's.

    Raises:
        FrameworkError: the file cannot be read safely, is neither framework's, or is not ResNet-50 + FPN.
    """
    path = Path(path)
    if obj is None:
        obj = load_checkpoint_object(path)
    record = read_framework_checkpoint(path, overrides, obj=obj)
    model = obj.get("state_dict") if record.framework != DETECTRON2 else obj.get("model")
    title, classes = head_of(model if isinstance(model, Mapping) else {}, record.framework)
    names = record.classes
    if classes is None and names:
        classes = len(names)
    if names and classes is not None and len(names) == classes:
        class_names, names_from = (BACKGROUND, *names), "checkpoint"
    else:
        class_names = (BACKGROUND, *(f"class {i}" for i in range(1, (classes or 0) + 1)))
        names_from = "numbered"
    return CheckpointInfo(
        path,
        f"{record.framework} {title}",
        (classes or 0) + 1 if classes is not None else 0,
        class_names,
        names_from,
        record.stages,
        record.out_channels,
        False,
        _extra_block(record),
        format=record.framework,
    )


def framework_reader(path: Path, state: Mapping[str, Tensor], extras: Mapping[str, object]) -> CheckpointInfo | None:
    """The ``readers=`` hook of :func:`fpn_core.checkpoints.list_models`: a framework file's info, None for others.

    Raises:
        FrameworkError: an mmdetection or detectron2 file that cannot be shown (another backbone, …).
    """
    del state, extras  # the framework's own wrapper (meta, __author__) is read again, safely
    obj = load_checkpoint_object(path)
    if framework_of(obj) is None:
        return None
    return framework_info(path, obj=obj)


def is_framework_info(info: CheckpointInfo) -> bool:
    """Whether a listed checkpoint is an mmdetection or detectron2 file (its heads are not run)."""
    return info.format != "torchvision"


def list_models_everywhere(folder: str | os.PathLike, patterns: Sequence[str] = FOLDER_PATTERNS) -> ModelsListing:
    """Every checkpoint of ``folder``: torchvision's detectors, mmdetection and detectron2 files (``.pkl`` too).

    A file that none of them reads is reported with torchvision's message (or the framework's,
    when the file is one of theirs but cannot be shown).
    """
    torch_patterns = [p for p in patterns if not p.endswith(".pkl")]
    listing = list_models(folder, readers=[framework_reader], patterns=torch_patterns)
    models, problems = list(listing.models), list(listing.problems)
    pickles = {p for pattern in patterns if pattern.endswith(".pkl") for p in listing.folder.glob(pattern)}
    for path in sorted(p for p in pickles if p.is_file()):  # torch.load cannot read them: numpy-only unpickler
        try:
            models.append(framework_info(path))
        except WeightsError as exc:
            problems.append(CheckpointProblem(path, str(exc)))
    models.sort(key=lambda info: info.path.name)
    problems.sort(key=lambda p: p.path.name)
    return ModelsListing(listing.folder, tuple(models), tuple(problems))
