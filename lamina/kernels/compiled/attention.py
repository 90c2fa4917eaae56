"""Scaled dot-product attention head by head: for each (batch, head) of a part, the products
are single-thread BLAS GEMMs called without the GIL (``blas.py``; at a GPT's head sizes, 64 x 64
x 32, OpenBLAS runs 3-6x more FLOP/s than compiled loops), and the softmax between them is one
pass per row of scores, fused with the scale and the causal mask. A call's heads are split over
the kernel threads (``lamina.kernels.attention``).

Under the causal mask (query i sees keys j <= i, aligned top-left as PyTorch) only the first
i + 1 entries of row i are read; the rest are written as exact zeros."""
from __future__ import annotations

import numpy as np
from numba import njit

from .blas import gemm
from .scalar import JIT, REDUCE, fexp, like


@njit(**REDUCE)
def _forward_row(s, n, scale):
    m = like(scale, -np.inf)
    for j in range(n):
        v = s[j] * scale
        s[j] = v
        m = v if v > m else m
    tot = like(scale, 0.0)
    for j in range(n):
        e = fexp(s[j] - m)
        s[j] = e
        tot += e
    r = like(scale, 1.0) / tot
    for j in range(n):
        s[j] *= r
    for j in range(n, s.shape[0]):
        s[j] = 0.0


@njit(**REDUCE)
def _backward_row(d, p, n, scale):
    t = like(scale, 0.0)
    for j in range(n):
        t += p[j] * d[j]
    for j in range(n):
        d[j] = p[j] * (d[j] - t) * scale
    for j in range(n, d.shape[0]):
        d[j] = 0.0


@njit(inline="always")
def _head(x, t):
    """Address of the matrix x[b, h] of a 4-D array (B, H, rows, cols), t = b * H + h."""
    H = x.shape[1]
    return x.ctypes.data + (t // H) * x.strides[0] + (t % H) * x.strides[1]


@njit(**JIT)
def forward(addr, q, k, v, p, out, lo, hi, scale, causal):
    """Heads lo..hi-1 (b * H + h) of q (B, H, L, D), k (B, H, S, D), v (B, H, S, Dv): the
    softmax weights into p (B, H, L, S, C-contiguous) and the output into out (B, H, L, Dv); the
    last stride of every array is one element."""
    size = q.itemsize
    L, D, S, Dv = q.shape[2], q.shape[3], k.shape[2], v.shape[3]
    sc = like(p[0, 0, 0, 0], scale)
    zero = like(sc, 0.0)
    for t in range(lo, hi):
        b, h = t // q.shape[1], t % q.shape[1]
        pt = p.ctypes.data + t * L * S * size
        gemm(addr, L, S, D, _head(q, t), q.strides[2] // size, 1, _head(k, t), 1, k.strides[2] // size,
             zero, pt, S)
        for r in range(L):
            _forward_row(p[b, h, r], min(r + 1, S) if causal else S, sc)
        gemm(addr, L, Dv, S, pt, S, 1, _head(v, t), v.strides[2] // size, 1, zero, _head(out, t),
             out.strides[2] // size)


@njit(**JIT)
def backward(addr, g, q, k, v, p, dq, dk, dv, d, needs, lo, hi, scale, causal):
    """Heads lo..hi-1 of the backward: dq, dk, dv (shaped as q, k, v; written where ``needs``
    (3 flags) says so) from the output's gradient g (B, H, L, Dv) and the weights p; d is an
    (L, S) C-contiguous scratch for the scores' gradient of one head at a time."""
    size = q.itemsize
    L, D, S, Dv = q.shape[2], q.shape[3], k.shape[2], v.shape[3]
    sc = like(p[0, 0, 0, 0], scale)
    zero = like(sc, 0.0)
    pd = d.ctypes.data
    for t in range(lo, hi):
        b, h = t // q.shape[1], t % q.shape[1]
        pt = p.ctypes.data + t * L * S * size
        g_t, grs = _head(g, t), g.strides[2] // size
        if needs[2]:  # dv = p^T g
            gemm(addr, S, Dv, L, pt, 1, S, g_t, grs, 1, zero, _head(dv, t), dv.strides[2] // size)
        if needs[0] or needs[1]:
            gemm(addr, L, S, Dv, g_t, grs, 1, _head(v, t), 1, v.strides[2] // size, zero, pd, S)
            for r in range(L):
                _backward_row(d[r], p[b, h, r], min(r + 1, S) if causal else S, sc)
            if needs[0]:  # dq = d k
                gemm(addr, L, D, S, pd, S, 1, _head(k, t), k.strides[2] // size, 1, zero, _head(dq, t),
                     dq.strides[2] // size)
            if needs[1]:  # dk = d^T q
                gemm(addr, S, D, L, pd, 1, S, _head(q, t), q.strides[2] // size, 1, zero, _head(dk, t),
                     dk.strides[2] // size)
