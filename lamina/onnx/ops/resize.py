"""ONNX Resize (and the older Upsample) on Lamina ops.

Resizing is separable: each resized axis is one matmul with an (out, in) interpolation matrix
built on the host from the mode (nearest, linear, cubic, with antialias), the coordinate
transformation and the rounding rule, following the ONNX definition. The data path is a
matmul, so the result is differentiable in the input.
"""
from __future__ import annotations

import math

import numpy as np

import lamina

from . import onnx_op
from ._util import axes as norm_axes, check_size, fail, host, is_float, raw, wrap


def _source(mode, i, scale, n, m_float, m_int, roi):
    """Source coordinates of output positions ``i`` and, for tf_crop_and_resize, which fall outside."""
    outside = None
    if mode == "align_corners":
        # length_resized is scale * n as the ONNX reference computes it (not the integer length, which
        # onnxruntime and PyTorch use: they differ only when scale * n is not a whole number)
        x = np.zeros(len(i)) if m_float == 1 else i * (n - 1) / (m_float - 1)
    elif mode == "asymmetric":
        x = i / scale
    elif mode == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(len(i), (hi - lo) * (n - 1) / 2) if m_float == 1 else i * (hi - lo) * (n - 1) / (m_float - 1)
        x = x + lo * (n - 1)
        outside = (x < 0) | (x > n - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(len(i), -0.5) if m_float == 1 else (i + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = n / 2 * (1 - m_int / m_float)
        x = offset + (i + 0.5) / scale - 0.5
    else:
        raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")
    return x, outside


def _coeffs(kind, ratio, scale, a, nearest, antialias):
    if kind == "nearest":
        if ratio == 1.0:
            return np.array([0.0, 1.0])
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": False,
              "ceil": True}[nearest]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])
    if kind == "linear":
        if not antialias:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        args = (np.arange(start, 2 - start) - ratio) * s
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum()

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        if t < 2:
            return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
        return 0.0
    if not antialias:
        return np.array([cubic(ratio + 1), cubic(ratio), cubic(1 - ratio), cubic(2 - ratio)])
    s = min(scale, 1.0)
    start = int(np.floor(-2 / s) + 1)
    c = np.array([cubic(s * (k - ratio)) for k in range(start, 2 - start)])
    return c / c.sum()


def interpolation_matrix(n, m, scale, kind, coord, nearest="round_prefer_floor", a=-0.75, exclude=False,
                         antialias=False, roi=(0.0, 1.0)):
    """(m, n) matrix taking an axis of n samples to m; rows of positions that tf_crop_and_resize
    puts outside the input are zero and flagged in the returned mask."""
    x, outside = _source(coord, np.arange(m, dtype=np.float64), scale, n, scale * n, m, roi)
    w = np.zeros((m, n))
    for r, xo in enumerate(x):
        if outside is not None and outside[r]:
            continue
        base = math.ceil(xo) - 1  # the tap left of xo; an integer xo is reached with ratio 1
        ratio = xo - base
        c = _coeffs(kind, ratio, scale, a, nearest, antialias)
        k = len(c)
        taps = base - k // 2 + 1 + np.arange(k)
        if exclude:
            inside = (taps >= 0) & (taps < n)
            c = np.where(inside, c, 0.0)
            c = c / c.sum() if c.sum() else c
        np.add.at(w[r], np.clip(taps, 0, n - 1), c)
    return w, outside


def _apply(x, d, w):
    """Resize axis ``d`` of ``x`` with matrix ``w`` (m, n)."""
    moved = lamina.transpose(x, d, -1) if d != x.ndim - 1 else x
    if is_float(x):
        out = lamina.matmul(moved, wrap(w.T.astype(x.dtype), x))
    else:
        out = raw(lambda xp, a: xp.rint(a.astype(np.float64) @ w.T).astype(a.dtype), moved)
    return lamina.transpose(out, d, -1) if d != x.ndim - 1 else out


