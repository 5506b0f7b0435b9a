"""Shared test setup: no downloads, an empty torch hub cache, and the repository root.

The environment is set when this file is imported, before any test builds a model, so the
backbone falls back to its seeded random init at once (nothing downloads, nothing hangs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from fpn_core import Pyramid, PyramidConfig, ResNetBackbone

ROOT = Path(__file__).resolve().parents[1]

_TORCH_HOME = tempfile.mkdtemp(prefix="fpn-test-torch-home-")
os.environ["FPN_ALLOW_DOWNLOAD"] = "0"
os.environ["TORCH_HOME"] = _TORCH_HOME
os.environ.pop("FPN_WEIGHTS", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser tests' files first, the rest in their order: with ``--dist loadfile`` the two workers
    take files in this order, and the few long files (servers, Chromium) would otherwise come last
    and leave one worker running them alone. Within a file the order is kept."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache (``TORCH_HOME``) for weight-file tests; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def test_env() -> dict[str, str]:
    """The environment for subprocesses: downloads off, the empty torch hub cache."""
    return {**os.environ, "FPN_ALLOW_DOWNLOAD": "0", "TORCH_HOME": _TORCH_HOME}


#: One fresh interpreter answers every "what does importing load" question (each start costs seconds):
#: ``import fpn_core`` alone, then every engine module, then a figure drawn and saved.
_FRESH_IMPORTS = """
import json, pkgutil, importlib, sys
import numpy as np
import fpn_core
facts = {"detection_after_import": "fpn_core.detection" in sys.modules,
         "lazy_name_listed": "build_detector" in dir(fpn_core)}
from fpn_core import build_detector, detect
import fpn_core.detection as d
facts["lazy_names_are_detections"] = build_detector is d.build_detector and detect is d.detect
try:
    fpn_core.no_such_name
    facts["unknown_name_raises"] = False
except AttributeError:
    facts["unknown_name_raises"] = True
found = pkgutil.walk_packages(fpn_core.__path__, "fpn_core.")
modules = sorted(m.name for m in found if not m.name.endswith("__main__"))  # __main__ runs the CLI
for name in modules:
    importlib.import_module(name)
facts["engine_modules"] = modules
facts["streamlit_after_engine"] = "streamlit" in sys.modules
from fpn_core.figures import figure_to_png, overlay_figure
png = figure_to_png(overlay_figure(np.zeros((32, 32, 3), np.uint8), np.eye(4), title="t"))
facts["figure_is_png"] = png.startswith(b"\\x89PNG")
facts["pyplot_after_figure"] = "matplotlib.pyplot" in sys.modules
print(json.dumps(facts))
"""


@pytest.fixture(scope="session")
def fresh_imports() -> dict:
    """What a fresh ``python`` has loaded at each step of :data:`_FRESH_IMPORTS` (one process for all)."""
    import json

    done = subprocess.run([sys.executable, "-c", _FRESH_IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def named_by_hash(path: Path, stem: str) -> Path:
    """Rename a file the torchvision way, ``<stem>-<first 8 hex of its SHA-256>.pth`` (passes the hash check)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    target = path.with_name(f"{stem}-{digest}.pth")
    path.rename(target)
    return target


class _Payload:
    """Unpickling this would create the marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path, key: str = "conv1.weight") -> Path:
    """Write a checkpoint whose tensor ``key`` is a pickle payload: loading it unsafely creates ``marker``."""
    with path.open("wb") as fh:
        pickle.dump({key: _Payload(marker)}, fh, protocol=2)  # torch.save's protocol
    return path


@pytest.fixture(scope="session")
def sample() -> Path:
    """A bundled photo (451 x 300)."""
    return ROOT / "samples" / "chelsea.jpg"


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """The CLI in this process: its exit status (argparse's too), stdout and stderr."""
    from fpn_core import cli

    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_process(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    """``python -m fpn_core ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fpn_core", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------ random-weights models


@pytest.fixture(scope="session")
def random_pyramid() -> Callable[..., Pyramid]:
    """``random_pyramid(config=None, **fields)``: the model ``build_pyramid`` gives a random-weights
    configuration, built once per configuration for the whole session (backbones once per seed,
    optimize and device). ``config`` defaults to ``PyramidConfig(weights="random")``; ``fields``
    replace its fields.

    The models are shared: a test must not change them (one that does builds its own).
    """
    from fpn_core import PyramidConfig, assemble_pyramid, build_backbone
    from fpn_core.device import resolve_device

    backbones: dict[tuple, ResNetBackbone] = {}
    models: dict[PyramidConfig, Pyramid] = {}

    def get(config: PyramidConfig | None = None, /, **fields: object) -> Pyramid:
        config = dataclasses.replace(config or PyramidConfig(weights="random"), **fields)
        assert config.weights == "random", f"only random weights are shared, not {config.weights!r}"
        if config not in models:
            device = resolve_device(config.device)[0]
            key = (config.seed, config.optimize, device)
            if key not in backbones:
                backbones[key] = build_backbone(
                    "random", device=device, seed=config.seed, optimize=config.optimize, allow_download=False
                )
            models[config] = assemble_pyramid(backbones[key], config)
        return models[config]

    return get


@pytest.fixture(scope="session")
def random_backbone(random_pyramid: Callable[..., Pyramid]) -> ResNetBackbone:
    """The default random-weights backbone (seed 0, optimized), shared: tests must not change it."""
    return random_pyramid().backbone


@pytest.fixture
def cli_models(monkeypatch: pytest.MonkeyPatch, random_pyramid: Callable[..., Pyramid]) -> dict[PyramidConfig, Pyramid]:
    """The CLI takes its random-weights models from ``random_pyramid`` (other weights it builds);
    returns the models it asked for in this test, by configuration."""
    from fpn_core import build_pyramid
    from fpn_core.cli import common

    asked: dict[PyramidConfig, Pyramid] = {}

    def build(config: PyramidConfig, **kwargs: object) -> Pyramid:
        model = random_pyramid(config) if config.weights == "random" else build_pyramid(config, **kwargs)
        asked[config] = model
        return model

    monkeypatch.setattr(common, "build_pyramid", build)  # where the pyramid commands build it
    return asked


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


# ------------------------------------------------------------------ browser fixtures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``streamlit run dashboard.py`` on a free local port; yields its base URL, stops it after."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI; install it with `apt-get install -y chromium`")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); the browser test needs it")
    port = _free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:  # noqa: S310 (local)
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not answer on {base} within 90 s")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture(scope="session")
def server(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One running streamlit server for the browser tests; yields its base URL."""
    with running_server(test_env, tmp_path_factory.mktemp("server") / "streamlit.log") as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """System Chromium through playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
