"""Lets a test read every Python thread's stack in a server it started (``tests/test_browser_live.py``).

With ``FPN_THREAD_DUMP=<file>`` in the environment and this folder on ``PYTHONPATH``, the process
writes all its threads' stacks to that file on SIGUSR1 (``faulthandler``); without it, nothing.
"""

import faulthandler
import os
import signal

if os.environ.get("FPN_THREAD_DUMP"):
    _DUMP = open(os.environ["FPN_THREAD_DUMP"], "a")  # noqa: SIM115 (kept open for the process's life)
    faulthandler.register(signal.SIGUSR1, file=_DUMP, all_threads=True)
