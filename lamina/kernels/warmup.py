"""``warmup()``: compile every kernel (serial and parallel, float32 and float64) by running it
once on small inputs, so the on-disk cache is full before a run needs it (the
``lamina kernels warmup`` command)."""
from __future__ import annotations

import time

import numpy as np

from . import _checks, _runtime, activation, attention, conv, gemm, misc, norm, optim, softmax

FAMILIES = ("activation", "softmax", "attention", "gemm", "norm", "conv", "optim", "misc")


def _activation(dt, rng):
    x, g = rng.standard_normal((4, 8)).astype(dt), rng.standard_normal((4, 8)).astype(dt)
    b = rng.standard_normal(8).astype(dt)
    activation.gelu_backward(g, x)
    y, cdf = activation.gelu_forward(x, keep_cdf=True)
    activation.gelu_backward(g, x, cdf=cdf)
    activation.bias_act_forward(x, b, "gelu")
    activation.bias_act_backward(g, x, b, "gelu")
    # every activation the ops call has its own pair of kernels
    activation.gelu_backward(g, activation.gelu_forward(x, "tanh"), "tanh")
    for name in ("silu", "sigmoid", "tanh", "relu", "leaky_relu"):
        getattr(activation, name + "_backward")(g, getattr(activation, name + "_forward")(x))


def _softmax(dt, rng):
    x, g = rng.standard_normal((4, 8)).astype(dt), rng.standard_normal((4, 8)).astype(dt)
    softmax.softmax_backward(g, softmax.softmax_forward(x))
    softmax.log_softmax_backward(g, softmax.log_softmax_forward(x))
    softmax.cross_entropy(x, np.arange(4, dtype=np.int64))


def _attention(dt, rng):
    q, k, v, g = (rng.standard_normal((1, 2, 3, 4)).astype(dt) for _ in range(4))
    # contiguous heads, and heads split off one (B, L, 3 H D) projection as a GPT does
    qkv = rng.standard_normal((1, 3, 3 * 2 * 4)).astype(dt)
    hq, hk, hv = (qkv[..., i * 8:(i + 1) * 8].reshape(1, 3, 2, 4).transpose(0, 2, 1, 3) for i in range(3))
    for q_, k_, v_, g_ in ((q, k, v, g), (hq, hk, hv, g.transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3))):
        out, w = attention.attention_forward(q_, k_, v_, 0.5, True)
        attention.attention_backward(g_, q_, k_, v_, w, 0.5, True)


def _gemm(dt, rng):
    a, b = rng.standard_normal((4, 3)).astype(dt), rng.standard_normal((3, 5)).astype(dt)
    gemm.product(a, b, _checks.force_parts or 1)
    gemm.product(a, b, _checks.force_parts or 1, np.ones(5, dt))


def _norm(dt, rng):
    x, g = rng.standard_normal((4, 8)).astype(dt), rng.standard_normal((4, 8)).astype(dt)
    w = np.ones(8, dt)
    y, mean, rstd = norm.layer_norm_forward(x, 8, w, w)
    norm.layer_norm_backward(g, x, mean, rstd, 8, w)


def _conv(dt, rng):
    x = rng.standard_normal((2, 2, 6, 6)).astype(dt)
    # planar columns (kw*C <= conv.PLANAR); direct loops (few output channels) and channels-last
    # columns, narrow and wide (kw*C > conv.NARROW); each also dilated
    for c in (2, 4, 32):
        for o in ((3,) if c == 2 else (3, conv.DIRECT_OUT + 1)):
            xc, wc = rng.standard_normal((2, c, 6, 6)).astype(dt), rng.standard_normal((o, c, 3, 3)).astype(dt)
            bc = rng.standard_normal(o).astype(dt)
            for d in (1, 2):
                y = conv.conv2d_forward(xc, wc, bc, padding=d, dilation=d)
                conv.conv2d_backward(y, xc, wc, padding=d, dilation=d)
    y, idx = conv.max_pool2d_forward(x, 2)
    conv.max_pool2d_backward(y, idx, x.shape)
    for k in (2, 12):  # window offsets in int8, and int16 for windows of 128 values or more
        xb = rng.standard_normal((1, 2, k, k)).astype(dt)
        y, off = conv.max_pool_blocks_forward(xb, k)
        conv.max_pool_blocks_backward(y, off, k, xb.shape)
    conv.avg_pool2d_backward(conv.avg_pool2d_forward(x, 2), x.shape, 2)


def _optim(dt, rng):
    p, g = rng.standard_normal(16).astype(dt), rng.standard_normal(16).astype(dt)
    s1, s2, s3 = np.zeros(16, dt), np.zeros(16, dt), np.zeros(16, dt)
    optim.sgd_update(p, g, s1, 1, 0.1, momentum=0.9)
    optim.adam_update(p, g, s1, s2, s3, 1, 1e-3)
    optim.rmsprop_update(p, g, s1, s2, s3, 1e-2)


def _misc(dt, rng):
    x = rng.standard_normal((4, 8)).astype(dt)
    misc.embedding_backward(x, np.arange(4, dtype=np.int64), 5)
    misc.dropout_forward(x, 0.5, 0)
    misc.var_all(x)
    sync, state = _runtime.load("sync"), np.zeros(24, np.int64)  # the kernel threads' waits
    sync.spin_to(state[16:], 1, 1)
    sync.wait_post(state, 0, 1, 1, 0)


_RUN = {"activation": _activation, "softmax": _softmax, "attention": _attention, "gemm": _gemm, "norm": _norm,
        "conv": _conv, "optim": _optim, "misc": _misc}


def warmup(families=FAMILIES, dtypes=("float32", "float64")) -> dict:
    """Compile (or load from the cache) the kernels of ``families`` for ``dtypes``; returns
    ``{family: seconds}``. Does nothing (returns {}) when kernels are off."""
    if not _runtime.enabled():
        return {}
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"lamina.kernels.warmup: unknown kernel families {sorted(unknown)}; "
                         f"expected some of {FAMILIES}")
    rng = np.random.default_rng(0)
    times = {}
    previous = _checks.force_parts
    try:
        for family in families:
            start = time.perf_counter()
            for parts in (1, 2):
                _checks.force_parts = parts
                for dt in dtypes:
                    _RUN[family](np.dtype(dt), rng)
            times[family] = time.perf_counter() - start
    finally:
        _checks.force_parts = previous
    return times
