"""2-D convolution and pooling on raw NCHW CPU arrays.

Layers with few output channels (``DIRECT_OUT``) or narrow windows (``PLANAR_DIRECT``) run the
direct loops of ``compiled/conv_direct`` (no columns, no GEMM; see the section below). Other
layers are GEMM-bound: a convolution there copies its input once into a zero-padded channels-last array, packs the columns
(N*oh*ow, kh*kw*C) from it with compiled loops and multiplies them with one BLAS GEMM per
direction (NumPy's matmul, called between the compiled loops, never inside them). The output
rows are processed in blocks whose columns stay under ``COLUMN_BUDGET`` elements: the GEMM then
reads columns that are still in the cache, and memory does not grow with the batch. Inputs with
narrow windows (one channel) take planar columns (C*kh*kw, N*oh*ow) instead. With several
threads the batch is split into parts of whole samples, each running its own blocks with BLAS on
one thread. Backward reuses the forward's columns when it kept them (``keep_columns``, up to
``KEEP_BUDGET`` elements), else packs them again.

Functions return None when they do not take the input (kernels off, not C-contiguous
float32/float64 NumPy arrays of one dtype, not 4-D, groups other than 1); the caller then uses
its NumPy path.
"""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

_k = None
# Elements of one block's columns (1 MiB in float32). Packing a block and multiplying it while
# it is still in the L2 cache measured 2x faster on LeNet's second layer (forward and
# forward+backward) than one GEMM over the whole batch's columns (16 MiB), and 1.2x on a ResNet
# stage; 2^16-2^18 measured alike there, 2^15 slower (more, smaller GEMMs).
COLUMN_BUDGET = 1 << 18
# Windows at most this many values wide (kw*C) are packed in the narrow loop order.
NARROW = 64


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("conv")
    return _k


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {v}")
    return v


def _geometry(x_shape, w_shape, stride, padding, dilation):
    n, c, h, w = x_shape
    o, cw, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if cw != c:
        raise ValueError(f"conv2d: weight {tuple(w_shape)} does not fit input {tuple(x_shape)}")
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"conv2d: input {tuple(x_shape)} is smaller than the kernel {tuple(w_shape)} "
                         f"with padding {(ph, pw)} and dilation {(dh, dw)}")
    return (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)


