"""Convolutions with their weights packed once for oneDNN, for inference on the CPU.

torch's CPU convolution (``aten::mkldnn_convolution``) takes a dense weight and reorders it into
oneDNN's blocked layout on every call. For a ResNet-50 on a small input that reorder costs about
as much as the arithmetic: layer4 reads 15 M weights for an 8 x 10 map. Here each weight is
reordered once per input size (oneDNN picks the layout for the shapes it will see) and kept; the
ReLU after a convolution, and a bottleneck's residual add, run inside the convolution as oneDNN
post-ops instead of as separate passes over the activations. A convolution is packed on its second
use at an input size; its first use (a new FPN width, a one-off image size) runs the same oneDNN kernel
on the dense weight and keeps nothing. The results are torch's numbers: the same oneDNN kernels compute
them (tests compare them bit for bit), except on maps of at most 20480 values, where torch itself falls
back to its slower THNN kernel (equal within float rounding, about 1e-6 relative).

Measured on the 2-core CPU (``python -m benchmarks --only packed``, both in one run): the folded
ResNet-50 at 256 x 320 0.78x (47 -> 37 ms), a whole live RetinaNet frame at 320 px 0.79x (141 -> 110 ms).

- :func:`conv2d` runs one ``nn.Conv2d`` (optionally ``relu(conv(x))`` or ``relu(conv(x) + add)``);
  :func:`run` runs a module, fusing each ``Conv2d`` that a ``ReLU`` follows in a ``Sequential``.
- Packing applies to channels_last float32 CPU tensors (the folded models' layout) when no
  gradient is recorded; anything else (a GPU, autograd for the receptive fields, another dtype
  or layout) runs torch's own modules, unchanged.
- The packed weights are a cache, not part of the model: the state dict is untouched, a weight
  changed in place (``load_state_dict``) is packed again, and a dropped module's packs go with
  it. The cache holds at most :data:`BUDGET_MB`; the least recently used packs go first.
- ``FPN_PACKED=0`` in the environment turns packing off (torch's own convolutions throughout).

This uses torch's private ``torch.ops.mkldnn._convolution_pointwise`` and
``torch._C._nn.mkldnn_reorder_conv2d_weight`` (the ops TorchInductor's CPU freezing uses) and
``torch.utils._python_dispatch._get_current_dispatch_mode`` (FLOP counting sees aten's convolutions);
``requirements.txt`` pins torch to the minor version the tests cover, and a build where they are
missing or compute otherwise (checked once, on a small convolution) runs torch's own convolutions.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ["BUDGET_MB", "PACKED_ENV", "PackedConv", "cache_info", "conv2d", "enabled", "packing", "run"]

#: The packed weights kept at most, in MB (about 95 MB packs a ResNet-50 for one input size).
BUDGET_MB = 512
#: A convolution is packed on its second use at an input size (the first reorders its weight for that call
#: only): a module used once (a new FPN width, a one-off image size) keeps no pack. This many first uses
#: are remembered.
SEEN = 4096
#: ``FPN_PACKED=0`` turns packing off for the process.
PACKED_ENV = "FPN_PACKED"

_state = threading.local()


@lru_cache(maxsize=1)
def _ops_work() -> bool:
    """Whether this torch build has the two ops and they compute a small convolution as torch does (checked once)."""
    if not (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
    ):
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(8, 8, 3, padding=1).eval().requires_grad_(False).to(memory_format=torch.channels_last)
        x = torch.randn(1, 8, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            got = PackedConv.of(conv, (1, 6, 7))(x, relu=True)
            return bool(torch.allclose(got, torch.relu(conv(x)), rtol=1e-4, atol=1e-5))
    except Exception:  # an op missing or unsupported on this CPU (another ISA, another oneDNN backend)
        return False


@dataclass(frozen=True)
class PackedConv:
    """One convolution's weight in oneDNN's layout for one input size, with what the op needs."""

    weight: Tensor  # an MKLDNN tensor
    bias: Tensor | None
    padding: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int
    nbytes: int

    @classmethod
    def of(cls, conv: nn.Conv2d, size: tuple[int, int, int]) -> PackedConv:
        """Pack ``conv``'s weight for inputs of ``size`` (batch, height, width)."""
        weight, bias, geometry = _parts(conv)
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.contiguous().to_mkldnn(), *geometry, [size[0], weight.shape[1], size[1], size[2]]
        )
        return cls(packed, bias, *geometry, nbytes=weight.numel() * weight.element_size())

    def __call__(self, x: Tensor, *, relu: bool = False, add: Tensor | None = None) -> Tensor:
        return _onednn(x, self.weight, self.bias, (self.padding, self.stride, self.dilation, self.groups), relu, add)


def _parts(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None, tuple]:
    """A convolution's dense weight, bias and (padding, stride, dilation, groups), as oneDNN's ops take them."""
    bias = None if conv.bias is None else conv.bias.detach()
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)  # type: ignore[arg-type]
    return conv.weight.detach(), bias, geometry


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None, geometry: tuple, relu: bool, add: Tensor | None) -> Tensor:
    """oneDNN's convolution with its ReLU or add-and-ReLU post-op; ``weight`` packed or dense (reordered per call)."""
    if add is None:
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *geometry, "relu" if relu else "none", [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, add, weight, bias, *geometry, "add", None, "relu" if relu else None, [], ""
    )


