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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .levels import FPN_STAGES

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
    digest = sha256_of(path)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"{path} was refused: its SHA-256 ({digest[:8]}…) does not match the hash "
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


# --------------------------------------------------------------------------- the one resolver

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Candidate:
    """One place the weights may come from: a local file, or a published record (hub cache, then download).

    Attributes:
        path: a local file (one asked for, or the operator's).
        record: a published checkpoint, looked for in the hub cache, then downloaded when allowed.
        env: the environment variable an operator sets for this use (named in messages).
    """

    path: str | None = None
    record: WeightFile | None = None
    env: str = WEIGHTS_ENV

    def __post_init__(self) -> None:
        if (self.path is None) == (self.record is None):
            raise ValueError("a weights candidate is a local file or a published record, not both or neither")


def weight_candidates(
    requested: str,
    default: WeightFile,
    *,
    records: Mapping[str, WeightFile | None],
    operator_file: str | None = None,
    env: str = WEIGHTS_ENV,
) -> list[Candidate]:
    """The fallback chain for one request, in order (the seeded random init comes after it).

    Args:
        requested: a key of ``records``, ``"random"`` (an empty chain) or a path to a local file.
        default: the published file every chain but ``"random"`` ends with.
        records: the choices this use accepts besides a path, each with the published file it asks
            for first (None: nothing before the operator's file).
        operator_file: the operator's local file, tried after what was asked for and before ``default``.
        env: the environment variable that names the operator's file (for messages).
    """
    if requested == RANDOM:
        return []
    chain: list[Candidate] = []
    if requested not in records:
        chain.append(Candidate(path=requested, env=env))
    elif (first := records[requested]) is not None and first != default:
        chain.append(Candidate(record=first, env=env))
    if operator_file and operator_file != requested:
        chain.append(Candidate(path=operator_file, env=env))
    chain.append(Candidate(record=default, env=env))
    return chain


@dataclass(frozen=True)
class Resolved(Generic[M]):
    """What :func:`resolve_weights` found: the model the first loadable candidate fitted, and what came with it.

    Attributes:
        model: the fitted model (the seeded random one when no candidate loaded).
        state: the whole state dict that loaded (None for the random init).
        provenance: what was asked for, what loaded, from where, and why every earlier candidate failed.
        record: the published checkpoint the loaded file is (by its name, or by its SHA-256 when renamed), or None.
    """

    model: M
    state: dict[str, Tensor] | None
    provenance: Provenance
    record: WeightFile | None


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def published_record(path: str | os.PathLike, expected: Sequence[WeightFile] = ()) -> WeightFile | None:
    """The published checkpoint a local file is: by its name (any record), else by its SHA-256
    (only against ``expected`` records that carry a legacy BatchNorm eps, the one thing it changes)."""
    named = record_named(os.path.basename(str(path)))
    if named is not None:
        return named
    legacy = [wf for wf in expected if wf.batchnorm_eps is not None and wf.hash_prefix]
    if not legacy:
        return None
    digest = sha256_of(path)
    return next((wf for wf in legacy if digest.startswith(wf.hash_prefix)), None)


