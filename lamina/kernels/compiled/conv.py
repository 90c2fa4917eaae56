"""Convolution column packing and pooling.

A convolution runs on a channels-last copy of its input: ``to_nhwc`` transposes the NCHW input
into (N, H + 2ph, W + 2pw, C) with zero borders, so every window row is one contiguous run of
kw*C values (stride and dilation 1) and ``im2col_*`` fill a row of the columns
(M = N*oh*ow, kh*kw*C) with kh plain copies. One GEMM per direction then does the work, by
BLAS outside these loops: cols @ W.T -> (M, O) forward (OpenBLAS runs W @ cols.T 2-3x slower
when O is small), dY (O, M) @ cols -> dW,
dY.T @ W -> the columns' gradient, which ``col2im_*`` add back into a channels-last
gradient that ``from_nhwc`` crops and transposes to NCHW. Measured on LeNet's second layer and
a ResNet stage, this beat packing NCHW columns (C*kh*kw, M) by 1.5-2x: those rows are made of
runs only ow long, and the GEMMs are the same. Every function works on a range of rows or
samples, so a call can be split over threads with no two parts writing the same place.
``rows_to_nchw`` moves the forward's (M, O) to NCHW adding the bias, ``from_nchw`` the upstream
gradient to (O, M) summing the bias gradient.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT, like


@njit(**JIT)
def to_nhwc(x, xt, ph, pw, s0, s1):
    """xt[n, ph + i, pw + j, c] = x[n, c, i, j], and zero borders, for samples s0..s1-1."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = xt.shape[1], xt.shape[2]
    z = like(xt[0, 0, 0, 0], 0.0)
    for n in range(s0, s1):
        for i in range(hp):
            row = xt[n, i]
            if i < ph or i >= ph + h:
                for j in range(wp):
                    for c in range(c_n):
                        row[j, c] = z
                continue
            for j in range(pw):
                for c in range(c_n):
                    row[j, c] = z
            for j in range(pw + w, wp):
                for c in range(c_n):
                    row[j, c] = z
            if c_n >= 16:
                # many channels: write each position's channels in a row (reading one value
                # from each channel's row, all of them in the cache): 2x faster at 64 channels
                for j in range(w):
                    dst = row[pw + j]
                    for c in range(c_n):
                        dst[c] = x[n, c, i - ph, j]
                continue
            for c in range(c_n):
                src = x[n, c, i - ph]
                for j in range(w):
                    row[pw + j, c] = src[j]


@njit(**JIT)
def from_nhwc(dxt, dx, ph, pw, s0, s1):
    """dx[n, c, i, j] = dxt[n, ph + i, pw + j, c] for samples s0..s1-1."""
    c_n, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(s0, s1):
        for i in range(h):
            row = dxt[n, ph + i]
            for c in range(c_n):
                dst = dx[n, c, i]
                for j in range(w):
                    dst[j] = row[pw + j, c]


@njit(inline="always")
def _copy(dst, src):
    """dst[:] = src[:] for two 1-D slices of one length; written as a loop from 0 so that LLVM
    knows no index is negative and vectorises it."""
    for t in range(dst.shape[0]):
        dst[t] = src[t]


@njit(inline="always")
def _add(dst, src):
    for t in range(dst.shape[0]):
        dst[t] += src[t]


@njit(**JIT)
def im2col_narrow(xt, c_n, cols, r0, kh, kw, sh, sw, dh, oh, ow, q0, q1):
    """Rows q0..q1-1 of a block of output rows that starts at output row r0 (row r is output row
    r % oh of sample r // oh): cols[q*ow + j] (of (rows*ow, kh*kw*C)) holds the window at output
    (i, j) of the channels-last padded input xt, given as (N, H + 2ph, (W + 2pw)*C), in
    (ki, kj, c) order: kh runs of kw*C values, for dilation 1 along the width. This order copies
    one window row for every j before moving to the next kernel row, which keeps one input row
    hot: for narrow windows (LeNet: kw*C = 30) it measured 1.4-4x faster than filling each column
    row in one go."""
    span = kw * c_n
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = cols[q * ow:(q + 1) * ow]
        for ki in range(kh):
            src = xt[n, i * sh + ki * dh]
            for j in range(ow):
                off = j * sw * c_n
                _copy(blk[j, ki * span:(ki + 1) * span], src[off:off + span])


