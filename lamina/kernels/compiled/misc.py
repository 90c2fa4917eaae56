"""Embedding backward (scatter-add of repeated indices), dropout masks from a counter-based
hash, and whole-array sum / mean / variance across threads.

Dropout's random numbers: element i of a call with seed s keeps its value when
u_i = (top 24 bits of splitmix64(s + (i+1) * 0x9E3779B97F4A7C15)) / 2^24 >= p. Each element's
number depends only on (s, i), so the mask is the same whatever the thread count or block size.
"""
from __future__ import annotations

from numba import njit, uint64

from .scalar import JIT, REDUCE, like


@njit(**JIT)
def embedding_backward(g, index, dw, padding_idx, c0, c1):
    """dw[index[r], c0:c1] += g[r, c0:c1] for every row r except those whose index is
    padding_idx. Parts of a call take disjoint column ranges, so repeated indices never race."""
    for r in range(index.shape[0]):
        t = index[r]
        if t == padding_idx:
            continue
        src = g[r, c0:c1]
        dst = dw[t, c0:c1]
        for j in range(c1 - c0):
            dst[j] += src[j]


@njit(**JIT)
def _splitmix(z):
    z = (z ^ (z >> uint64(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint64(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint64(31))


@njit(**JIT)
def dropout(x, y, mask, seed, threshold, scale, lo):
    """Elements lo.. of the call, on slices x, y, mask that start there."""
    golden = uint64(0x9E3779B97F4A7C15)
    for i in range(x.shape[0]):
        u = _splitmix(seed + uint64(lo + i + 1) * golden) >> uint64(40)
        m = scale if u >= threshold else like(scale, 0.0)
        mask[i] = m
        y[i] = x[i] * m


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


@njit(**JIT)
def total(x, chunk):
    """Sum in float64 of chunk sums (each chunk summed in the array's dtype, vectorised)."""
    n = x.shape[0]
    acc = 0.0
    for lo in range(0, n, chunk):
        acc += _sum(x[lo:min(n, lo + chunk)])
    return acc


@njit(**JIT)
def squared_deviation(x, m, chunk):
    """Sum over x of (x - m)^2, float64 across chunks."""
    n = x.shape[0]
    mm = like(x[0], m)
    acc = 0.0
    for lo in range(0, n, chunk):
        acc += _sq_dev(x[lo:min(n, lo + chunk)], mm)
    return acc