def set_batchnorm_eps(model: nn.Module, eps: float) -> None:
    """Set the eps of every BatchNorm (plain or torchvision's frozen one) in ``model``."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            m.eps = eps


def resolve_weights(
    candidates: Sequence[Candidate],
    fit: Callable[[Mapping[str, Tensor] | None], M],
    *,
    requested: str,
    seed: int,
    allow_download: bool | None = None,
    progress: Progress | None = None,
) -> Resolved[M]:
    """The first candidate whose file reads safely and fits, else the seeded random init.

    ``fit(state)`` builds a fresh model and loads ``state`` strictly, raising :class:`WeightsError`
    with what does not fit (``"does not fit ResNet-50: ..."``; the file's path is put before it);
    ``fit(None)`` builds the seeded random one. A fresh model per candidate,
    since a failed load may have written some tensors. Then the one eps rule: a published
    checkpoint's ``batchnorm_eps`` (torchvision's ``overwrite_eps``) is set on every BatchNorm.

    Args:
        candidates: from :func:`weight_candidates`.
        fit: builds and loads the model, as above.
        requested: what was asked for (the provenance's ``requested``).
        seed: the random init's seed (named in the provenance).
        allow_download: None reads ``FPN_ALLOW_DOWNLOAD`` (default on).
        progress: called with (bytes done, bytes total) during a download.
    """
    allow = download_allowed() if allow_download is None else allow_download
    expected = [c.record for c in candidates if c.record is not None]
    fallbacks: list[str] = []
    for cand in candidates:
        try:
            if cand.record is not None:
                state, source, path = find_or_download(
                    cand.record, allow_download=allow, progress=progress, env=cand.env
                )
                record: WeightFile | None = cand.record
                desc = cand.record.description
            else:
                assert cand.path is not None
                state, source, path = load_state_dict_file(cand.path), "local file", Path(cand.path)
                record = published_record(path, expected)
                desc = f"local file {path.name}"
            try:
                model = fit(state)
            except WeightsError as exc:  # the fit says what does not fit; the file is named here
                raise WeightsError(f"{path} {exc}") from None
        except WeightsError as exc:
            fallbacks.append(str(exc))
            continue
        if record is not None and record.batchnorm_eps is not None:
            set_batchnorm_eps(model, record.batchnorm_eps)
        provenance = Provenance(requested, desc, source, str(path), True, fallbacks=tuple(fallbacks))
        return Resolved(model, state, provenance, record)
    provenance = Provenance(requested, f"random init (seed {seed})", "random init", fallbacks=tuple(fallbacks))
    return Resolved(fit(None), None, provenance, None)


# --------------------------------------------------------------------------- the FPN's weights


def trained_fpn_stages(fpn_state: Mapping[str, Tensor] | None) -> tuple[str, ...]:
    """The stages a detection checkpoint's FPN was trained on: one lateral per stage, ending at c5
    (Faster R-CNN: c2..c5; RetinaNet: c3..c5)."""
    if not fpn_state:
        return ()
    laterals = {k.split(".")[1] for k in fpn_state if k.startswith("inner_blocks.")}  # with norm layers: 2 modules each
    return FPN_STAGES[len(FPN_STAGES) - len(laterals) :]


def fpn_record(stages: tuple[str, ...]) -> WeightFile:
    """The record whose FPN was trained on ``stages`` (Faster R-CNN's for any other run of stages).

    A local detection checkpoint has no record of its own; its laterals say which it is.
    """
    matches = (wf for wf in WEIGHT_FILES.values() if wf.fpn_stages and wf.fpn_stages == stages)
    return next(matches, WEIGHT_FILES["coco-fpn"])


def fpn_weights(
    stages: Sequence[str], out_channels: int, seed: int, trained_stages: Sequence[str] = (), source: str | None = None
) -> tuple[str, bool]:
    """Which FPN weights a pyramid on ``stages`` at width ``out_channels`` gets: a description, and whether trained.

    Trained FPN tensors come only with a COCO detection checkpoint (its FPN was trained on
    ``trained_stages``; empty: the backbone's file has none), only at its width, and only for
    the stages it was trained on (RetinaNet's: c3..c5). Cheap: nothing is built (the dashboard
    says which weights run before it needs the FPN). ``source`` names a user's checkpoint (``"your
    checkpoint x.pth"``): its FPN is described as trained with it, never as COCO-trained.
    """
    stages, trained = tuple(stages), tuple(trained_stages)
    if not trained:
        return f"random init (seed {seed})", False
    record = fpn_record(trained)
    if out_channels != record.fpn_out_channels:
        return (
            f"random init (seed {seed}): COCO-trained FPN weights exist only at width {record.fpn_out_channels}",
            False,
        )
    if not set(stages) <= set(trained):
        return (
            f"random init (seed {seed}): the {record.detector} checkpoint's FPN was trained on "
            f"{', '.join(trained)} only",
            False,
        )
    if source is not None:
        return f"trained with {source} for {', '.join(stages)}", True
    return f"COCO-trained ({record.detector}) for {', '.join(stages)}", True


def checkpoint_part(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors of a checkpoint under ``prefix`` (``"backbone.body."``, ``"backbone.fpn."``), prefix removed."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def select_fpn_levels(
    coco: Mapping[str, Tensor], stages: Sequence[str], trained: Sequence[str] = FPN_STAGES, *, extra: bool = False
) -> dict[str, Tensor]:
    """The lateral and output blocks of ``stages`` from an FPN state trained on ``trained``, renumbered
    in the key layout of ``fpn_core.fpn.FPN`` (torchvision's), for a strict load.

    Every tensor of a block is taken (the conv, and its norm layer's where the FPN has one: the v2
    R-CNNs); ``extra`` adds the extra block's (``extra_blocks.p6`` / ``p7``: RetinaNet, FCOS).

    Raises:
        ValueError: a stage the trained FPN has no lateral for.
        WeightsError: the FPN tensors lack a block.
    """
    trained = tuple(trained)
    missing = [s for s in stages if s not in trained]
    if missing:
        raise ValueError(f"the FPN has no lateral for {', '.join(missing)}; it was trained on {', '.join(trained)}")
    out = {}
    for i, stage in enumerate(stages):
        j = trained.index(stage)
        for block in ("inner_blocks", "layer_blocks"):
            mine = {k.removeprefix(f"{block}.{j}."): v for k, v in coco.items() if k.startswith(f"{block}.{j}.")}
            if not any(k.startswith("0.") for k in mine):  # torchvision's layout before 0.13: a bare conv
                mine = {f"0.{k}": v for k, v in mine.items()}
            has_norm = any(k.startswith("1.") for k in mine)
            for param in ("weight",) if has_norm else ("weight", "bias"):  # a conv before a norm has no bias
                if f"0.{param}" not in mine:
                    raise WeightsError(f"the COCO FPN tensors lack {block}.{j}.{param}")
            out.update((f"{block}.{i}.{k}", v) for k, v in mine.items())
    if extra:
        out.update((k, v) for k, v in coco.items() if k.startswith("extra_blocks."))
    return out
