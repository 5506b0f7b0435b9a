"""A detection checkpoint recognised from its keys and shapes alone, and a models folder listed.

A state dict saved from any of torchvision's eight ResNet-50-FPN detectors says what it is:

- the head's keys give the family: ``head.regression_head.bbox_ctrness`` is FCOS's centerness
  branch, ``head.classification_head`` without it is RetinaNet, ``roi_heads.box_predictor`` is
  the R-CNN family, with ``roi_heads.mask_predictor`` (Mask R-CNN) or
  ``roi_heads.keypoint_predictor`` (Keypoint R-CNN);
- norm layers mark the v2 models: the FPN's ``inner_blocks.<i>.1`` (BatchNorm) and the 4-conv box
  head ``roi_heads.box_head.0.0`` for the R-CNNs; the GroupNorm ``head.*.conv.<i>.1`` for RetinaNet;
- the shapes give the rest: classes from the classifier's rows (RetinaNet's divided by its
  anchors per location), keypoints from ``kps_score_lowres``, the stages feeding the FPN from its
  laterals' input widths, its width, and the extra block (P6/P7 from P5 when ``extra_blocks.p6``
  reads the FPN's width, from C5 when it reads 2048 channels; torchvision's max-pool P6 otherwise).

The guess is then checked key by key and shape by shape against the detector that torchvision's
own builder makes (on the ``meta`` device: no memory, no weights), so a file that is recognised
loads strictly; one that fits none of the eight is refused with what it looks like and the first
key or shape that does not fit. Files are read by :func:`fpn_core.weights.read_checkpoint`
(``weights_only=True``, memory-mapped: listing reads keys and shapes, not the tensors' data).

The engine reads no environment: :func:`models_dir_from_env` is for the CLI and the dashboard.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .backbone import RESNET50_FEATURE_INFO
from .detectors import DETECTORS
from .weights import WeightsError, read_checkpoint

MODELS_DIR_ENV = "FPN_MODELS_DIR"
#: The folder used when ``FPN_MODELS_DIR`` is not set, if it exists (relative to the working directory).
DEFAULT_MODELS_DIR = Path("models")
#: The files a models folder lists.
MODEL_PATTERNS: tuple[str, ...] = ("*.pth", "*.pt")
#: The name of label 0 (torchvision's COCO categories start with it).
BACKGROUND = "__background__"

EXTRA_MAXPOOL = "maxpool"
EXTRA_P6P7_FROM_P5 = "p6p7-from-p5"
EXTRA_P6P7_FROM_C5 = "p6p7-from-c5"
#: How each extra block is named on screen.
EXTRA_BLOCK_LABELS: dict[str, str] = {
    EXTRA_MAXPOOL: "max-pool P6",
    EXTRA_P6P7_FROM_P5: "P6/P7 from P5",
    EXTRA_P6P7_FROM_C5: "P6/P7 from C5",
}


class CheckpointError(WeightsError):
    """A checkpoint that is not one of the eight detectors, or whose class names do not fit it."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a detection checkpoint is, read from its keys and shapes.

    Attributes:
        path: the file.
        kind: the detector's name, a key of :data:`fpn_core.detectors.DETECTORS`.
        num_classes: classes as torchvision counts them (label 0, the background, included).
        class_names: one name per label ``0 .. num_classes - 1`` (``class_names[label]``).
        names_from: where the names came from: ``"checkpoint"``, the sidecar's file name, or ``"numbered"``.
        fpn_stages: the backbone stages feeding the FPN, fine to coarse.
        fpn_out_channels: the FPN's width.
        fpn_norm: whether the FPN's convolutions have norm layers (the v2 R-CNNs: BatchNorm).
        extra_block: :data:`EXTRA_MAXPOOL`, :data:`EXTRA_P6P7_FROM_P5` or :data:`EXTRA_P6P7_FROM_C5`.
        num_keypoints: Keypoint R-CNN's keypoints, else None.
        format: who saved it: ``"torchvision"`` here; a foreign reader names its own.
    """

    path: Path
    kind: str
    num_classes: int
    class_names: tuple[str, ...]
    names_from: str
    fpn_stages: tuple[str, ...]
    fpn_out_channels: int
    fpn_norm: bool
    extra_block: str
    num_keypoints: int | None = None
    format: str = "torchvision"

    @property
    def title(self) -> str:
        return DETECTORS[self.kind].title if self.kind in DETECTORS else self.kind

    @property
    def label(self) -> str:
        """For the sidebar: ``"pennfudan.pth — Faster R-CNN, 2 classes"``."""
        keypoints = f", {self.num_keypoints} keypoints" if self.num_keypoints is not None else ""
        return f"{self.path.name} — {self.title}, {self.num_classes} classes{keypoints}"

    @property
    def fpn_summary(self) -> str:
        """E.g. ``"FPN on c3, c4, c5, 256 channels, P6/P7 from C5"``."""
        norm = ", norm layers" if self.fpn_norm else ""
        return (
            f"FPN on {', '.join(self.fpn_stages)}, {self.fpn_out_channels} channels{norm}, "
            f"{EXTRA_BLOCK_LABELS.get(self.extra_block, self.extra_block)}"
        )


#: A reader for checkpoints of other libraries (mmdetection, detectron2): given a file that is not
#: a torchvision detector, with its state dict and metadata already read safely, it returns the
#: record, None when the file is not its format, or raises :class:`CheckpointError` when it is
#: but cannot be used.
ForeignReader = Callable[[Path, Mapping[str, Tensor], Mapping[str, object]], "CheckpointInfo | None"]


@dataclass(frozen=True)
class CheckpointProblem:
    """A file of a models folder that cannot be used, and why (one plain message)."""

    path: Path
    message: str

    @property
    def label(self) -> str:
        return f"{self.path.name} — not usable"


@dataclass(frozen=True)
class ModelsListing:
    """A models folder: the checkpoints recognised, and the files that were not, sorted by name.

    Iterating it (and ``len``) goes over the recognised checkpoints.
    """

    folder: Path
    models: tuple[CheckpointInfo, ...]
    problems: tuple[CheckpointProblem, ...]

    def __iter__(self) -> Iterator[CheckpointInfo]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)


# --------------------------------------------------------------------------- recognising the kind

_RETINA_CLS = "head.classification_head.cls_logits.weight"
_BOX_CLS = "roi_heads.box_predictor.cls_score.weight"
_KEYPOINTS = "roi_heads.keypoint_predictor.kps_score_lowres.weight"
_FPN_NORM = "backbone.fpn.inner_blocks.0.1.weight"
_P6 = "backbone.fpn.extra_blocks.p6.weight"
_STAGE_OF_CHANNELS = {spec.num_chs: spec.name for spec in RESNET50_FEATURE_INFO if spec.name != "c1"}


def _guess_kind(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The detector whose marks (:attr:`DetectorSpec.marks`) a state dict carries, the most marks winning,
    or None when it has no detection head.

    E.g. the centerness branch marks FCOS over RetinaNet, the 4-conv box head marks the v2 R-CNNs,
    the mask and keypoint predictors their models. A layout torchvision does not build (a v2 Keypoint
    R-CNN) is then reported as a misfit by the template check.
    """
    fits = [spec for spec in DETECTORS.values() if spec.marks and all(k in shapes for k in spec.marks)]
    return max(fits, key=lambda spec: len(spec.marks)).name if fits else None