@onnx_op("Resize")
def resize(node, x, roi=None, scales=None, sizes=None):
    if node.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates, floor rounding
        scales, roi = roi, None
        coord, nearest = "asymmetric", "floor"
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
    return _resize(node, x, roi, scales, sizes, coord, nearest)


@onnx_op("Upsample")
def upsample(node, x, scales=None):
    sc = node.attr("scales") if node.opset < 9 else host(scales).tolist()
    return _resize(node, x, None, wrap(np.array(sc, np.float32)), None, "asymmetric", "floor")


def _resize(node, x, roi, scales, sizes, coord, nearest):
    kind = node.attr("mode", "nearest")
    if kind not in ("nearest", "linear", "cubic", "bilinear", "trilinear"):
        fail(node, f"unknown mode {kind!r}")
    kind = "linear" if kind in ("bilinear", "trilinear") else kind
    r = x.ndim
    ax = norm_axes(node, node.attr("axes"), r) if node.attr("axes") else list(range(r))
    sc = None if scales is None or scales.numel() == 0 else [float(v) for v in host(scales).reshape(-1)]
    sz = None if sizes is None or sizes.numel() == 0 else [int(v) for v in host(sizes).reshape(-1)]
    if (sc is None) == (sz is None):
        fail(node, "exactly one of scales and sizes must be given")
    roi_v = None if roi is None or roi.numel() == 0 else [float(v) for v in host(roi).reshape(-1)]
    full_scale, out = [1.0] * r, list(x.shape)
    if sz is not None:
        for i, d in enumerate(ax):
            full_scale[d] = sz[i] / x.shape[d]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            s = (min if policy == "not_larger" else max)(full_scale[d] for d in ax)
            for d in ax:
                full_scale[d] = s
                out[d] = int(s * x.shape[d] + 0.5)
        else:
            for i, d in enumerate(ax):
                out[d] = sz[i]
    else:
        for i, d in enumerate(ax):
            full_scale[d] = sc[i]
            out[d] = int(sc[i] * x.shape[d])
    check_size(node, out, x.dtype.itemsize)
    rois = [(0.0, 1.0)] * r
    if roi_v is not None:
        k = len(roi_v) // 2
        for i, d in enumerate(ax if k == len(ax) else range(r)):
            rois[d] = (roi_v[i], roi_v[k + i])
    extrap = node.attr("extrapolation_value", 0.0)
    y = x
    mask = None
    for d in range(r):
        if out[d] == x.shape[d] and full_scale[d] == 1.0 and coord != "tf_crop_and_resize":
            continue
        w, outside = interpolation_matrix(x.shape[d], out[d], full_scale[d], kind, coord, nearest,
                                          node.attr("cubic_coeff_a", -0.75), bool(node.attr("exclude_outside", 0)),
                                          bool(node.attr("antialias", 0)), rois[d])
        y = _apply(y, d, w)
        if outside is not None and outside.any():
            shape = [1] * r
            shape[d] = out[d]
            o = outside.reshape(shape)
            mask = o if mask is None else (mask | o)
    if mask is not None:
        m = np.broadcast_to(mask, y.shape)
        y = lamina.where(wrap(np.ascontiguousarray(m), y), wrap(np.array(extrap, y.dtype), y), y)
    return y


@onnx_op("GridSample")
def grid_sample(node, x, grid):
    mode = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}.get(node.attr("mode", "linear"))
    if mode is None:
        fail(node, f"mode {node.attr('mode')!r} is not supported (linear and nearest are)")
    pad = node.attr("padding_mode", "zeros")
    return lamina.ops.grid_sample(x, grid, mode=mode, padding_mode=pad,
                                  align_corners=bool(node.attr("align_corners", 0)))


@onnx_op("AffineGrid")
def affine_grid(node, theta, size):
    return lamina.ops.affine_grid(theta, [int(v) for v in host(size)],
                                  align_corners=bool(node.attr("align_corners", 0)))
