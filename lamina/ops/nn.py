"""Neural-network primitives that are not plain elementwise math: softmax and log_softmax
(numerically stable), dropout (seeded, train/eval) and embedding lookup."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, kernels as _kernels
from ..tensor import Tensor, _wrap
from .base import Op, check_float, normalize_dim, xp_of
from .elementwise import _floating, exp, where
from ..amp.autocast_mode import autocast_op
from .indexing import index_add


class Softmax(Op):
    save_output = True
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        if type(x) is np.ndarray and self.dim == x.ndim - 1:
            y = _kernels.softmax_forward(x)
            if y is not None:
                return y
        xp = xp_of(x)
        e = x - x.max(axis=self.dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=self.dim, keepdims=True)
        return e

    def backward(self, g, x):
        y = self.output()
        gy = g * y
        return gy - y * gy.sum(dim=self.dim, keepdim=True)

    def backward_arrays(self, g, x):
        y = self.output().array
        if type(g) is np.ndarray and self.dim == y.ndim - 1:
            dx = _kernels.softmax_backward(g, y)
            if dx is not None:
                return dx
        gy = g * y
        gy -= y * gy.sum(axis=self.dim, keepdims=True)
        return gy

    def onnx(self, g, x):
        return g.op("Softmax", [x], axis=self.dim)


class LogSoftmax(Op):
    save_output = True
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        if type(x) is np.ndarray and self.dim == x.ndim - 1:
            y = _kernels.log_softmax_forward(x)
            if y is not None:
                return y
        xp = xp_of(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        shifted -= lse
        return shifted

    def backward(self, g, x):
        return g - exp(self.output()) * g.sum(dim=self.dim, keepdim=True)

    def backward_arrays(self, g, x):
        y = self.output().array
        if type(g) is np.ndarray and self.dim == y.ndim - 1:
            dx = _kernels.log_softmax_backward(g, y)
            if dx is not None:
                return dx
        e = xp_of(y).exp(y)
        e *= g.sum(axis=self.dim, keepdims=True)
        return g - e

    def onnx(self, g, x):
        return g.op("LogSoftmax", [x], axis=self.dim)


@autocast_op("softmax")
def softmax(x, dim):
    """exp(x) / sum(exp(x)) along ``dim``, shifted by the max so it never overflows."""
    x = _floating(x)
    return Softmax(normalize_dim(dim, x.ndim, "softmax"))(x)


@autocast_op("log_softmax")
def log_softmax(x, dim):
    """x - logsumexp(x) along ``dim``, computed stably."""
    x = _floating(x)
    return LogSoftmax(normalize_dim(dim, x.ndim, "log_softmax"))(x)


class Dropout(Op):
    """Zero each element with probability p and scale the rest by 1/(1-p)."""
    needs_inputs = False

    def __init__(self, p, generator):
        self.p, self.generator = p, generator

    def forward(self, x):
        if type(x) is np.ndarray and _kernels._checks.floats(x) and self.generator.device.type == "cpu":
            # compiled: a counter-based mask from one seed drawn from the generator, so the
            # stream stays reproducible under manual_seed and independent of the thread count
            seed = int(self.generator.integers(0, 1 << 62, (), backend.int64))
            y, mask = _kernels.dropout_forward(x, self.p, seed)
            if self.needs_input_grad is not None:
                self.saved = mask
            return y
        keep = self.generator.uniform(x.shape, backend.float32) >= self.p
        scale = x.dtype.type(1.0 / (1.0 - self.p))
        mask = keep * scale if x.dtype.kind == "f" else keep.astype(x.dtype) * scale
        if self.needs_input_grad is not None:
            self.saved = mask
        return x * mask

    def backward(self, g, x):
        return g * _wrap(self.saved)

    def onnx(self, g, x):
        # exported models run inference, where dropout passes its input through
        return g.op("Identity", [x])


def dropout(x, p=0.5, training=True, generator=None):
    """Dropout; the identity when ``training`` is False or p == 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    check_float(x, "dropout")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    gen = generator or backend.default_generator(x.device)
    with backend.device_context(x.device):
        return Dropout(p, gen)(x)


