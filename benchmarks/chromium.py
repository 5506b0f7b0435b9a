"""The system Chromium and its launch flags, shared by the cold-start benchmark and the browser tests.

Debian's ``/usr/bin/chromium`` (``apt-get install -y chromium``), never a browser downloaded by
playwright. The flags keep it quiet and offline on a headless server.
"""

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
