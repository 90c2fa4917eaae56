"""2-D convolution and pooling on raw NCHW CPU arrays.

A convolution copies its input once into a zero-padded channels-last array, packs the columns
(N*oh*ow, kh*kw*C) from it with compiled loops (split over the kernel threads for large
inputs) and multiplies them with one BLAS GEMM per direction (NumPy's matmul, called between
the compiled loops, never inside them, so kernel and BLAS threads never run at once). The output
rows are processed in blocks whose columns stay under ``COLUMN_BUDGET`` elements: the GEMM then
reads columns that are still in the cache, and memory does not grow with the batch. Backward
reuses the forward's columns when everything fit in one block (``keep_columns``), else packs
them again.

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


def _padded(k, x, geo):
    """x with (ph, pw) zeros around every plane."""
    n, c, h, w = x.shape
    ph, pw = geo[4], geo[5]
    xp = np.empty((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    _planes(k.pad_planes, xp.size, x, xp, ph, pw, planes=n * c)
    return xp


def _im2col_planar(k, xp, cols, n0, nb, geo):
    kh, kw, sh, sw, _, _, dh, dw, oh, ow = geo
    _runtime.run_parts(k.im2col_planar, [(xp, cols, n0, nb, kh, kw, sh, sw, dh, dw, oh, ow, k0, k1)
                                         for k0, k1 in _spans(cols.shape[0], cols.size)])


def _forward_planar(k, x, weight, bias, geo, keep_columns):
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    p = oh * ow
    wmat = weight.reshape(o, -1)  # NCHW weights are already in the planar (c, ki, kj) order
    ck = wmat.shape[1]
    out = np.empty((n, o, oh, ow), x.dtype)
    out3 = out.reshape(n, o, p)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xp = _padded(k, x, geo)
    nb = max(1, min(n, COLUMN_BUDGET // max(1, ck * p)))
    if keep_columns and n * ck * p <= KEEP_BUDGET:
        nb = n  # one block, kept for the weight gradient: packing it again costs more than the cache misses
    cols = np.empty((ck, nb * p), x.dtype)
    ymat = np.empty((o, nb * p), x.dtype)
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        c, y = (cols, ymat) if m == nb else (np.empty((ck, m * p), x.dtype), np.empty((o, m * p), x.dtype))
        _im2col_planar(k, xp, c, n0, m, geo)
        np.matmul(wmat, c, out=y)
        _planes(k.planes_to_nchw, y.size, y, out3, n0, m, b, bias is not None, planes=o)
    if keep_columns:
        return out, (cols if nb == n else None)
    return out


def _backward_planar(k, g, x, weight, geo, need_input, need_weight, need_bias, columns):
    n, c, h, w = x.shape
    o = weight.shape[0]
    kh, kw, sh, sw, ph, pw, dh, dw_, oh, ow = geo
    p = oh * ow
    wmat = weight.reshape(o, -1)
    ck = wmat.shape[1]
    kept = columns is not None and columns.shape == (ck, n * p) and columns.dtype == x.dtype
    nb = n if kept else max(1, min(n, COLUMN_BUDGET // max(1, ck * p)))
    xp = _padded(k, x, geo) if need_weight and not kept else None
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype) if need_input else None
    dweight = np.empty(weight.shape, x.dtype) if need_weight else None
    dw2 = dweight.reshape(o, ck) if need_weight else None
    acc64 = np.zeros((o, ck), np.float64)
    db = np.zeros(o, np.float64)
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        dy = np.empty((o, m * p), x.dtype)
        _runtime.run_parts(k.from_nchw, [(g, n0 * oh, m * oh, dy, db, need_bias, o0, o1)
                                         for o0, o1 in _spans(o, dy.size)])
        if need_weight:
            if kept:
                cb = columns
            else:
                cb = np.empty((ck, m * p), x.dtype)
                _im2col_planar(k, xp, cb, n0, m, geo)
            if o * ck <= SMALL_WEIGHT:
                mm = m * p
                spans = _checks.split(mm, max(1, min(_checks.parallel(mm * (o + ck)), mm // 512 + 1)))
                parts = _runtime.run_parts(k.weight_grad, [(dy, cb, m0, m1) for m0, m1 in spans])
                acc64 += sum(parts[1:], parts[0])
            elif n0 == 0:
                np.matmul(dy, cb.T, out=dw2)
            else:
                dw2 += dy @ cb.T
        if need_input:
            dcols = wmat.T @ dy
            _runtime.run_parts(k.col2im_planar, [(dcols, dxp, n0, kh, kw, sh, sw, dh, dw_, oh, ow, s0, s1)
                                                 for s0, s1 in _spans(m, dcols.size)])
    if need_weight and o * ck <= SMALL_WEIGHT:
        dw2[...] = acc64
    dx = None
    if need_input:
        dx = np.empty(x.shape, x.dtype)
        _planes(k.crop_planes, dx.size, dxp, dx, ph, pw, planes=n * c)
    return dx, dweight, db.astype(x.dtype) if need_bias else None


def _takes(x, weight, groups):
    return x.ndim == 4 and weight.ndim == 4 and x.size > 0 and groups == 1


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, keep_columns=False):
    """Cross-correlation of x (N, C, H, W) with weight (O, C, kh, kw), plus bias (O,).

    With ``keep_columns`` returns ``(y, columns)``: the packed input when it fit in one block
    (else None), to pass to ``conv2d_backward`` so it does not pack the input again."""
    arrays = (x, weight) if bias is None else (x, weight, bias)
    if not _checks.floats(*arrays) or not _takes(x, weight, groups):
        return None
    k = _lib()
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation)
    if x.shape[1] * geo[1] <= PLANAR:
        return _forward_planar(k, x, weight, bias, geo, keep_columns)
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    wt = _weight_matrix(weight).T
    ck = wt.shape[0]
    out = np.empty((n, o, oh, ow), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    xt = _nhwc(k, x, geo)
    rows = n * oh
    rb = _block_rows(rows, ck, ow)
    # Columns kept for the backward are packed into one array, still a block at a time, each
    # block multiplied while it is in the cache.
    keep = keep_columns and rows * ow * ck <= KEEP_BUDGET
    cols = np.empty(((rows if keep else rb) * ow, ck), x.dtype)
    ymat = np.empty((rb * ow, o), x.dtype)
    for r0 in range(0, rows, rb):
        nr = min(rb, rows - r0)
        c = cols[r0 * ow:(r0 + nr) * ow] if keep else cols[:nr * ow]
        y = ymat[:nr * ow]
        _im2col(k, xt, c, r0, nr, geo)
        np.matmul(c, wt, out=y)
        _runtime.run_parts(k.rows_to_nchw, [(y, out, r0, b, bias is not None, q0, q1)
                                            for q0, q1 in _spans(nr, y.size)])
    if keep_columns:
        return out, (cols if keep or rb == rows else None)
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
    if c * geo[1] <= PLANAR:
        return _backward_planar(k, g, x, weight, geo, need_input, need_weight, need_bias, columns)
    wmat = _weight_matrix(weight)
    ck = wmat.shape[1]
    rows = n * oh
    dxt = np.zeros((n, h + 2 * geo[4], w + 2 * geo[5], c), x.dtype) if need_input else None
    dw = np.zeros((o, ck), x.dtype) if need_weight else None
    db = np.zeros(o, np.float64)
    rb = _block_rows(rows, ck, ow)
    if columns is not None and columns.shape == (rows * ow, ck) and columns.dtype == x.dtype:
        # the forward's columns: one long GEMM for the weight gradient, blocks for the input's
        dyt = np.empty((o, rows * ow), x.dtype)
        _runtime.run_parts(k.from_nchw, [(g, 0, rows, dyt, db, need_bias, o0, o1)
                                         for o0, o1 in _spans(o, dyt.size)])
        if need_weight:
            np.matmul(dyt, columns, out=dw)
        if need_input:
            for r0 in range(0, rows, rb):
                nr = min(rb, rows - r0)
                _col2im(k, np.matmul(dyt[:, r0 * ow:(r0 + nr) * ow].T, wmat), dxt, r0, nr, geo)
    else:
        xt = _nhwc(k, x, geo) if need_weight else None
        cols = np.empty((rb * ow, ck), x.dtype) if need_weight else None
        dyt = np.empty((o, rb * ow), x.dtype)
        for r0 in range(0, rows, rb):
            nr = min(rb, rows - r0)
            m = nr * ow
            dy = dyt if nr == rb else np.empty((o, m), x.dtype)
            _runtime.run_parts(k.from_nchw, [(g, r0, nr, dy, db, need_bias, o0, o1)
                                             for o0, o1 in _spans(o, dy.size)])
            if need_weight:
                cb = cols[:m]
                _im2col(k, xt, cb, r0, nr, geo)
                if r0 == 0:
                    np.matmul(dy, cb, out=dw)
                else:
                    dw += dy @ cb
            if need_input:
                _col2im(k, np.matmul(dy.T, wmat), dxt, r0, nr, geo)
    dx = _from_nhwc(k, dxt, x.shape, geo) if need_input else None
    if need_weight:
        dw = np.ascontiguousarray(dw.reshape(o, geo[0], geo[1], c).transpose(0, 3, 1, 2))
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