def _block_rows(rows, ck, ow):
    """Output rows per block: as many as keep the block's columns under ``COLUMN_BUDGET``."""
    return max(1, min(rows, COLUMN_BUDGET // max(1, ck * ow)))


def _spans(rows, work):
    return _checks.split(rows, max(1, min(rows, _checks.parallel(work))))


def _nhwc(k, x, geo):
    """The zero-padded channels-last copy (N, H + 2ph, W + 2pw, C) of x."""
    n, c, h, w = x.shape
    ph, pw = geo[4], geo[5]
    xt = np.empty((n, h + 2 * ph, w + 2 * pw, c), x.dtype)
    _runtime.run_parts(k.to_nhwc, [(x, xt, ph, pw, s0, s1) for s0, s1 in _spans(n, xt.size)])
    return xt


def _from_nhwc(k, dxt, x_shape, geo):
    dx = np.empty(x_shape, dxt.dtype)
    _runtime.run_parts(k.from_nhwc, [(dxt, dx, geo[4], geo[5], s0, s1) for s0, s1 in _spans(x_shape[0], dx.size)])
    return dx


def _flat(xt):
    return xt.reshape(xt.shape[0], xt.shape[1], xt.shape[2] * xt.shape[3])


def _packer(k, geo, c, pack):
    """The compiled packing (``pack``) or unpacking function for this geometry, and the
    geometry arguments it takes."""
    kh, kw, sh, sw, _, _, dh, dw, oh, ow = geo
    if dw != 1:
        return getattr(k, ("im2col" if pack else "col2im") + "_dilated"), (kh, kw, sh, sw, dh, dw, oh, ow)
    order = "_narrow" if kw * c <= NARROW else "_wide"
    return getattr(k, ("im2col" if pack else "col2im") + order), (kh, kw, sh, sw, dh, oh, ow)


def _im2col(k, xt, cols, r0, nr, geo):
    """Columns of the nr output rows from row r0 (over the whole batch: row r is row r % oh of
    sample r // oh) into cols (nr*ow, kh*kw*C)."""
    fn, g = _packer(k, geo, xt.shape[3], True)
    head = (_flat(xt), xt.shape[3], cols, r0) + g
    _runtime.run_parts(fn, [head + (q0, q1) for q0, q1 in _spans(nr, cols.size)])


def _col2im(k, dcols, dxt, r0, nr, geo):
    """Add the columns' gradient of the nr output rows from row r0 into dxt. Parts running at
    once take whole samples (windows of neighbouring rows overlap)."""
    fn, g = _packer(k, geo, dxt.shape[3], False)
    head = (dcols, _flat(dxt), dxt.shape[3], r0) + g
    oh = geo[8]
    # block rows where a new sample starts, and the samples' row ranges inside the block
    starts = [0] + [q for q in range(1, nr) if (r0 + q) % oh == 0] + [nr]
    parts = max(1, min(len(starts) - 1, _checks.parallel(dcols.size)))
    cuts = [starts[(len(starts) - 1) * i // parts] for i in range(parts)] + [nr]
    _runtime.run_parts(fn, [head + (cuts[i], cuts[i + 1]) for i in range(parts)])


def _planes(fn, work, *args, planes):
    _runtime.run_parts(fn, [args + (q0, q1) for q0, q1 in _spans(planes, work)])


def _weight_matrix(weight):
    """(O, C, kh, kw) -> (O, kh*kw*C), the columns' (ki, kj, c) order."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The columns (N*oh*ow, kh*kw*C) of x (N, C, H, W): row (n*oh + i)*ow + j holds the window
    of output (i, j) of sample n in (ki, kj, c) order, zeros where it reaches into the padding.
    None if not taken."""
    if not _checks.floats(x) or x.ndim != 4 or x.size == 0:
        return None
    kh, kw = _pair(kernel_size, "kernel_size")
    geo = _geometry(x.shape, (1, x.shape[1], kh, kw), stride, padding, dilation)
    k = _lib()
    cols = np.empty((x.shape[0] * geo[8] * geo[9], kh * kw * x.shape[1]), x.dtype)
    _im2col(k, _nhwc(k, x, geo), cols, 0, x.shape[0] * geo[8], geo)
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of im2col: an array of ``x_shape`` with every column added back at its
    window, or None."""
    if not _checks.floats(cols) or cols.ndim != 2 or len(x_shape) != 4:
        return None
    n, c, h, w = x_shape
    kh, kw = _pair(kernel_size, "kernel_size")
    geo = _geometry(x_shape, (1, c, kh, kw), stride, padding, dilation)
    if cols.shape != (n * geo[8] * geo[9], kh * kw * c):
        return None
    k = _lib()
    dxt = np.zeros((n, h + 2 * geo[4], w + 2 * geo[5], c), cols.dtype)
    _col2im(k, cols, dxt, 0, n * geo[8], geo)
    return _from_nhwc(k, dxt, tuple(x_shape), geo)


# Inputs with windows at most this many values wide (kw*C) take planar columns instead of
# channels-last ones: a one-channel input (LeNet's first layer, kw*C = 5) packs rows of ow values
# instead of runs of 5, 2x faster forward and forward+backward there.
PLANAR = 8
# Planar weight gradients with at most this many elements (O x C*kh*kw) are summed by a compiled
# blocked dot product instead of BLAS, which runs LeNet's first layer (6 x 25 outputs, each a dot
# product 50,000 long) at a third of its speed: measured 2x faster there.
SMALL_WEIGHT = 1024
# Columns of a whole batch up to this many elements are kept by a forward that is asked to
# (planar ones are then packed as one block): the backward saves packing them again.
KEEP_BUDGET = 1 << 22


# ---------------------------------------------------------------- threads
# With several threads a convolution is split into parts of whole samples, each running its own
# pipeline (pack, GEMM, unpack, block after block) with BLAS on one thread: one hand-over per call.
# Calling multi-threaded BLAS between the blocks instead woke its workers hundreds of times per
# call, and on a busy machine each wake-up can wait for a time slice: a ResNet stage's
# forward+backward measured 8x slower than PyTorch with 2 threads that way.

def _sample_parts(n, work):
    """Sample ranges (s0, s1) for the parts of a call with ``work`` column elements."""
    return _checks.split(n, max(1, min(n, _checks.parallel(work))))


def _run(worker, parts):
    """``[worker(*args) for args in parts]``, several at once with BLAS on one thread each."""
    if len(parts) == 1:
        return [worker(*parts[0])]
    _runtime.single_thread_blas()
    return _runtime.run_parts(worker, parts)


# ---------------------------------------------------------------- planar columns

def _planar_forward_part(k, x, xp, wmat, out3, b, has_bias, geo, cols, nb, s0, s1):
    """Samples s0..s1-1: pad, then blocks of nb samples: pack, GEMM, to NCHW. ``cols`` is this
    part's scratch, or the whole batch's kept columns when nb covers the batch."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geo
    c_n, o, p = x.shape[1], wmat.shape[0], oh * ow
    ck = wmat.shape[1]
    k.pad_planes(x, xp, ph, pw, s0 * c_n, s1 * c_n)
    y = np.empty((o, nb * p), x.dtype)
    for n0 in range(s0, s1, nb):
        m = min(nb, s1 - n0)
        c = cols if m == nb else np.empty((ck, m * p), x.dtype)
        yb = y if m == nb else np.empty((o, m * p), x.dtype)
        k.im2col_planar(xp, c, n0, m, kh, kw, sh, sw, dh, dw, oh, ow, 0, ck)
        np.matmul(wmat, c, out=yb)
        k.planes_to_nchw(yb, out3, n0, m, b, has_bias, 0, o)


def _forward_planar(k, x, weight, bias, geo, keep_columns):
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    p = oh * ow
    wmat = weight.reshape(o, -1)  # NCHW weights are already in the planar (c, ki, kj) order
    ck = wmat.shape[1]
    out = np.empty((n, o, oh, ow), x.dtype)
    out3 = out.reshape(n, o, p)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xp = np.empty((n, x.shape[1], x.shape[2] + 2 * geo[4], x.shape[3] + 2 * geo[5]), x.dtype)
    nb = max(1, min(n, COLUMN_BUDGET // max(1, ck * p)))
    _run(_planar_forward_part, [(k, x, xp, wmat, out3, b, bias is not None, geo,
                                 np.empty((ck, nb * p), x.dtype), nb, s0, s1)
                                for s0, s1 in _sample_parts(n, n * ck * p)])
    return (out, None) if keep_columns else out


def _forward_planar_kept(k, x, weight, bias, geo):
    """The planar forward as one block whose columns are returned for the backward: packing
    them again costs more than the cache misses of one large block."""
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    p = oh * ow
    wmat = weight.reshape(o, -1)
    out = np.empty((n, o, oh, ow), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xp = np.empty((n, x.shape[1], x.shape[2] + 2 * geo[4], x.shape[3] + 2 * geo[5]), x.dtype)
    cols = np.empty((wmat.shape[1], n * p), x.dtype)
    _planar_forward_part(k, x, xp, wmat, out.reshape(n, o, p), b, bias is not None, geo, cols, n, 0, n)
    return out, cols


def _planar_backward_part(k, g, x, xp, wmat, geo, columns, dxp, dx, nb, need_input, need_weight,
                          need_bias, s0, s1):
    """Samples s0..s1-1: the output gradient to (O, rows), the weight gradient of these samples
    (float64) and bias sums, the input gradient added into dxp and cropped into dx."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geo
    c_n, o, p = x.shape[1], wmat.shape[0], oh * ow
    ck = wmat.shape[1]
    small = o * ck <= SMALL_WEIGHT
    if need_weight and columns is None:
        k.pad_planes(x, xp, ph, pw, s0 * c_n, s1 * c_n)
    acc = np.zeros((o, ck), np.float64)
    db = np.zeros(o, np.float64)
    for n0 in range(s0, s1, nb):
        m = min(nb, s1 - n0)
        dy = np.empty((o, m * p), x.dtype)
        k.from_nchw(g, n0 * oh, m * oh, dy, db, need_bias, 0, o)
        if need_weight:
            if columns is not None:
                cb = columns
            else:
                cb = np.empty((ck, m * p), x.dtype)
                k.im2col_planar(xp, cb, n0, m, kh, kw, sh, sw, dh, dw, oh, ow, 0, ck)
            acc += k.weight_grad(dy, cb, 0, m * p) if small else dy @ cb.T
        if need_input:
            k.col2im_planar(wmat.T @ dy, dxp, n0, kh, kw, sh, sw, dh, dw, oh, ow, 0, m)
    if need_input:
        k.crop_planes(dxp, dx, ph, pw, s0 * c_n, s1 * c_n)
    return acc, db


def _backward_planar(k, g, x, weight, geo, need_input, need_weight, need_bias, columns):
    n, c, h, w = x.shape
    o = weight.shape[0]
    oh, ow, ph, pw = geo[8], geo[9], geo[4], geo[5]
    p = oh * ow
    wmat = weight.reshape(o, -1)
    ck = wmat.shape[1]
    kept = columns is not None and columns.shape == (ck, n * p) and columns.dtype == x.dtype
    nb = n if kept else max(1, min(n, COLUMN_BUDGET // max(1, ck * p)))
    ranges = [(0, n)] if kept else _sample_parts(n, n * ck * p)
    xp = np.empty((n, c, h + 2 * ph, w + 2 * pw), x.dtype) if need_weight and not kept else None
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype) if need_input else None
    dx = np.empty(x.shape, x.dtype) if need_input else None
    sums = _run(_planar_backward_part, [(k, g, x, xp, wmat, geo, columns if kept else None, dxp, dx, nb,
                                         need_input, need_weight, need_bias, s0, s1) for s0, s1 in ranges])
    dweight = None
    if need_weight:
        dweight = np.empty(weight.shape, x.dtype)
        dweight.reshape(o, ck)[...] = sum((s[0] for s in sums[1:]), sums[0][0])
    db = sum((s[1] for s in sums[1:]), sums[0][1])
    return dx, dweight, db.astype(x.dtype) if need_bias else None


# ---------------------------------------------------------------- channels-last columns

def _forward_part(k, x, xt, wt, out, b, has_bias, geo, cols, keep, rb, s0, s1):
    """Samples s0..s1-1: to channels-last, then blocks of rb output rows: pack, GEMM, to NCHW.
    ``cols`` is the whole batch's columns with ``keep`` (each block fills its own rows), else
    this part's scratch."""
    fn, g = _packer(k, geo, x.shape[1], True)
    oh, ow = geo[8], geo[9]
    k.to_nhwc(x, xt, geo[4], geo[5], s0, s1)
    flat, c_n = _flat(xt), x.shape[1]
    y = np.empty((rb * ow, wt.shape[1]), x.dtype)
    r1 = s1 * oh
    for r0 in range(s0 * oh, r1, rb):
        nr = min(rb, r1 - r0)
        c = cols[r0 * ow:(r0 + nr) * ow] if keep else cols[:nr * ow]
        yb = y[:nr * ow]
        fn(flat, c_n, c, r0, *g, 0, nr)
        np.matmul(c, wt, out=yb)
        k.rows_to_nchw(yb, out, r0, b, has_bias, 0, nr)


def _backward_part(k, g, x, xt, wmat, geo, columns, dxt, dx, rb, need_input, need_weight, need_bias,
                   s0, s1):
    """Samples s0..s1-1: the weight gradient of their rows and bias sums (returned), the input
    gradient added into dxt and cropped into dx. With the forward's ``columns`` the weight
    gradient is one long GEMM and nothing is packed."""
    oh, ow, ph, pw = geo[8], geo[9], geo[4], geo[5]
    o, ck = wmat.shape
    c_n = x.shape[1]
    unpack, gu = _packer(k, geo, c_n, False)
    dw = np.zeros((o, ck), x.dtype) if need_weight else None
    db = np.zeros(o, np.float64)
    r_lo, r_hi = s0 * oh, s1 * oh
    if columns is not None:
        dyt = np.empty((o, (r_hi - r_lo) * ow), x.dtype)
        k.from_nchw(g, r_lo, r_hi - r_lo, dyt, db, need_bias, 0, o)
        if need_weight:
            np.matmul(dyt, columns[r_lo * ow:r_hi * ow], out=dw)
        if need_input:
            flat = _flat(dxt)
            for r0 in range(r_lo, r_hi, rb):
                nr = min(rb, r_hi - r0)
                dcols = dyt[:, (r0 - r_lo) * ow:(r0 - r_lo + nr) * ow].T @ wmat
                unpack(dcols, flat, c_n, r0, *gu, 0, nr)
    else:
        pack, gp = _packer(k, geo, c_n, True)
        if need_weight:
            k.to_nhwc(x, xt, ph, pw, s0, s1)
            cols = np.empty((rb * ow, ck), x.dtype)
        flat_x = _flat(xt) if need_weight else None
        flat = _flat(dxt) if need_input else None
        for r0 in range(r_lo, r_hi, rb):
            nr = min(rb, r_hi - r0)
            m = nr * ow
            dy = np.empty((o, m), x.dtype)
            k.from_nchw(g, r0, nr, dy, db, need_bias, 0, o)
            if need_weight:
                cb = cols[:m]
                pack(flat_x, c_n, cb, r0, *gp, 0, nr)
                if r0 == r_lo:
                    np.matmul(dy, cb, out=dw)
                else:
                    dw += dy @ cb
            if need_input:
                unpack(dy.T @ wmat, flat, c_n, r0, *gu, 0, nr)
    if need_input:
        k.from_nhwc(dxt, dx, ph, pw, s0, s1)
    return dw, db


# ---------------------------------------------------------------- direct convolution
# Layers with few output channels (at most DIRECT_OUT) run the direct kernels
# (``compiled/conv_direct``): no packed columns, output channels in SIMD vectors, the
# accumulators in registers. There a GEMM with so narrow a result runs at 65-75 % of OpenBLAS's
# peak and packing the columns costs half as much again; on LeNet's second layer the direct
# loops measured 1.5x faster forward+backward than the columns. Wider layers are GEMM-bound
# and keep the columns: a ResNet stage (64 channels) measured alike both ways.
DIRECT_OUT = 32
# Narrow windows (kw*C <= PLANAR) with stride 1 along the width run the planar direct loops
# (output positions in the vectors); False sends them to the planar columns.
PLANAR_DIRECT = True


def _direct_takes(o):
    return o <= DIRECT_OUT


def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def _direct_plan(x_shape, geo):
    """(tap offsets (T,), padded width, the flat strides rs, cs and sample) of the direct kernels."""
    n, c, h, w = x_shape
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geo
    wp = w + 2 * pw
    hp = h + 2 * ph
    toff = ((np.arange(kh) * dh * wp)[:, None, None] + (np.arange(kw) * dw)[None, :, None]) * c \
        + np.arange(c)[None, None, :]
    return toff.reshape(-1).astype(np.int64), wp, (sh * wp * c, sw * c, hp * wp * c)


def _segments(toff, geo, c):
    """The window as segments of contiguous values: (their offsets, their length): kernel rows
    of kw*C values, or single taps of C when the width is dilated."""
    run = geo[1] * c if geo[7] == 1 else c
    return toff[::run].copy(), run


def _forward_direct_part(k, d, x, xt, wp, soff, run, out3, b, has_bias, geo, strides, s0, s1):
    k.to_nhwc(x, xt, geo[4], geo[5], s0, s1)
    d.forward(xt.reshape(-1), wp, soff, run, out3, b, has_bias, geo[9], *strides, s0, s1)


def _forward_direct(k, x, weight, bias, geo):
    d = _runtime.load("conv_direct")
    n, c, h, w = x.shape
    o = weight.shape[0]
    oh, ow = geo[8], geo[9]
    L = _lanes(x.dtype)
    toff, wpad, strides = _direct_plan(x.shape, geo)
    t = toff.shape[0]
    ob = -(-o // L)
    wt = np.zeros((t, ob * L), x.dtype)
    wt[:, :o] = weight.transpose(2, 3, 1, 0).reshape(t, o)
    wp = np.ascontiguousarray(wt.reshape(t, ob, L).transpose(1, 0, 2)).reshape(-1)
    out = np.empty((n, o, oh, ow), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xt = np.empty((n, h + 2 * geo[4], wpad, c), x.dtype)
    soff, run = _segments(toff, geo, c)
    _runtime.run_parts(_forward_direct_part, [
        (k, d, x, xt, wp, soff, run, out.reshape(n, o, oh * ow), b, bias is not None, geo, strides, s0, s1)
        for s0, s1 in _sample_parts(n, n * t * o * oh * ow // 8)])
    return out


def _backward_direct_part(k, d, g3, x, xt, dyp, toff8, wtp, soff, run, dxt, dx, geo, strides,
                          need_input, need_weight, need_bias, s0, s1):
    """Samples s0..s1-1: the gradient rows and bias sums, this part's weight-gradient sums, and
    the input gradient added into dxt and cropped into dx."""
    o, ohw = g3.shape[1], g3.shape[2]
    L = _lanes(x.dtype)
    op = -(-o // L) * L
    db = np.zeros(o, np.float64)
    d.nchw_to_rows(g3, dyp, db, need_bias, s0, s1)
    dwp = None
    if need_weight:
        k.to_nhwc(x, xt, geo[4], geo[5], s0, s1)
        dwp = np.zeros(toff8.shape[0] * op, x.dtype)
        d.weight_grad(xt.reshape(-1), dyp, toff8, dwp, geo[8], geo[9], *strides, s0, s1)
    if need_input:
        d.input_grad(dyp, wtp, soff, run, dxt.reshape(-1), o, ohw, geo[9], *strides, s0, s1)
        k.from_nhwc(dxt, dx, geo[4], geo[5], s0, s1)
    return dwp, db


def _backward_direct(k, g, x, weight, geo, need_input, need_weight, need_bias):
    d = _runtime.load("conv_direct")
    n, c, h, w = x.shape
    o = weight.shape[0]
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geo
    L = _lanes(x.dtype)
    ob = -(-o // L)
    op = ob * L
    toff, wpad, strides = _direct_plan(x.shape, geo)
    t = toff.shape[0]
    toff8 = np.zeros(-(-t // 8) * 8, np.int64)
    toff8[:t] = toff
    padded = (n, h + 2 * ph, wpad, c)
    wtp = soff = None
    run = 0
    if need_input:
        soff, run = _segments(toff, geo, c)
        segs = soff.shape[0]
        rb = -(-run // L)
        w3 = np.zeros((segs, rb * L, o), x.dtype)
        w3[:, :run] = weight.transpose(2, 3, 1, 0).reshape(segs, run, o)
        wtp = np.ascontiguousarray(w3.reshape(segs, rb, L, o).transpose(0, 1, 3, 2)).reshape(-1)
    xt = np.empty(padded, x.dtype) if need_weight else None
    dxt = np.zeros(padded, x.dtype) if need_input else None
    dx = np.empty(x.shape, x.dtype) if need_input else None
    dyp = np.empty(n * oh * ow * op, x.dtype)
    sums = _runtime.run_parts(_backward_direct_part, [
        (k, d, g.reshape(n, o, oh * ow), x, xt, dyp, toff8, wtp, soff, run, dxt, dx, geo, strides,
         need_input, need_weight, need_bias, s0, s1)
        for s0, s1 in _sample_parts(n, n * t * o * oh * ow // 8)])
    dweight = None
    if need_weight:
        total = sum((s[0] for s in sums[1:]), sums[0][0]).reshape(ob, -1, L)[:, :t]
        dweight = np.ascontiguousarray(total.transpose(1, 0, 2).reshape(t, op)[:, :o]
                                       .reshape(kh, kw, c, o).transpose(3, 2, 0, 1))
    db = sum((s[1] for s in sums[1:]), sums[0][1])
    return dx, dweight, db.astype(x.dtype) if need_bias else None


def _planar_direct_forward_part(k, d, x, xp, weight, b, has_bias, out, geo, s0, s1):
    c = x.shape[1]
    k.pad_planes(x, xp, geo[4], geo[5], s0 * c, s1 * c)
    d.planar_forward(xp, weight, b, has_bias, out, geo[0], geo[1], geo[2], geo[6], geo[7], s0, s1)


def _forward_planar_direct(k, x, weight, bias, geo):
    """Few input channels, stride 1 along the width: output positions in the vectors."""
    d = _runtime.load("conv_direct")
    n, c, h, w = x.shape
    o = weight.shape[0]
    out = np.empty((n, o, geo[8], geo[9]), x.dtype)
    xp = np.empty((n, c, h + 2 * geo[4], w + 2 * geo[5]), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    _runtime.run_parts(_planar_direct_forward_part, [
        (k, d, x, xp, weight, b, bias is not None, out, geo, s0, s1)
        for s0, s1 in _sample_parts(n, out.size * c * geo[0] * geo[1] // 8)])
    return out


def _planar_direct_weight_part(k, d, x, xp, g, geo, s0, s1):
    c = x.shape[1]
    k.pad_planes(x, xp, geo[4], geo[5], s0 * c, s1 * c)
    sums = np.zeros((g.shape[1], c * geo[0] * geo[1]), np.float64)
    d.planar_weight_grad(xp, g, sums, geo[0], geo[1], geo[2], geo[6], geo[7], s0, s1)
    return sums


def _backward_planar_direct(k, g, x, weight, geo, need_input, need_weight, need_bias):
    """The weight gradient by the planar direct loops; the input gradient (rarely asked of a
    first layer) by the planar columns."""
    d = _runtime.load("conv_direct")
    n, c, h, w = x.shape
    dx = None
    if need_input:
        dx = _backward_planar(k, g, x, weight, geo, True, False, False, None)[0]
    dweight = None
    if need_weight:
        xp = np.empty((n, c, h + 2 * geo[4], w + 2 * geo[5]), x.dtype)
        sums = _runtime.run_parts(_planar_direct_weight_part, [
            (k, d, x, xp, g, geo, s0, s1) for s0, s1 in _sample_parts(n, g.size * c * geo[0] * geo[1] // 8)])
        dweight = sum(sums[1:], sums[0]).astype(x.dtype).reshape(weight.shape)
    db = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(x.dtype) if need_bias else None
    return dx, dweight, db


def forward_scratch_elements(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """Elements the kernel forward allocates and frees besides its output (from shapes alone,
    for ``lamina.graph``'s memory model), or None when the kernels do not take such a
    convolution (kernels off, not 2-D, groups)."""
    if not _runtime.enabled() or len(x_shape) != 4 or len(w_shape) != 4 or groups != 1:
        return None
    geo = _geometry(x_shape, w_shape, stride, padding, dilation)
    n, c, h, w = x_shape
    o = w_shape[0]
    kh, kw, oh, ow = geo[0], geo[1], geo[8], geo[9]
    ck, padded = c * kh * kw, n * c * (h + 2 * geo[4]) * (w + 2 * geo[5])
    if c * kw <= PLANAR and geo[3] == 1 and PLANAR_DIRECT:
        return padded
    if c * kw <= PLANAR:
        nb = max(1, min(n, COLUMN_BUDGET // max(1, ck * oh * ow)))
        return padded + (ck + o) * nb * oh * ow
    if _direct_takes(o):
        return padded + -(-o // _lanes(np.float64)) * _lanes(np.float64) * ck
    rb = _block_rows(n * oh, ck, ow)
    return padded + rb * ow * (ck + o)


def _takes(x, weight, groups):
    return x.ndim == 4 and weight.ndim == 4 and x.size > 0 and groups == 1


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, keep_columns=False):
    """Cross-correlation of x (N, C, H, W) with weight (O, C, kh, kw), plus bias (O,).

    With ``keep_columns`` returns ``(y, columns)``: the packed input when it fit in
    ``KEEP_BUDGET`` (else None), to pass to ``conv2d_backward`` so it does not pack it again."""
    arrays = (x, weight) if bias is None else (x, weight, bias)
    if not _checks.floats(*arrays) or not _takes(x, weight, groups):
        return None
    k = _lib()
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation)
    n, c = x.shape[:2]
    o = weight.shape[0]
    oh, ow = geo[8], geo[9]
    ck = c * geo[0] * geo[1]
    if c * geo[1] <= PLANAR and geo[3] == 1 and PLANAR_DIRECT:
        out = _forward_planar_direct(k, x, weight, bias, geo)
        return (out, None) if keep_columns else out
    if c * geo[1] <= PLANAR:
        if keep_columns and n * ck * oh * ow <= KEEP_BUDGET and len(_sample_parts(n, n * ck * oh * ow)) == 1:
            return _forward_planar_kept(k, x, weight, bias, geo)
        return _forward_planar(k, x, weight, bias, geo, keep_columns)
    if _direct_takes(o):
        out = _forward_direct(k, x, weight, bias, geo)
        return (out, None) if keep_columns else out
    wt = _weight_matrix(weight).T
    out = np.empty((n, o, oh, ow), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xt = np.empty((n, x.shape[2] + 2 * geo[4], x.shape[3] + 2 * geo[5], c), x.dtype)
    rows = n * oh
    rb = _block_rows(rows, ck, ow)
    keep = keep_columns and rows * ow * ck <= KEEP_BUDGET
    kept = np.empty((rows * ow, ck), x.dtype) if keep else None
    _run(_forward_part, [(k, x, xt, wt, out, b, bias is not None, geo,
                          kept if keep else np.empty((rb * ow, ck), x.dtype), keep, rb, s0, s1)
                         for s0, s1 in _sample_parts(n, rows * ow * ck)])
    if keep_columns:
        return out, kept
    return out


def conv2d_backward(g, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input=True,
                    need_weight=True, need_bias=True, columns=None):
    """``(dx, dweight, dbias)`` of conv2d_forward for upstream gradient g (N, O, oh, ow); each is
    None where not asked for. ``columns`` are the forward's (``keep_columns``), if it kept them.
    Returns None for inputs it does not take."""
    if not _checks.floats(g, x, weight) or not _takes(x, weight, groups) or g.ndim != 4:
        return None
    k = _lib()
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation)
    n, c, h, w = x.shape
    o = weight.shape[0]
    oh, ow = geo[8], geo[9]
    if g.shape != (n, o, oh, ow):
        return None
    if c * geo[1] <= PLANAR and geo[3] == 1 and PLANAR_DIRECT:
        return _backward_planar_direct(k, g, x, weight, geo, need_input, need_weight, need_bias)
    if c * geo[1] <= PLANAR:
        return _backward_planar(k, g, x, weight, geo, need_input, need_weight, need_bias, columns)
    if _direct_takes(o):
        return _backward_direct(k, g, x, weight, geo, need_input, need_weight, need_bias)
    wmat = _weight_matrix(weight)
    ck = wmat.shape[1]
    rows = n * oh
    rb = _block_rows(rows, ck, ow)
    kept = columns is not None and columns.shape == (rows * ow, ck) and columns.dtype == x.dtype
    padded = (n, h + 2 * geo[4], w + 2 * geo[5], c)
    xt = np.empty(padded, x.dtype) if need_weight and not kept else None
    dxt = np.zeros(padded, x.dtype) if need_input else None
    dx = np.empty(x.shape, x.dtype) if need_input else None
    sums = _run(_backward_part, [(k, g, x, xt, wmat, geo, columns if kept else None, dxt, dx, rb,
                                  need_input, need_weight, need_bias, s0, s1)
                                 for s0, s1 in _sample_parts(n, rows * ow * ck)])
    dw = None
    if need_weight:
        total = sum((s[0] for s in sums[1:]), sums[0][0])
        dw = np.ascontiguousarray(total.reshape(o, geo[0], geo[1], c).transpose(0, 3, 1, 2))
    db = sum((s[1] for s in sums[1:]), sums[0][1])
    return dx, dw, db.astype(x.dtype) if need_bias else None


def _pool_out(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, name):
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride if stride is not None else (kh, kw), "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if ph * 2 > kh or pw * 2 > kw:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    oh = _pool_out(x.shape[2], kh, sh, ph, dh, ceil_mode)
    ow = _pool_out(x.shape[3], kw, sw, pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{name}: input {x.shape} is too small for kernel {(kh, kw)}")
    return kh, kw, sh, sw, ph, pw, dh, dw, oh, ow


def max_pool_blocks_forward(x, kernel_size):
    """``(y, offsets)`` of max pooling x (N, C, H, W) over non-overlapping windows (stride equal
    to the kernel, no padding or dilation; rows and columns that do not fill a window are left
    out): offsets are each maximum's place a*kw + b inside its window, int8 (int16 for windows
    of 128 values or more). None if not taken."""
    if not _checks.floats(x) or x.ndim != 4 or x.size == 0:
        return None
    kh, kw = _pair(kernel_size, "kernel_size")
    n, c, h, w = x.shape
    if not (1 <= kh <= h and 1 <= kw <= w):
        return None
    y = np.empty((n, c, h // kh, w // kw), x.dtype)
    idx = np.empty(y.shape, np.int8 if kh * kw < 128 else np.int16)
    planes = n * c
    _planes(_lib().max_pool_blocks, x.size, x.reshape(planes, h, w), y.reshape(planes, h // kh, w // kw),
            idx.reshape(planes, h // kh, w // kw), kh, kw, planes=planes)
    return y, idx


def max_pool_blocks_backward(g, offsets, kernel_size, x_shape):
    """The gradient of ``max_pool_blocks_forward``: an array of ``x_shape`` holding g at each
    window's saved offset and zeros elsewhere. None if not taken."""
    kh, kw = _pair(kernel_size, "kernel_size")
    if (not _checks.floats(g) or g.ndim != 4 or len(x_shape) != 4 or type(offsets) is not np.ndarray
            or offsets.dtype not in (np.int8, np.int16) or offsets.shape != g.shape
            or not offsets.flags.c_contiguous or g.shape != tuple(x_shape[:2]) + (x_shape[2] // kh, x_shape[3] // kw)):
        return None
    n, c, h, w = x_shape
    planes = n * c
    dx = np.empty(x_shape, g.dtype)
    oh, ow = g.shape[2], g.shape[3]
    _planes(_lib().max_unpool_blocks, dx.size, g.reshape(planes, oh, ow), offsets.reshape(planes, oh, ow),
            dx.reshape(planes, h, w), kh, kw, planes=planes)
    return dx


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``(y, indices)`` of 2-D max pooling of x (N, C, H, W); indices are flat positions in each
    input plane (PyTorch's return_indices), int64. None if not taken."""
    if not _checks.floats(x) or x.ndim != 4 or x.size == 0:
        return None
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _pool_geometry(x, kernel_size, stride, padding, dilation,
                                                            ceil_mode, "max_pool2d")
    y = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    idx = np.empty(y.shape, np.int64)
    _planes(_lib().max_pool2d, x.size, x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw, planes=x.shape[0] * x.shape[1])
    return y, idx


def max_pool2d_backward(g, indices, x_shape):
    """Input gradient of max pooling: g added at the saved indices. None if not taken."""
    if (not _checks.floats(g) or g.ndim != 4 or type(indices) is not np.ndarray or indices.dtype != np.int64
            or indices.shape != g.shape or not indices.flags.c_contiguous or len(x_shape) != 4):
        return None
    dx = np.zeros(x_shape, g.dtype)
    _planes(_lib().max_pool2d_backward, dx.size, g, indices, dx, planes=g.shape[0] * g.shape[1])
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if not _checks.floats(x) or x.ndim != 4 or x.size == 0:
        return None
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode,
                                                          "avg_pool2d")
    y = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    _planes(_lib().avg_pool2d, x.size, x, y, kh, kw, sh, sw, ph, pw, count_include_pad,
            planes=x.shape[0] * x.shape[1])
    return y


def avg_pool2d_backward(g, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    if not _checks.floats(g) or g.ndim != 4 or len(x_shape) != 4:
        return None
    dx = np.zeros(x_shape, g.dtype)
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _pool_geometry(dx, kernel_size, stride, padding, 1, ceil_mode,
                                                          "avg_pool2d")
    if g.shape != x_shape[:2] + (oh, ow):
        return None
    _planes(_lib().avg_pool2d_backward, dx.size, g, dx, kh, kw, sh, sw, ph, pw, count_include_pad,
            planes=g.shape[0] * g.shape[1])
    return dx
