"""Helpers the operator mappings share: host copies of small tensors, constants, axes."""
from __future__ import annotations

import numpy as np

from lamina import backend
from lamina.tensor import _wrap

from ..errors import OnnxImportError
from ..proto import MAX_TENSOR_BYTES


def host(t) -> np.ndarray:
    """A NumPy copy of a tensor's values (shape inputs, indices, constants), wherever it lives."""
    a = t.array
    return a if isinstance(a, np.ndarray) else a.get()


def ints(t) -> list:
    return [int(v) for v in host(t).reshape(-1)]


def scalar(t):
    return host(t).reshape(-1)[0].item()


def wrap(a, like=None):
    """A tensor around array ``a`` on the device of ``like`` (no gradient: a constant)."""
    t = _wrap(_contiguous(np.asarray(a)))
    if like is not None and like.device != t.device:
        t = t.to(like.device)
    return t


def raw(fn, *tensors):
    """``fn(xp, *arrays)`` on the arrays of ``tensors``, wrapped as a tensor: for integer, boolean
    and index arithmetic that has no gradient (the result is a constant)."""
    arrays = [t.array for t in tensors]
    xp = backend.xp_of(arrays[0])
    return _wrap(_contiguous(xp.asarray(fn(xp, *arrays))))


def _contiguous(a):
    # not ascontiguousarray: that turns a 0-d array into a 1-d one
    return a if a.flags.c_contiguous else a.copy()


def xp_of(t):
    return backend.xp_of(t.array)


_FLOATS = ("float16", "float32", "float64", "bfloat16")


def is_float(t) -> bool:
    """A tensor of one of the float types Lamina computes with (bfloat16's NumPy kind is not 'f')."""
    return t.dtype.name in _FLOATS


def axis(node, a, ndim):
    a = int(a)
    if not -ndim <= a < max(ndim, 1):
        raise OnnxImportError(f"lamina.onnx: {node.where()}: axis {a} is out of range for a tensor of {ndim} dims")
    return a % ndim if ndim else 0


def axes(node, values, ndim):
    return [axis(node, a, ndim) for a in values]


def check_size(node, shape, itemsize=8):
    """Refuse to create a tensor larger than the per-tensor limit (a hostile shape input)."""
    shape = [int(s) for s in shape]
    if any(s < 0 for s in shape):
        raise OnnxImportError(f"lamina.onnx: {node.where()}: negative dimension in shape {shape}")
    n = 1
    for s in shape:
        n *= s
    if n * itemsize > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"lamina.onnx: {node.where()}: shape {shape} would need {n * itemsize} bytes, over "
                              f"the {MAX_TENSOR_BYTES} byte limit for one tensor")
    return shape


def fail(node, msg):
    raise OnnxImportError(f"lamina.onnx: {node.where()}: {msg}")
