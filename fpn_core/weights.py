"""Where the weights come from, loaded safely, with their provenance.

Every published checkpoint is one :class:`WeightFile` record in :data:`WEIGHT_FILES`: its file,
URL, normalization, labels and what it provides (a backbone, a trained FPN, a detector's
heads). Everything else (the weights choices, the sidebar's labels, the input normalization,
the BatchNorm eps of legacy files) reads from those records.

Resolution order for ``weights="imagenet"`` (the default):

1. a local file named by the operator, passed in as ``operator_file`` (the CLI and the
   dashboard read it from ``FPN_WEIGHTS`` or ``--weights PATH``; nothing below them reads it);
2. torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` file in the torch hub cache (``TORCH_HOME``);
3. a download of that file, only when allowed (``FPN_ALLOW_DOWNLOAD``), with a short timeout;
4. a seeded random init.

Every file is read with ``torch.load(..., weights_only=True)`` (torchvision's own cache loader
unpickles arbitrary objects) and loaded with strict key and shape checks; a torchvision file
whose SHA-256 does not start with the hash in its name is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import pickletools
import re
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.resnet import ResNet

from .levels import FPN_STAGES

if TYPE_CHECKING:
    from .backbone import ResNetBackbone
    from .pyramid import PyramidConfig

WEIGHTS_ENV = "FPN_WEIGHTS"
ALLOW_DOWNLOAD_ENV = "FPN_ALLOW_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 15.0

Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0)


class WeightsError(RuntimeError):
    """A weight file that cannot be used; the message says why and what to do."""


IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightFile:
    """One published torchvision checkpoint, as data: where it comes from, what it provides, how to use it.

    Attributes:
        key: the weights choice that asks for it (``PyramidConfig.weights``, the sidebar, ``--weights``).
        filename: torchvision's cache file name (it carries the hash prefix).
        url: where torchvision publishes it.
        label: short, shown where users choose weights.
        description: long, in provenance and messages.
        mean, std: the input normalization the weights were trained with.
        fpn_stages: the stages of the trained FPN it carries (empty: a backbone only).
        fpn_out_channels: that FPN's width, or None.
        detector: the detector whose heads it carries (``fpn_core.detection``'s title), or None.
        batchnorm_eps: the BatchNorm eps its legacy weights expect (torchvision's ``overwrite_eps``),
            or None for the default.
    """

    key: str
    filename: str
    url: str
    label: str
    description: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fpn_stages: tuple[str, ...] = ()
    fpn_out_channels: int | None = None
    detector: str | None = None
    batchnorm_eps: float | None = None

    @property
    def hash_prefix(self) -> str:
        return _hash_prefix(self.filename) or ""


IMAGENET = WeightFile(
    "imagenet",
    "resnet50-11ad3fa6.pth",
    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "ImageNet backbone",
    "ImageNet-1k ResNet-50 (torchvision IMAGENET1K_V2, 80.9% top-1)",
)
COCO = WeightFile(
    "coco-fpn",
    "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "COCO Faster R-CNN (trained FPN)",
    "COCO Faster R-CNN ResNet-50-FPN (torchvision COCO_V1, 37.0 box mAP)",
    fpn_stages=("c2", "c3", "c4", "c5"),
    fpn_out_channels=256,
    detector="Faster R-CNN",
    batchnorm_eps=0.0,
)
RETINANET_COCO = WeightFile(
    "coco-retinanet",
    "retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "COCO RetinaNet (trained FPN on c3..c5)",
    "COCO RetinaNet ResNet-50-FPN (torchvision COCO_V1, 36.4 box mAP)",
    fpn_stages=("c3", "c4", "c5"),
    fpn_out_channels=256,
    detector="RetinaNet",
    batchnorm_eps=0.0,
)
#: Every published checkpoint by its weights choice; the resolution chain looks records up here.
WEIGHT_FILES: dict[str, WeightFile] = {wf.key: wf for wf in (IMAGENET, COCO, RETINANET_COCO)}
RANDOM = "random"
#: What ``PyramidConfig.weights`` accepts besides a path to a local file.
WEIGHT_CHOICES: tuple[str, ...] = (*WEIGHT_FILES, RANDOM)
#: The text shown for each weights choice.
WEIGHT_LABELS: dict[str, str] = {**{key: wf.label for key, wf in WEIGHT_FILES.items()}, RANDOM: "random init"}


def record_named(filename: str) -> WeightFile | None:
    """The registry's record of a file name (a published file keeps its name in the cache), or None."""
    return next((wf for wf in WEIGHT_FILES.values() if wf.filename == filename), None)


@dataclass(frozen=True)
class Provenance:
    """What weights a model carries, where they came from, and why any fallback happened.

    Attributes:
        requested: what was asked for: ``"imagenet"``, ``"coco-fpn"``, ``"random"`` or a path.
        backbone: human description of the backbone weights actually loaded.
        source: ``"local file"``, ``"torch hub cache"``, ``"download"`` or ``"random init"``.
        path: the file loaded, if any.
        pretrained: whether the backbone has trained weights.
        fpn: description of the FPN weights.
        fpn_pretrained: whether the FPN has trained weights.
        fallbacks: one line per option that was tried and failed, in order.
    """

    requested: str
    backbone: str
    source: str
    path: str | None = None
    pretrained: bool = False
    fpn: str = "random init"
    fpn_pretrained: bool = False
    fallbacks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fell_back(self) -> bool:
        return bool(self.fallbacks)

    def summary(self) -> str:
        """One line for captions and figure titles."""
        bb = "pretrained" if self.pretrained else "random"
        fpn = "trained" if self.fpn_pretrained else "random"
        return f"backbone {bb} ({self.source}), FPN {fpn}"

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "backbone": self.backbone,
            "source": self.source,
            "path": self.path,
            "pretrained": self.pretrained,
            "fpn": self.fpn,
            "fpn_pretrained": self.fpn_pretrained,
            "fallbacks": list(self.fallbacks),
        }


def operator_file_from_env(env: str = WEIGHTS_ENV) -> str | None:
    """The operator's local weights file named by ``env``, or None: for the CLI and the dashboard only.

    The engine takes the operator's file as an argument (``operator_file=``); only the programs
    that start it read the environment.
    """
    return os.environ.get(env, "").strip() or None


def hub_checkpoint_dir() -> Path:
    """torchvision's cache folder for weight files (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_allowed() -> bool:
    """Downloads are allowed unless ``FPN_ALLOW_DOWNLOAD`` is 0/false/no/off."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def how_to_place(wf: WeightFile, env: str = WEIGHTS_ENV) -> str:
    """Instructions a user can follow to make the weights available offline.

    Args:
        wf: the file.
        env: the environment variable that names an operator's local copy for this use.
    """
    return (
        f"To use them offline, download {wf.url} on a machine with internet and copy it to "
        f"{hub_checkpoint_dir() / wf.filename} (or name any local copy with {env}=PATH)."
    )


def _hash_prefix(filename: str) -> str | None:
    match = re.search(r"-([0-9a-f]{6,64})\.[a-z]+$", filename)
    return match.group(1) if match else None


def verify_hash(path: Path, *, name: str | None = None) -> None:
    """Refuse a file whose SHA-256 does not start with the hash prefix in its name.

    Args:
        path: the file to hash.
        name: the torchvision file name carrying the hash, when ``path`` is a temporary name.

    Raises:
        WeightsError: on a mismatch (the file is corrupt or not what its name says).
    """
    prefix = _hash_prefix(name or path.name)
    if not prefix:
        return
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        raise WeightsError(
            f"{path} was refused: its SHA-256 ({digest.hexdigest()[:8]}…) does not match the hash "
            f"{prefix} in its name, so it is corrupt or not the file torchvision published. Delete it."
        )


def load_state_dict_file(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Tensor]:
    """Read a checkpoint safely: tensors only, no code.

    Accepts a plain state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.

    Args:
        path: the file.
        mmap: map the tensors' storage instead of reading it (zip files only; an old non-zip
            file is read whole): keys and shapes come without reading the data.

    Raises:
        WeightsError: the file is missing, empty, truncated, not a checkpoint, or holds
            anything but tensors (a pickle with code is refused, never run).
    """
    return read_checkpoint(path, mmap=mmap)[0]


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> tuple[dict[str, Tensor], dict[str, object]]:
    """Read a checkpoint safely, with the plain metadata of its wrapper dict.

    Returns:
        The state dict, and the wrapper's plain entries (strings, numbers, and lists or dicts
        of them: e.g. ``classes``, ``categories``, ``epoch``) beside ``state_dict`` / ``model``;
        empty for a bare state dict.

    Raises:
        WeightsError: as :func:`load_state_dict_file`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty")
    with path.open("rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6; only it can be mapped
    corrupt = f"{path} could not be read as a PyTorch checkpoint; it looks truncated or corrupt"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as exc:
        if "Unsupported operand" in str(exc) or "invalid load key" in str(exc):  # not a pickle at all
            raise WeightsError(corrupt) from None
        raise WeightsError(_pickled_objects_message(path, is_zip)) from None  # objects the safe loader refuses
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, AttributeError) as exc:
        raise WeightsError(f"{corrupt} ({_first_line(exc)})") from None
    extras: dict[str, object] = {}
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            extras.update((k, v) for k, v in obj.items() if k not in ("state_dict", "model") and _is_plain(v))
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} is not a state dict of tensors")
    return dict(obj), extras


def _is_plain(value: object) -> bool:
    """Strings, numbers, booleans, None, and lists, tuples or str-keyed dicts of them (no tensors)."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _pickled_objects_message(path: Path, is_zip: bool) -> str:
    """Why a file with pickled objects is refused, naming the objects, and how to save a state dict instead.

    The objects' names are read from the pickle's opcodes (nothing is unpickled).
    """
    names: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            if is_zip:  # torch.save's zip: the objects are pickled in <archive>/data.pkl
                archive = stack.enter_context(zipfile.ZipFile(path))
                member = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
                fh = stack.enter_context(archive.open(member))
            else:
                fh = stack.enter_context(path.open("rb"))
            for _ in range(4):  # an old torch.save file is a few pickles in a row; the model is in one
                ops = pickletools.genops(fh)
                names += [str(arg).replace(" ", ".") for op, arg, _pos in ops if op.name == "GLOBAL"]
    except Exception:  # noqa: S110 (naming the objects is a courtesy; the refusal stands without it)
        pass
    standard = ("torch._utils.", "collections.OrderedDict", "torch.serialization.")
    names = [n for n in dict.fromkeys(names) if not n.startswith(standard) and not n.endswith("Storage")]
    modules = [n for n in names if n.startswith(("torch.nn.modules.", "torchvision.models.", "torchvision.ops."))]
    # names[0], the first object pickled, is the model itself (FasterRCNN, or the user's class)
    how = (
        "It is never unpickled (torch.load weights_only=True). Save the weights alone instead: "
        "torch.save(model.state_dict(), 'model.pth'), or a dict like "
        "{'model': model.state_dict(), 'classes': [...]}."
    )
    if modules:
        return f"{path} was refused: it is a whole pickled model ({names[0]}), saved with torch.save(model). {how}"
    found = f" ({', '.join(names[:3])})" if names else ""
    return f"{path} was refused: it holds pickled Python objects or code{found}, not just tensors. {how}"


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, as plain text (torch's messages carry terminal escape codes)."""
    text = _ANSI_ESCAPE.sub("", str(exc)).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def download(
    wf: WeightFile,
    *,
    dest_dir: Path | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    progress: Progress | None = None,
) -> Path:
    """Download a torchvision weight file into the hub cache, checking its hash.

    The connection (DNS included) must open within ``timeout`` seconds and every read must
    answer within it, so an offline machine fails fast instead of hanging.

    Raises:
        WeightsError: no connection, a stalled transfer, or a hash mismatch.
    """
    dest_dir = dest_dir or hub_checkpoint_dir()
    box: dict[str, object] = {}

    def connect() -> None:
        try:
            box["response"] = urllib.request.urlopen(wf.url, timeout=timeout)  # noqa: S310 (fixed https URL)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=connect, daemon=True, name="fpn-weights-connect")
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or "error" in box:
        why = _first_line(box["error"]) if "error" in box else f"no answer in {timeout:.0f} s"  # type: ignore[arg-type]
        raise WeightsError(f"could not download {wf.filename}: {why}")
    response = box["response"]
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=dest_dir, prefix=wf.filename, suffix=".part", delete=False)  # noqa: SIM115 (closed below)
    try:
        with response, tmp:  # type: ignore[union-attr]
            total = int(response.headers.get("Content-Length") or 0)  # type: ignore[union-attr]
            done = 0
            while chunk := response.read(1 << 20):  # type: ignore[union-attr]
                tmp.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        final = dest_dir / wf.filename
        part = Path(tmp.name)
        verify_hash(part, name=wf.filename)  # the temporary name does not carry the hash
        part.replace(final)
        return final
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"download of {wf.filename} failed: {_first_line(exc)}") from None
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def find_or_download(
    wf: WeightFile, *, allow_download: bool, progress: Progress | None = None, env: str = WEIGHTS_ENV
) -> tuple[dict[str, Tensor], str, Path]:
    """Load a torchvision weight file from the hub cache, else download it if allowed.

    Returns:
        The state dict, the source (``"torch hub cache"`` or ``"download"``) and the path.

    Raises:
        WeightsError: with every reason, and where to place the file by hand.
    """
    cached = hub_checkpoint_dir() / wf.filename
    reasons = []
    if cached.is_file():
        try:
            verify_hash(cached)
            return load_state_dict_file(cached), "torch hub cache", cached
        except WeightsError as exc:
            reasons.append(str(exc))
    else:
        reasons.append(f"{wf.filename} is not in the torch hub cache ({cached.parent})")
    if not allow_download:
        reasons.append(f"downloads are off ({ALLOW_DOWNLOAD_ENV}=0)")
    elif not cached.is_file():
        try:
            path = download(wf, progress=progress)
            return load_state_dict_file(path), "download", path
        except WeightsError as exc:
            reasons.append(str(exc))
    raise WeightsError("; ".join(reasons) + ". " + how_to_place(wf, env))