class _Cache:
    """Packs per (convolution, input batch and size, weight storage and version); least recently used out."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._packs: OrderedDict[tuple[int, tuple[int, int, int], int, int], PackedConv] = OrderedDict()
        self._seen: OrderedDict[tuple[int, tuple[int, int, int], int, int], None] = OrderedDict()
        self._watched: set[int] = set()
        self._dead: list[int] = []
        self.bytes = 0

    def get(self, conv: nn.Conv2d, size: tuple[int, int, int]) -> PackedConv | None:
        """The pack for ``conv`` at ``size``; None on its first use there (see :data:`SEEN`)."""
        key = (id(conv), size, conv.weight.data_ptr(), conv.weight._version)
        with self._lock:
            self._purge()
            pack = self._packs.get(key)
            if pack is not None:
                self._packs.move_to_end(key)
                return pack
            if key not in self._seen:
                self._seen[key] = None
                while len(self._seen) > SEEN:
                    self._seen.popitem(last=False)
                return None
            del self._seen[key]
        pack = PackedConv.of(conv, size)  # outside the lock: a few ms, and two threads may both pack once
        with self._lock:
            if key not in self._packs:
                self._packs[key] = pack
                self.bytes += pack.nbytes
            if id(conv) not in self._watched:  # the module's packs go when it does (before its id is reused)
                self._watched.add(id(conv))
                weakref.finalize(conv, self._forget, id(conv))
            while self.bytes > self.budget_bytes and len(self._packs) > 1:
                _, old = self._packs.popitem(last=False)
                self.bytes -= old.nbytes
        return pack

    def _forget(self, conv_id: int) -> None:
        # Called by the garbage collector, in whatever thread it runs, maybe inside one of this
        # cache's own locked sections: only note the id; _purge drops its packs under the lock.
        self._dead.append(conv_id)

    def _purge(self) -> None:
        while self._dead:
            conv_id = self._dead.pop()
            self._watched.discard(conv_id)
            for key in [k for k in self._packs if k[0] == conv_id]:
                self.bytes -= self._packs.pop(key).nbytes

    def info(self) -> dict[str, int]:
        with self._lock:
            self._purge()
            return {"packs": len(self._packs), "bytes": self.bytes, "convolutions": len({k[0] for k in self._packs})}


_cache = _Cache(BUDGET_MB * 2**20)


def enabled() -> bool:
    """Whether packing is on in this thread (the ops exist, ``FPN_PACKED`` is not 0, no :func:`packing` (False))."""
    local = getattr(_state, "on", None)
    wanted = local if local is not None else os.environ.get(PACKED_ENV, "1").strip() != "0"
    return wanted and _ops_work()


@contextmanager
def packing(on: bool) -> Iterator[None]:
    """Turn packing on or off in this thread for a block (benchmarks and tests compare the two)."""
    before = getattr(_state, "on", None)
    _state.on = on
    try:
        yield
    finally:
        _state.on = before


def cache_info() -> dict[str, int]:
    """How many packs the cache holds, their bytes and their convolutions."""
    return _cache.info()


def _applies(conv: nn.Conv2d, x: Tensor, add: Tensor | None) -> bool:
    return (
        type(x) is Tensor  # not a FakeTensor (FLOP counts on shapes alone)
        and _get_current_dispatch_mode() is None  # nor under FlopCounterMode, which counts aten's convolutions
        and not torch.jit.is_tracing()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and (add is None or (add.dtype == torch.float32 and add.is_contiguous(memory_format=torch.channels_last)))
        and conv.weight.dtype == torch.float32
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
        and not (add is not None and torch.is_grad_enabled() and add.requires_grad)
        and enabled()
    )


def conv2d(conv: nn.Conv2d, x: Tensor, *, relu: bool = False, add: Tensor | None = None) -> Tensor:
    """``conv(x)``, ``relu(conv(x))`` or ``relu(conv(x) + add)`` (``add`` implies the ReLU), packed where it applies.

    Args:
        conv: the convolution (its weights are read, never changed).
        x: ``(N, C, H, W)``; packed when channels_last (and out channels_last).
        relu: apply a ReLU to the result.
        add: a tensor of the output's shape added before the ReLU (a residual connection).
    """
    relu = relu or add is not None
    if _applies(conv, x, add):
        pack = _cache.get(conv, (int(x.shape[0]), int(x.shape[-2]), int(x.shape[-1])))
        if pack is not None:
            return pack(x, relu=relu, add=add)
        # the first use: the same oneDNN kernel on the dense weight (reordered for this call only), so the
        # numbers do not change when the pack arrives (torch's own conv takes THNN on maps of <= 20480 values)
        return _onednn(x, *_parts(conv), relu, add)
    y = conv(x)
    if add is not None:
        y = y + add
    return F.relu(y) if relu else y


def run(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``, with each ``Conv2d`` packed and a ``ReLU`` right after one (in a ``Sequential``) fused into it.

    Sequentials nest (torchvision's ``Conv2dNormActivation`` is one); any other module runs as it is.
    """
    if isinstance(module, nn.Conv2d):
        return conv2d(module, x)
    if not isinstance(module, nn.Sequential):
        return module(x)
    layers = list(module)
    i = 0
    while i < len(layers):
        layer = layers[i]
        follows = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(follows, nn.ReLU):
            x = conv2d(layer, x, relu=True)
            i += 2
        else:
            x = run(layer, x)
            i += 1
    return x
