"""Security defaults of the Streamlit server, read from .streamlit/config.toml."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from fpn_core.images import MAX_UPLOAD_BYTES

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())


def test_security_defaults():
    cfg = _config()
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"]["maxUploadSize"] == 20
    assert cfg["server"]["maxUploadSize"] * 1024 * 1024 == MAX_UPLOAD_BYTES  # checked again in Python
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["global"]["developmentMode"] is False
    assert cfg["client"]["showErrorDetails"] in ("none", False)
    assert cfg["client"]["toolbarMode"] in ("minimal", "viewer")


def test_streamlit_reads_the_same_values():
    """streamlit itself parses the file to these values (no typo'd section or key is silently ignored)."""
    import os
    import subprocess
    import sys

    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('server.enableXsrfProtection'), config.get_option('server.maxUploadSize'), "
        "config.get_option('browser.gatherUsageStats'), config.get_option('global.developmentMode'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "HOME": str(ROOT / ".no-home")},
    )
    assert out.stdout.split() == ["True", "20", "False", "False"]


def test_readme_module_table_names_every_module():
    """A newcomer finds every engine and UI module in the README's module table (and no stale ones)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `((?:fpn_core|ui)/[\w/]*(?:\.py)?)` \|", readme, flags=re.MULTILINE))
    modules = {
        str(p.relative_to(ROOT))
        for folder in ("fpn_core", "fpn_core/cli", "fpn_core/detection", "fpn_core/frameworks", "ui")
        for p in (ROOT / folder).glob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    } | {"fpn_core/", "fpn_core/cli/", "fpn_core/detection/", "fpn_core/frameworks/", "ui/"}  # the folders are rows too
    assert listed == modules
