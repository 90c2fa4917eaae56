"""Tensors across processes: ``share_memory_`` moves a tensor's array into a shared-memory
segment, and the reducers registered with ``multiprocessing``'s pickler send such a tensor by the
segment's name (the receiver maps the same memory), any other tensor by value.

``module_share_memory`` shares a whole module: its parameters, buffers and existing gradients.
The parameters of one dtype are laid out back to back in one segment, in ``parameters()``
order, so they tile one flat buffer that an optimiser can update in place (Hogwild-style
training: several processes updating one set of weights, without locks).

Lifetime: a segment belongs to the process that created it and its file is removed when that
process drops the tensor or exits; processes that mapped it keep their mapping. So the creator
must keep the tensor alive until the receivers have it (a ``Process`` that gets it as an
argument, or a message still in a ``Queue``), as with PyTorch's ``file_system`` strategy.
CUDA tensors are not moved: ``share_memory_`` leaves them as they are and they travel by value.
"""
from __future__ import annotations

from multiprocessing.reduction import ForkingPickler

import numpy as np

from ..creation import from_numpy
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import shared_memory


def _raw(tensor):
    """The tensor's NumPy/CuPy array."""
    return tensor.array


def _set_raw(tensor, array) -> None:
    tensor.array = array


def _on_cpu(array) -> bool:
    return type(array) is np.ndarray


def is_shared(tensor) -> bool:
    """Whether ``tensor``'s array lives in a shared-memory segment (``Tensor.is_shared()``)."""
    return shared_memory.segment_of(_raw(tensor)) is not None


def _move_into_segment(tensors) -> None:
    """Copy the arrays of ``tensors`` (CPU, one dtype) back to back into one new segment and make
    each tensor use its slice."""
    arrays = [_raw(t) for t in tensors]
    seg = shared_memory.create_segment(sum(a.nbytes for a in arrays))
    offset = 0
    for t, a in zip(tensors, arrays):
        view = shared_memory.array_view(seg, offset, a.shape, a.dtype)
        view[...] = a
        _set_raw(t, view)
        offset += a.nbytes


def share_memory_(tensor):
    """Move ``tensor``'s array into shared memory (in place; returns the tensor). A tensor already
    shared, or on a GPU, is left as it is. Views made earlier keep the old memory."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"share_memory_: expected a lamina.Tensor, got {type(tensor).__name__}")
    array = _raw(tensor)
    if _on_cpu(array) and not is_shared(tensor):
        if array.dtype.kind in "OV":
            raise TypeError(f"share_memory_: cannot share an array of dtype {array.dtype}")
        _move_into_segment([tensor])
    return tensor


def module_share_memory(module):
    """Move a module's parameters, buffers and existing gradients into shared memory (in place;
    returns the module), each dtype's parameters back to back in one segment."""
    groups = {}
    seen = set()

    def add(kind, t):
        if t is None or id(t) in seen:
            return
        seen.add(id(t))
        a = _raw(t)
        if _on_cpu(a) and not is_shared(t):
            groups.setdefault((kind, a.dtype.str), []).append(t)

    params = list(module.parameters())
    for p in params:
        add("param", p)
    for b in module.buffers():
        add("buffer", b)
    for p in params:
        add("grad", p.grad)
    for tensors in groups.values():
        _move_into_segment(tensors)
    return module


# ------------------------------------------------------------------ pickling for multiprocessing
def _rebuild(cls, array, requires_grad):
    if cls is Parameter:
        return Parameter(from_numpy(array) if _on_cpu(array) else Tensor(array), requires_grad=requires_grad)
    t = from_numpy(array) if _on_cpu(array) else Tensor(array)
    return t.requires_grad_(True) if requires_grad else t


def _rebuild_shared(cls, path, offset, shape, dtype, strides, requires_grad):
    seg = shared_memory.open_segment(path)
    return _rebuild(cls, shared_memory.array_view(seg, offset, shape, dtype, strides), requires_grad)


def reduce_tensor(tensor):
    """How ``multiprocessing`` pickles a Tensor: by segment name when shared, else by value."""
    array = _raw(tensor)
    found = shared_memory.segment_of(array)
    if found is None:
        return _rebuild, (type(tensor), array, tensor.requires_grad)
    seg, offset = found
    return _rebuild_shared, (type(tensor), seg.path, offset, array.shape, array.dtype.str, array.strides,
                             tensor.requires_grad)


def init_reductions() -> None:
    """Register ``reduce_tensor`` for Tensor and Parameter with ``multiprocessing``'s pickler."""
    for cls in (Tensor, Parameter):
        ForkingPickler.register(cls, reduce_tensor)