# --------------------------------------------------------------------------- the backbone's weights


@dataclass(frozen=True)
class LoadedResNet:
    """What :func:`load_resnet` resolved: a ResNet-50 carrying the weights, and what came with them.

    Attributes:
        resnet: torchvision's ResNet-50, weights loaded (or seeded random init).
        provenance: what was asked for, what loaded, from where, and why anything earlier failed.
        mean, std: the input normalization of the loaded record (ImageNet's for any other file and random init).
        fpn_state: the ``backbone.fpn`` tensors of a detection checkpoint, else None.
    """

    resnet: ResNet
    provenance: Provenance
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fpn_state: dict[str, Tensor] | None = None


def load_resnet(
    weights: str = "imagenet",
    *,
    operator_file: str | None = None,
    seed: int = 0,
    allow_download: bool | None = None,
    progress: Progress | None = None,
) -> LoadedResNet:
    """A ResNet-50 with the best weights available: the first of the resolution chain that loads.

    Args:
        weights: a key of :data:`WEIGHT_FILES` (a detection checkpoint falls back to the imagenet
            chain), ``"random"``, or a path to a local file.
        operator_file: the operator's local file, tried before the ImageNet file (never for ``"random"``).
        seed: seed of the random init used when no file loads.
        allow_download: None reads ``FPN_ALLOW_DOWNLOAD`` (default on).
        progress: called with (bytes done, bytes total) during a download.
    """
    allow = download_allowed() if allow_download is None else allow_download
    attempts: list[tuple[str, Callable[[], tuple[dict[str, Tensor], str, os.PathLike | str]]]] = []

    def local(path: str) -> Callable[[], tuple[dict[str, Tensor], str, str]]:
        return lambda: (load_state_dict_file(path), "local file", path)

    def hub(wf: WeightFile) -> Callable[[], tuple[dict[str, Tensor], str, os.PathLike]]:
        return lambda: find_or_download(wf, allow_download=allow, progress=progress)

    imagenet = WEIGHT_FILES["imagenet"]
    if weights in WEIGHT_FILES and weights != imagenet.key:
        attempts.append((WEIGHT_FILES[weights].description, hub(WEIGHT_FILES[weights])))
    elif weights not in WEIGHT_CHOICES:
        attempts.append((f"local file {weights}", local(weights)))
    if weights != RANDOM:
        if operator_file and operator_file != weights:
            attempts.append((f"local file {operator_file} ({WEIGHTS_ENV})", local(operator_file)))
        attempts.append((imagenet.description, hub(imagenet)))

    fallbacks: list[str] = []
    for label, attempt in attempts:
        resnet = resnet50(weights=None)  # fresh each time: a failed load may have written some tensors
        try:
            state, source, path = attempt()
            fpn_state = _load_resnet_state(resnet, state, str(path))
        except WeightsError as exc:
            fallbacks.append(str(exc))
            continue
        desc = label if source != "local file" else f"local file {os.path.basename(str(path))}"
        record = record_named(os.path.basename(str(path))) or imagenet
        provenance = Provenance(weights, desc, source, str(path), True, fallbacks=tuple(fallbacks))
        return LoadedResNet(resnet, provenance, record.mean, record.std, fpn_state)
    resnet = resnet50(weights=None)
    _reset_resnet(resnet, seed)
    provenance = Provenance(weights, f"random init (seed {seed})", "random init", fallbacks=tuple(fallbacks))
    return LoadedResNet(resnet, provenance, imagenet.mean, imagenet.std)


