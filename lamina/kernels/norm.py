"""layer_norm over the trailing features on raw CPU arrays: forward (saving mean and 1/std per
row) and a fused backward for the input, weight and bias gradients. None when the input is not
taken (kernels off, not C-contiguous float32/float64 NumPy arrays of one dtype)."""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

_k = None

# An element's cost relative to a pass that only moves memory (``_checks.parallel``): the forward
# reads each row twice (statistics, then the output); the backward reads two arrays, sums two
# products per row and per feature and writes a third. Measured at 2 threads: 2048 x 128 forward
# 91 -> 65-75 us split, 768 x 128 backward 68 -> 59-62 us (its forward, 39 us, gained nothing
# and stays whole), 64 x 128 stays whole (split, it took twice as long).
FORWARD_COST, BACKWARD_COST = 3, 6


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("norm")
    return _k


def _features(x, weight, bias, features):
    if weight is not None and weight.size != features or bias is not None and bias.size != features:
        return False
    return bool(features) and x.size > 0


def layer_norm_forward(x, features, weight=None, bias=None, eps=1e-5):
    """Normalise x over its last ``features`` elements (the flattened normalized_shape), then
    scale by ``weight`` and shift by ``bias`` (same number of elements, or None). Returns
    ``(y, mean, rstd)`` with mean and rstd of shape (rows,), or None."""
    arrays = [a for a in (x, weight, bias) if a is not None]
    if not _checks.floats(*arrays) or not _features(x, weight, bias, features) or x.size % features:
        return None
    if weight is None and bias is not None:
        return None
    k = _lib()
    x2 = x.reshape(-1, features)
    rows = x2.shape[0]
    # results own their memory (no reshaped views): autograd copies a gradient that is a view
    y = np.empty_like(x)
    y2 = y.reshape(-1, features)
    mean = np.empty(rows, x.dtype)
    rstd = np.empty(rows, x.dtype)
    empty = np.empty(0, x.dtype)
    w = weight.reshape(-1) if weight is not None else empty
    b = bias.reshape(-1) if bias is not None else empty
    e = x.dtype.type(eps)
    spans = _checks.split(rows, min(_checks.parallel(x.size, FORWARD_COST), rows))
    _runtime.run_parts(k.forward, [(x2[lo:hi], w, b, y2[lo:hi], mean[lo:hi], rstd[lo:hi], e,
                                    weight is not None, bias is not None) for lo, hi in spans])
    return y, mean, rstd


def layer_norm_backward(g, x, mean, rstd, features, weight=None, need_input=True, need_weight=True,
                        need_bias=True):
    """``(dx, dweight, dbias)`` from the saved mean and rstd (each None where not needed or
    where there is no weight/bias), or None. dweight and dbias have weight's shape."""
    arrays = [a for a in (g, x, mean, rstd, weight) if a is not None]
    if (not _checks.floats(*arrays) or g.shape != x.shape or not _features(x, weight, None, features)
            or x.size % features or mean.size * features != x.size or rstd.size != mean.size):
        return None
    k = _lib()
    x2, g2 = x.reshape(-1, features), g.reshape(-1, features)
    rows = x2.shape[0]
    need_weight = need_weight and weight is not None
    dx = np.empty_like(x) if need_input else None
    d2 = dx.reshape(-1, features) if need_input else np.empty((0, features), x.dtype)
    w = weight.reshape(-1) if weight is not None else np.empty(0, x.dtype)
    mean, rstd = mean.reshape(-1), rstd.reshape(-1)
    spans = _checks.split(rows, min(_checks.parallel(x.size, BACKWARD_COST), rows))
    sums = _runtime.run_parts(k.backward, [
        (g2[lo:hi], x2[lo:hi], w, mean[lo:hi], rstd[lo:hi], d2[lo:hi] if need_input else d2,
         weight is not None, need_input, need_weight, need_bias) for lo, hi in spans])
    dw = sum((s[0] for s in sums[1:]), sums[0][0])
    db = sum((s[1] for s in sums[1:]), sums[0][1])
    shape = weight.shape if weight is not None else (features,)
    return (dx, _owned(dw, x.dtype, shape) if need_weight else None,
            _owned(db, x.dtype, shape) if need_bias else None)


def _owned(a, dtype, shape):
    """``a`` in ``dtype`` and ``shape`` as an array that owns its memory."""
    out = np.empty(shape, dtype)
    out.reshape(-1)[...] = a
    return out
