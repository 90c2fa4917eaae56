"""Ordering and scanning: sort, argsort, topk, cumsum, and sampling from categorical
distributions (multinomial)."""
from __future__ import annotations

from collections import namedtuple

from .. import backend
from ..tensor import Tensor, _wrap
from .base import Op, normalize_dim, xp_of
from .indexing import scatter_add
from .shape import flip

_SortResult = namedtuple("_SortResult", ["values", "indices"])


def _scatter_back(g, x, dim, indices):
    """The gradient of picking ``indices`` along ``dim``: g added back at those positions."""
    return scatter_add(g.new_zeros(x.shape), dim, _wrap(indices), g)


class Sort(Op):
    """Values and indices of x sorted along ``dim`` (stable: equal values keep their order)."""
    n_outputs = 2
    needs_inputs = False

    def __init__(self, dim, descending):
        self.dim, self.descending = dim, descending

    def forward(self, x):
        xp = xp_of(x)
        k = _sort_key(x)
        key = -k if self.descending and k.dtype.kind in "fi" else k
        idx = xp.argsort(key, axis=self.dim, kind="stable")
        if self.descending and k.dtype.kind not in "fi":
            idx = xp.flip(xp.argsort(k, axis=self.dim, kind="stable"), axis=self.dim)
        self.saved = idx
        return xp.take_along_axis(x, idx, axis=self.dim), idx.astype(backend.int64, copy=False)

    def backward(self, grads, x):
        return _scatter_back(grads[0], x, self.dim, self.saved)

    def onnx(self, g, x):
        # TopK over the whole axis; stable for distinct values (ties may come out in another order)
        k = g.dim_of(x, 0, self.dim)
        return g.op("TopK", [x, k], n_out=2, axis=self.dim, largest=int(self.descending), sorted=1)


class TopK(Op):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, sorted."""
    n_outputs = 2
    needs_inputs = False

    def __init__(self, k, dim, largest):
        self.k, self.dim, self.largest = k, dim, largest

    def forward(self, x):
        xp = xp_of(x)
        k = _sort_key(x)
        key = -k if self.largest else k
        idx = xp.argsort(key, axis=self.dim, kind="stable")
        idx = xp.take(idx, xp.arange(self.k), axis=self.dim)
        self.saved = idx
        return xp.take_along_axis(x, idx, axis=self.dim), idx.astype(backend.int64, copy=False)

    def backward(self, grads, x):
        return _scatter_back(grads[0], x, self.dim, self.saved)

    def onnx(self, g, x):
        return g.op("TopK", [x, g.ints([self.k])], n_out=2, axis=self.dim, largest=int(self.largest), sorted=1)


class Cumsum(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        if x.dtype == backend.bfloat16:  # NumPy cannot add bfloat16 in cumsum: float32 sums, rounded once
            return xp_of(x).cumsum(x.astype(backend.float32), axis=self.dim).astype(x.dtype)
        return xp_of(x).cumsum(x, axis=self.dim, dtype=x.dtype if x.dtype.kind == "f" else backend.int64)

    def backward(self, g, x):
        return flip(cumsum(flip(g, self.dim), self.dim), self.dim)

    def onnx(self, g, x):
        return g.op("CumSum", [g.cast(x, g.in_dtype(0), g.out_dtype()), g.scalar(self.dim, "int64")])


class Multinomial(Op):
    """``num_samples`` category indices per row of non-negative weights ``probs`` (rows need not
    sum to 1). Without replacement the Gumbel-top-k trick draws them in one pass."""
    differentiable = False

    def __init__(self, num_samples, replacement, generator):
        self.num_samples, self.replacement, self.generator = num_samples, replacement, generator

    def forward(self, p):
        xp = xp_of(p)
        p = p.astype(backend.float64)
        rows = p.reshape(-1, p.shape[-1])
        u = self.generator.uniform((rows.shape[0], self.num_samples if self.replacement else rows.shape[1]),
                                   backend.float64)
        if self.replacement or self.num_samples == 1:
            cdf = xp.cumsum(rows, axis=1)
            total = cdf[:, -1:]
            u = u[:, :self.num_samples] * total
            out = (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)
            out = xp.minimum(out, rows.shape[1] - 1)  # guards the u == total edge
        else:
            with_gumbel = xp.log(rows) - xp.log(-xp.log(u))  # log p + Gumbel noise; log 0 = -inf never wins
            out = xp.argsort(-with_gumbel, axis=1, kind="stable")[:, :self.num_samples]
        return out.reshape(p.shape[:-1] + (self.num_samples,)).astype(backend.int64)


def sort(x, dim=-1, descending=False):
    values, indices = Sort(normalize_dim(dim, x.ndim, "sort"), descending)(x)
    return _SortResult(values, indices)


def argsort(x, dim=-1, descending=False):
    return sort(x, dim, descending).indices


def topk(x, k, dim=-1, largest=True, sorted=True):
    d = normalize_dim(dim, x.ndim, "topk")
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {n} (shape {x.shape})")
    values, indices = TopK(k, d, largest)(x)
    return _SortResult(values, indices)


def cumsum(x, dim):
    return Cumsum(normalize_dim(dim, x.ndim, "cumsum"))(x)


def multinomial(probs, num_samples, replacement=False, generator=None):
    """Sample category indices from each row of ``probs`` (1-D or 2-D, non-negative)."""
    if not isinstance(probs, Tensor) or probs.ndim not in (1, 2):
        raise ValueError(f"multinomial: expected a 1-D or 2-D tensor of probabilities, got "
                         f"{getattr(probs, 'shape', type(probs).__name__)}")
    n = probs.shape[-1]
    if not replacement and num_samples > n:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from {n} categories")
    if num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be positive, got {num_samples}")
    if probs.device.type == "cpu":
        data = probs.array
        if (data < 0).any() or not backend.xp_of(data).isfinite(data).all():
            raise ValueError("multinomial: probabilities must be finite and non-negative")
        if (data.sum(axis=-1) <= 0).any():
            raise ValueError("multinomial: every row needs a positive total probability")
    gen = generator or backend.default_generator(probs.device)
    return Multinomial(num_samples, replacement, gen)(probs)


def _sort_key(x):
    """What to order by: bfloat16 (a NumPy void type, which sorts by bytes) as float32."""
    return x.astype(backend.float32) if x.dtype == backend.bfloat16 else x
