"""Streamlit glue for FPN Explorer: state keys, the shared sidebar, cached loaders, renderers.

Only ``ui``, ``pages`` and ``dashboard.py`` import streamlit; ``fpn_core`` never does.

The served app shares its cores with the browser on the same machine and with other sessions,
so OpenMP's threads sleep when idle instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, read once
when torch loads, hence here, before any torch import). Spinning threads beside a busy core
made a width step on the FPN outputs page take 0.47 s instead of 0.25 s in Chromium; at 512 px on a
quiet machine passive waiting costs nothing measurable (``benchmarks --only contention``). An
operator's own value wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
