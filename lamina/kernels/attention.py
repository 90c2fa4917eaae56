"""Scaled dot-product attention (no mask, or the causal one) on raw CPU arrays: queries
(B, H, L, D), keys (B, H, S, D), values (B, H, S, Dv), any strides with unit-stride rows (the
heads of a fused q/k/v projection, taken without copying them).

One compiled call per part runs its heads end to end: the products as single-thread BLAS GEMMs
without the GIL (``compiled/blas.py``), the softmax between them fused with its scale and mask.
The heads are split over the kernel threads when the call is large (``gemm.BLAS_ALONE``
multiply-adds or more): with NumPy's stacked products, which OpenBLAS runs one small head at a
time on one thread, the baby GPT's attention (12 x 4 heads of 64 x 32) took 2.8-3.5 ms a layer
(forward + backward, median of 7 x 100 calls) at 2 threads, and 2.0-2.3 ms split by heads.

Functions return None when they do not take the input (kernels off, dtypes other than one of
float32/float64, other layouts, no BLAS address to call); the caller then uses its NumPy path."""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime, gemm

_k = None


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("attention")
    return _k


def _takes(*arrays):
    if not _runtime.enabled():
        return False
    dtype = arrays[0].dtype
    return (dtype in _checks.FLOATS and gemm.addresses().get(dtype) is not None
            and all(type(a) is np.ndarray and a.dtype == dtype and a.ndim == 4 and a.size
                    and a.strides[3] == a.itemsize and a.strides[2] % a.itemsize == 0
                    and a.strides[2] >= a.itemsize * a.shape[3] for a in arrays))


def _fits(q, k, v):
    """q (B, H, L, D), k (B, H, S, D), v (B, H, S, Dv)."""
    return q.shape[:2] == k.shape[:2] and q.shape[3] == k.shape[3] and k.shape[:3] == v.shape[:3]


def _spans(q, k, v):
    """Ranges of heads (b * H + h), one per part: several parts when the call is large."""
    heads = q.shape[0] * q.shape[1]
    macs = heads * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3])
    parts = 1 if macs < gemm.BLAS_ALONE else _runtime.threads() * _checks.PARTS_PER_THREAD
    if _checks.force_parts is not None:
        parts = _checks.force_parts
    return _checks.split(heads, max(1, min(parts, heads)))


def attention_forward(q, k, v, scale, causal):
    """``(out, weights)``: out (B, H, L, Dv) in the memory order of q (heads split off a
    (B, L, H*D) projection give an output that reshapes back without a copy), and the softmax
    weights (B, H, L, S), C-contiguous; or None."""
    if not _takes(q, k, v) or not _fits(q, k, v):
        return None
    B, H, L, D = q.shape
    out = np.empty_like(q, shape=(B, H, L, v.shape[3]))
    p = np.empty((B, H, L, k.shape[2]), q.dtype)
    address, sc, fn = gemm.addresses()[q.dtype], float(scale), _lib().forward
    _runtime.single_thread_blas()
    _runtime.run_parts(fn, [(address, q, k, v, p, out, lo, hi, sc, bool(causal)) for lo, hi in _spans(q, k, v)])
    return out, p


def _like_inputs(q, k, v):
    """Empty arrays shaped and laid out as q, k and v. When the three are views of one
    C-contiguous array (a fused projection, split into heads) the gradients are the same views
    of one new array, so that the split's backward joins them without copying."""
    owner = q.base  # NumPy's views point at the array owning the memory
    if (type(owner) is np.ndarray and k.base is owner and v.base is owner and owner.flags.c_contiguous
            and owner.dtype == q.dtype):
        buffer = np.empty_like(owner)
        start = owner.__array_interface__["data"][0]
        views = []
        for a in (q, k, v):
            offset = a.__array_interface__["data"][0] - start
            last = offset + sum((n - 1) * st for n, st in zip(a.shape, a.strides)) + a.itemsize
            if offset < 0 or last > owner.nbytes or min(a.strides) < 0:
                break
            views.append(np.ndarray(a.shape, a.dtype, buffer=buffer, offset=offset, strides=a.strides))
        else:
            return views
    return [np.empty_like(a) for a in (q, k, v)]


def attention_backward(g, q, k, v, weights, scale, causal, needs=(True, True, True)):
    """``(dq, dk, dv)`` (None where ``needs`` says no), each in the memory order of its input,
    from the upstream gradient g (B, H, L, Dv) and the forward's weights; or None."""
    if (not _takes(g, q, k, v, weights) or not weights.flags.c_contiguous or g.shape[:3] != q.shape[:3]
            or g.shape[3] != v.shape[3] or weights.shape != q.shape[:3] + k.shape[2:3] or not _fits(q, k, v)):
        return None
    nq, nk, nv = (bool(n) for n in needs)
    dq, dk, dv = _like_inputs(q, k, v)
    spans = _spans(q, k, v)
    scratch = np.empty((len(spans), q.shape[2], k.shape[2]), q.dtype)
    flags = np.array([nq, nk, nv])
    address, sc, fn = gemm.addresses()[q.dtype], float(scale), _lib().backward
    _runtime.single_thread_blas()
    _runtime.run_parts(fn, [(address, g, q, k, v, weights, dq, dk, dv, scratch[i], flags, lo, hi, sc,
                             bool(causal)) for i, (lo, hi) in enumerate(spans)])
    return dq if nq else None, dk if nk else None, dv if nv else None