def _counts(kind: str, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, int | None]:
    """Classes (torchvision's count, background included) and keypoints, from the predictors' shapes."""
    spec = DETECTORS[kind]
    keypoints = shapes[_KEYPOINTS][1] if spec.num_keypoints is not None else None  # ConvTranspose2d: (in, out, k, k)
    return spec.family.count_classes(dict(shapes)), keypoints


def _fpn_layout(shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[str, ...], int, bool, str]:
    """Stages feeding the FPN, its width, whether it has norm layers, and its extra block."""
    stages, i = [], 0
    while (lateral := shapes.get(f"backbone.fpn.inner_blocks.{i}.0.weight")) is not None:
        stages.append(_STAGE_OF_CHANNELS.get(lateral[1], f"{lateral[1]} channels"))
        i += 1
    width = shapes["backbone.fpn.inner_blocks.0.0.weight"][0] if stages else 0
    if _P6 not in shapes:
        extra = EXTRA_MAXPOOL  # LastLevelMaxPool has no parameters
    elif shapes[_P6][1] == width:
        extra = EXTRA_P6P7_FROM_P5  # torchvision's LastLevelP6P7 reads P5 when in_channels == out_channels
    else:
        extra = EXTRA_P6P7_FROM_C5
    return tuple(stages), width, _FPN_NORM in shapes, extra


