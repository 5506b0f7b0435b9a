"""A restricted unpickler for detectron2's model-zoo ``.pkl`` files: numpy arrays and plain data only.

detectron2 publishes its trained models as a plain pickle of
``{"model": {name: numpy array}, "__author__": ...}``, which ``torch.load`` cannot read. An
ordinary ``pickle.load`` would run any callable the file names, so this unpickler resolves
only the handful of globals that numpy's own array pickling uses, each wrapped to accept
nothing but a plain numeric array:

- ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2): protocols 0 to 4;
- ``numpy.core.numeric._frombuffer``: protocol 5;
- ``numpy.dtype``, refusing object (and any object-holding structured) dtypes;
- ``numpy.core.multiarray.scalar``: numpy scalars of numeric dtypes;
- ``_codecs.encode(text, "latin1")``: how Python 3 writes bytes at protocol 2;
- ``collections.OrderedDict``.

Any other global (``os.system``, ``builtins.eval``, ...) raises before anything is called,
so a malicious file is refused and never run. After loading, every array is checked once more.
"""

from __future__ import annotations

import _codecs
import collections
import io
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allowed numpy-array set, or holds an object array."""


def _checked_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("the pickle holds an object array (dtype object), which is never unpickled")
    return dtype


try:  # numpy 2
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct


def _checked_reconstruct(cls: type, shape: Any, dtype_char: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError(f"the pickle reconstructs {getattr(cls, '__name__', cls)!r}, not a plain numpy array")
    _checked_dtype(dtype_char.decode("latin1") if isinstance(dtype_char, bytes) else dtype_char)
    return _numpy_reconstruct(np.ndarray, shape, dtype_char)


def _checked_frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("the pickle holds an object array (dtype object), which is never unpickled")
    if not isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafePickleError(f"the pickle gives an array a {type(buffer).__name__} as its data")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if order == "F" else "C")


def _checked_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, str)):
        raise UnsafePickleError("the pickle holds a numpy scalar that is not a plain number")
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


def _checked_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("the pickle calls _codecs.encode with something other than latin-1 text")
    return _codecs.encode(text, encoding)


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
#: (module, name) -> the callable the unpickler may use for it.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    **{(m, "_reconstruct"): _checked_reconstruct for m in _NUMPY_MODULES},
    **{(m, "scalar"): _checked_scalar for m in _NUMPY_MODULES},
    **{(m, "_frombuffer"): _checked_frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
    ("_codecs", "encode"): _checked_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(f"the pickle names {module}.{name}, which is not a numpy array; it was not run")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("the pickle refers to persistent objects (a torch file?), not numpy arrays")


def load_numpy_pickle(fh: IO[bytes]) -> Any:
    """Unpickle ``fh`` allowing numpy arrays and plain Python data only.

    ``encoding="latin1"`` reads pickles written by Python 2 (detectron's older zoo files) as
    detectron2 itself does.

    Raises:
        UnsafePickleError: a global outside the allowed set, or an object array.
        pickle.UnpicklingError, EOFError, ValueError: a truncated or corrupt pickle.
    """
    obj = NumpyOnlyUnpickler(fh, encoding="latin1").load()
    _check_arrays(obj)
    return obj


def loads_numpy_pickle(data: bytes) -> Any:
    """:func:`load_numpy_pickle` on bytes."""
    return load_numpy_pickle(io.BytesIO(data))


def _check_arrays(obj: Any) -> None:
    """Every array in ``obj`` (dicts, lists, tuples walked) is numeric: no object dtype slipped through."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise UnsafePickleError("the pickle holds an object array (dtype object)")
