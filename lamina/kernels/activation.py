"""Fused elementwise activations on raw CPU arrays: exact and tanh GELU, SiLU, sigmoid, tanh,
ReLU and leaky ReLU, forward and backward in one pass each, and bias + activation over the last
axis. Each function returns None when it does not take the input (kernels off, not a
C-contiguous float32/float64 NumPy array, mixed dtypes); the caller then uses its NumPy path."""
from __future__ import annotations

import numpy as np

from . import _checks, _runtime

_k = None


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("activation")
    return _k


# Each activation's time per element relative to a ReLU (``_checks.parallel``): float32 on AVX2,
# forward and backward rounded together (exact GELU 1.9 and 3.2 ns, a ReLU 0.2-0.3).
COST = {"gelu": 8, "gelu_tanh": 4, "silu": 4, "sigmoid": 4, "tanh": 4, "relu": 1, "leaky_relu": 1,
        "identity": 1}


def _kind(name: str) -> int:
    k = _lib()
    kinds = {"gelu": k.GELU, "gelu_tanh": k.GELU_TANH, "silu": k.SILU, "sigmoid": k.SIGMOID,
             "tanh": k.TANH, "relu": k.RELU, "leaky_relu": k.LEAKY_RELU, "identity": k.IDENTITY}
    try:
        return kinds[name]
    except KeyError:
        raise ValueError(f"lamina.kernels: unknown activation {name!r}; expected one of {sorted(kinds)}") from None


def _forward(x, name, alpha=0.0):
    if not _checks.floats(x):
        return None
    fn = getattr(_lib(), name + "_fwd")
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    a = x.dtype.type(alpha)
    spans = _checks.split(xf.size, _checks.parallel(xf.size, COST[name]))
    _runtime.run_parts(fn, [(xf[lo:hi], yf[lo:hi], a) for lo, hi in spans])
    return y


def _backward(g, s, name, alpha=0.0):
    if not _checks.floats(g, s) or g.shape != s.shape:
        return None
    fn = getattr(_lib(), name + "_bwd")
    dx = np.empty_like(g)
    gf, sf, df = g.reshape(-1), s.reshape(-1), dx.reshape(-1)
    a = g.dtype.type(alpha)
    spans = _checks.split(gf.size, _checks.parallel(gf.size, COST[name]))
    _runtime.run_parts(fn, [(gf[lo:hi], sf[lo:hi], df[lo:hi], a) for lo, hi in spans])
    return dx


def _gelu_name(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


def gelu_forward(x, approximate="none", keep_cdf=False):
    """x Phi(x) (exact, with erf) or its tanh approximation. With ``keep_cdf`` (exact GELU only)
    returns ``(y, cdf)``: Phi(x), which makes the backward one exp per element instead of an
    erf and an exp; without it the backward recomputes everything from x."""
    name = _gelu_name(approximate)
    if not keep_cdf:
        return _forward(x, name)
    if name != "gelu":
        raise ValueError("gelu: keep_cdf is for the exact GELU (approximate='none') only")
    if not _checks.floats(x):
        return None
    fn = _lib().gelu_cdf_fwd
    y, cdf = np.empty_like(x), np.empty_like(x)
    xf, yf, cf = x.reshape(-1), y.reshape(-1), cdf.reshape(-1)
    spans = _checks.split(xf.size, _checks.parallel(xf.size, COST["gelu"]))
    _runtime.run_parts(fn, [(xf[lo:hi], yf[lo:hi], cf[lo:hi]) for lo, hi in spans])
    return y, cdf


def gelu_backward(g, x, approximate="none", cdf=None):
    """Input gradient; pass the forward's ``cdf`` (``keep_cdf``) to skip recomputing Phi(x)."""
    name = _gelu_name(approximate)
    if cdf is None:
        return _backward(g, x, name)
    if name != "gelu" or not _checks.floats(g, x, cdf) or not g.shape == x.shape == cdf.shape:
        return None
    fn = _lib().gelu_cdf_bwd
    dx = np.empty_like(g)
    gf, xf, cf, df = g.reshape(-1), x.reshape(-1), cdf.reshape(-1), dx.reshape(-1)
    spans = _checks.split(gf.size, _checks.parallel(gf.size, 4))  # one exp per element
    _runtime.run_parts(fn, [(gf[lo:hi], xf[lo:hi], cf[lo:hi], df[lo:hi]) for lo, hi in spans])
    return dx


def silu_forward(x):
    return _forward(x, "silu")


def silu_backward(g, x):
    return _backward(g, x, "silu")


def sigmoid_forward(x):
    return _forward(x, "sigmoid")


def sigmoid_backward(g, y):
    """Gradient from the forward's output y: g y (1 - y)."""
    return _backward(g, y, "sigmoid")


def tanh_forward(x):
    return _forward(x, "tanh")


def tanh_backward(g, y):
    """Gradient from the forward's output y: g (1 - y^2)."""
    return _backward(g, y, "tanh")


def relu_forward(x):
    return _forward(x, "relu")


def relu_backward(g, x):
    """g where x > 0, else 0 (the input or the output gives the same mask)."""
    return _backward(g, x, "relu")


def leaky_relu_forward(x, negative_slope=0.01):
    return _forward(x, "leaky_relu", negative_slope)


def leaky_relu_backward(g, x, negative_slope=0.01):
    return _backward(g, x, "leaky_relu", negative_slope)


def bias_act_forward(x, bias, activation="identity", alpha=0.0):
    """act(x + bias) with ``bias`` broadcast over the last axis, in one pass; ``activation`` is
    one of gelu, gelu_tanh, silu, sigmoid, tanh, relu, leaky_relu (slope ``alpha``), identity."""
    if not _checks.floats(x, bias) or x.ndim < 1 or bias.shape != x.shape[-1:]:
        return None
    k = _lib()
    kind = _kind(activation)
    x2 = x.reshape(-1, x.shape[-1])
    y = np.empty_like(x)  # the result owns its memory: autograd copies a gradient that is a view
    y2 = y.reshape(x2.shape)
    a = x.dtype.type(alpha)
    spans = _checks.split(x2.shape[0], min(_checks.parallel(x2.size, COST[activation]), max(1, x2.shape[0])))
    _runtime.run_parts(k.bias_forward, [(x2[lo:hi], bias, y2[lo:hi], kind, a) for lo, hi in spans])
    return y


def bias_act_backward(g, x, bias, activation="identity", alpha=0.0):
    """(dx, dbias) of act(x + bias) for upstream gradient g, recomputing x + bias on the fly;
    dbias is summed over every leading axis in float64 per thread, then rounded once."""
    if not _checks.floats(g, x, bias) or x.ndim < 1 or g.shape != x.shape or bias.shape != x.shape[-1:]:
        return None
    k = _lib()
    kind = _kind(activation)
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, x.shape[-1])
    dx = np.empty_like(x)
    d2 = dx.reshape(x2.shape)
    a = x.dtype.type(alpha)
    spans = _checks.split(x2.shape[0], min(_checks.parallel(x2.size, COST[activation]), max(1, x2.shape[0])))
    dbs = _runtime.run_parts(k.bias_backward, [(g2[lo:hi], x2[lo:hi], bias, d2[lo:hi], kind, a) for lo, hi in spans])
    return dx, sum(dbs[1:], dbs[0]).astype(x.dtype)
