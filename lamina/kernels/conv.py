"""2-D convolution and pooling on raw NCHW CPU arrays.

A convolution packs the input into columns with compiled loops (split over the kernel threads
for large inputs) and multiplies them with one BLAS GEMM per group (NumPy's matmul, called
between the compiled loops, never inside them, so kernel and BLAS threads never run at once). The batch is processed in blocks whose
columns stay under ``COLUMN_BUDGET`` elements, so memory does not grow with the batch.
Backward recomputes the columns rather than keeping them from the forward.

Functions return None when they do not take the input (kernels off, not C-contiguous
float32/float64 NumPy arrays of one dtype, not 4-D); the caller then uses its NumPy path.
"""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

_k = None
COLUMN_BUDGET = 1 << 22  # elements of one block's columns (16 MiB in float32)
# Weight gradients with at most this many elements (out channels x C*kh*kw) are computed by a
# compiled blocked dot product instead of BLAS: measured 2x faster on LeNet's first layer
# (6 x 25), even on its second (16 x 150), slower on larger ones.
SMALL_WEIGHT = 1024


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


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if cg * groups != c or o % groups:
        raise ValueError(f"conv2d: weight {tuple(w_shape)} with groups={groups} does not fit input {tuple(x_shape)}")
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"conv2d: input {tuple(x_shape)} is smaller than the kernel {tuple(w_shape)} "
                         f"with padding {(ph, pw)} and dilation {(dh, dw)}")
    return (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)


def _block(n, ck, p):
    return max(1, min(n, COLUMN_BUDGET // max(1, ck * p)))


def _spans(rows, work):
    return _checks.split(rows, max(1, min(rows, _checks.parallel(work))))


def _im2col(k, x, cols, n0, n1, geo):
    _runtime.run_parts(k.im2col_rows, [(x, cols, n0, n1, r0, r1) + geo
                                       for r0, r1 in _spans(cols.shape[0], cols.size)])


def _col2im(k, cols, dx, n0, n1, geo):
    planes = (n1 - n0) * dx.shape[1]
    _runtime.run_parts(k.col2im_planes, [(cols, dx, n0, q0, q1) + geo for q0, q1 in _spans(planes, cols.size)])


def _planes(fn, work, *args, planes):
    _runtime.run_parts(fn, [args + (q0, q1) for q0, q1 in _spans(planes, work)])


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, n0=0, n1=None):
    """Columns (C*kh*kw, (n1-n0)*oh*ow) of samples n0..n1-1 of x (N, C, H, W), or None."""
    if not _checks.floats(x) or x.ndim != 4:
        return None
    kh, kw = _pair(kernel_size, "kernel_size")
    g = _geometry(x.shape, (1, x.shape[1], kh, kw), stride, padding, dilation, 1)
    n1 = x.shape[0] if n1 is None else n1
    cols = np.empty((x.shape[1] * kh * kw, (n1 - n0) * g[8] * g[9]), x.dtype)
    _im2col(_lib(), x, cols, n0, n1, g)
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """The adjoint of im2col over a whole batch: an array of ``x_shape`` with every column
    added back at its window, or None."""
    if not _checks.floats(cols) or cols.ndim != 2 or len(x_shape) != 4:
        return None
    kh, kw = _pair(kernel_size, "kernel_size")
    g = _geometry(x_shape, (1, x_shape[1], kh, kw), stride, padding, dilation, 1)
    if cols.shape != (x_shape[1] * kh * kw, x_shape[0] * g[8] * g[9]):
        return None
    dx = np.zeros(x_shape, cols.dtype)
    _col2im(_lib(), cols, dx, 0, x_shape[0], g)
    return dx


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, keep_columns=False):
    """Cross-correlation of x (N, C, H, W) with weight (O, C/groups, kh, kw), plus bias (O,).

    With ``keep_columns`` returns ``(y, columns)``: the packed input when the whole batch fit in
    one block (else None), to pass to ``conv2d_backward`` so it does not pack the input again."""
    arrays = (x, weight) if bias is None else (x, weight, bias)
    if not _checks.floats(*arrays) or x.ndim != 4 or weight.ndim != 4 or x.size == 0:
        return None
    k = _lib()
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    p = oh * ow
    ck = weight[0].size * groups
    og, ckg = o // groups, ck // groups
    wmat = weight.reshape(groups, og, ckg)
    out = np.empty((n, o, p), x.dtype)
    b = bias if bias is not None else np.empty(0, x.dtype)
    nb = _block(n, ck, p)
    cols = np.empty((ck, nb * p), x.dtype)
    ymat = np.empty((o, nb * p), x.dtype)
    for n0 in range(0, n, nb):
        n1 = min(n, n0 + nb)
        c = cols[:, :(n1 - n0) * p] if n1 - n0 < nb else cols
        y = ymat[:, :(n1 - n0) * p] if n1 - n0 < nb else ymat
        if n1 - n0 < nb:
            c, y = np.ascontiguousarray(c), np.ascontiguousarray(y)
        _im2col(k, x, c, n0, n1, geo)
        for gi in range(groups):
            np.matmul(wmat[gi], c[gi * ckg:(gi + 1) * ckg], out=y[gi * og:(gi + 1) * og])
        _planes(k.to_nchw, y.size, y, out, n0, n1, b, bias is not None, planes=o)
    out = out.reshape(n, o, oh, ow)
    if keep_columns:
        return out, (cols if nb == n else None)
    return out


