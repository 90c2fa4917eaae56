"""Scaled dot-product attention (no mask, or the causal one) on raw CPU arrays: queries
(B, H, L, D), keys (B, H, S, D), values (B, H, S, Dv), any strides with unit-stride rows.

The products are BLAS GEMMs (NumPy's stacked matmul, which takes strided views of a fused q/k/v
projection without copying them); the softmax between them, with its scale and mask, is one
compiled pass over the scores, split over the kernel threads by whole heads when large. The
GEMMs are not split over the kernel threads. Splitting the baby GPT's heads (12 x 4 of 64 x 32),
products included, over two threads made its attention 1.8x faster (forward + backward 3.4 ->
1.85 ms a layer), but a split call puts the model's other products on one BLAS thread for a while
(``gemm.py``), and the training step got slower in the benchmark (0.65-0.84 of PyTorch's speed
against 1.08-1.10 without the split). A large head's product is split by BLAS itself.

Functions return None when they do not take the input (kernels off, dtypes other than one of
float32/float64, other layouts); the caller then uses its NumPy path."""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

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
    return dtype in _checks.FLOATS and all(type(a) is np.ndarray and a.dtype == dtype and a.ndim == 4
                                           and a.size for a in arrays)


def _rows(kern_fn, a, b, L, scale, causal):
    """The compiled pass over the rows of a (B, H, L, S) (b: the weights, for the backward), split
    over the kernel threads when large."""
    a2 = a.reshape(-1, a.shape[-1])
    b2 = None if b is None else b.reshape(-1, b.shape[-1])
    n = a2.shape[0] // L  # whole heads per part: the causal mask counts rows from each head's start
    spans = _checks.split(n, min(_checks.parallel(a2.size), n))
    args = [(a2[lo * L:hi * L],) + (() if b2 is None else (b2[lo * L:hi * L],)) + (L, scale, causal)
            for lo, hi in spans]
    _runtime.run_parts(kern_fn, args)


def attention_forward(q, k, v, scale, causal):
    """``(out, weights)``: out (B, H, L, Dv) in the memory order of q (heads split off a
    (B, L, H*D) projection give an output that reshapes back without a copy), and the softmax
    weights (B, H, L, S), C-contiguous; or None."""
    if not _takes(q, k, v) or q.strides[3] != q.itemsize or k.strides[3] != k.itemsize:
        return None
    B, H, L, D = q.shape
    out = np.empty_like(q, shape=(B, H, L, v.shape[3]))
    p = np.matmul(q, k.swapaxes(-1, -2))
    _rows(_lib().forward, p, None, L, q.dtype.type(scale), bool(causal))
    np.matmul(p, v, out=out)
    return out, p


def attention_backward(g, q, k, v, weights, scale, causal, needs=(True, True, True)):
    """``(dq, dk, dv)`` (None where ``needs`` says no), each in the memory order of its input,
    from the upstream gradient g (B, H, L, Dv) and the forward's weights; or None."""
    if (not _takes(g, q, k, v, weights) or not weights.flags.c_contiguous or g.shape[:3] != q.shape[:3]
            or weights.shape != q.shape[:3] + k.shape[2:3]):
        return None
    nq, nk, nv = needs
    dv = np.matmul(weights.swapaxes(-1, -2), g, out=np.empty_like(v)) if nv else None
    dq = dk = None
    if nq or nk:
        d = np.matmul(g, v.swapaxes(-1, -2))
        _rows(_lib().backward, d, weights, q.shape[2], q.dtype.type(scale), bool(causal))
        dq = np.matmul(d, k, out=np.empty_like(q)) if nq else None
        dk = np.matmul(d.swapaxes(-1, -2), q, out=np.empty_like(k)) if nk else None
    return dq, dk, dv
