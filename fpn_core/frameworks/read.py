"""Open a checkpoint file of another framework safely, and tell which framework wrote it.

- A PyTorch file (zip, or the old non-zip serialization) goes through
  ``torch.load(..., weights_only=True)``; zip files are memory-mapped (``mmap=True``), so opening
  one reads only its pickled index and the tensors used.
- Any other file is read as a plain pickle by :mod:`fpn_core.frameworks.safe_pickle`, which
  allows numpy arrays and nothing else (detectron2's model-zoo ``.pkl``).

Nothing in a file is ever run: a pickle naming any other global is refused with its name.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .detectron2 import looks_like_detectron2, read_detectron2
from .mmdet import looks_like_mmdet, read_mmdet
from .record import DETECTRON2, MMDETECTION, ConventionOverrides, FrameworkCheckpoint, FrameworkError, read_sidecar
from .safe_pickle import UnsafePickleError, load_numpy_pickle

_ZIP_MAGIC = b"PK\x03\x04"
#: torch's old serialization starts with a protocol-2 pickle of its magic number (a 10-byte long).
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(exc: BaseException) -> str:
    """The first line of an exception's message without terminal escape codes (torch adds them)."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _refused_global(exc: BaseException) -> str | None:
    m = re.search(r"GLOBAL ([\w.]+)", _ANSI.sub("", str(exc)))
    return m.group(1) if m else None


def _training_advice(name: str | None) -> str:
    if name and name.split(".")[0] in ("mmengine", "mmcv", "mmdet", "numpy"):
        return (
            " It looks like a training checkpoint (mmengine's message_hub, optimizer or schedulers). Keep only "
            "its weights where mmdetection is installed: `python tools/model_converters/publish_model.py IN.pth "
            "OUT.pth`, or, in the environment that wrote it, save only `{'meta': {'dataset_meta': ...}, "
            "'state_dict': ...}` of the checkpoint."
        )
    return " Keep only the state dict (tensors) in the file."


def load_checkpoint_object(path: str | os.PathLike) -> Any:
    """The object stored in ``path``, loaded without running anything from it.

    Raises:
        FrameworkError: missing, empty, truncated or corrupt; or holding code or objects other
            than tensors, numpy arrays and plain data (refused, never run), with what it held.
    """
    path = Path(path)
    if not path.is_file():
        raise FrameworkError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise FrameworkError(f"checkpoint {path} is empty")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head in (_ZIP_MAGIC, _LEGACY_MAGIC):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=head == _ZIP_MAGIC)
        except pickle.UnpicklingError as exc:
            if "weights only" not in str(exc).lower():
                raise FrameworkError(
                    f"{path} could not be read; it looks truncated or corrupt ({_plain(exc)})"
                ) from None
            name = _refused_global(exc)
            held = f"objects or code ({name})" if name else "objects or code"
            raise FrameworkError(
                f"{path} was refused: besides tensors it holds {held}, which are never run "
                f"(torch.load weights_only=True).{_training_advice(name)}"
            ) from None
        except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError) as exc:
            raise FrameworkError(f"{path} could not be read; it looks truncated or corrupt ({_plain(exc)})") from None
    try:
        with path.open("rb") as fh:
            return load_numpy_pickle(fh)
    except UnsafePickleError as exc:
        raise FrameworkError(
            f"{path} was refused: {_plain(exc)}. A detectron2 .pkl holds numpy arrays only; nothing in it was run."
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise FrameworkError(
            f"{path} could not be read as a PyTorch file or a detectron2 pickle; "
            f"it looks truncated or corrupt ({_plain(exc)})"
        ) from None


def framework_of(obj: Any) -> str | None:
    """``"mmdetection"`` or ``"detectron2"`` for a loaded checkpoint of theirs, else None
    (e.g. a torchvision state dict, which the engine reads itself)."""
    if looks_like_mmdet(obj):
        return MMDETECTION
    if looks_like_detectron2(obj):
        return DETECTRON2
    return None


def sniff_framework(path: str | os.PathLike) -> str | None:
    """Which framework wrote ``path`` (None: not an mmdetection or detectron2 checkpoint).

    Cheap for zip files (memory-mapped, no tensor is read).

    Raises:
        FrameworkError: the file cannot be read safely (see :func:`load_checkpoint_object`).
    """
    return framework_of(load_checkpoint_object(path))


def is_framework_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is an mmdetection or detectron2 checkpoint that opens safely."""
    try:
        return sniff_framework(path) is not None
    except FrameworkError:
        return False


def read_framework_checkpoint(
    path: str | os.PathLike, overrides: ConventionOverrides | None = None, *, obj: Any = None
) -> FrameworkCheckpoint:
    """Read an mmdetection or detectron2 R50-FPN checkpoint into one neutral record.

    Args:
        path: the ``.pth`` (mmdetection v2/v3, detectron2 final checkpoint) or ``.pkl`` (detectron2 zoo).
        overrides: conventions the user sets (CLI ``--input-format``, ``--stride-in-1x1``); they
            win over the sidecar ``<stem>.conventions.json``, which wins over the file's own.
        obj: the already loaded object of ``path`` (e.g. from :func:`load_checkpoint_object`), to skip loading again.

    Returns:
        The :class:`FrameworkCheckpoint`: torchvision-named tensors, conventions, class names.

    Raises:
        FrameworkError: unreadable, refused, not from either framework, or not ResNet-50 + FPN;
            one message that says which and what to do.
    """
    path_str = str(path)
    if obj is None:
        obj = load_checkpoint_object(path)
    chosen = (overrides or ConventionOverrides(source="none")).merged_over(read_sidecar(path))
    framework = framework_of(obj)
    if framework == MMDETECTION:
        return read_mmdet(obj, path_str, chosen)
    if framework == DETECTRON2:
        return read_detectron2(obj, path_str, chosen)
    raise FrameworkError(
        f"{path} is not an mmdetection checkpoint ({{'meta', 'state_dict'}} with backbone.*/neck.* keys) "
        "nor a detectron2 one ({'model': ...} with backbone.bottom_up.* keys)"
    )
