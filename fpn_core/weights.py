"""Where the weights come from, loaded safely, with their provenance.

Resolution order for ``weights="imagenet"`` (the default):

1. a local file named by the operator (``FPN_WEIGHTS`` or the CLI's ``--weights PATH``);
2. torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` file in the torch hub cache (``TORCH_HOME``);
3. a download of that file, only when allowed (``FPN_ALLOW_DOWNLOAD``), with a short timeout;
4. a seeded random init.

Every file is read with ``torch.load(..., weights_only=True)`` (torchvision's own cache loader
unpickles arbitrary objects) and loaded with strict key and shape checks; a torchvision file
whose SHA-256 does not start with the hash in its name is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

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
    """A torchvision checkpoint: its cache file name, URL, what it contains and the input normalization it expects."""

    filename: str
    url: str
    label: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def hash_prefix(self) -> str:
        return _hash_prefix(self.filename) or ""


IMAGENET = WeightFile(
    "resnet50-11ad3fa6.pth",
    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "ImageNet-1k ResNet-50 (torchvision IMAGENET1K_V2, 80.9% top-1)",
)
COCO = WeightFile(
    "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "COCO Faster R-CNN ResNet-50-FPN (torchvision COCO_V1, 37.0 box mAP)",
)
#: The detectors' checkpoints (``fpn_core.detection``); Faster R-CNN's is the same file as ``COCO``.
FASTER_RCNN_COCO = COCO
RETINANET_COCO = WeightFile(
    "retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "COCO RetinaNet ResNet-50-FPN (torchvision COCO_V1, 36.4 box mAP)",
)


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


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint safely: tensors only, no code.

    Accepts a plain state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.

    Raises:
        WeightsError: the file is missing, empty, truncated, not a checkpoint, or holds
            anything but tensors (a pickle with code is refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path} was refused: it holds pickled objects or code, not just tensors, and is never "
            f"run (torch.load weights_only=True). Use a plain state dict. ({_first_line(exc)})"
        ) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, AttributeError) as exc:
        raise WeightsError(
            f"{path} could not be read as a PyTorch checkpoint; it looks truncated or corrupt ({_first_line(exc)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} is not a state dict of tensors")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
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
