"""Convolution column packing and pooling on NCHW arrays.

Columns are laid out (C*kh*kw, nb*P): one row per (channel, kernel offset), one column per
output position of a block of ``nb`` samples, so a convolution is one GEMM per group,
W (O, C*kh*kw) @ cols -> (O, nb*P), done by BLAS outside these loops. Every function works on
a range of its rows or planes, so a call can be split over threads: ``im2col_rows`` fills rows
(each a run of contiguous copies from one input row), ``col2im_planes`` adds columns back into
(sample, channel) planes of the input gradient (no two parts write the same plane), and the two
transposes move between the GEMM's (O, nb*P) and NCHW for a range of output channels, adding
the bias (forward) or summing it (backward) on the way.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT, like


@njit(**JIT)
def _span(ow, off, sw, width):
    """The output columns j with 0 <= j*sw + off < width: j in [lo, hi)."""
    lo = max(0, (-off + sw - 1) // sw)
    hi = min(ow, (width - off + sw - 1) // sw)
    return lo, max(lo, hi)


@njit(**JIT)
def im2col_rows(x, cols, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Rows r0..r1-1 of the columns (C*kh*kw, (n1-n0)*oh*ow) of samples n0..n1-1 of x. Each
    (row, sample) is one 2-D block copy of the window's valid part plus zero borders: copying
    output row by output row spent most of its time making views (LeNet's rows hold 10-28
    values), and was 1.7x slower on LeNet's second layer."""
    h, w = x.shape[2], x.shape[3]
    p = oh * ow
    for row in range(r0, r1):
        c = row // (kh * kw)
        ki = (row // kw) % kh
        kj = row % kw
        offw = kj * dw - pw
        lo, hi = _span(ow, offw, sw, w)
        offh = ki * dh - ph
        ilo, ihi = _span(oh, offh, sh, h)
        dst = cols[row]
        for n in range(n0, n1):
            d2 = dst[(n - n0) * p:(n - n0 + 1) * p].reshape((oh, ow))
            if ilo > 0:
                d2[:ilo, :] = 0
            if ihi < oh:
                d2[ihi:, :] = 0
            if ihi > ilo:
                if lo > 0:
                    d2[ilo:ihi, :lo] = 0
                if hi < ow:
                    d2[ilo:ihi, hi:] = 0
                if hi > lo:
                    d2[ilo:ihi, lo:hi] = x[n, c, ilo * sh + offh:(ihi - 1) * sh + offh + 1:sh,
                                           lo * sw + offw:(hi - 1) * sw + offw + 1:sw]


@njit(**JIT)
def col2im_planes(cols, dx, n0, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Add columns into planes q0..q1-1 of the (n, c) planes of dx[n0:] (dx pre-zeroed)."""
    c_in, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    p = oh * ow
    for q in range(q0, q1):
        nn = q // c_in
        c = q % c_in
        plane = dx[n0 + nn, c]
        for ki in range(kh):
            for kj in range(kw):
                src = cols[(c * kh + ki) * kw + kj]
                off = kj * dw - pw
                lo, hi = _span(ow, off, sw, w)
                for i in range(oh):
                    ih = i * sh - ph + ki * dh
                    if ih < 0 or ih >= h:
                        continue
                    s = src[nn * p + i * ow:nn * p + i * ow + ow]
                    dst = plane[ih]
                    if sw == 1:
                        d = dst[lo + off:hi + off]
                        ss = s[lo:hi]
                        for t in range(hi - lo):
                            d[t] += ss[t]
                    else:
                        for t in range(lo, hi):
                            dst[t * sw + off] += s[t]


@njit(**JIT)
def to_nchw(ymat, out, n0, n1, bias, has_bias, o0, o1):
    """out[n, o, :] = ymat[o, (n-n0)*P:(n-n0+1)*P] (+ bias[o]) for n0 <= n < n1, o0 <= o < o1."""
    p = out.shape[2]
    for t in range((n1 - n0) * (o1 - o0)):
        nn = t // (o1 - o0)
        o = o0 + t % (o1 - o0)
        src = ymat[o, nn * p:(nn + 1) * p]
        dst = out[n0 + nn, o]
        if has_bias:
            b = bias[o]
            for j in range(p):
                dst[j] = src[j] + b
        else:
            dst[:] = src


@njit(**JIT)
def from_nchw(g, n0, n1, dyt, db, need_bias, o0, o1):
    """dyt[o, (n-n0)*P + j] = g[n, o, j]; db[o] += the sum of those (float64) when need_bias;
    for o0 <= o < o1."""
    p = g.shape[2]
    for o in range(o0, o1):
        acc = 0.0
        for nn in range(n1 - n0):
            src = g[n0 + nn, o]
            dst = dyt[o, nn * p:(nn + 1) * p]
            dst[:] = src
            if need_bias:
                s = 0.0
                for j in range(p):
                    s += src[j]
                acc += s
        db[o] += acc


@njit(cache=JIT["cache"], nogil=True, error_model="numpy", fastmath={"reassoc", "nsz", "contract"})
def weight_grad(dyt, cols, m0, m1):
    """dyt[:, m0:m1] @ cols[:, m0:m1].T in float64, for weights too small for BLAS to be quick
    (LeNet's first layer: 6 x 25 outputs, each a dot product 50,000 long, which BLAS runs at a
    third of its speed). Blocks of 512 columns keep both operands in L1."""
    o_n = dyt.shape[0]
    ck = cols.shape[0]
    acc = np.zeros((o_n, ck), np.float64)
    for b0 in range(m0, m1, 512):
        b1 = min(m1, b0 + 512)
        for c in range(ck):
            cr = cols[c, b0:b1]
            for o in range(o_n):
                dr = dyt[o, b0:b1]
                s = like(dr[0], 0.0)
                for j in range(b1 - b0):
                    s += dr[j] * cr[j]
                acc[o, c] += s
    return acc


@njit(**JIT)
def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw, q0, q1):
    """y, idx (N, C, oh, ow): the max of each window (NaN wins, as in PyTorch) and its flat
    index ih*W + iw in the input plane; windows read -inf outside the input. For the (n, c)
    planes q0..q1-1."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for q in range(q0, q1):
        xp = x[q // c, q % c]
        for i in range(oh):
            h0 = i * sh - ph
            for j in range(ow):
                w0 = j * sw - pw
                best = -np.inf
                bi = -1
                for a in range(kh):
                    ih = h0 + a * dh
                    if ih < 0 or ih >= h:
                        continue
                    for b in range(kw):
                        iw = w0 + b * dw
                        if iw < 0 or iw >= w:
                            continue
                        v = xp[ih, iw]
                        if bi < 0 or v > best or v != v:
                            best, bi = v, ih * w + iw
                            if v != v:
                                break
                    if best != best:
                        break
                y[q // c, q % c, i, j] = best
                idx[q // c, q % c, i, j] = bi


@njit(**JIT)
def max_pool2d_backward(g, idx, dx, q0, q1):
    """dx (pre-zeroed, N, C, H, W) += g at the saved indices (overlapping windows add), for
    the planes q0..q1-1."""
    c = g.shape[1]
    w = dx.shape[3]
    for q in range(q0, q1):
        gp, ip, dp = g[q // c, q % c], idx[q // c, q % c], dx[q // c, q % c]
        for i in range(gp.shape[0]):
            for j in range(gp.shape[1]):
                k = ip[i, j]
                if k >= 0:
                    dp[k // w, k % w] += gp[i, j]


@njit(**JIT)
def _avg_window(i, j, kh, kw, sh, sw, ph, pw, h, w, count_include_pad):
    """(h0, h1, w0, w1, divisor) of an average-pool window, with PyTorch's divisor rule."""
    h0 = i * sh - ph
    w0 = j * sw - pw
    h1 = min(h0 + kh, h + ph)
    w1 = min(w0 + kw, w + pw)
    size = (h1 - h0) * (w1 - w0)
    h0, w0 = max(h0, 0), max(w0, 0)
    h1, w1 = min(h1, h), min(w1, w)
    if not count_include_pad:
        size = (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, size


@njit(**JIT)
def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, q0, q1):
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for q in range(q0, q1):
        xp, yp = x[q // c, q % c], y[q // c, q % c]
        for i in range(oh):
            for j in range(ow):
                h0, h1, w0, w1, size = _avg_window(i, j, kh, kw, sh, sw, ph, pw, h, w, count_include_pad)
                s = like(yp[0, 0], 0.0)
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        s += xp[a, b]
                yp[i, j] = s / like(s, size)


@njit(**JIT)
def avg_pool2d_backward(g, dx, kh, kw, sh, sw, ph, pw, count_include_pad, q0, q1):
    """dx (pre-zeroed) += each window's upstream gradient / its divisor, planes q0..q1-1."""
    n, c, h, w = dx.shape
    oh, ow = g.shape[2], g.shape[3]
    for q in range(q0, q1):
        gp, dp = g[q // c, q % c], dx[q // c, q % c]
        for i in range(oh):
            for j in range(ow):
                h0, h1, w0, w1, size = _avg_window(i, j, kh, kw, sh, sw, ph, pw, h, w, count_include_pad)
                v = gp[i, j] / like(gp[i, j], size)
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        dp[a, b] += v
