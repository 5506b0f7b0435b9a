"""Device choice (cuda, then mps, then cpu), per-device inference slots, device-error detection."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch

DEVICE_ENV = "FPN_DEVICE"
#: Analyses allowed to run at once per device type: one on the CPU (torch already uses every
#: core for one analysis, so two at once only make both slower and timings dishonest), two on a GPU.
SLOTS_PER_DEVICE = {"cpu": 1, "mps": 1, "cuda": 2}
_slots: dict[str, FairSlots] = {}
_slots_lock = threading.Lock()


class FairSlots:
    """``n`` slots handed over in arrival order: a thread that releases one and asks again queues
    behind those already waiting (a plain semaphore lets it barge ahead, so one live stream could
    starve the others and the pages)."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"need at least one slot, got {n}")
        self._free = n
        self._waiting: deque[object] = deque()
        self._cond = threading.Condition()

    def acquire(self) -> None:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                self._cond.wait_for(lambda: self._free > 0 and self._waiting[0] is ticket)
            except BaseException:  # interrupted while waiting: leave the line, or it blocks everyone behind
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._free -= 1
            self._cond.notify_all()  # the next in line may take another free slot

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


def available_devices() -> list[str]:
    """Devices present on this machine, best first (always ends with ``"cpu"``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(requested: str | None = None) -> tuple[torch.device, str | None]:
    """Pick the device to run on.

    Args:
        requested: ``"cuda"``, ``"mps"``, ``"cpu"``, ``"auto"`` or None. None reads the
            ``FPN_DEVICE`` environment variable, then falls back to auto (cuda, mps, cpu).

    Returns:
        The device, and a notice when the requested device is not present and the CPU is used.

    Raises:
        ValueError: for a name that is not a device type.
    """
    name = (requested or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    present = available_devices()
    if name == "auto":
        return torch.device(present[0]), None
    kind = name.split(":")[0]
    if kind not in ("cuda", "mps", "cpu"):
        raise ValueError(f"device must be auto, cuda, mps or cpu, got {name!r}")
    if kind not in present:
        return torch.device("cpu"), f"Device {name!r} is not available on this machine; using the CPU."
    return torch.device(name), None


def synchronize(device: torch.device) -> None:
    """Wait until queued work on ``device`` has finished (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextmanager
def device_slot(device: torch.device) -> Iterator[None]:
    """Hold one of the device's inference slots, so concurrent sessions queue (in turn) instead of thrash."""
    with _slots_lock:
        sem = _slots.get(device.type)
        if sem is None:
            sem = _slots[device.type] = FairSlots(SLOTS_PER_DEVICE.get(device.type, 1))
    sem.acquire()
    try:
        yield
    finally:
        sem.release()


def is_device_error(exc: BaseException) -> bool:
    """True for an accelerator failure (out of memory, a CUDA/MPS runtime error) worth a CPU retry."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    accel = getattr(torch, "AcceleratorError", None)
    if accel is not None and isinstance(exc, accel):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("CUDA", "cuDNN", "MPS", "out of memory", "device-side")
    )
