"""Shared test setup: no downloads, an empty torch hub cache, and the repository root.

The environment is set when this file is imported, before any test builds a model, so the
backbone falls back to its seeded random init at once (nothing downloads, nothing hangs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_TORCH_HOME = tempfile.mkdtemp(prefix="fpn-test-torch-home-")
os.environ["FPN_ALLOW_DOWNLOAD"] = "0"
os.environ["TORCH_HOME"] = _TORCH_HOME
os.environ.pop("FPN_WEIGHTS", None)


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def test_env() -> dict[str, str]:
    """The environment for subprocesses: downloads off, the empty torch hub cache."""
    return {**os.environ, "FPN_ALLOW_DOWNLOAD": "0", "TORCH_HOME": _TORCH_HOME}