@njit(**JIT)
def im2col_wide(xt, c_n, cols, r0, kh, kw, sh, sw, dh, oh, ow, q0, q1):
    """``im2col_narrow`` filling each column row in one go: for wide windows (a ResNet stage:
    kw*C = 192) 2.5x faster than the narrow order."""
    span = kw * c_n
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = cols[q * ow:(q + 1) * ow]
        for j in range(ow):
            off = j * sw * c_n
            row = blk[j]
            for ki in range(kh):
                _copy(row[ki * span:(ki + 1) * span], xt[n, i * sh + ki * dh, off:off + span])


@njit(**JIT)
def im2col_dilated(xt, c_n, cols, r0, kh, kw, sh, sw, dh, dw, oh, ow, q0, q1):
    """``im2col_wide`` for any dilation along the width: kh*kw runs of C values."""
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = cols[q * ow:(q + 1) * ow]
        for j in range(ow):
            row = blk[j]
            for ki in range(kh):
                src = xt[n, i * sh + ki * dh]
                for kj in range(kw):
                    off = (j * sw + kj * dw) * c_n
                    b = (ki * kw + kj) * c_n
                    _copy(row[b:b + c_n], src[off:off + c_n])


@njit(**JIT)
def col2im_narrow(dcols, dxt, c_n, r0, kh, kw, sh, sw, dh, oh, ow, q0, q1):
    """Add the columns' gradient rows of block rows q0..q1-1 into the channels-last padded,
    pre-zeroed dxt (given as (N, H + 2ph, (W + 2pw)*C)): the adjoint of ``im2col_narrow``, in its
    loop order. Neighbouring output rows add into shared input rows: parts that run at once must
    hold different samples."""
    span = kw * c_n
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = dcols[q * ow:(q + 1) * ow]
        for ki in range(kh):
            dst = dxt[n, i * sh + ki * dh]
            for j in range(ow):
                off = j * sw * c_n
                _add(dst[off:off + span], blk[j, ki * span:(ki + 1) * span])


@njit(**JIT)
def col2im_wide(dcols, dxt, c_n, r0, kh, kw, sh, sw, dh, oh, ow, q0, q1):
    """The adjoint of ``im2col_wide``, in its loop order."""
    span = kw * c_n
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = dcols[q * ow:(q + 1) * ow]
        for j in range(ow):
            off = j * sw * c_n
            row = blk[j]
            for ki in range(kh):
                _add(dxt[n, i * sh + ki * dh, off:off + span], row[ki * span:(ki + 1) * span])


@njit(**JIT)
def col2im_dilated(dcols, dxt, c_n, r0, kh, kw, sh, sw, dh, dw, oh, ow, q0, q1):
    """The adjoint of ``im2col_dilated``."""
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        blk = dcols[q * ow:(q + 1) * ow]
        for j in range(ow):
            row = blk[j]
            for ki in range(kh):
                dst = dxt[n, i * sh + ki * dh]
                for kj in range(kw):
                    off = (j * sw + kj * dw) * c_n
                    b = (ki * kw + kj) * c_n
                    _add(dst[off:off + c_n], row[b:b + c_n])


@njit(**JIT)
def rows_to_nchw(y, out, r0, bias, has_bias, q0, q1):
    """out[n, o, i, :] = y[q*ow:(q+1)*ow, o] (+ bias[o]) for block rows q0..q1-1 (output row
    r0 + q): the GEMM's channels-last rows (rows*ow, O) back to NCHW (N, O, oh, ow)."""
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    for q in range(q0, q1):
        n = (r0 + q) // oh
        i = (r0 + q) % oh
        rows = y[q * ow:(q + 1) * ow]
        for o in range(o_n):
            dst = out[n, o, i]
            b = bias[o] if has_bias else like(dst[0], 0.0)
            for j in range(ow):
                dst[j] = rows[j, o] + b