def _reset_resnet(resnet: nn.Module, seed: int) -> None:
    """torchvision's ResNet init drawn from a seeded generator (same weights in every process)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in resnet.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _load_resnet_state(resnet: nn.Module, state: Mapping[str, Tensor], path: str) -> dict[str, Tensor] | None:
    """Load a ResNet-50 state dict, or the ``backbone.body`` of a detection checkpoint, strictly.

    Returns the ``backbone.fpn`` tensors of a detection checkpoint, else None.

    Raises:
        WeightsError: missing or unexpected keys, or wrong shapes.
    """
    fpn_state = None
    if any(k.startswith("backbone.body.") for k in state):
        body = {k.removeprefix("backbone.body."): v for k, v in state.items() if k.startswith("backbone.body.")}
        fpn_state = {k.removeprefix("backbone.fpn."): v for k, v in state.items() if k.startswith("backbone.fpn.")}
        state = body
        # Detection checkpoints have no classifier and use FrozenBatchNorm (no batch counter).
        record = record_named(os.path.basename(path))
        if record is not None and record.batchnorm_eps is not None:
            for m in resnet.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eps = record.batchnorm_eps
        optional = lambda k: k.startswith("fc.") or k.endswith("num_batches_tracked")  # noqa: E731
    else:
        optional = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).split("\n\t")[1:3]
        raise WeightsError(f"{path} does not fit ResNet-50: {'; '.join(detail) or exc}") from None
    missing = [k for k in missing if not optional(k)]
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit ResNet-50 (strict load): "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return fpn_state or None


# --------------------------------------------------------------------------- the FPN's weights


def trained_fpn_stages(fpn_state: Mapping[str, Tensor] | None) -> tuple[str, ...]:
    """The stages a detection checkpoint's FPN was trained on: one lateral per stage, ending at c5
    (Faster R-CNN: c2..c5; RetinaNet: c3..c5)."""
    if not fpn_state:
        return ()
    laterals = sum(1 for k in fpn_state if k.startswith("inner_blocks.") and k.endswith(".weight"))
    return FPN_STAGES[len(FPN_STAGES) - laterals :]


def fpn_record(stages: tuple[str, ...]) -> WeightFile:
    """The record whose FPN was trained on ``stages`` (Faster R-CNN's for any other run of stages).

    A local detection checkpoint has no record of its own; its laterals say which it is.
    """
    matches = (wf for wf in WEIGHT_FILES.values() if wf.fpn_stages and wf.fpn_stages == stages)
    return next(matches, WEIGHT_FILES["coco-fpn"])


def fpn_weights(config: PyramidConfig, backbone: ResNetBackbone | None) -> tuple[str, bool]:
    """What ``pyramid.build_fpn`` gives ``config`` on ``backbone``: a description, and whether it is trained.

    Trained FPN tensors come only with a COCO detection checkpoint, only at its width, and only
    for the stages it was trained on (RetinaNet's: c3..c5). Cheap: nothing is built (the
    dashboard says which weights run before it needs the FPN).
    """
    coco = backbone.fpn_state if backbone is not None else None
    trained = backbone.fpn_stages if backbone is not None else ()
    record = fpn_record(trained)
    if coco is not None and config.out_channels == record.fpn_out_channels and set(config.stages) <= set(trained):
        return f"COCO-trained ({record.detector}) for {', '.join(config.stages)}", True
    if coco is not None and config.out_channels != record.fpn_out_channels:
        return (
            f"random init (seed {config.seed}): COCO-trained FPN weights exist only at width {record.fpn_out_channels}",
            False,
        )
    if coco is not None:
        return (
            f"random init (seed {config.seed}): the {record.detector} checkpoint's FPN was trained on "
            f"{', '.join(trained)} only",
            False,
        )
    return f"random init (seed {config.seed})", False


def select_fpn_levels(
    coco: Mapping[str, Tensor], stages: tuple[str, ...], trained: tuple[str, ...] = FPN_STAGES
) -> dict[str, Tensor]:
    """Take the blocks of the chosen stages from a COCO FPN trained on ``trained``, renumbered."""
    out = {}
    for i, stage in enumerate(stages):
        j = trained.index(stage)
        for block in ("inner_blocks", "layer_blocks"):
            for param in ("weight", "bias"):
                new = coco.get(f"{block}.{j}.0.{param}", coco.get(f"{block}.{j}.{param}"))
                if new is None:
                    raise WeightsError(f"the COCO FPN tensors lack {block}.{j}.{param}")
                out[f"{block}.{i}.0.{param}"] = new
    return out
