"""Direct convolution: register-blocked loops over a channels-last padded input, no columns.

The input is the zero-padded channels-last copy (N, Hp, Wp, C) that ``conv.to_nhwc`` makes,
seen flat. Output position (i, j) of sample n reads its window at
``base = n*sample + i*rs + j*cs`` (``rs = sh*Wp*C``, ``cs = sw*C``) plus one offset per tap
``toff[t] = (ki*dh*Wp + kj*dw)*C + c``, t running over (ki, kj, c). Output channels go in
vectors of ``lanes`` (16 float32, 8 float64; see ``simd``), the weights packed to match:

    forward       out[n, o, p] = sum_t x[base(p) + toff[t]] * W[t, o]
                  8 positions x one vector of output channels in registers; per tap one
                  weight vector load, 8 broadcasts, 8 fused multiply-adds.
    weight_grad   dW[t, o] += sum_p x[base(p) + toff[t]] * dY[p, o]
                  8 taps x one vector of output channels in registers over a sample's positions.
    input_grad    dX[base(p) + toff[t]] += sum_o dY[p, o] * W[t, o]
                  4 positions x one vector of a window row's contiguous taps in registers,
                  then added to their places with masked vector loads and stores.

Where LeNet's second layer's columns were (6400 x 150) @ (150 x 16), a shape OpenBLAS runs at
65-75 % of its peak, these loops measured ~85 % of the same peak in the forward and need no
packed columns at all. Each kernel works on samples s0..s1-1, so a call splits over threads
by samples with no two parts writing one place (the weight gradient: each part its own sums).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT, like
from .simd import lanes, vadd, vfma, vfma_v, vload, vload_n, vsplat, vstore, vstore_n, vzero


@njit(inline="always")
def _u(i):
    """An index known not to be negative: as unsigned, Numba skips the wrap-around of negative
    indices (two extra integer operations per load in the inner loops)."""
    return np.uint64(i)


@njit(inline="always")
def _store8(tmp, v0, v1, v2, v3, v4, v5, v6, v7):
    """The eight vectors one after another into tmp (8*lanes values), to read lane by lane."""
    L = lanes(tmp)
    vstore(tmp, 0, v0)
    vstore(tmp, L, v1)
    vstore(tmp, 2 * L, v2)
    vstore(tmp, 3 * L, v3)
    vstore(tmp, 4 * L, v4)
    vstore(tmp, 5 * L, v5)
    vstore(tmp, 6 * L, v6)
    vstore(tmp, 7 * L, v7)


# Output positions per chunk of the weight gradient (whole output rows, at least one).
CHUNK = 256


@njit(**JIT)
def forward(xf, wp, soff, run, out, bias, has_bias, ow, rs, cs, sample, s0, s1):
    """out (N, O, oh*ow) for samples s0..s1-1. The window is taken as segments s of ``run``
    contiguous values at offsets soff[s] (T = S*run taps); wp: (OB*T*L,) weights,
    wp[(ob*T + t)*L + l] = W[t, ob*L + l] (zero past O); xf: the flat padded NHWC input."""
    L = lanes(wp)
    T = soff.shape[0] * run
    O = out.shape[1]
    ohw = out.shape[2]
    tmp = np.empty(8 * L, wp.dtype)
    base = np.empty(8, np.int64)
    for n in range(s0, s1):
        xb = n * sample
        for ob in range((O + L - 1) // L):
            o0 = ob * L
            no = min(L, O - o0)
            for p in range(0, ohw, 8):
                # eight positions; past the end they repeat the last one (computed, not written)
                for k in range(8):
                    q = min(p + k, ohw - 1)
                    base[k] = xb + (q // ow) * rs + (q % ow) * cs
                a0, a1, a2, a3 = vzero(wp), vzero(wp), vzero(wp), vzero(wp)
                a4, a5, a6, a7 = vzero(wp), vzero(wp), vzero(wp), vzero(wp)
                for sg in range(soff.shape[0]):
                    # one view per position: the loop then steps eight pointers and no index
                    f = soff[sg]
                    x0, x1 = xf[base[0] + f:], xf[base[1] + f:]
                    x2, x3 = xf[base[2] + f:], xf[base[3] + f:]
                    x4, x5 = xf[base[4] + f:], xf[base[5] + f:]
                    x6, x7 = xf[base[6] + f:], xf[base[7] + f:]
                    ws = wp[(ob * T + sg * run) * L:]
                    for r in range(run):
                        wv = vload(ws, r * L)
                        a0 = vfma(a0, x0[r], wv)
                        a1 = vfma(a1, x1[r], wv)
                        a2 = vfma(a2, x2[r], wv)
                        a3 = vfma(a3, x3[r], wv)
                        a4 = vfma(a4, x4[r], wv)
                        a5 = vfma(a5, x5[r], wv)
                        a6 = vfma(a6, x6[r], wv)
                        a7 = vfma(a7, x7[r], wv)
                _store8(tmp, a0, a1, a2, a3, a4, a5, a6, a7)
                m = min(8, ohw - p)
                for o in range(no):
                    bo = bias[o0 + o] if has_bias else tmp[0] * 0
                    dst = out[n, o0 + o]
                    for k in range(m):
                        dst[p + k] = tmp[k * L + o] + bo


@njit(**JIT)
def weight_grad(xf, dyp, toff, dwp, oh, ow, rs, cs, sample, s0, s1):
    """dwp[(ob*T8 + t)*L + l] += sum over samples s0..s1-1 and their positions p of
    x[base(p) + toff[t]] * dY[p, ob*L + l]. dyp: (N*oh*ow*OP,) rows of OP = OB*L output-channel
    values (zero past O); toff: (T8,) offsets padded to a multiple of 8 (with valid offsets, e.g.
    0: those rows of dwp get sums that are not used). Positions go in chunks of whole output
    rows (``CHUNK`` positions or more) whose input and gradient stay in the cache while every
    tap block passes over them."""
    L = lanes(dyp)
    T8 = toff.shape[0]
    OP = dwp.shape[0] // T8
    rows = max(1, CHUNK // ow)
    for n in range(s0, s1):
        for i0 in range(0, oh, rows):
            i1 = min(oh, i0 + rows)
            for ob in range(OP // L):
                for t0 in range(0, T8, 8):
                    f0, f1, f2, f3 = toff[t0], toff[t0 + 1], toff[t0 + 2], toff[t0 + 3]
                    f4, f5, f6, f7 = toff[t0 + 4], toff[t0 + 5], toff[t0 + 6], toff[t0 + 7]
                    a0, a1, a2, a3 = vzero(dyp), vzero(dyp), vzero(dyp), vzero(dyp)
                    a4, a5, a6, a7 = vzero(dyp), vzero(dyp), vzero(dyp), vzero(dyp)
                    for i in range(i0, i1):
                        rb = n * sample + i * rs
                        qb = (n * oh + i) * ow * OP + ob * L
                        for j in range(ow):
                            b = rb + j * cs
                            dv = vload(dyp, qb + j * OP)
                            a0 = vfma(a0, xf[_u(b + f0)], dv)
                            a1 = vfma(a1, xf[_u(b + f1)], dv)
                            a2 = vfma(a2, xf[_u(b + f2)], dv)
                            a3 = vfma(a3, xf[_u(b + f3)], dv)
                            a4 = vfma(a4, xf[_u(b + f4)], dv)
                            a5 = vfma(a5, xf[_u(b + f5)], dv)
                            a6 = vfma(a6, xf[_u(b + f6)], dv)
                            a7 = vfma(a7, xf[_u(b + f7)], dv)
                    d = (ob * T8 + t0) * L
                    vstore(dwp, d, vadd(vload(dwp, d), a0))
                    vstore(dwp, d + L, vadd(vload(dwp, d + L), a1))
                    vstore(dwp, d + 2 * L, vadd(vload(dwp, d + 2 * L), a2))
                    vstore(dwp, d + 3 * L, vadd(vload(dwp, d + 3 * L), a3))
                    vstore(dwp, d + 4 * L, vadd(vload(dwp, d + 4 * L), a4))
                    vstore(dwp, d + 5 * L, vadd(vload(dwp, d + 5 * L), a5))
                    vstore(dwp, d + 6 * L, vadd(vload(dwp, d + 6 * L), a6))
                    vstore(dwp, d + 7 * L, vadd(vload(dwp, d + 7 * L), a7))


@njit(**JIT)
def input_grad(dyp, wtp, soff, run, dxf, n_out, ohw, ow, rs, cs, sample, s0, s1):
    """dxf[base(p) + soff[s] + r] += sum_o dY[p, o] * W[s, r, o] for the positions p of samples
    s0..s1-1, the window taken as segments s of ``run`` contiguous values (one kernel row of
    kw*C values, or one tap's C channels when the width is dilated). wtp: (S*RB*O*L,) with
    wtp[((s*RB + rb)*O + o)*L + l] = W[s, rb*L + l, o] (zero past ``run``), RB = ceil(run/L);
    dyp: rows of OP values as in ``weight_grad``; dxf: the flat padded NHWC input gradient,
    added to with masked vector loads and stores (nothing past a segment is touched)."""
    L = lanes(wtp)
    O = n_out
    OP = ((O + L - 1) // L) * L
    RB = (run + L - 1) // L
    for n in range(s0, s1):
        xb = n * sample
        # four positions a quarter of the sample apart: their windows' rows written together
        # then rarely overlap (a store overlapping the next load stalls it)
        q = (ohw + 3) // 4
        for p in range(q):
            p1, p2, p3 = min(p + q, ohw - 1), min(p + 2 * q, ohw - 1), min(p + 3 * q, ohw - 1)
            r0, r1 = (n * ohw + p) * OP, (n * ohw + p1) * OP
            r2, r3 = (n * ohw + p2) * OP, (n * ohw + p3) * OP
            b0 = xb + (p // ow) * rs + (p % ow) * cs
            b1 = xb + (p1 // ow) * rs + (p1 % ow) * cs
            b2 = xb + (p2 // ow) * rs + (p2 % ow) * cs
            b3 = xb + (p3 // ow) * rs + (p3 % ow) * cs
            v1, v2, v3 = p + q < ohw, p + 2 * q < ohw, p + 3 * q < ohw
            for sg in range(soff.shape[0]):
                for rb in range(RB):
                    a0, a1, a2, a3 = vzero(wtp), vzero(wtp), vzero(wtp), vzero(wtp)
                    wb = (sg * RB + rb) * O * L
                    for o in range(O):
                        wv = vload(wtp, wb + o * L)
                        a0 = vfma(a0, dyp[_u(r0 + o)], wv)
                        a1 = vfma(a1, dyp[_u(r1 + o)], wv)
                        a2 = vfma(a2, dyp[_u(r2 + o)], wv)
                        a3 = vfma(a3, dyp[_u(r3 + o)], wv)
                    nl = min(L, run - rb * L)
                    f = soff[sg] + rb * L
                    vstore_n(dxf, b0 + f, vadd(vload_n(dxf, b0 + f, nl), a0), nl)
                    if v1:
                        vstore_n(dxf, b1 + f, vadd(vload_n(dxf, b1 + f, nl), a1), nl)
                    if v2:
                        vstore_n(dxf, b2 + f, vadd(vload_n(dxf, b2 + f, nl), a2), nl)
                    if v3:
                        vstore_n(dxf, b3 + f, vadd(vload_n(dxf, b3 + f, nl), a3), nl)


@njit(**JIT)
def nchw_to_rows(g, dyp, db, need_bias, s0, s1):
    """dyp[(n*P + p)*OP + o] = g[n, o, p] for samples s0..s1-1 (zero for o past O), and
    db[o] += their sum (float64) when need_bias. g: (N, O, P)."""
    O, P = g.shape[1], g.shape[2]
    OP = dyp.shape[0] // (g.shape[0] * P)
    for n in range(s0, s1):
        src = g[n]
        for p in range(P):
            r = (n * P + p) * OP
            for o in range(O):
                dyp[r + o] = src[o, p]
            for o in range(O, OP):
                dyp[r + o] = 0
        if need_bias:
            for o in range(O):
                s = 0.0
                for p in range(P):
                    s += src[o, p]
                db[o] += s


# ---------------------------------------------------------------- planar (few input channels)
# With one or two input channels a vector of output channels is mostly empty lanes (LeNet's
# first layer: 6 of 16). These loops put output positions in the vector instead: with stride 1
# along the width, L consecutive outputs of a row read L consecutive inputs of a padded NCHW
# plane for every tap, and write L consecutive outputs of the NCHW result.

@njit(**JIT)
def planar_forward(xp, w, bias, has_bias, out, kh, kw, sh, dh, dw, s0, s1):
    """out (N, O, oh, ow) for samples s0..s1-1 from the padded planes xp (N, C, Hp, Wp) and
    w (O, C, kh, kw); stride 1 along the width. Four output channels x one vector of positions
    in registers."""
    L = lanes(out)
    n_c, hp, wp = xp.shape[1], xp.shape[2], xp.shape[3]
    O, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    T = n_c * kh * kw
    xf = xp.reshape(-1)
    wf = w.reshape(-1)
    of = out.reshape(-1)
    zero = like(wf[0], 0.0)
    for n in range(s0, s1):
        for i in range(oh):
            for o in range(0, O, 4):
                o1, o2, o3 = min(o + 1, O - 1), min(o + 2, O - 1), min(o + 3, O - 1)
                for j0 in range(0, ow, L):
                    # a row's last vector ends at the row's end, overlapping the one before
                    # (recomputed, stored again): whole stores, unless the row is shorter
                    j = max(0, min(j0, ow - L))
                    nl = min(L, ow - j)
                    a0 = vsplat(of, bias[o] if has_bias else zero)
                    a1 = vsplat(of, bias[o1] if has_bias else zero)
                    a2 = vsplat(of, bias[o2] if has_bias else zero)
                    a3 = vsplat(of, bias[o3] if has_bias else zero)
                    t = 0
                    for c in range(n_c):
                        for ki in range(kh):
                            row = ((n * n_c + c) * hp + i * sh + ki * dh) * wp + j
                            for kj in range(kw):
                                xv = vload_n(xf, row + kj * dw, nl)
                                a0 = vfma(a0, wf[o * T + t], xv)
                                a1 = vfma(a1, wf[o1 * T + t], xv)
                                a2 = vfma(a2, wf[o2 * T + t], xv)
                                a3 = vfma(a3, wf[o3 * T + t], xv)
                                t += 1
                    base = (n * O * oh + i) * ow + j
                    vstore_n(of, base + o * oh * ow, a0, nl)
                    if o + 1 < O:
                        vstore_n(of, base + o1 * oh * ow, a1, nl)
                    if o + 2 < O:
                        vstore_n(of, base + o2 * oh * ow, a2, nl)
                    if o + 3 < O:
                        vstore_n(of, base + o3 * oh * ow, a3, nl)


@njit(**JIT)
def planar_weight_grad(xp, g, dw_sums, kh, kw, sh, dh, dw, s0, s1):
    """dw_sums (O, C*kh*kw) float64 += sum over samples s0..s1-1 of g[n, o, i, j] *
    xp[n, c, i*sh + ki*dh, j + kj*dw]: four output channels x two taps in registers over every
    row of positions, summed across lanes at the end."""
    L = lanes(g)
    n_c, hp, wp = xp.shape[1], xp.shape[2], xp.shape[3]
    O, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    T = n_c * kh * kw
    xf = xp.reshape(-1)
    gf = g.reshape(-1)
    tmp = np.empty(8 * L, g.dtype)
    for o in range(0, O, 4):
        o1, o2, o3 = min(o + 1, O - 1), min(o + 2, O - 1), min(o + 3, O - 1)
        for t in range(0, T, 2):
            u = min(t + 1, T - 1)
            c, ki, kj = t // (kh * kw), (t // kw) % kh, t % kw
            cu, kiu, kju = u // (kh * kw), (u // kw) % kh, u % kw
            a0, a1, a2, a3 = vzero(gf), vzero(gf), vzero(gf), vzero(gf)
            b0, b1, b2, b3 = vzero(gf), vzero(gf), vzero(gf), vzero(gf)
            for n in range(s0, s1):
                for i in range(oh):
                    rx = ((n * n_c + c) * hp + i * sh + ki * dh) * wp + kj * dw
                    ru = ((n * n_c + cu) * hp + i * sh + kiu * dh) * wp + kju * dw
                    rg = (n * O * oh + i) * ow
                    for j in range(0, ow, L):
                        nl = min(L, ow - j)
                        xv = vload_n(xf, rx + j, nl)
                        xu = vload_n(xf, ru + j, nl)
                        g0 = vload_n(gf, rg + o * oh * ow + j, nl)
                        g1 = vload_n(gf, rg + o1 * oh * ow + j, nl)
                        g2 = vload_n(gf, rg + o2 * oh * ow + j, nl)
                        g3 = vload_n(gf, rg + o3 * oh * ow + j, nl)
                        a0, b0 = vfma_v(a0, g0, xv), vfma_v(b0, g0, xu)
                        a1, b1 = vfma_v(a1, g1, xv), vfma_v(b1, g1, xu)
                        a2, b2 = vfma_v(a2, g2, xv), vfma_v(b2, g2, xu)
                        a3, b3 = vfma_v(a3, g3, xv), vfma_v(b3, g3, xu)
            _store8(tmp, a0, a1, a2, a3, b0, b1, b2, b3)
            for k in range(4):
                if o + k < O:
                    sa = 0.0
                    sb = 0.0
                    for l in range(L):
                        sa += tmp[k * L + l]
                        sb += tmp[(4 + k) * L + l]
                    dw_sums[o + k, t] += sa
                    if t + 1 < T:
                        dw_sums[o + k, t + 1] += sb
