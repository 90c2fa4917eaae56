"""Reductions over any set of dims, with ``keepdim``: sum, mean, amax/amin, max/min (values and
indices along one dim), prod, argmax/argmin, var/std, logsumexp, all/any."""
from __future__ import annotations

import builtins
from collections import namedtuple

from .. import backend, kernels as _kernels
from ..tensor import Tensor, _wrap
from .base import Op, check_float, normalize_dim, normalize_dims, xp_of
from .elementwise import _floating, exp, maximum, minimum, sqrt, where
from .shape import Expand, Reshape
from .indexing import scatter_add

_sum = builtins.sum


def _kept_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _expand_grad(g: Tensor, shape, dims, keepdim) -> Tensor:
    """Broadcast the gradient of a reduction back over the reduced dims (a view, no copy)."""
    if not keepdim and g.ndim:  # a 0-d gradient broadcasts as it is
        g = Reshape(_kept_shape(shape, dims))(g)
    return Expand(shape)(g) if g.shape != shape else g


# Elements from which a whole-array sum runs compiled (below, NumPy's call costs less than the
# kernel's: 2 us against 4.6 us for 1024 float32; 61 us against 28 us for 262144).
WHOLE_SUM_MIN = 1 << 14


def _whole(x, dims, keepdim, fn, *args):
    """fn(x, *args) (a 0-d array, or None when the kernel does not take x) for a reduction over
    every dim of a non-empty array; shaped for ``keepdim``."""
    if not dims or len(dims) != x.ndim or x.size == 0:
        return None
    y = fn(x, *args)
    return y.reshape((1,) * x.ndim) if y is not None and keepdim else y


def _count(shape, dims) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


class Sum(Op):
    needs_inputs = False

    def __init__(self, dims, keepdim, dtype=None):
        self.dims, self.keepdim, self.dtype = dims, keepdim, dtype

    def forward(self, x):
        if (self.dtype is None or self.dtype == x.dtype) and x.size >= WHOLE_SUM_MIN:
            y = _whole(x, self.dims, self.keepdim, _kernels.sum_all)
            if y is not None:
                return y
        return x.sum(axis=self.dims, keepdims=self.keepdim, dtype=self.dtype)

    def backward(self, g, x):
        return _expand_grad(g, x.shape, self.dims, self.keepdim)

    def onnx(self, g, x):
        x = g.cast(x, g.in_dtype(0), g.out_dtype())  # a bool or int sum (or dtype=) accumulates in the result type
        if self.dims == ():
            return g.op("Identity", [x])
        dims = range(len(g.in_shape(0))) if self.dims is None else self.dims
        return g.reduce("ReduceSum", x, dims, self.keepdim)


class Mean(Op):
    needs_inputs = False

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        y = _whole(x, self.dims, self.keepdim, _kernels.mean_all)
        return y if y is not None else x.mean(axis=self.dims, keepdims=self.keepdim)

    def backward(self, g, x):
        n = _count(x.shape, self.dims)
        return _expand_grad(g * (1.0 / n if n else float("nan")), x.shape, self.dims, self.keepdim)

    def onnx(self, g, x):
        if self.dims == ():
            return g.op("Identity", [x])
        dims = range(len(g.in_shape(0))) if self.dims is None else self.dims
        return g.reduce("ReduceMean", x, dims, self.keepdim)


class Amax(Op):
    """Maximum over dims; ties share the gradient evenly (as in PyTorch)."""
    save_output = True
    reduce = "max"

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        if x.size == 0 and _count(x.shape, self.dims) == 0:
            raise ValueError(f"{self.name}: cannot reduce over an empty dim (shape {x.shape}, dim {self.dims})")
        return getattr(x, self.reduce)(axis=self.dims, keepdims=self.keepdim)

    def backward(self, g, x):
        out = self.output()
        if not self.keepdim:
            out = out.reshape(_kept_shape(x.shape, self.dims))
        hit = (x == out).to(g.dtype)
        share = hit / hit.sum(dim=self.dims, keepdim=True)
        return _expand_grad(g, x.shape, self.dims, self.keepdim) * share

    def onnx(self, g, x):
        if self.dims == ():
            return g.op("Identity", [x])
        dims = range(len(g.in_shape(0))) if self.dims is None else self.dims
        return g.reduce("ReduceMax" if type(self).__name__ == "Amax" else "ReduceMin", x, dims, self.keepdim)


class Amin(Amax):
    reduce = "min"


