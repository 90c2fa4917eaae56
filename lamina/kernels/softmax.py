"""softmax / log_softmax over the last axis and fused cross-entropy on raw CPU arrays.

Functions return None when they do not take the input (kernels off, not C-contiguous
float32/float64 NumPy arrays); the caller then uses its NumPy path."""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

_k = None


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("softmax")
    return _k


def _rows(a):
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _forward(x, log):
    if not _checks.floats(x) or x.ndim == 0 or x.size == 0:
        return None
    k = _lib()
    y = np.empty_like(x)
    x2, y2 = _rows(x), _rows(y)
    spans = _checks.split(x2.shape[0], min(_checks.parallel(x2.size, 4), x2.shape[0]))  # an exp each
    _runtime.run_parts(k.forward, [(x2[lo:hi], y2[lo:hi], log) for lo, hi in spans])
    return y


def _backward(g, y, log):
    if not _checks.floats(g, y) or g.shape != y.shape or y.ndim == 0 or y.size == 0:
        return None
    k = _lib()
    dx = np.empty_like(g)
    g2, y2, d2 = _rows(g), _rows(y), _rows(dx)
    spans = _checks.split(g2.shape[0], min(_checks.parallel(g2.size), g2.shape[0]))
    _runtime.run_parts(k.backward, [(g2[lo:hi], y2[lo:hi], d2[lo:hi], log) for lo, hi in spans])
    return dx


def softmax_forward(x):
    """softmax over the last axis (any leading shape)."""
    return _forward(x, False)


def softmax_backward(g, y):
    """Input gradient from the forward's output y: y (g - sum(g y))."""
    return _backward(g, y, False)


def log_softmax_forward(x):
    """x - logsumexp(x) over the last axis."""
    return _forward(x, True)


def log_softmax_backward(g, y):
    """Input gradient from the forward's output y: g - exp(y) sum(g)."""
    return _backward(g, y, True)


def cross_entropy(logits, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy of (N, C) logits against int64 class indices (N,), forward and backward in
    one pass: returns ``(loss, grad)``. ``loss`` is a 0-d array ('mean', 'sum') or per row
    ('none'); ``grad`` is d loss / d logits for an upstream gradient of 1 ('none': of 1 for every
    row, so the caller scales row r by its upstream gradient). Ignored rows count for nothing;
    'mean' over no counted row is NaN with a zero gradient, as in PyTorch. Returns None for
    inputs it does not take (class weights are not covered: the caller passes none here)."""
    if (not _checks.floats(logits) or logits.ndim != 2 or type(target) is not np.ndarray
            or target.dtype != np.int64 or target.shape != logits.shape[:1] or not target.flags.c_contiguous
            or logits.shape[1] == 0 or logits.shape[0] == 0):
        return None
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    k = _lib()
    n, c = logits.shape
    grad = np.empty_like(logits)
    loss = np.empty(n, logits.dtype)
    mean = reduction == "mean"
    parts = min(_checks.parallel(logits.size, 4), n)  # an exp per logit
    if parts == 1:  # small: one call counts, sums and scales
        counted, total = k.cross_entropy_serial(logits, target, grad, loss, ignore_index, label_smoothing, mean)
    else:  # the count first, so every part scales its own rows in the same pass
        valid = int(np.count_nonzero(target != ignore_index))
        scale = logits.dtype.type(1.0 / valid if mean and valid else 0.0 if mean else 1.0)
        counts = _runtime.run_parts(k.cross_entropy_rows, [
            (logits[lo:hi], target[lo:hi], grad[lo:hi], loss[lo:hi], ignore_index, label_smoothing, scale)
            for lo, hi in _checks.split(n, parts)])
        bad = [(i, c_) for i, c_ in enumerate(counts) if c_ < 0]
        if bad:
            i, c_ = bad[0]
            counted = -1 - (_checks.split(n, parts)[i][0] + (-1 - c_))
        else:
            counted, total = valid, float(loss.sum(dtype=np.float64))
    if counted < 0:
        r = -1 - counted
        raise IndexError(f"cross_entropy: target {int(target[r])} of row {r} is out of range for "
                         f"{c} classes (logits of shape {logits.shape})")
    if reduction == "none":
        return loss, grad
    if mean:
        total = total / counted if counted else np.nan
    return np.asarray(total, logits.dtype), grad
