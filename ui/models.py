"""The models folder: the operator's checkpoints, listed in the sidebar's Weights and the Detector choices.

Where: ``FPN_MODELS_DIR``, or ``streamlit run dashboard.py -- --models-dir DIR``, else ``./models``
when it exists. Files are never uploaded or typed into the page: the operator puts them in the
folder, and the page offers what is there.

A file is chosen as ``file:<name>`` (the weights' URL parameter, e.g. ``?weights=file:pennfudan.pth``);
only the names the folder lists are offered, so a link cannot name any other path. The listing
reads keys and shapes only (memory-mapped, ``weights_only=True``), is cached, and *Try again*
rescans (it is a model cache).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from fpn_core.checkpoints import CheckpointInfo, ModelsListing, models_dir_from_env
from fpn_core.frameworks.listing import is_framework_info, list_models_everywhere
from ui.cache import model_cache

#: The prefix of a models-folder choice in the Weights (and Detector) options and the URL.
FILE_PREFIX = "file:"


def models_dir_flag(argv: list[str] | None = None) -> str | None:
    """The ``--models-dir DIR`` given after ``streamlit run dashboard.py --``, if any."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models-dir", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.models_dir or None


def models_dir() -> Path | None:
    """The models folder: ``--models-dir``, else ``FPN_MODELS_DIR``, else ``./models`` when it exists, else None."""
    flag = models_dir_flag()
    return Path(flag).expanduser() if flag else models_dir_from_env()


@model_cache(max_entries=2)
def _listing(folder: str) -> ModelsListing:
    return list_models_everywhere(folder)


def listing() -> ModelsListing | None:
    """The models folder's listing (cached; *Try again* rescans), or None when there is no folder."""
    folder = models_dir()
    return None if folder is None else _listing(str(folder))


def choice_of(info: CheckpointInfo) -> str:
    """A listed checkpoint's choice value: ``file:<name>``."""
    return FILE_PREFIX + info.path.name


def is_file_choice(value: object) -> bool:
    return isinstance(value, str) and value.startswith(FILE_PREFIX)


@dataclass(frozen=True)
class FolderChoices:
    """The folder's checkpoints as choices: value -> label, for the feature pages and for detection."""

    weights: tuple[tuple[str, str], ...] = ()
    detectors: tuple[tuple[str, str], ...] = ()


def label_of(info: CheckpointInfo) -> str:
    """How a checkpoint reads in a choice: ``"pennfudan.pth — Faster R-CNN, 2 classes"``."""
    return info.label


def folder_choices() -> FolderChoices:
    """Every listed checkpoint in the Weights choices; every one in the Detector choices too (framework
    files are listed there so that the page can say why their heads are not run)."""
    found = listing()
    if found is None:
        return FolderChoices()
    pairs = tuple((choice_of(info), label_of(info)) for info in found)
    return FolderChoices(pairs, pairs)


def info_of(choice: str) -> CheckpointInfo | None:
    """The listed checkpoint a ``file:<name>`` choice names (None: not in the folder any more)."""
    found = listing()
    if found is None or not is_file_choice(choice):
        return None
    name = choice[len(FILE_PREFIX) :]
    return next((info for info in found if info.path.name == name), None)


def is_framework_choice(choice: str) -> bool:
    """Whether a ``file:<name>`` choice is an mmdetection or detectron2 file."""
    info = info_of(choice)
    return info is not None and is_framework_info(info)
