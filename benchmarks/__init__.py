"""FPN Explorer's benchmark suite: measurements printed as tables, never timed assertions.

Run ``python -m benchmarks`` (``--quick`` for a smoke run, ``--only NAME`` for one section).
Every comparison runs both sides alternately in one process and reports the median ratio over
the pairs, with the spread of the ratios and the machine load, because the machine is shared.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
