"""Embedding backward (scatter-add of repeated indices), dropout masks from a counter-based
hash, and whole-array sum / mean / variance across threads.

Dropout's random numbers: element i of a call with seed s keeps its value when
u_i = (top 24 bits of splitmix64(s + (i+1) * 0x9E3779B97F4A7C15)) / 2^24 >= p. Each element's
number depends only on (s, i), so the mask is the same whatever the thread count or block size.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from .scalar import JIT, REDUCE, like


@njit(**JIT)
def _embedding_cols(g, index, dw, padding_idx, c0, c1):
    for r in range(index.shape[0]):
        t = index[r]
        if t == padding_idx:
            continue
        src = g[r, c0:c1]
        dst = dw[t, c0:c1]
        for j in range(c1 - c0):
            dst[j] += src[j]


@njit(parallel=True, **JIT)
def embedding_backward(g, index, dw, padding_idx, parts):
    """dw[index[r]] += g[r] for every row r except those whose index is padding_idx. Threads split
    the embedding dimension, so repeated indices never race."""
    d = g.shape[1]
    for p in prange(parts):
        _embedding_cols(g, index, dw, padding_idx, p * d // parts, (p + 1) * d // parts)


@njit(**JIT)
def embedding_backward_serial(g, index, dw, padding_idx):
    _embedding_cols(g, index, dw, padding_idx, 0, g.shape[1])


@njit(**JIT)
def _splitmix(z):
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@njit(**JIT)
def _dropout_range(x, y, mask, seed, threshold, scale, lo):
    """Elements lo.. of the call, on slices x, y, mask that start there."""
    golden = uint64(0x9E3779B97F4A7C15)
    for i in range(x.shape[0]):
        u = _splitmix(seed + uint64(lo + i + 1) * golden) >> uint64(40)
        m = scale if u >= threshold else like(scale, 0.0)
        mask[i] = m
        y[i] = x[i] * m


@njit(parallel=True, **JIT)
def dropout(x, y, mask, seed, threshold, scale, chunk):
    n = x.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lo, hi = c * chunk, min(n, (c + 1) * chunk)
        _dropout_range(x[lo:hi], y[lo:hi], mask[lo:hi], seed, threshold, scale, lo)


@njit(**JIT)
def dropout_serial(x, y, mask, seed, threshold, scale):
    _dropout_range(x, y, mask, seed, threshold, scale, 0)


@njit(**REDUCE)
def _sum(x):
    s = like(x[0], 0.0)  # callers never pass an empty chunk
    for i in range(x.shape[0]):
        s += x[i]
    return s


@njit(**REDUCE)
def _sq_dev(x, m):
    s = like(m, 0.0)
    for i in range(x.shape[0]):
        d = x[i] - m
        s += d * d
    return s


@njit(parallel=True, **JIT)
def total(x, chunk):
    """Sum in float64 of per-chunk sums (each chunk summed in the array's dtype, vectorised)."""
    n = x.shape[0]
    parts = (n + chunk - 1) // chunk
    partial = np.zeros(parts, np.float64)
    for c in prange(parts):
        partial[c] = _sum(x[c * chunk:min(n, (c + 1) * chunk)])
    return partial.sum()


@njit(parallel=True, **JIT)
def squared_deviation(x, m, chunk):
    """Sum over x of (x - m)^2, float64 across chunks."""
    n = x.shape[0]
    parts = (n + chunk - 1) // chunk
    partial = np.zeros(parts, np.float64)
    mm = like(x[0], m)
    for c in prange(parts):
        partial[c] = _sq_dev(x[c * chunk:min(n, (c + 1) * chunk)], mm)
    return partial.sum()
