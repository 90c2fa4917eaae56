"""Embedding backward, dropout masks, large whole-array reductions, row scaling and large binary
arithmetic on raw CPU arrays. Each returns None when it does not take the input (kernels off, not C-contiguous
float32/float64 NumPy arrays, int64 indices for embedding)."""
from __future__ import annotations

import math

import numpy as np

from . import _checks, _runtime

_k = None
_CHUNK = 1 << 14  # elements summed in the array's dtype before going into float64


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("misc")
    return _k


def embedding_backward(g, index, num_embeddings, padding_idx=None):
    """The weight gradient (num_embeddings, D) of an embedding lookup: rows of g (..., D) added
    at their indices (repeated indices add up); rows of ``padding_idx`` get nothing."""
    if (not _checks.floats(g) or g.ndim < 1 or type(index) is not np.ndarray or index.dtype != np.int64
            or not index.flags.c_contiguous or g.shape[:-1] != index.shape):
        return None
    k = _lib()
    d = g.shape[-1]
    g2, idx = g.reshape(-1, d), index.reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_embeddings):
        raise IndexError(f"embedding_backward: index out of range [0, {num_embeddings}): got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    dw = np.zeros((num_embeddings, d), g.dtype)
    pad = -1 if padding_idx is None else int(padding_idx)
    spans = _checks.split(d, max(1, min(_checks.parallel(g.size), d)))
    _runtime.run_parts(k.embedding_backward, [(g2, idx, dw, pad, c0, c1) for c0, c1 in spans])
    return dw


def dropout_forward(x, p, seed):
    """``(y, mask)``: mask is 1/(1-p) where kept and 0 where dropped, in x's dtype, y = x * mask.
    Element i is dropped when the counter-based number for (seed, i) is below p (see
    ``lamina.kernels.compiled.misc``); the caller draws ``seed`` from its generator."""
    if not _checks.floats(x):
        return None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    k = _lib()
    y, mask = np.empty_like(x), np.empty_like(x)
    xf, yf, mf = x.reshape(-1), y.reshape(-1), mask.reshape(-1)
    threshold = np.uint64(min(int(round(p * (1 << 24))), 1 << 24))
    scale = x.dtype.type(1.0 / (1.0 - p))
    s = np.uint64(int(seed) & (2 ** 64 - 1))
    spans = _checks.split(xf.size, _checks.parallel(xf.size))
    _runtime.run_parts(k.dropout, [(xf[lo:hi], yf[lo:hi], mf[lo:hi], s, threshold, scale, lo) for lo, hi in spans])
    return y, mask


def _total(fn, xf, *args):
    """fn's float64 sum over parts of xf, added up."""
    spans = _checks.split(xf.size, _checks.parallel(xf.size))
    return sum(_runtime.run_parts(fn, [(xf[lo:hi],) + args + (_CHUNK,) for lo, hi in spans if hi > lo]))


def sum_all(x):
    """Sum of every element as a 0-d array of x's dtype (partial sums per thread, combined in
    float64)."""
    if not _checks.floats(x):
        return None
    if x.size == 0:
        return np.zeros((), x.dtype)
    return np.asarray(_total(_lib().total, x.reshape(-1)), x.dtype)


def mean_all(x):
    if not _checks.floats(x):
        return None
    if x.size == 0:
        return np.asarray(np.nan, x.dtype)
    return np.asarray(_total(_lib().total, x.reshape(-1)) / x.size, x.dtype)


def var_all(x, correction=1):
    """Variance of every element, two passes (mean, then squared deviations), divided by
    N - correction (NaN when that is <= 0, as in PyTorch)."""
    if not _checks.floats(x):
        return None
    n = x.size
    if n - correction <= 0:
        return np.asarray(np.nan, x.dtype)
    k = _lib()
    xf = x.reshape(-1)
    m = _total(k.total, xf) / n
    return np.asarray(_total(k.squared_deviation, xf, m) / (n - correction), x.dtype)


def _rows_of(v, n, ndim, lo, hi):
    """Rows lo..hi-1 of an operand that runs along the result's first axis (n rows); the whole
    operand where it is broadcast along that axis (a scalar, fewer dims, or one row)."""
    if type(v) is np.ndarray and v.ndim == ndim and v.shape[0] == n:
        return v[lo:hi]
    return v


def _ufunc_part(ufunc, a, b, out, err, lo, hi):
    n, ndim = out.shape[0], out.ndim
    with np.errstate(**err):  # the caller's floating-point error handling, in this thread too
        ufunc(_rows_of(a, n, ndim, lo, hi), _rows_of(b, n, ndim, lo, hi), out=out[lo:hi])


def _operand(v):
    if type(v) is np.ndarray:
        return v.dtype in _checks.FLOATS
    return isinstance(v, (float, int, np.floating, np.integer, np.bool_))


def _row_blocks(ufunc, a, b, shape, dtype, parts):
    """``ufunc(a, b)`` into a new array of ``shape``, in ``parts`` blocks of its rows on the
    kernel threads (NumPy's loops release the GIL)."""
    out = np.empty(shape, dtype)
    _runtime.run_parts(_ufunc_part, [(ufunc, a, b, out, np.geterr(), lo, hi)
                                     for lo, hi in _checks.split(shape[0], parts)])
    return out


def binary(ufunc, a, b):
    """``ufunc(a, b)`` (np.add, np.subtract, np.multiply, np.divide) in blocks of the result's
    rows on the kernel threads, for a float32/float64 result large enough to split; None
    otherwise (kernels off, one thread, small operands, other types): the caller computes it as
    before. Same result, dtype and broadcasting as NumPy's. Called for every such op, so a small
    operand pair is turned away by its sizes first (an outer broadcast of two small operands
    stays with NumPy)."""
    big = max(a.size if type(a) is np.ndarray else 0, b.size if type(b) is np.ndarray else 0)
    if _checks.parallel(big) < 2 or not (_runtime.enabled() and _operand(a) and _operand(b)):
        return None
    try:
        shape = np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        return None  # NumPy's own call raises its error
    parts = min(_checks.parallel(math.prod(shape)), shape[0]) if shape else 1
    dtype = np.result_type(a, b)
    if parts < 2 or dtype not in _checks.FLOATS:
        return None
    return _row_blocks(ufunc, a, b, shape, dtype, parts)


def scale_rows(a, s):
    """``a * s`` for a (N, ...) and s a 0-d array or one value per row (N, 1, ...), in a's dtype,
    split by rows over the kernel threads (NumPy's multiply releases the GIL): a loss's gradient
    scaled by its upstream gradient is a full pass over (N, C) logits."""
    if not _checks.floats(a) or a.ndim == 0 or type(s) is not np.ndarray or s.dtype != a.dtype:
        return None
    if s.ndim and (s.shape[0] != a.shape[0] or s.size != a.shape[0]):
        return None
    return _row_blocks(np.multiply, a, s, a.shape, a.dtype, max(1, min(_checks.parallel(a.size), a.shape[0])))
