"""layer_norm over the last axis of a 2-D C-contiguous array: forward saving the mean and
1/std of every row, and a fused backward that gives the input, weight and bias gradients in
one pass over the rows. Weight and bias gradients are summed per block of rows in float64
(one block per thread), then added together, so threads never share an accumulator."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .scalar import JIT, REDUCE, like


@njit(**REDUCE)
def _forward_rows(x, w, b, y, mean, rstd, eps, has_w, has_b):
    f = x.shape[1]
    for r in range(x.shape[0]):
        xr, yr = x[r], y[r]
        s = like(eps, 0.0)
        for j in range(f):
            s += xr[j]
        m = s / like(eps, f)
        v = like(eps, 0.0)
        for j in range(f):
            d = xr[j] - m
            v += d * d
        rs = like(eps, 1.0) / np.sqrt(v / like(eps, f) + eps)
        mean[r], rstd[r] = m, rs
        if has_w and has_b:
            for j in range(f):
                yr[j] = (xr[j] - m) * rs * w[j] + b[j]
        elif has_w:
            for j in range(f):
                yr[j] = (xr[j] - m) * rs * w[j]
        else:
            for j in range(f):
                yr[j] = (xr[j] - m) * rs


@njit(**JIT)
def forward_serial(x, w, b, y, mean, rstd, eps, has_w, has_b):
    _forward_rows(x, w, b, y, mean, rstd, eps, has_w, has_b)


@njit(parallel=True, **JIT)
def forward_parallel(x, w, b, y, mean, rstd, eps, has_w, has_b, parts):
    rows = x.shape[0]
    for p in prange(parts):
        r0, r1 = p * rows // parts, (p + 1) * rows // parts
        _forward_rows(x[r0:r1], w, b, y[r0:r1], mean[r0:r1], rstd[r0:r1], eps, has_w, has_b)


@njit(**REDUCE)
def _backward_rows(g, x, w, mean, rstd, dx, dw, db, has_w, need_dx, need_w, need_b, dxhat):
    """dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w; dw += g xhat and
    db += g into float64 ``dw``/``db``. ``dxhat`` is a row-sized scratch buffer."""
    f = x.shape[1]
    inv_f = like(x[0, 0], 1.0 / f) if f else like(x[0, 0], 0.0)
    for r in range(x.shape[0]):
        gr, xr = g[r], x[r]
        m, rs = mean[r], rstd[r]
        if need_w:
            for j in range(f):
                dw[j] += gr[j] * ((xr[j] - m) * rs)
        if need_b:
            for j in range(f):
                db[j] += gr[j]
        if need_dx:
            s1 = like(m, 0.0)
            s2 = like(m, 0.0)
            if has_w:
                for j in range(f):
                    d = gr[j] * w[j]
                    dxhat[j] = d
                    s1 += d
                    s2 += d * ((xr[j] - m) * rs)
            else:
                for j in range(f):
                    d = gr[j]
                    dxhat[j] = d
                    s1 += d
                    s2 += d * ((xr[j] - m) * rs)
            s1 *= inv_f
            s2 *= inv_f
            dr = dx[r]
            for j in range(f):
                dr[j] = (dxhat[j] - s1 - ((xr[j] - m) * rs) * s2) * rs


@njit(parallel=True, **JIT)
def backward(g, x, w, mean, rstd, dx, has_w, need_dx, need_w, need_b, parts):
    """Returns (dw, db) in float64, summed over the row blocks."""
    rows, f = x.shape
    pw = np.zeros((parts, f), np.float64)
    pb = np.zeros((parts, f), np.float64)
    for p in prange(parts):
        r0, r1 = p * rows // parts, (p + 1) * rows // parts
        dxhat = np.empty(f, x.dtype)
        _backward_rows(g[r0:r1], x[r0:r1], w, mean[r0:r1], rstd[r0:r1], dx[r0:r1], pw[p], pb[p],
                       has_w, need_dx, need_w, need_b, dxhat)
    dw = np.zeros(f, np.float64)
    db = np.zeros(f, np.float64)
    for p in range(parts):
        for j in range(f):
            dw[j] += pw[p, j]
            db[j] += pb[p, j]
    return dw, db


@njit(**JIT)
def backward_serial(g, x, w, mean, rstd, dx, has_w, need_dx, need_w, need_b):
    f = x.shape[1]
    dw = np.zeros(f, np.float64)
    db = np.zeros(f, np.float64)
    dxhat = np.empty(f, x.dtype)
    _backward_rows(g, x, w, mean, rstd, dx, dw, db, has_w, need_dx, need_w, need_b, dxhat)
    return dw, db
