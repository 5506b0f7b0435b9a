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


#: AppTest's wait for one run (the first run builds the model).
APP_TIMEOUT = 120
#: Most AppTest checks run at this input size to stay fast.
SMALL = 128
HOME = "pages/0_Home.py"


def open_page(page: str = HOME, *, size: int | None = SMALL, **params: str):  # -> AppTest
    """A fresh session of the app, opened the way a browser does: the frame, then ``page``.

    Args:
        page: the page file, relative to the repository root (``pages/3_Overlays.py``).
        size: the input size, given in the link (None leaves the default).
        **params: more query parameters of the link (``fpn_width="64"`` ...).

    Returns:
        The ``AppTest`` after the page's first run.
    """
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=APP_TIMEOUT)
    if size is not None:
        at.query_params["input_size"] = str(size)
    at.query_params.update(params)
    at.run()
    if page != HOME and not at.exception:
        at.switch_page(page).run()
    return at
