"""Section: listing a models folder of 8 checkpoints, one of each of torchvision's ResNet-50-FPN detectors.

The eight state dicts come from torchvision's own builders (``weights=None, weights_backbone=None``,
each with its own number of classes), written to a temporary folder. ``fpn_core.checkpoints.list_models``
reads each file memory-mapped (keys and shapes, not the data) and checks it against the detector that
torchvision's builder makes on the ``meta`` device. Measured twice:

- in a fresh process (nothing cached: the first listing a dashboard or CLI does), the call alone;
- rescans in this process ("Try again"), the builders' key and shape tables already cached.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import ROOT
from .measure import Context
from .report import Row, Table, fmt

SECTION = "models folder"
TARGET_S = 2.0

_FRESH = """
import json, sys, time
from fpn_core.checkpoints import list_models
t = time.perf_counter()
listing = list_models(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - t, "n": len(listing), "problems": len(listing.problems)}))
"""


def write_eight(folder: Path) -> list[str]:
    """The eight detectors' random state dicts, ``<kind>.pth``, classes 2..9; returns the kinds."""
    from torchvision.models import detection

    from fpn_core.detectors import DETECTORS

    for i, (kind, spec) in enumerate(DETECTORS.items()):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            model = getattr(detection, spec.builder)(weights=None, weights_backbone=None, num_classes=2 + i)
        torch.save(model.state_dict(), folder / f"{kind}.pth")
        del model
    return list(DETECTORS)


def run(ctx: Context) -> None:
    """Target: listing 8 checkpoints <= 2 s (fresh process, and a rescan)."""
    from fpn_core.checkpoints import list_models

    rep = ctx.report
    rep.section(SECTION)
    runs = 3 if ctx.quick else 5
    with tempfile.TemporaryDirectory(prefix="fpn-bench-models-") as tmp:
        folder = Path(tmp)
        kinds = write_eight(folder)
        size_mb = sum(p.stat().st_size for p in folder.glob("*.pth")) / 2**20
        fresh = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", _FRESH, str(folder)], cwd=ROOT, capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["n"] == len(kinds) and result["problems"] == 0, result
            fresh.append(result["s"])
        listing = list_models(folder)  # fills this process's caches
        assert sorted(i.kind for i in listing) == sorted(kinds), listing.problems
        rescans = []
        for _ in range(runs):
            t = time.perf_counter()
            list_models(folder)
            rescans.append(time.perf_counter() - t)
    table = Table(
        SECTION,
        f"list_models on 8 checkpoints ({size_mb:.0f} MB in all), seconds over {runs} runs",
        ["case", "median s", "min s", "max s"],
    )
    for case, times in (("fresh process", fresh), ("rescan", rescans)):
        median = statistics.median(times)
        table.rows.append([case, fmt(median), fmt(min(times)), fmt(max(times))])
        rep.row(
            Row(
                SECTION,
                f"list 8 checkpoints ({case})",
                median,
                "s",
                TARGET_S,
                "<=",
                f"median of {runs}; {', '.join(f'{t:.2f}' for t in times)} s; kinds: {', '.join(kinds)}",
            )
        )
    rep.table(table)
