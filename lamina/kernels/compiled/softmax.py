"""softmax and log_softmax over the last axis of a 2-D C-contiguous array, forward and backward,
and cross-entropy forward+backward on (N, C) logits, each one pass per row (the row stays in
cache between its max, sum and write loops). A row of all -inf gives NaN, as in PyTorch;
-inf entries of other rows give exactly 0 (softmax) and -inf (log_softmax)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scalar import JIT, REDUCE, fexp, flog, like


@njit(**REDUCE)
def _row_max(x):
    """Row maximum for short rows. LLVM does not vectorise this select-reduction (even with
    fast-math flags), so for long rows the caller passes maxima from NumPy's vectorised max."""
    m = like(x[0], -np.inf)
    for j in range(x.shape[0]):
        v = x[j]
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
def forward_serial(x, y, log, mx, has_mx):
    """Rows of x; ``mx`` holds the row maxima when ``has_mx`` (NumPy's, for long rows)."""
    for r in range(x.shape[0]):
        _softmax_row(x[r], y[r], log, mx[r] if has_mx else _row_max(x[r]))


@njit(parallel=True, **JIT)
def forward_parallel(x, y, log, mx, has_mx):
    for r in prange(x.shape[0]):
        _softmax_row(x[r], y[r], log, mx[r] if has_mx else _row_max(x[r]))


@njit(**JIT)
def backward_serial(g, y, dx, log):
    for r in range(g.shape[0]):
        _softmax_backward_row(g[r], y[r], dx[r], log)


@njit(parallel=True, **JIT)
def backward_parallel(g, y, dx, log):
    for r in prange(g.shape[0]):
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


@njit(**REDUCE)
def _ce_rows(x, target, dx, loss, ignore_index, smoothing, mx, has_mx, r0, r1):
    """Rows r0..r1-1; returns the number of counted rows, or -1 - r for the first row r whose
    target is out of range."""
    c = x.shape[1]
    counted = 0
    for r in range(r0, r1):
        t = target[r]
        if t == ignore_index:
            loss[r] = 0.0
            for j in range(c):
                dx[r, j] = 0.0
            continue
        if t < 0 or t >= c:
            return -1 - r
        loss[r] = _ce_row(x[r], t, dx[r], smoothing, mx[r] if has_mx else _row_max(x[r]))
        counted += 1
    return counted


@njit(**REDUCE)
def _ce_finish(dx, loss, counted, mean):
    """Total loss (float64); for 'mean' the gradient is scaled by 1/counted (0 if none)."""
    total = 0.0
    for r in range(loss.shape[0]):
        total += loss[r]
    if mean and counted >= 0:
        scale = like(dx[0, 0], 1.0 / counted) if counted > 0 else like(dx[0, 0], 0.0)
        for r in range(dx.shape[0]):
            for j in range(dx.shape[1]):
                dx[r, j] *= scale
    return total


@njit(**JIT)
def cross_entropy_serial(x, target, dx, loss, ignore_index, smoothing, mean, mx, has_mx):
    counted = _ce_rows(x, target, dx, loss, ignore_index, smoothing, mx, has_mx, 0, x.shape[0])
    return counted, _ce_finish(dx, loss, counted, mean)


@njit(parallel=True, **JIT)
def cross_entropy_parallel(x, target, dx, loss, ignore_index, smoothing, mean, mx, has_mx, parts):
    rows = x.shape[0]
    counts = np.zeros(parts, np.int64)
    for p in prange(parts):
        counts[p] = _ce_rows(x, target, dx, loss, ignore_index, smoothing, mx, has_mx,
                             p * rows // parts, (p + 1) * rows // parts)
    counted = 0
    for p in range(parts):
        if counts[p] < 0:
            return counts[p], 0.0
        counted += counts[p]
    return counted, _ce_finish(dx, loss, counted, mean)