class Embedding(Op):
    """Rows of ``weight`` picked by integer ``index``; the gradient of ``padding_idx`` rows is zero."""
    needs_inputs = False

    def __init__(self, padding_idx):
        self.padding_idx = padding_idx

    def forward(self, weight, index):
        return weight.take(index, axis=0)

    def backward(self, g, weight, index):
        flat_idx = index.reshape(-1)
        rows = g.reshape(-1, weight.shape[1])
        if self.padding_idx is not None:
            rows = where((flat_idx == self.padding_idx).unsqueeze(1), 0.0, rows)
        return index_add(g.new_zeros(weight.shape), 0, flat_idx, rows), None

    def backward_arrays(self, g, weight, index):
        if type(g) is np.ndarray and g.dtype == weight.dtype:
            dw = _kernels.embedding_backward(g, index, weight.shape[0], self.padding_idx)
            if dw is not None:
                return dw, None
        return NotImplemented

    def onnx(self, g, weight, index):
        return g.op("Gather", [weight, index], axis=0)


def embedding(index, weight, padding_idx=None):
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        raise TypeError(f"embedding: index must be an integer tensor, got "
                        f"{index.dtype if isinstance(index, Tensor) else type(index).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got shape {weight.shape}")
    if index.device != weight.device:
        raise ValueError(f"embedding: index on {index.device} but weight on {weight.device}")
    n = weight.shape[0]
    if index.numel() and index.device.type == "cpu":
        lo, hi = int(index.array.min()), int(index.array.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"embedding: index out of range [0, {n}) for weight of shape {weight.shape}: "
                             f"got values in [{lo}, {hi}]")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += n
    return Embedding(padding_idx)(weight, index)


