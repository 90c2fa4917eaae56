"""Elementwise activations, forward and backward, one pass each, over flat C-contiguous arrays
(one kernel per activation, so only the ones used get compiled);
and bias + activation over the rows of a 2-D array, returning the bias gradient of those rows
(float64), so parts of a call summed separately never share an accumulator. ``kind`` picks the
activation (the constants below). Inner loops run over ``range(len)`` of whole arrays (slices of the
caller's): a loop from an arbitrary start keeps Numba's negative-index check in the loop and
stops LLVM from vectorising it."""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT_FMA as JIT, fexp, ftanh, like, ncdf, sigmoid_of

GELU, GELU_TANH, SILU, SIGMOID, TANH, RELU, LEAKY_RELU, IDENTITY = range(8)

_INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588


@njit(error_model="numpy")
def _gelu_tanh_s(v):
    # 0.5 (1 + tanh(u)) = sigmoid(2u): no cancellation for large negative v
    u2 = like(v, 2.0 * _SQRT_2_OVER_PI) * (v + like(v, 0.044715) * v * v * v)
    return like(v, 1.0) / (like(v, 1.0) + fexp(-u2))


# One small kernel per activation and direction, so a process compiles only the activations it
# uses; ``forward``/``backward`` dispatch on ``kind`` for bias + activation.
@njit(**JIT)
def gelu_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v * ncdf(v)


@njit(**JIT)
def gelu_cdf_fwd(x, y, cdf):
    """Exact GELU that also keeps Phi(x) for the backward."""
    for i in range(x.shape[0]):
        v = x[i]
        c = ncdf(v)
        cdf[i] = c
        y[i] = v * c


@njit(**JIT)
def gelu_tanh_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v * _gelu_tanh_s(v)


@njit(**JIT)
def silu_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v * sigmoid_of(v)


@njit(**JIT)
def sigmoid_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        y[i] = sigmoid_of(x[i])


@njit(**JIT)
def tanh_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        y[i] = ftanh(x[i])


@njit(**JIT)
def relu_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = like(v, 0.0) if v < like(v, 0.0) else v  # NaN passes through, as in PyTorch


@njit(**JIT)
def leaky_relu_fwd(x, y, alpha):
    """``alpha``, the slope, has the arrays' dtype."""
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v if v > like(v, 0.0) else v * alpha


@njit(**JIT)
def identity_fwd(x, y, alpha):
    for i in range(x.shape[0]):
        y[i] = x[i]


# Backward: ``s`` is the input x (GELU, SiLU, ReLU, leaky ReLU) or the output y (sigmoid,
# tanh), whichever the derivative is cheaper from.
@njit(**JIT)
def gelu_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        v = s[i]
        pdf = like(v, _INV_SQRT_2PI) * fexp(like(v, -0.5) * v * v)
        dx[i] = g[i] * (ncdf(v) + v * pdf)


@njit(**JIT)
def gelu_cdf_bwd(g, x, cdf, dx):
    """Exact GELU's gradient from x and the forward's Phi(x): one exp per element, no erf."""
    for i in range(g.shape[0]):
        v = x[i]
        pdf = like(v, _INV_SQRT_2PI) * fexp(like(v, -0.5) * v * v)
        dx[i] = g[i] * (cdf[i] + v * pdf)


@njit(**JIT)
def gelu_tanh_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        v = s[i]
        sg = _gelu_tanh_s(v)
        du = like(v, 2.0 * _SQRT_2_OVER_PI) * (like(v, 1.0) + like(v, 3 * 0.044715) * v * v)
        dx[i] = g[i] * (sg + v * sg * (like(v, 1.0) - sg) * du)


@njit(**JIT)
def silu_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        v = s[i]
        sg = sigmoid_of(v)
        dx[i] = g[i] * (sg * (like(v, 1.0) + v * (like(v, 1.0) - sg)))


@njit(**JIT)
def sigmoid_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        yv = s[i]
        dx[i] = g[i] * (yv * (like(yv, 1.0) - yv))


@njit(**JIT)
def tanh_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        yv = s[i]
        dx[i] = g[i] * (like(yv, 1.0) - yv * yv)


@njit(**JIT)
def relu_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        v = s[i]
        dx[i] = like(v, 0.0) if v <= like(v, 0.0) else g[i]  # PyTorch's threshold_backward


@njit(**JIT)
def leaky_relu_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        v = s[i]
        dx[i] = g[i] if v > like(v, 0.0) else g[i] * alpha


@njit(**JIT)
def identity_bwd(g, s, dx, alpha):
    for i in range(g.shape[0]):
        dx[i] = g[i]


@njit(**JIT)
def forward(x, y, kind, alpha):
    """y = f(x) for the activation ``kind``."""
    if kind == GELU:
        gelu_fwd(x, y, alpha)
    elif kind == GELU_TANH:
        gelu_tanh_fwd(x, y, alpha)
    elif kind == SILU:
        silu_fwd(x, y, alpha)
    elif kind == SIGMOID:
        sigmoid_fwd(x, y, alpha)
    elif kind == TANH:
        tanh_fwd(x, y, alpha)
    elif kind == RELU:
        relu_fwd(x, y, alpha)
    elif kind == LEAKY_RELU:
        leaky_relu_fwd(x, y, alpha)
    else:
        identity_fwd(x, y, alpha)


@njit(**JIT)
def backward(g, s, dx, kind, alpha):
    """dx = g f'(.) for the activation ``kind``."""
    if kind == GELU:
        gelu_bwd(g, s, dx, alpha)
    elif kind == GELU_TANH:
        gelu_tanh_bwd(g, s, dx, alpha)
    elif kind == SILU:
        silu_bwd(g, s, dx, alpha)
    elif kind == SIGMOID:
        sigmoid_bwd(g, s, dx, alpha)
    elif kind == TANH:
        tanh_bwd(g, s, dx, alpha)
    elif kind == RELU:
        relu_bwd(g, s, dx, alpha)
    elif kind == LEAKY_RELU:
        leaky_relu_bwd(g, s, dx, alpha)
    else:
        identity_bwd(g, s, dx, alpha)


@njit(**JIT)
def bias_forward(x, b, y, kind, alpha):
    """y[r] = f(x[r] + b) for every row r of the 2-D x."""
    f = x.shape[1]
    pre = np.empty(f, x.dtype)
    for r in range(x.shape[0]):
        for j in range(f):
            pre[j] = x[r, j] + b[j]
        forward(pre, y[r], kind, alpha)


@njit(**JIT)
def bias_backward(g, x, b, dx, kind, alpha):
    """dx[r] = g[r] f'(x[r] + b) for every row; returns the rows' bias gradient in float64."""
    f = x.shape[1]
    pre = np.empty(f, x.dtype)
    act = np.empty(f, x.dtype)
    db = np.zeros(f, np.float64)
    for r in range(x.shape[0]):
        for j in range(f):
            pre[j] = x[r, j] + b[j]
        if kind == SIGMOID or kind == TANH:  # their derivative is written in the output
            forward(pre, act, kind, alpha)
            backward(g[r], act, dx[r], kind, alpha)
        else:
            backward(g[r], pre, dx[r], kind, alpha)
        for j in range(f):
            db[j] += dx[r, j]
    return db
