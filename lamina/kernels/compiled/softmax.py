"""softmax and log_softmax over the last axis of a 2-D C-contiguous array, forward and backward,
and cross-entropy forward+backward on (N, C) logits, each one pass per row (the row stays in
cache between its max, sum and write loops). A row of all -inf gives NaN, as in PyTorch;
-inf entries of other rows give exactly 0 (softmax) and -inf (log_softmax)."""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT, REDUCE, fexp, flog, like
from .simd import lanes, vhmax, vload, vmax


@njit(**REDUCE)
def _row_max(x):
    """The row's largest entry, NaNs passed over (a NaN still turns its whole row to NaN through
    the sum of exponentials). Explicit vectors: LLVM does not vectorise this select-reduction,
    even with fast-math flags."""
    n = x.shape[0]
    w = lanes(x)
    m = like(x[0], -np.inf)
    j = 0
    if n >= 2 * w:
        a, b = vload(x, 0), vload(x, w)
        j = 2 * w
        while j + 2 * w <= n:
            a = vmax(a, vload(x, j))
            b = vmax(b, vload(x, j + w))
            j += 2 * w
        m = vhmax(vmax(a, b))
    for i in range(j, n):
        v = x[i]
        m = v if v > m else m
    return m


@njit(**REDUCE)
def _softmax_row(x, y, log, m):
    s = like(m, 0.0)
    if log:
        for j in range(x.shape[0]):
            s += fexp(x[j] - m)
        c = m + flog(s)
        for j in range(x.shape[0]):
            y[j] = x[j] - c
    else:
        for j in range(x.shape[0]):
            e = fexp(x[j] - m)
            y[j] = e
            s += e
        r = like(m, 1.0) / s
        for j in range(x.shape[0]):
            y[j] *= r


@njit(**REDUCE)
def _softmax_backward_row(g, y, dx, log):
    if log:  # dx = g - exp(y) sum(g)
        s = like(y[0], 0.0)
        for j in range(g.shape[0]):
            s += g[j]
        for j in range(g.shape[0]):
            dx[j] = g[j] - fexp(y[j]) * s
    else:  # dx = y (g - sum(g y))
        s = like(y[0], 0.0)
        for j in range(g.shape[0]):
            s += g[j] * y[j]
        for j in range(g.shape[0]):
            dx[j] = y[j] * (g[j] - s)


@njit(**JIT)
def forward(x, y, log):
    for r in range(x.shape[0]):
        _softmax_row(x[r], y[r], log, _row_max(x[r]))


@njit(**JIT)
def backward(g, y, dx, log):
    for r in range(g.shape[0]):
        _softmax_backward_row(g[r], y[r], dx[r], log)


@njit(**REDUCE)
def _ce_row(x, t, dx, smoothing, m):
    """Loss of one row (maximum m) and its gradient (for an upstream gradient of 1) written
    into dx: softmax(x) - (1 - eps) onehot(t) - eps / C."""
    c = x.shape[0]
    s = like(m, 0.0)
    sx = like(m, 0.0)
    for j in range(c):
        e = fexp(x[j] - m)
        dx[j] = e
        s += e
        sx += x[j]
    lse = m + flog(s)
    r = like(m, 1.0) / s
    eps = like(m, smoothing)
    spread = eps / like(m, c)
    for j in range(c):
        dx[j] = dx[j] * r - spread
    dx[t] -= like(m, 1.0) - eps
    return (like(m, 1.0) - eps) * (lse - x[t]) + eps * (lse - sx / like(m, c))


@njit(**JIT)
def cross_entropy_rows(x, target, dx, loss, ignore_index, smoothing, scale):
    """Loss and gradient (times ``scale``) of every row; ignored rows get 0. Returns the number
    of counted rows, or -1 - r for the first row r whose target is out of range."""
    c = x.shape[1]
    counted = 0
    for r in range(x.shape[0]):
        t = target[r]
        if t == ignore_index:
            loss[r] = 0.0
            for j in range(c):
                dx[r, j] = 0.0
            continue
        if t < 0 or t >= c:
            return -1 - r
        loss[r] = _ce_row(x[r], t, dx[r], smoothing, _row_max(x[r]))
        if scale != 1:
            d = dx[r]
            for j in range(c):
                d[j] *= scale
        counted += 1
    return counted


@njit(**JIT)
def cross_entropy_serial(x, target, dx, loss, ignore_index, smoothing, mean):
    """All rows in one call, for small inputs: returns (counted rows or -1 - bad row, total loss
    in float64); for 'mean' the gradient is scaled by 1/counted (0 when none counts)."""
    counted = cross_entropy_rows(x, target, dx, loss, ignore_index, smoothing, like(x[0, 0], 1.0))
    if counted < 0:
        return counted, 0.0
    total = 0.0
    for r in range(loss.shape[0]):
        total += loss[r]
    if mean:
        scale = like(x[0, 0], 1.0 / counted) if counted > 0 else like(x[0, 0], 0.0)
        for r in range(dx.shape[0]):
            d = dx[r]
            for j in range(d.shape[0]):
                d[j] *= scale
    return counted, total