class LayerNorm(Op):
    """Normalise over the last ``k`` dims, then scale and shift, in one pass; backward reuses the
    saved mean and 1/std. While a graph of the backward itself is being built (higher-order
    gradients) it recomputes them with Tensor ops instead, so they are differentiated too."""

    def __init__(self, k, eps):
        self.k, self.eps = k, eps

    def forward(self, x, w=None, b=None):
        features = math.prod(x.shape[x.ndim - self.k:])
        if type(x) is np.ndarray:
            res = _kernels.layer_norm_forward(x, features, w, b, self.eps)
            if res is not None:
                if self.needs_input_grad is not None:
                    self.saved = res[1:]
                return res[0]
        xp = xp_of(x)
        rows = x.size // features
        X = x.reshape(rows, features)
        W = w.reshape(features) if w is not None else None
        B = b.reshape(features) if b is not None else None
        y = xp.empty_like(X)
        mean = xp.empty((rows, 1), dtype=x.dtype)
        rstd = xp.empty((rows, 1), dtype=x.dtype)
        eps = x.dtype.type(self.eps)
        step = max(1, (1 << 18) // features)  # a block of rows at a time: temporaries stay in cache
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            m = X[r0:r1].mean(axis=1, keepdims=True)
            c = X[r0:r1] - m
            s = (c * c).mean(axis=1, keepdims=True)
            s += eps
            xp.sqrt(s, out=s)
            xp.reciprocal(s, out=s)
            c *= s
            if W is not None:
                c *= W
            if B is not None:
                c += B
            y[r0:r1] = c
            mean[r0:r1], rstd[r0:r1] = m, s
        if self.needs_input_grad is not None:
            self.saved = (mean, rstd)
        return y.reshape(x.shape)

    def backward(self, g, x, w=None, b=None):
        dims = tuple(range(x.ndim - self.k, x.ndim))
        batch = tuple(range(x.ndim - self.k))
        needs = self.needs_input_grad
        mean = x.mean(dim=dims, keepdim=True)
        centered = x - mean
        rstd = (((centered * centered).mean(dim=dims, keepdim=True)) + self.eps).rsqrt()
        xhat = centered * rstd
        gx = gw = gb = None
        if needs[0]:
            dxhat = g * w if w is not None else g
            m1 = dxhat.mean(dim=dims, keepdim=True)
            m2 = (dxhat * xhat).mean(dim=dims, keepdim=True)
            gx = (dxhat - m1 - xhat * m2) * rstd
        if w is not None and needs[1]:
            gw = (g * xhat).sum(dim=batch) if batch else g * xhat
        if b is not None and needs[2]:
            gb = g.sum(dim=batch) if batch else g
        return (gx,) + ((gw,) if w is not None else ()) + ((gb,) if b is not None else ())

    def backward_arrays(self, g, x, w=None, b=None):
        """First-order gradients, a block of rows at a time so the temporaries stay in cache:
        gx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) with dxhat = g w."""
        mean, rstd = self.saved
        features = math.prod(x.shape[x.ndim - self.k:])
        needs = self.needs_input_grad
        if type(g) is np.ndarray:
            res = _kernels.layer_norm_backward(
                g, x, mean, rstd, features, w, need_input=needs[0],
                need_weight=w is not None and needs[1], need_bias=b is not None and needs[2])
            if res is not None:
                gx, gw, gb = res
                return (gx,) + ((gw,) if w is not None else ()) + ((gb,) if b is not None else ())
        xp = xp_of(x)
        rows = x.size // features
        G, X = g.reshape(rows, features), x.reshape(rows, features)
        M, S = mean.reshape(rows, 1), rstd.reshape(rows, 1)
        W = w.reshape(features) if w is not None else None
        gx = xp.empty_like(X) if needs[0] else None
        gw = xp.zeros(features, dtype=x.dtype) if w is not None and needs[1] else None
        gb = G.sum(axis=0) if b is not None and needs[2] else None
        step = max(1, (1 << 18) // features)  # ~1 MB of float32 per temporary
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            xhat = X[r0:r1] - M[r0:r1]
            xhat *= S[r0:r1]
            if gw is not None:
                gw += (G[r0:r1] * xhat).sum(axis=0)
            if gx is not None:
                dxhat = G[r0:r1] * W if W is not None else G[r0:r1].copy()
                m2 = (dxhat * xhat).mean(axis=1, keepdims=True)
                dxhat -= dxhat.mean(axis=1, keepdims=True)
                xhat *= m2
                dxhat -= xhat
                dxhat *= S[r0:r1]
                gx[r0:r1] = dxhat
        shape_w = x.shape[x.ndim - self.k:]
        out = (gx.reshape(x.shape) if gx is not None else None,)
        if w is not None:
            out += (gw.reshape(shape_w) if gw is not None else None,)
        if b is not None:
            out += (gb.reshape(shape_w) if gb is not None else None,)
        return out

    def onnx(self, g, x, w=None, b=None):
        if w is None:
            w = g.full(g.in_shape(0)[-self.k:], 1, g.in_dtype(0))
        return g.op("LayerNormalization", [x, w] + ([b] if b is not None else []), axis=-self.k,
                    epsilon=float(self.eps))


@autocast_op("layer_norm")
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims, then scale and shift."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k:]) != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {normalized_shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} must have shape {normalized_shape}, got {t.shape}")
    check_float(x, "layer_norm")
    if weight is None and bias is not None:
        raise ValueError("layer_norm: a bias needs a weight (pass a weight of ones to shift only)")
    args = (x,) if weight is None else (x, weight) if bias is None else (x, weight, bias)
    return LayerNorm(k, eps)(*args)


class ScaledDotProductAttention(Op):
    """``(out, weights)`` = softmax(q k^T * scale [causal mask]) v, weights, over the last two
    dims in one op, for q (..., L, D), k (..., S, D) and v (..., S, Dv) with the same leading
    dims. The causal mask lets query i see keys j <= i (aligned top-left, as PyTorch). The
    softmax weights are an output (``nn.functional`` drops it) so that backward reads them as
    the composition's backward read its softmax output: one activation the graph can see (and
    recompute), connected to this node when a graph of the backward is built."""
    n_outputs = 2
    save_output = True

    def __init__(self, scale, is_causal):
        self.scale, self.is_causal = float(scale), bool(is_causal)

    def forward(self, q, k, v):
        if type(q) is np.ndarray:
            res = _kernels.attention_forward(_as4(q), _as4(k), _as4(v), self.scale, self.is_causal)
            if res is not None:
                out, w = res
                return out.reshape(q.shape[:-1] + v.shape[-1:]), w.reshape(q.shape[:-1] + k.shape[-2:-1])
        xp = xp_of(q)
        s = (q * q.dtype.type(self.scale)) @ xp.swapaxes(k, -1, -2)
        if self.is_causal:
            s = xp.where(xp.tri(s.shape[-2], s.shape[-1], dtype=bool), s, s.dtype.type(-np.inf))
        s -= s.max(axis=-1, keepdims=True)
        xp.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return s @ v, s

    def backward(self, grads, q, k, v):
        g, g_w = grads
        w = self.output(1)
        nq, nk, nv = self.needs_input_grad
        gv = w.mT @ g if nv and g is not None else None
        gq = gk = None
        if nq or nk:
            gw = g @ v.mT if g is not None else None
            if g_w is not None:
                gw = g_w if gw is None else gw + g_w
            gs = w * (gw - (gw * w).sum(dim=-1, keepdim=True))
            gq = (gs @ k) * self.scale if nq else None
            gk = (gs.mT @ q) * self.scale if nk else None
        return gq, gk, gv

    def backward_arrays(self, grads, q, k, v):
        g, g_w = grads
        if g is None or g_w is not None:  # the weights' own gradient: the Tensor-level backward
            return NotImplemented
        w = self.outputs[1]
        nq, nk, nv = self.needs_input_grad
        if type(g) is np.ndarray:
            res = _kernels.attention_backward(_as4(g), _as4(q), _as4(k), _as4(v), _as4(w), self.scale,
                                              self.is_causal, (nq, nk, nv))
            if res is not None:
                return tuple(None if d is None else d.reshape(a.shape) for d, a in zip(res, (q, k, v)))
        xp = xp_of(g)
        gv = xp.swapaxes(w, -1, -2) @ g if nv else None
        gq = gk = None
        if nq or nk:
            gs = g @ xp.swapaxes(v, -1, -2)
            gs -= (gs * w).sum(axis=-1, keepdims=True)
            gs *= w
            gs *= gs.dtype.type(self.scale)
            gq = gs @ k if nq else None
            gk = xp.swapaxes(gs, -1, -2) @ q if nk else None
        return gq, gk, gv

    def onnx(self, g, q, k, v):
        s = g.op("MatMul", [g.op("Mul", [q, g.scalar(self.scale, g.in_dtype(0))]),
                            g.op("Transpose", [k], perm=_swap_last(len(g.in_shape(1))))])
        if self.is_causal:  # -inf above the diagonal, 0 elsewhere, sized at run time
            from onnx import helper
            ls = g.op("Slice", [g.op("Shape", [s]), g.ints([-2]), g.ints([len(g.in_shape(0))])])
            fill = helper.make_tensor("value", g.tensor_type(g.in_dtype(0)), [1], [-np.inf])
            s = g.op("Add", [s, g.op("Trilu", [g.op("ConstantOfShape", [ls], value=fill), g.scalar(1, np.int64)],
                                     upper=1)])
        w = g.op("Softmax", [s], axis=-1)
        return [g.op("MatMul", [w, v]), w]


def _swap_last(n):
    return list(range(n - 2)) + [n - 1, n - 2]


def _as4(a):
    """a as (batch, heads, rows, columns): a view for 2-4 dims, a reshape beyond."""
    if a.ndim == 4:
        return a
    if a.ndim < 4:
        return a.reshape((1,) * (4 - a.ndim) + a.shape)
    return a.reshape((-1,) + a.shape[-3:])


def scaled_dot_product_attention(q, k, v, scale, is_causal=False):
    """softmax(q k^T * scale [causal mask]) v as one op, for float q, k, v of one dtype and device
    with equal leading dims (callers check; ``nn.functional.scaled_dot_product_attention``
    composes the other cases: masks, dropout, broadcast batch dims, autocast)."""
    return ScaledDotProductAttention(scale, is_causal)(q, k, v)[0]
