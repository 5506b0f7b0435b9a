"""Section 7: cold start of a fresh process, and of ``streamlit run dashboard.py`` to a rendered page.

The browser run uses the Debian Chromium at /usr/bin/chromium through playwright (never a
downloaded browser). The browser is started before the server so its own start-up is not
counted. The server runs under ``benchmarks._probe serve``, which counts backbone builds and
forward passes on the engine's classes, so "the model loads once, not per session" is shown by
counts as well as by the second session's render time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from . import ROOT
from .chromium import CHROMIUM, CHROMIUM_ARGS
from .measure import Context
from .report import Row, Table, fmt
from .scaling import probe

SECTION = "7 cold start"
RENDERED_JS = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
  if (document.querySelector("[data-testid='stSpinner'], [data-testid='stSkeleton']")) return false;
  return document.querySelectorAll("[data-testid='stElementContainer']").length > 0;
}"""


def run(ctx: Context) -> None:
    rep = ctx.report
    rep.section(SECTION)
    _process_cold_start(ctx)
    _streamlit_cold_start(ctx)


def _process_cold_start(ctx: Context) -> None:
    rep = ctx.report
    runs = 1 if ctx.quick else 3
    results, walls = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        results.append(probe(["coldstart", "--size", "512"]))
        walls.append((time.perf_counter() - t0) * 1e3)
    table = Table(
        SECTION,
        "fresh process to first analysis (random weights, c3-c5, d=256, 512 px; ms)",
        [
            "run",
            "interpreter",
            "import fpn_core",
            "build_pyramid",
            "first analysis",
            "second analysis",
            "process start -> first result",
            "subprocess wall",
        ],
    )
    for i, (r, w) in enumerate(zip(results, walls, strict=True), 1):
        table.rows.append(
            [
                str(i),
                fmt(r["interpreter_to_main_ms"]),
                fmt(r["import_ms"]),
                fmt(r["build_ms"]),
                fmt(r["first_analysis_ms"]),
                fmt(r["second_analysis_ms"]),
                fmt(r["process_to_first_analysis_ms"]),
                fmt(w),
            ]
        )
    rep.table(table)
    med = statistics.median(r["process_to_first_analysis_ms"] for r in results)
    first = statistics.median(r["first_analysis_ms"] for r in results)
    second = statistics.median(r["second_analysis_ms"] for r in results)
    rep.row(
        Row(
            SECTION,
            "fresh process -> first analysis done (random weights)",
            med / 1e3,
            " s",
            detail=f"median of {runs}; first analysis {fmt(first)} ms vs second {fmt(second)} ms "
            f"(oneDNN primitive creation on first use)",
        )
    )


def streamlit_args(dashboard: Path, port: int) -> list[str]:
    """``streamlit run``'s script and flags for a quiet, local, headless benchmark server."""
    return [
        str(dashboard),
        "--server.headless=true",
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - localhost only
                if resp.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


def _render(browser, url: str, timeout_ms: float) -> tuple[float, int]:
    """Open ``url`` in a new browser context (a new streamlit session); seconds until rendered, exceptions."""
    context = browser.new_context()
    try:
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
        page.wait_for_function(RENDERED_JS, timeout=timeout_ms, polling=100)
        page.wait_for_timeout(300)  # and still rendered a moment later: no second run started
        page.wait_for_function(RENDERED_JS, timeout=timeout_ms, polling=100)
        done = time.perf_counter() - 0.3
        return done - t0, len(page.query_selector_all("[data-testid='stException']"))
    finally:
        context.close()


def _read_counts(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _streamlit_cold_start(ctx: Context) -> None:
    rep = ctx.report
    dashboard = Path(str(ctx.dashboard)) if ctx.dashboard else ROOT / "dashboard.py"
    name = "streamlit run -> first page rendered in Chromium"
    if not dashboard.is_file():
        rep.row(Row(SECTION, name, None, " s", skipped=f"{dashboard.name} does not exist yet"))
        return
    if not CHROMIUM.exists():
        rep.row(Row(SECTION, name, None, " s", skipped=f"{CHROMIUM} is missing"))
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        rep.row(Row(SECTION, name, None, " s", skipped="playwright is not installed"))
        return

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Only the child's environment: no downloads (no internet here; a 15 s timeout would count).
    env = {**os.environ, "FPN_ALLOW_DOWNLOAD": "0"}
    with tempfile.TemporaryDirectory(prefix="fpn-bench-st-") as tmp:
        counts_path = Path(tmp) / "counts.json"
        log_path = Path(tmp) / "streamlit.log"
        with sync_playwright() as pw, open(log_path, "w", encoding="utf-8") as log:
            t_browser = time.perf_counter()
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            browser_s = time.perf_counter() - t_browser
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks._probe",
                    "serve",
                    str(counts_path),
                    "--",
                    *streamlit_args(dashboard, port),
                ],
                cwd=dashboard.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                healthy = _wait_health(f"{url}/_stcore/health", proc, timeout=120) - t0
                first_s, exc1 = _render(browser, url, timeout_ms=300_000)
                first_total = time.perf_counter() - t0
                counts1 = _read_counts(counts_path)
                second_s, exc2 = _render(browser, url, timeout_ms=300_000)
                counts2 = _read_counts(counts_path)
            except Exception as exc:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-600:]
                rep.row(Row(SECTION, name, None, " s", skipped=f"failed: {type(exc).__name__}: {exc}; log: {tail}"))
                return
            finally:
                browser.close()
                _stop(proc)
    rep.row(
        Row(
            SECTION,
            name,
            first_total,
            " s",
            detail=f"health after {fmt(healthy)} s, first session rendered {fmt(first_s)} s after opening; "
            f"browser start {fmt(browser_s)} s not counted; {exc1} exception boxes; FPN_ALLOW_DOWNLOAD=0",
        )
    )
    rep.row(
        Row(
            SECTION,
            "second browser session: open -> rendered",
            second_s,
            " s",
            detail=f"vs {fmt(first_s)} s for the first session; {exc2} exception boxes",
        )
    )
    builds1, builds2 = counts1.get("backbone_builds"), counts2.get("backbone_builds")
    rep.row(
        Row(
            SECTION,
            "backbone builds added by the second session",
            float((builds2 or 0) - (builds1 or 0)),
            "",
            0.0,
            "<=",
            f"builds after session 1: {builds1}, after session 2: {builds2}; forwards "
            f"{counts1.get('backbone_forwards')} -> {counts2.get('backbone_forwards')} (backbone), "
            f"{counts1.get('fpn_forwards')} -> {counts2.get('fpn_forwards')} (FPN)",
        )
    )


@contextlib.contextmanager
def served(dashboard: Path, prefix: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A fresh ``streamlit run`` of ``dashboard`` on a free port, offline, with an empty torch hub cache
    (random weights): yields its base URL and process once it answers, stops it after."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FPN_ALLOW_DOWNLOAD": "0", "TORCH_HOME": tempfile.mkdtemp(prefix=prefix)}
    env.pop("FPN_WEIGHTS", None)
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", *streamlit_args(dashboard, port)],
            cwd=dashboard.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_health(f"{base}/_stcore/health", proc, timeout=120)
        yield base, proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the streamlit server this section started (its own process group, by id)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
