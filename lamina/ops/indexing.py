"""Indexing ops: ``x[index]`` (ints, slices with steps, None, Ellipsis, integer arrays, boolean
masks), ``x[index] = v``, gather/scatter_add, index_select/index_add and one_hot.

Index tensors are op inputs (not attributes), so a traced graph keeps them as data. Gradients of
gathers are scatter-adds, which accumulate over repeated indices, and vice versa.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..grad_mode import _mode
from ..creation import tensor
from ..tensor import Tensor, _register_view
from .base import Op, as_tensor, normalize_dim, unbroadcast, xp_of
from . import shape as _shape  # shape imports this module: a module reference breaks the cycle

_TENSOR = object()  # marks the place of an index tensor in a stored index spec


def _add_at(xp, out, index, values):
    """``out[index] += values`` with repeated indices accumulated."""
    if xp is np:
        np.add.at(out, index, values)
    else:
        import cupyx  # present only where CuPy is
        cupyx.scatter_add(out, index, values)


def _index_error(opname, e, x_shape):
    return IndexError(f"{opname}: {e} (tensor shape {x_shape})")


# ---------------------------------------------------------------- x[index] and x[index] = v

def _split_index(index, x: Tensor, opname: str):
    """Split a user index into a spec (basic parts + placeholders) and the index tensors."""
    if not isinstance(index, tuple):
        index = (index,)
    spec, tensors = [], []
    for part in index:
        if part is None or part is Ellipsis or isinstance(part, slice):
            spec.append(part)
        elif isinstance(part, (bool, np.bool_)):
            tensors.append(Tensor(np.array(bool(part)), device=x.device))
            spec.append(_TENSOR)
        elif isinstance(part, (int, np.integer)):
            spec.append(int(part))
        elif isinstance(part, (Tensor, np.ndarray, list, tuple, range)) or hasattr(part, "__cuda_array_interface__"):
            t = part if isinstance(part, Tensor) else tensor(list(part) if isinstance(part, range) else part,
                                                             device=x.device)
            if t.dtype.kind not in "biu":
                raise IndexError(f"{opname}: index tensors must be integer or bool, got {t.dtype}")
            if t.device != x.device:
                raise ValueError(f"{opname}: index on {t.device} cannot index a tensor on {x.device}")
            if t.dtype.kind == "b" and t.ndim > 0:
                ndim_before = sum(1 if isinstance(p, int) or p is _TENSOR or isinstance(p, slice) else 0
                                  for p in spec)
                want = x.shape[ndim_before:ndim_before + t.ndim] if Ellipsis not in spec else None
                if want is not None and tuple(want) != t.shape:
                    raise IndexError(f"{opname}: boolean mask of shape {t.shape} does not match the "
                                     f"indexed dims {tuple(want)} of the tensor (shape {x.shape})")
            tensors.append(t)
            spec.append(_TENSOR)
        else:
            raise TypeError(f"{opname}: unsupported index of type {type(part).__name__}")
    return tuple(spec), tensors


def _build_index(spec, arrays):
    it = iter(arrays)
    return tuple(next(it) if p is _TENSOR else p for p in spec)


class GetItem(Op):
    needs_inputs = False

    def __init__(self, spec):
        self.spec = spec

    def forward(self, x, *index_arrays):
        try:
            return x[_build_index(self.spec, index_arrays)]
        except IndexError as e:
            raise _index_error("getitem", e, x.shape) from None

    def backward(self, g, x, *index_tensors):
        base = g.new_zeros(x.shape)
        return (IndexPut(self.spec, True)(base, g, *index_tensors),) + (None,) * len(index_tensors)

    def onnx(self, g, x, *index):
        return g.getitem(self.spec, g.twin_attr("spec"), x, index)


class IndexPut(Op):
    """``x`` with ``values`` written (or, with ``accumulate``, added) at ``index``."""
    needs_inputs = False

    def __init__(self, spec, accumulate):
        self.spec, self.accumulate = spec, accumulate

    def forward(self, x, values, *index_arrays):
        index = _build_index(self.spec, index_arrays)
        out = x.copy()
        try:
            if not self.accumulate:
                out[index] = values
            elif any(a.dtype.kind in "iu" and a.ndim > 0 for a in index_arrays):
                _add_at(xp_of(x), out, index, values)  # integer arrays may repeat positions
            else:
                out[index] += values
        except IndexError as e:
            raise _index_error("index_put", e, x.shape) from None
        except ValueError as e:
            raise ValueError(f"index_put: values of shape {values.shape} do not fit the indexed "
                             f"region of a tensor of shape {x.shape}: {e}") from None
        return out

    def backward(self, g, x, values, *index_tensors):
        nx, nv = self.needs_input_grad[:2]
        gx = gv = None
        if nx:
            gx = g if self.accumulate else IndexPut(self.spec, False)(g, g.new_zeros(()), *index_tensors)
        if nv:
            gv = unbroadcast(GetItem(self.spec)(g, *index_tensors), values.shape)
        return (gx, gv) + (None,) * len(index_tensors)


def getitem(x, index):
    spec, tensors = _split_index(index, x, "getitem")
    out = GetItem(spec)(x, *tensors)
    if not tensors and xp_of(x.array).may_share_memory(out.array, x.array):
        out._version = x._version  # a basic index gives a view
        if _mode.enabled:
            _register_view(out, x, lambda b: GetItem(spec)(b))
    return out


def index_put(x, index, values, accumulate=False):
    """Out-of-place ``x[index] = values`` (or ``+=`` with ``accumulate``)."""
    spec, tensors = _split_index(index, x, "index_put")
    if not isinstance(values, Tensor):
        values = as_tensor(values, x)
    if values.dtype != x.dtype:
        values = values.to(x.dtype)
    if values.device != x.device:
        raise ValueError(f"index_put: values on {values.device} cannot be written into a tensor on {x.device}")
    return IndexPut(spec, accumulate)(x, values, *tensors)


# ---------------------------------------------------------------- gather / scatter_add

def _along(xp, index, dim):
    """Full advanced index that addresses ``out[..., index, ...]`` along ``dim``."""
    parts = []
    for k, n in enumerate(index.shape):
        if k == dim:
            parts.append(index)
        else:
            shape = [1] * index.ndim
            shape[k] = n
            parts.append(xp.arange(n).reshape(shape))
    return tuple(parts)


def _check_index_shape(opname, x_shape, index, dim, other=None):
    if index.ndim != len(x_shape):
        raise ValueError(f"{opname}: index must have as many dims as the input; got index shape "
                         f"{index.shape} for input shape {tuple(x_shape)}")
    for k, (i, s) in enumerate(zip(index.shape, x_shape)):
        if k != dim and i > s:
            raise ValueError(f"{opname}: index shape {index.shape} exceeds the input shape "
                             f"{tuple(x_shape)} in dim {k}")
        if other is not None and i > other[k]:
            raise ValueError(f"{opname}: index shape {index.shape} exceeds the src shape {tuple(other)} in dim {k}")


class Gather(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x, index):
        xp = xp_of(x)
        try:
            return x[_along(xp, index, self.dim)]
        except IndexError as e:
            raise _index_error("gather", e, x.shape) from None

    def backward(self, g, x, index):
        return ScatterAdd(self.dim)(g.new_zeros(x.shape), index, g), None

    def onnx(self, g, x, index):
        return g.op("GatherElements", [x, index], axis=self.dim)


class ScatterAdd(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x, index, src):
        xp = xp_of(x)
        out = x.copy()
        src = src[tuple(slice(0, n) for n in index.shape)]
        try:
            _add_at(xp, out, _along(xp, index, self.dim), src)
        except IndexError as e:
            raise _index_error("scatter_add", e, x.shape) from None
        return out

    def backward(self, g, x, index, src):
        nx, _, ns = self.needs_input_grad
        gsrc = None
        if ns:
            gsrc = Gather(self.dim)(g, index)
            if gsrc.shape != src.shape:
                gsrc = _pad_to(gsrc, src.shape)
        return (g if nx else None), None, gsrc

    def onnx(self, g, x, index, src):
        return g.op("ScatterElements", [x, index, src], axis=self.dim, reduction="add")


def _pad_to(g, shape):
    """Zero-pad ``g`` up to ``shape`` (src elements outside the index get no gradient)."""
    widths = []
    for have, want in reversed(list(zip(g.shape, shape))):
        widths += [0, want - have]
    return _shape.pad(g, widths)


def gather(x, dim, index):
    """``out[i][j] = x[index[i][j]][j]`` (for dim 0), as ``torch.gather``."""
    d = normalize_dim(dim, x.ndim, "gather")
    _check_int_index("gather", index)
    _check_index_shape("gather", x.shape, index, d)
    return Gather(d)(x, index)


def scatter_add(x, dim, index, src):
    """``x`` plus ``src`` added at ``index`` along ``dim``; repeated indices accumulate."""
    d = normalize_dim(dim, x.ndim, "scatter_add")
    _check_int_index("scatter_add", index)
    _check_index_shape("scatter_add", x.shape, index, d, other=src.shape)
    if src.dtype != x.dtype:
        raise TypeError(f"scatter_add: src dtype {src.dtype} does not match the input dtype {x.dtype}")
    return ScatterAdd(d)(x, index, src)


def _check_int_index(opname, index):
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        got = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{opname}: index must be an integer tensor, got {got}")


# ---------------------------------------------------------------- index_select / index_add

class IndexSelect(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x, index):
        n = x.shape[self.dim]
        if index.size and type(index) is np.ndarray and (index.min() < -n or index.max() >= n):
            bad = index[(index < -n) | (index >= n)][0]
            raise IndexError(f"index_select: index {bad} is out of range for dim {self.dim} of size {n} "
                             f"(tensor shape {x.shape})")
        return xp_of(x).take(x, index, axis=self.dim)

    def backward(self, g, x, index):
        return IndexAdd(self.dim)(g.new_zeros(x.shape), index, g), None

    def onnx(self, g, x, index):
        return g.op("Gather", [x, index], axis=self.dim)


class IndexAdd(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x, index, src):
        out = x.copy()
        try:
            _add_at(xp_of(x), out, (slice(None),) * self.dim + (index,), src)
        except IndexError as e:
            raise _index_error("index_add", e, x.shape) from None
        return out

    def backward(self, g, x, index, src):
        nx, _, ns = self.needs_input_grad
        return (g if nx else None), None, (IndexSelect(self.dim)(g, index) if ns else None)


def index_select(x, dim, index):
    d = normalize_dim(dim, x.ndim, "index_select")
    _check_int_index("index_select", index)
    if index.ndim != 1:
        raise ValueError(f"index_select: index must be 1-D, got shape {index.shape}")
    return IndexSelect(d)(x, index)


def index_add(x, dim, index, source):
    d = normalize_dim(dim, x.ndim, "index_add")
    _check_int_index("index_add", index)
    want = x.shape[:d] + (index.shape[0],) + x.shape[d + 1:]
    if index.ndim != 1 or source.shape != want:
        raise ValueError(f"index_add: source of shape {source.shape} with index of shape {index.shape} "
                         f"does not fit a tensor of shape {x.shape} along dim {dim} (expected {want})")
    return IndexAdd(d)(x, index, source)


# ---------------------------------------------------------------- one_hot

class OneHot(Op):
    differentiable = False

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def forward(self, index):
        xp = xp_of(index)
        return (index[..., None] == xp.arange(self.num_classes)).astype(backend.int64)

    def onnx(self, g, index):
        return g.op("OneHot", [index, g.scalar(self.num_classes, "int64"), g.ints([0, 1])], axis=-1)


def one_hot(index, num_classes=-1):
    _check_int_index("one_hot", index)
    if num_classes == -1:
        num_classes = int(index.max().item()) + 1 if index.numel() else 0
    if index.numel() and (int(index.min().item()) < 0 or int(index.max().item()) >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got range "
                         f"[{index.min().item()}, {index.max().item()}]")
    return OneHot(num_classes)(index)