class MaxDim(Op):
    """Values and indices of the maximum along one dim (``torch.max(x, dim)``)."""
    n_outputs = 2
    needs_inputs = False
    reduce = "argmax"

    def __init__(self, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        if x.shape[self.dim] == 0:
            raise ValueError(f"{self.name}: cannot reduce over an empty dim (shape {x.shape}, dim {self.dim})")
        xp = xp_of(x)
        idx = xp.expand_dims(getattr(x, self.reduce)(axis=self.dim), self.dim)
        values = xp.take_along_axis(x, idx, axis=self.dim)
        if not self.keepdim:
            idx, values = idx.squeeze(self.dim), values.squeeze(self.dim)
        self.saved = idx
        return values, idx.astype(backend.int64, copy=False)

    def backward(self, grads, x):
        g = grads[0]
        idx = _wrap(self.saved)
        if not self.keepdim:
            g = g.unsqueeze(self.dim)
            idx = idx.unsqueeze(self.dim)
        base = g.new_zeros(x.shape)
        return scatter_add(base, self.dim, idx, g)

    def onnx(self, g, x):
        is_max = type(self).__name__ == "MaxDim"
        values = g.reduce("ReduceMax" if is_max else "ReduceMin", x, [self.dim], self.keepdim)
        index = g.op("ArgMax" if is_max else "ArgMin", [x], axis=self.dim, keepdims=int(self.keepdim))
        return [values, index]


class MinDim(MaxDim):
    reduce = "argmin"


class Prod(Op):
    save_output = True

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        return x.prod(axis=self.dims, keepdims=self.keepdim)

    def backward(self, g, x):
        # The product of the other elements, exact also where x has zeros: with no zero in a slice
        # it is prod / x; with one zero, the zero's position gets the product of the rest and the
        # others 0; with two or more, everything is 0. The zero-valued terms are written with the
        # zeros themselves (zsum) so that the gradient of this backward, the second derivative, is
        # right too.
        is_zero = x == 0
        nonzero = where(is_zero, 1.0, x)
        p_nonzero = prod(nonzero, self.dims, keepdim=True)
        n_zero = is_zero.to(backend.int64).sum(dim=self.dims, keepdim=True)
        zsum = where(is_zero, x, 0.0).sum(dim=self.dims, keepdim=True)
        one_zero = where(is_zero, p_nonzero, zsum * p_nonzero / nonzero)
        two_zeros = where(is_zero, (zsum - x) * p_nonzero, 0.0)
        others = where(n_zero == 0, p_nonzero / nonzero,
                       where(n_zero == 1, one_zero, where(n_zero == 2, two_zeros, 0.0)))
        return _expand_grad(g, x.shape, self.dims, self.keepdim) * others

    def onnx(self, g, x):
        if self.dims == ():
            return g.op("Identity", [x])
        dims = range(len(g.in_shape(0))) if self.dims is None else self.dims
        return g.reduce("ReduceProd", g.cast(x, g.in_dtype(0), g.out_dtype()), dims, self.keepdim)


class Argmax(Op):
    differentiable = False
    reduce = "argmax"

    def __init__(self, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"{self.name}: cannot take {self.reduce} of an empty tensor (shape {x.shape})")
        if self.dim is None:
            out = getattr(x.reshape(-1), self.reduce)()
            if self.keepdim:
                out = out.reshape((1,) * x.ndim)
            return xp_of(x).asarray(out, dtype=backend.int64)
        out = getattr(x, self.reduce)(axis=self.dim, keepdims=self.keepdim)
        return out.astype(backend.int64, copy=False)

    def onnx(self, g, x):
        kind = "ArgMax" if self.reduce == "argmax" else "ArgMin"
        if self.dim is not None:
            return g.op(kind, [x], axis=self.dim, keepdims=int(self.keepdim))
        y = g.op(kind, [g.op("Reshape", [x, g.ints([-1])])], axis=0, keepdims=0)
        return g.op("Reshape", [y, g.ints(g.out_shape())]) if self.keepdim else y


class Argmin(Argmax):
    reduce = "argmin"


class Var(Op):
    def __init__(self, dims, keepdim, correction):
        self.dims, self.keepdim, self.correction = dims, keepdim, correction

    def forward(self, x):
        if _count(x.shape, self.dims) <= self.correction:  # too few elements: NaN, as in PyTorch
            shape = _kept_shape(x.shape, self.dims) if self.keepdim else tuple(
                s for i, s in enumerate(x.shape) if i not in self.dims)
            return xp_of(x).full(shape, float("nan"), dtype=x.dtype)
        y = _whole(x, self.dims, self.keepdim, _kernels.var_all, self.correction)
        return y if y is not None else x.var(axis=self.dims, keepdims=self.keepdim, ddof=self.correction)

    def backward(self, g, x):
        n = _count(x.shape, self.dims)
        centered = x - x.mean(dim=self.dims, keepdim=True)
        scale = 2.0 / (n - self.correction) if n > self.correction else float("nan")
        return _expand_grad(g, x.shape, self.dims, self.keepdim) * centered * scale

    def onnx(self, g, x):
        dims = list(range(len(g.in_shape(0))) if self.dims is None else self.dims)
        n = 1
        for d in dims:
            n *= g.in_shape(0)[d]
        centered = g.op("Sub", [x, g.reduce("ReduceMean", x, dims, True)])
        total = g.reduce("ReduceSum", g.op("Mul", [centered, centered]), dims, self.keepdim)
        denom = n - self.correction
        return g.op("Div", [total, g.scalar(denom if denom > 0 else float("nan"), g.out_dtype())])


class Logsumexp(Op):
    save_output = True
    name = "logsumexp"

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        xp = xp_of(x)
        m = x.max(axis=self.dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf slices: keep -inf, not NaN
        s = xp.exp(x - m).sum(axis=self.dims, keepdims=True)
        out = xp.log(s) + m
        return out if self.keepdim else out.squeeze(self.dims)

    def backward(self, g, x):
        out = self.output()
        if not self.keepdim:
            out = out.reshape(_kept_shape(x.shape, self.dims))
        return _expand_grad(g, x.shape, self.dims, self.keepdim) * exp(x - out)

    def onnx(self, g, x):
        # max-shifted, as forward: exp of large logits would overflow
        m = g.reduce("ReduceMax", x, self.dims, True)
        m = g.op("Where", [g.op("IsInf", [m]), g.scalar(0, g.in_dtype(0)), m])
        s = g.reduce("ReduceSum", g.op("Exp", [g.op("Sub", [x, m])]), self.dims, True)
        y = g.op("Add", [g.op("Log", [s]), m])
        return y if self.keepdim else g.op("Squeeze", [y, g.ints(self.dims)])


class All(Op):
    differentiable = False
    reduce = "all"

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        return getattr(x.astype(bool, copy=False), self.reduce)(axis=self.dims, keepdims=self.keepdim)

    def onnx(self, g, x):
        # ONNX reduces no bools: nonzero as int32 1, then the min (all) or max (any)
        x = g.cast(g.cast(x, g.in_dtype(0), bool), bool, "int32")
        dims = range(len(g.in_shape(0))) if self.dims is None else self.dims
        y = g.reduce("ReduceMin" if self.reduce == "all" else "ReduceMax", x, dims, self.keepdim)
        return g.cast(y, "int32", bool)


class Any(All):
    reduce = "any"


# ---------------------------------------------------------------- functions

def sum(x, dim=None, keepdim=False, dtype=None):
    dims = normalize_dims(dim, x.ndim, "sum")
    if dtype is None and x.dtype.kind in "bi" and x.dtype.itemsize < 8:
        dtype = backend.int64  # PyTorch sums integers and bools as int64
    return Sum(dims, keepdim, backend.as_dtype(dtype) if dtype is not None else None)(x)


def mean(x, dim=None, keepdim=False):
    if not backend.is_floating(x.dtype):
        raise TypeError(f"mean: expected a floating-point tensor, got {x.dtype}; convert it with .float()")
    return Mean(normalize_dims(dim, x.ndim, "mean"), keepdim)(x)


def amax(x, dim=None, keepdim=False):
    return Amax(normalize_dims(dim, x.ndim, "amax"), keepdim)(x)


def amin(x, dim=None, keepdim=False):
    return Amin(normalize_dims(dim, x.ndim, "amin"), keepdim)(x)


_MinMax = namedtuple("_MinMax", ["values", "indices"])


def max(x, dim=None, keepdim=False):
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices) along ``dim``."""
    if isinstance(dim, Tensor):
        return maximum(x, dim)
    if dim is None:
        return Amax(normalize_dims(None, x.ndim, "max"), False)(x)
    values, indices = MaxDim(normalize_dim(dim, x.ndim, "max"), keepdim)(x)
    return _MinMax(values, indices)


def min(x, dim=None, keepdim=False):
    """``min(x)``: the smallest element; ``min(x, dim)``: (values, indices) along ``dim``."""
    if isinstance(dim, Tensor):
        return minimum(x, dim)
    if dim is None:
        return Amin(normalize_dims(None, x.ndim, "min"), False)(x)
    values, indices = MinDim(normalize_dim(dim, x.ndim, "min"), keepdim)(x)
    return _MinMax(values, indices)


def prod(x, dim=None, keepdim=False):
    return Prod(normalize_dims(dim, x.ndim, "prod"), keepdim)(x)


def argmax(x, dim=None, keepdim=False):
    return Argmax(None if dim is None else normalize_dim(dim, x.ndim, "argmax"), keepdim)(x)


def argmin(x, dim=None, keepdim=False):
    return Argmin(None if dim is None else normalize_dim(dim, x.ndim, "argmin"), keepdim)(x)


def var(x, dim=None, keepdim=False, correction=1):
    """Variance with ``correction`` (1: unbiased, the default; 0: population)."""
    check_float(x, "var")
    return Var(normalize_dims(dim, x.ndim, "var"), keepdim, correction)(x)


def std(x, dim=None, keepdim=False, correction=1):
    return sqrt(var(x, dim, keepdim, correction))


def logsumexp(x, dim, keepdim=False):
    """log(sum(exp(x))) over ``dim``, computed without overflow."""
    return Logsumexp(normalize_dims(dim, x.ndim, "logsumexp"), keepdim)(_floating(x))


def all(x, dim=None, keepdim=False):
    return All(normalize_dims(dim, x.ndim, "all"), keepdim)(x)


def any(x, dim=None, keepdim=False):
    return Any(normalize_dims(dim, x.ndim, "any"), keepdim)(x)
