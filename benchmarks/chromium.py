"""The system Chromium and its launch flags: one definition, in ``tests/browser.py``, used here too."""

from __future__ import annotations

from tests.browser import CHROMIUM, CHROMIUM_ARGS, RUN_RECORDER_JS

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "RUN_RECORDER_JS"]
