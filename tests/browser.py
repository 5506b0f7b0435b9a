"""The system Chromium for the browser tests (Debian's ``/usr/bin/chromium``, never a browser
downloaded by playwright) and its launch flags, which keep it quiet and offline on a server."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