@functools.lru_cache(maxsize=32)
def template_shapes(kind: str, num_classes: int, num_keypoints: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the state dict torchvision's own builder makes for ``kind``.

    Built on the ``meta`` device (no memory, no weights), once per argument set.
    """
    from torchvision.models import detection

    builder = getattr(detection, DETECTORS[kind].builder)
    kwargs = {"num_keypoints": num_keypoints} if num_keypoints is not None else {}
    with torch.device("meta"):
        model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _optional(key: str) -> bool:
    # FrozenBatchNorm2d (torchvision's trained files) has no batch counter; BatchNorm2d (weights=None) has.
    return key.endswith("num_batches_tracked")


def first_misfit(
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], title: str
) -> str | None:
    """The first key or shape of ``shapes`` that does not fit ``expected``, in words, or None when all fit."""
    for key, shape in expected.items():
        if _optional(key):
            continue
        if key not in shapes:
            return f"{key} is missing"
        if tuple(shapes[key]) != shape:
            return f"{key} has shape {tuple(shapes[key])}, {title} expects {shape}"
    unexpected = next((k for k in shapes if k not in expected and not _optional(k)), None)
    return f"{unexpected} is not a key of {title}" if unexpected else None


def _looks_like(shapes: Mapping[str, tuple[int, ...]], kind: str | None) -> str:
    """A short description of a state dict that fits no detector."""
    if kind is not None:
        stages, width, norm, extra = _fpn_layout(shapes)
        classes, keypoints = _counts(kind, shapes)
        kp = f", {keypoints} keypoints" if keypoints is not None else ""
        fpn = f"FPN on {', '.join(stages)} ({width} channels{', norm layers' if norm else ''}, "
        fpn += f"{EXTRA_BLOCK_LABELS[extra]})" if stages else "no FPN"
        return f"a {DETECTORS[kind].title} with {classes} classes{kp}, {fpn}"
    keys = list(shapes)
    if keys and all(k.startswith("module.") for k in keys):
        return "a state dict saved from DataParallel (every key starts with 'module.'; save model.module.state_dict())"
    if "conv1.weight" in shapes and "fc.weight" in shapes:
        return f"an image classifier's state dict (conv1 … fc, {shapes['fc.weight'][0]} classes), no detection head"
    tops = list(dict.fromkeys(k.split(".")[0] for k in keys))
    return f"a state dict of {len(keys)} tensors under {', '.join(tops[:6])}, with no detection head"


def describe_state(
    state: Mapping[str, Tensor],
    *,
    path: str | os.PathLike = "checkpoint",
    extras: Mapping[str, object] | None = None,
) -> CheckpointInfo:
    """Recognise one of the eight detectors in a state dict, and name its classes.

    Args:
        state: the state dict (tensors may be memory-mapped or on the ``meta`` device: only shapes are read).
        path: the file it came from (names the sidecar of class names and the messages).
        extras: the checkpoint's plain metadata beside the state dict (``classes`` / ``categories``).

    Raises:
        CheckpointError: it fits none of the eight (what it looks like, the first key or shape that
            does not fit), or its class names do not fit its head.
    """
    path = Path(path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    kind = _guess_kind(shapes)
    if kind is None:
        # The backbone and FPN keys are the same in all eight: name the first key that is neither.
        expected = template_shapes("faster-rcnn", 91)
        heads = ("rpn.", "roi_heads.", "head.")
        stray = next((k for k in shapes if k not in expected and not k.startswith(heads) and not _optional(k)), None)
        misfit = f"{stray} is not a key of any of them" if stray else f"no detection head ({_BOX_CLS} or {_RETINA_CLS})"
        raise CheckpointError(
            f"{path.name} fits none of torchvision's eight ResNet-50-FPN detectors: it looks like "
            f"{_looks_like(shapes, None)}. First misfit: {misfit}."
        )
    num_classes, num_keypoints = _counts(kind, shapes)
    title = DETECTORS[kind].title
    misfit = None
    if num_classes < 1:
        misfit = f"its classifier has no rows ({_BOX_CLS if _BOX_CLS in shapes else _RETINA_CLS})"
    else:
        misfit = first_misfit(shapes, template_shapes(kind, num_classes, num_keypoints), title)
    if misfit:
        raise CheckpointError(
            f"{path.name} fits none of torchvision's eight ResNet-50-FPN detectors: it looks like "
            f"{_looks_like(shapes, kind)}, but does not fit {title} ({DETECTORS[kind].builder}). "
            f"First misfit: {misfit}."
        )
    stages, width, norm, extra = _fpn_layout(shapes)
    names, names_from = class_names(path, num_classes, extras or {})
    return CheckpointInfo(path, kind, num_classes, names, names_from, stages, width, norm, extra, num_keypoints)


# --------------------------------------------------------------------------- class names


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<stem>.classes.txt`` beside the checkpoint: one class name per line, for labels 1, 2, …."""
    path = Path(path)
    return path.with_name(f"{path.stem}.classes.txt")


def class_names(path: str | os.PathLike, num_classes: int, extras: Mapping[str, object]) -> tuple[tuple[str, ...], str]:
    """The names of labels ``0 .. num_classes - 1``, first found wins, and where they came from.

    1. the checkpoint's own list (``classes`` or ``categories`` beside the state dict);
    2. the sidecar :func:`sidecar_path`;
    3. ``class 1``, ``class 2``, ….

    A list of ``num_classes - 1`` names is for labels 1, 2, … (label 0 is the background); a list
    of ``num_classes`` names is indexed by label as it is (torchvision's COCO ``categories``, which
    start with ``__background__``).

    Raises:
        CheckpointError: a list that is not strings, a blank line in the sidecar, or a number of
            names that fits neither rule.
    """
    path = Path(path)
    for key in ("classes", "categories"):
        if key in extras:
            names = extras[key]
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                raise CheckpointError(f"{path.name}: its '{key}' entry is not a list of class names")
            return names_by_label(list(names), num_classes, f"{path.name}'s '{key}' list"), "checkpoint"
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return names_by_label(read_class_names(sidecar), num_classes, sidecar.name), sidecar.name
    return (BACKGROUND, *(f"class {i}" for i in range(1, num_classes))), "numbered"


def read_class_names(path: str | os.PathLike) -> list[str]:
    """A text file of class names, one per line (a sidecar, or the CLI's ``--classes FILE``).

    Trailing blank lines are dropped.

    Raises:
        CheckpointError: unreadable, not UTF-8, or a blank line among the names.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path.name} could not be read as UTF-8 text ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
    if blank is not None:
        raise CheckpointError(f"{path.name}: line {blank} is blank; give one class name per line")
    return [line.strip() for line in lines]


def names_by_label(names: list[str], num_classes: int, source: str) -> tuple[str, ...]:
    """Names indexed by label: ``num_classes - 1`` names are for labels 1, 2, … (the background put first);
    ``num_classes`` names are taken as they are.

    Raises:
        CheckpointError: another number of names (saying how many to give).
    """
    if len(names) == num_classes - 1:
        return (BACKGROUND, *names)
    if len(names) == num_classes:
        return tuple(names)
    raise CheckpointError(
        f"{source} has {len(names)} names, but the checkpoint's head has {num_classes} classes "
        f"(labels 0..{num_classes - 1}, 0 the background): give {num_classes - 1} names, one for each label "
        f"1..{num_classes - 1}"
    )


# --------------------------------------------------------------------------- files and folders


def inspect_checkpoint(
    path: str | os.PathLike, *, readers: Sequence[ForeignReader] = (), mmap: bool = True
) -> CheckpointInfo:
    """Read a checkpoint file safely and say what it is.

    Args:
        path: the file.
        readers: readers of other libraries' checkpoints, tried in order when the file is not a
            torchvision detector.
        mmap: map the file instead of reading the tensors' data (keys and shapes are all it needs).

    Raises:
        WeightsError: unreadable (missing, truncated, a pickled model), or a :class:`CheckpointError`.
    """
    path = Path(path)
    state, extras = read_checkpoint(path, mmap=mmap)
    try:
        return describe_state(state, path=path, extras=extras)
    except CheckpointError:
        for reader in readers:  # detectron2's keys look like torchvision's in places: every reader is asked
            info = reader(path, state, extras)
            if info is not None:
                return info
        raise


def list_models(
    folder: str | os.PathLike, *, readers: Sequence[ForeignReader] = (), patterns: Sequence[str] = MODEL_PATTERNS
) -> ModelsListing:
    """Every checkpoint in ``folder`` (not its subfolders), recognised; a file that is not is reported, not raised.

    Args:
        folder: the models folder.
        readers: readers of other libraries' checkpoints (see :data:`ForeignReader`).
        patterns: the file names to list.
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = CheckpointProblem(folder, f"the models folder {folder} does not exist")
        return ModelsListing(folder, (), (problem,))
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}, key=lambda p: p.name)
    models, problems = [], []
    for path in files:
        try:
            models.append(inspect_checkpoint(path, readers=readers))
        except WeightsError as exc:
            problems.append(CheckpointProblem(path, str(exc)))
    return ModelsListing(folder, tuple(models), tuple(problems))


def models_dir_from_env(env: str = MODELS_DIR_ENV, default: Path = DEFAULT_MODELS_DIR) -> Path | None:
    """The models folder for the CLI and the dashboard: ``FPN_MODELS_DIR``, else ``./models`` if it exists, else None.

    A folder named by the variable is returned even when missing, so that the listing says so.
    """
    named = os.environ.get(env, "").strip()
    if named:
        return Path(named).expanduser()
    return default if default.is_dir() else None