@njit(**JIT)
def from_nchw(g, r0, nr, dyt, db, need_bias, o0, o1):
    """dyt[o, q*ow:(q+1)*ow] = g[n, o, i] for the block's nr output rows (output row r0 + q is
    row i of sample n) and o0 <= o < o1; db[o] += the sum of those (float64) when need_bias."""
    oh, ow = g.shape[2], g.shape[3]
    for o in range(o0, o1):
        acc = 0.0
        for q in range(nr):
            src = g[(r0 + q) // oh, o, (r0 + q) % oh]
            dst = dyt[o, q * ow:(q + 1) * ow]
            if need_bias:
                s = 0.0
                for j in range(ow):
                    dst[j] = src[j]
                    s += src[j]
                acc += s
            else:
                for j in range(ow):
                    dst[j] = src[j]
        db[o] += acc


@njit(**JIT)
def pad_planes(x, xp, ph, pw, q0, q1):
    """xp[n, c] = x[n, c] with (ph, pw) zeros around it, for the (n, c) planes q0..q1-1."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = xp.shape[2], xp.shape[3]
    for q in range(q0, q1):
        src = x[q // c_n, q % c_n]
        dst = xp[q // c_n, q % c_n]
        z = like(dst[0, 0], 0.0)
        for i in range(hp):
            row = dst[i]
            if i < ph or i >= ph + h:
                for j in range(wp):
                    row[j] = z
                continue
            for j in range(pw):
                row[j] = z
            _copy(row[pw:pw + w], src[i - ph])
            for j in range(pw + w, wp):
                row[j] = z


@njit(**JIT)
def crop_planes(dxp, dx, ph, pw, q0, q1):
    """dx[n, c] = the inside of dxp[n, c] (without its (ph, pw) border), planes q0..q1-1."""
    c_n, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    for q in range(q0, q1):
        src = dxp[q // c_n, q % c_n]
        dst = dx[q // c_n, q % c_n]
        for i in range(h):
            _copy(dst[i], src[ph + i, pw:pw + w])


@njit(**JIT)
def im2col_planar(xp, cols, n0, nb, kh, kw, sh, sw, dh, dw, oh, ow, k0, k1):
    """Rows k0..k1-1 of the planar columns (C*kh*kw, nb*oh*ow) of samples n0..n0+nb-1 of the
    zero-padded NCHW input xp: row (c*kh + ki)*kw + kj holds, for every sample and output
    position, the value its window sees at (c, ki, kj). A row of a sample is oh runs of ow
    values (plain copies at stride 1), where the channels-last columns of a one-channel input
    are runs only kw long."""
    p = oh * ow
    for kr in range(k0, k1):
        c = kr // (kh * kw)
        ki = (kr // kw) % kh
        kj = kr % kw
        dst = cols[kr]
        for s in range(nb):
            plane = xp[n0 + s, c]
            for i in range(oh):
                src = plane[i * sh + ki * dh]
                d = dst[s * p + i * ow:s * p + (i + 1) * ow]
                if sw == 1:
                    _copy(d, src[kj * dw:kj * dw + ow])
                else:
                    for j in range(ow):
                        d[j] = src[kj * dw + j * sw]


@njit(**JIT)
def col2im_planar(dcols, dxp, n0, kh, kw, sh, sw, dh, dw, oh, ow, s0, s1):
    """Add the planar columns' gradient of block samples s0..s1-1 into the padded, pre-zeroed
    dxp[n0 + s]: the adjoint of ``im2col_planar``."""
    c_n = dxp.shape[1]
    p = oh * ow
    for s in range(s0, s1):
        for c in range(c_n):
            plane = dxp[n0 + s, c]
            for ki in range(kh):
                for kj in range(kw):
                    src = dcols[(c * kh + ki) * kw + kj]
                    for i in range(oh):
                        dst = plane[i * sh + ki * dh]
                        seg = src[s * p + i * ow:s * p + (i + 1) * ow]
                        if sw == 1:
                            _add(dst[kj * dw:kj * dw + ow], seg)
                        else:
                            for j in range(ow):
                                dst[kj * dw + j * sw] += seg[j]


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
def planes_to_nchw(ymat, out, n0, nb, bias, has_bias, o0, o1):
    """out[n0 + s, o, :] = ymat[o, s*P:(s+1)*P] (+ bias[o]) for block samples s < nb and
    o0 <= o < o1: the planar GEMM's (O, nb*P) back to NCHW (N, O, P)."""
    p = out.shape[2]
    for o in range(o0, o1):
        b = bias[o] if has_bias else like(out[0, 0, 0], 0.0)
        for s in range(nb):
            src = ymat[o, s * p:(s + 1) * p]
            dst = out[n0 + s, o]
            for j in range(p):
                dst[j] = src[j] + b


@njit(inline="always", error_model="numpy")
def _takes_max(v, m):
    """Whether v replaces the running maximum m: greater, or a NaN (so the last NaN of a window
    wins, as in PyTorch)."""
    return v > m or v != v


# Planes per chunk of the 2 x 2 max pool: the chunk's row maxima stay in L1/L2 between its passes.
_POOL_CHUNK = 32


@njit(**JIT)
def max_pool_blocks(x, y, idx, kh, kw, q0, q1):
    """y (P, oh, ow): the max of each non-overlapping kh x kw window of the planes x (P, H, W)
    (rows and columns past oh*kh, ow*kw unused), idx its offset a*kw + b in the window; the
    first maximum wins, and the last NaN over any number. Planes q0..q1-1."""
    if kh == 2 and kw == 2:
        _max_pool_2x2(x, y, idx, q0, q1)
        return
    oh, ow = y.shape[1], y.shape[2]
    for q in range(q0, q1):
        for i in range(oh):
            yr, ir = y[q, i], idx[q, i]
            for j in range(ow):
                m, k = x[q, i * kh, j * kw], 0
                for a in range(kh):
                    row = x[q, i * kh + a]
                    for b in range(kw):
                        v = row[j * kw + b]
                        if _takes_max(v, m):
                            m, k = v, a * kw + b
                yr[j], ir[j] = m, k


@njit(inline="always", error_model="numpy")
def _right_wins(v, kv, m, km):
    """Whether the right column's maximum v (window offset kv) replaces the left one's m (km) in
    ``_takes_max``'s window order: greater, a NaN over a number, the later of two NaNs, or the
    earlier of two equal numbers."""
    vn, mn = v != v, m != m
    return (v > m) | (vn & ~mn) | (vn & mn & (kv > km)) | ((v == m) & (kv < km))


@njit(inline="always", error_model="numpy")
def _max_pool_2x2(x, y, idx, q0, q1):
    """2 x 2 windows in two passes per chunk of planes, each a long branch-free loop: the
    maximum of every column pair of a row pair (a plain compare, which compiles to a max, with a
    slower exact pass for a row pair holding a NaN), then of every neighbouring pair of those
    across the chunk's flat output. Written as compares inside one loop, the data-dependent
    branches cost 4-7x on random input."""
    oh, ow = y.shape[1], y.shape[2]
    w2, per = 2 * ow, oh * ow
    yf, jf = y.reshape(-1), idx.reshape(-1)
    tv = np.empty(_POOL_CHUNK * oh * w2, x.dtype)
    tk = np.empty(_POOL_CHUNK * oh * w2, np.int8)
    two = np.int8(2)
    for c0 in range(q0, q1, _POOL_CHUNK):
        c1 = min(c0 + _POOL_CHUNK, q1)
        for q in range(c0, c1):
            for i in range(oh):
                r0, r1 = x[q, 2 * i, :w2], x[q, 2 * i + 1, :w2]
                base = ((q - c0) * oh + i) * w2
                vr, kr = tv[base:base + w2], tk[base:base + w2]
                nan = False
                for j in range(w2):
                    a, c = r0[j], r1[j]
                    t = c > a
                    nan |= (a != a) | (c != c)
                    vr[j] = c if t else a
                    kr[j] = two * np.int8(t)
                if nan:
                    for j in range(w2):
                        a, c = r0[j], r1[j]
                        t = _takes_max(c, a)
                        vr[j] = c if t else a
                        kr[j] = two * np.int8(t)
        o0 = c0 * per
        n = (c1 - c0) * per
        yc, ic = yf[o0:o0 + n], jf[o0:o0 + n]
        for o in range(n):
            m, k = tv[2 * o], tk[2 * o]
            v, kv = tv[2 * o + 1], tk[2 * o + 1] + np.int8(1)
            t = _right_wins(v, kv, m, k)
            yc[o] = v if t else m
            ic[o] = kv if t else k


@njit(**JIT)
def max_unpool_blocks(g, idx, dx, kh, kw, q0, q1):
    """dx (P, H, W) = g (P, oh, ow) placed at offset idx of each non-overlapping kh x kw
    window, zeros everywhere else (the gradient of max_pool_blocks). Planes q0..q1-1. Each
    plane is zeroed, then every value stored at its computed place: no data-dependent branch."""
    oh, ow = g.shape[1], g.shape[2]
    h, w = dx.shape[1], dx.shape[2]
    z = like(dx[0, 0, 0], 0.0)
    for q in range(q0, q1):
        dq = dx[q]
        for r in range(h):
            row = dq[r]
            for j in range(w):
                row[j] = z
        for i in range(oh):
            gr, ir = g[q, i], idx[q, i]
            if kh == 2 and kw == 2:
                for j in range(ow):
                    k = np.intp(ir[j])
                    dq[2 * i + (k >> 1), 2 * j + (k & 1)] = gr[j]
            else:
                for j in range(ow):
                    k = np.intp(ir[j])
                    dq[kh * i + k // kw, kw * j + k % kw] = gr[j]


@njit(**JIT)
def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw, q0, q1):
    """y, idx (N, C, oh, ow): the max of each window (the last NaN wins, as in PyTorch) and its flat
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
