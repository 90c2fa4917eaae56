"""layer_norm over the last axis of a 2-D C-contiguous array: forward saving the mean and
1/std of every row, and a fused backward that gives the input, weight and bias gradients in
one pass over the rows. The backward returns the weight and bias gradients of its rows in
float64; parts of a call running in threads sum their own and the caller adds them up."""
from __future__ import annotations

import numpy as np
from numba import njit

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
def forward(x, w, b, y, mean, rstd, eps, has_w, has_b):
    _forward_rows(x, w, b, y, mean, rstd, eps, has_w, has_b)


# Rows whose weight and bias gradients are summed in the input's dtype before being added to the
# float64 totals: float64 accumulation of float32 products ran at half the vector width.
FLUSH = 32


@njit(**REDUCE)
def _backward_rows(g, x, w, mean, rstd, dx, dw, db, has_w, need_dx, dxhat, pw, pb):
    """dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w; dw += g xhat and
    db += g into float64 ``dw``/``db``, through the row-sized partial sums ``pw``/``pb`` (zero on
    entry) of at most FLUSH rows. One pass over a row for the sums, one for dx."""
    f = x.shape[1]
    rows = x.shape[0]
    inv_f = like(x[0, 0], 1.0 / f) if f else like(x[0, 0], 0.0)
    for r in range(rows):
        gr, xr = g[r], x[r]
        m, rs = mean[r], rstd[r]
        s1 = like(m, 0.0)
        s2 = like(m, 0.0)
        if has_w:
            for j in range(f):
                gj = gr[j]
                xh = (xr[j] - m) * rs
                pw[j] += gj * xh
                pb[j] += gj
                d = gj * w[j]
                dxhat[j] = d
                s1 += d
                s2 += d * xh
        else:
            for j in range(f):
                gj = gr[j]
                xh = (xr[j] - m) * rs
                pb[j] += gj
                dxhat[j] = gj
                s1 += gj
                s2 += gj * xh
        if need_dx:
            s1 *= inv_f
            s2 *= inv_f
            dr = dx[r]
            for j in range(f):
                dr[j] = (dxhat[j] - s1 - ((xr[j] - m) * rs) * s2) * rs
        if (r + 1) % FLUSH == 0 or r == rows - 1:
            for j in range(f):
                dw[j] += pw[j]
                db[j] += pb[j]
                pw[j] = like(m, 0.0)
                pb[j] = like(m, 0.0)


@njit(**JIT)
def backward(g, x, w, mean, rstd, dx, has_w, need_dx, need_w, need_b):
    """Returns (dw, db) of these rows in float64."""
    f = x.shape[1]
    dw = np.zeros(f, np.float64)
    db = np.zeros(f, np.float64)
    dxhat = np.empty(f, x.dtype)
    pw = np.zeros(f, x.dtype)
    pb = np.zeros(f, x.dtype)
    _backward_rows(g, x, w, mean, rstd, dx, dw, db, has_w, need_dx, dxhat, pw, pb)
    return dw, db
