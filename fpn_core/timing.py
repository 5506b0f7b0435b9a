"""Recorders passed into a forward pass to time or count each named step.

A recorder is an argument, never a hook registered on the model, so the shared cached model
stays read-only and concurrent sessions cannot see each other's measurements.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from typing import Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode


class Recorder(Protocol):
    def step(self, name: str) -> ContextManager[None]: ...


class _NullRecorder:
    """Records nothing; the default, so an untimed forward costs nothing extra."""

    def step(self, name: str) -> ContextManager[None]:
        return nullcontext()


NULL_RECORDER: Recorder = _NullRecorder()


class StepTimer:
    """Wall-clock milliseconds per step, synchronized with the device.

    On CUDA each step is bracketed by CUDA events (read once at the end); on MPS the device is
    synchronized at each boundary; on the CPU work is synchronous and ``perf_counter`` is exact.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._ms: dict[str, float] = {}
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((name, start, end))
            return
        if self.device.type == "mps":
            torch.mps.synchronize()
        t0 = time.perf_counter()
        yield
        if self.device.type == "mps":
            torch.mps.synchronize()
        self._ms[name] = self._ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

    def result(self) -> dict[str, float]:
        """Milliseconds per step (waits for the device once on CUDA)."""
        if self._events:
            torch.cuda.synchronize(self.device)
            for name, start, end in self._events:
                self._ms[name] = self._ms.get(name, 0.0) + start.elapsed_time(end)
            self._events.clear()
        return dict(self._ms)


class FlopRecorder:
    """Floating-point operations per step, counted by ``torch.utils.flop_counter.FlopCounterMode``."""

    def __init__(self) -> None:
        self.flops: dict[str, int] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.flops[name] = self.flops.get(name, 0) + int(counter.get_total_flops())


def median_run(runs: Sequence[Mapping[str, float]], key: str = "total") -> dict[str, float]:
    """The run whose ``key`` time is the median (the lower middle for an even count)."""
    if not runs:
        return {}
    ordered = sorted(runs, key=lambda run: run[key])
    return dict(ordered[(len(ordered) - 1) // 2])
