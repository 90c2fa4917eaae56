"""The softmax of scaled dot-product attention, fused with its scale and causal mask: rows of
scores (B*H*L, S) in place, forward and backward, one pass per row.

The products around it (q k^T, p v and the backward's four) stay BLAS GEMMs: at a GPT's head
sizes (64 x 64 x 32) OpenBLAS runs 3-6x more FLOP/s than compiled loops over one head. Under
the causal mask (query i sees keys j <= i, aligned top-left as PyTorch) only the first i + 1
entries of row i are read; the rest are written as exact zeros."""
from __future__ import annotations

import numpy as np
from numba import njit

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


@njit(**JIT)
def forward(s, rows, scale, causal):
    """Scores s (R, S) of queries 0..rows-1 repeating (R a multiple of rows) into the softmax
    of ``scale * s``, row by row, masked when ``causal``."""
    sc = like(s[0, 0], scale)
    S = s.shape[1]
    for r in range(s.shape[0]):
        _forward_row(s[r], min(r % rows + 1, S) if causal else S, sc)


@njit(**REDUCE)
def _backward_row(d, p, n, scale):
    t = like(scale, 0.0)
    for j in range(n):
        t += p[j] * d[j]
    for j in range(n):
        d[j] = p[j] * (d[j] - t) * scale
    for j in range(n, d.shape[0]):
        d[j] = 0.0


@njit(**JIT)
def backward(d, p, rows, scale, causal):
    """The scores' gradient in place of d (R, S), the weights' gradient, from the weights p."""
    sc = like(d[0, 0], scale)
    S = d.shape[1]
    for r in range(d.shape[0]):
        _backward_row(d[r], p[r], min(r % rows + 1, S) if causal else S, sc)