def conv2d_backward(g, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input=True,
                    need_weight=True, need_bias=True, columns=None):
    """``(dx, dweight, dbias)`` of conv2d_forward for upstream gradient g (N, O, oh, ow); each is
    None where not asked for. ``columns`` are the forward's (``keep_columns``), if it kept them.
    Returns None for inputs it does not take."""
    if not _checks.floats(g, x, weight) or x.ndim != 4 or weight.ndim != 4 or g.ndim != 4 or x.size == 0:
        return None
    k = _lib()
    geo = _geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    n, o = x.shape[0], weight.shape[0]
    oh, ow = geo[8], geo[9]
    if g.shape != (n, o, oh, ow):
        return None
    p = oh * ow
    ck = weight[0].size * groups
    og, ckg = o // groups, ck // groups
    wmat = weight.reshape(groups, og, ckg)
    g3 = g.reshape(n, o, p)
    dx = np.zeros_like(x) if need_input else None
    dw = np.zeros((groups, og, ckg), x.dtype) if need_weight else None
    db = np.zeros(o, np.float64)
    kept = columns is not None and columns.shape == (ck, n * p) and columns.dtype == x.dtype
    nb = n if kept else _block(n, ck, p)
    for n0 in range(0, n, nb):
        n1 = min(n, n0 + nb)
        m = (n1 - n0) * p
        dyt = np.empty((o, m), x.dtype)
        _planes(k.from_nchw, dyt.size, g3, n0, n1, dyt, db, need_bias, planes=o)
        if need_weight:
            if kept:
                cols = columns
            else:
                cols = np.empty((ck, m), x.dtype)
                _im2col(k, x, cols, n0, n1, geo)
            if groups == 1 and o * ck <= SMALL_WEIGHT:
                spans = _checks.split(m, max(1, min(_checks.parallel(m * (o + ck)), m // 512 + 1)))
                parts = _runtime.run_parts(k.weight_grad, [(dyt, cols, m0, m1) for m0, m1 in spans])
                dw[0] += sum(parts[1:], parts[0]).astype(x.dtype)
            else:
                for gi in range(groups):
                    dw[gi] += dyt[gi * og:(gi + 1) * og] @ cols[gi * ckg:(gi + 1) * ckg].T
        if need_input:
            dcols = np.empty((ck, m), x.dtype)
            for gi in range(groups):
                np.matmul(wmat[gi].T, dyt[gi * og:(gi + 1) * og], out=dcols[gi * ckg:(gi + 1) * ckg])
            _col2im(k, dcols, dx, n0, n1, geo)
    return (dx, dw.reshape(weight.shape) if need_weight else None,
            db.astype(x.dtype) if need_bias else None)


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
