"""Neural-network primitives that are not plain elementwise math: softmax and log_softmax
(numerically stable), dropout (seeded, train/eval) and embedding lookup."""
from __future__ import annotations

from .. import backend
from ..tensor import Tensor, _wrap
from .base import Op, check_float, normalize_dim, xp_of
from .elementwise import _floating, exp, where


class Softmax(Op):
    save_output = True
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = xp_of(x)
        e = x - x.max(axis=self.dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=self.dim, keepdims=True)
        return e

    def backward(self, g, x):
        y = self.output()
        gy = g * y
        return gy - y * gy.sum(dim=self.dim, keepdim=True)


class LogSoftmax(Op):
    save_output = True
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = xp_of(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        shifted -= lse
        return shifted

    def backward(self, g, x):
        return g - exp(self.output()) * g.sum(dim=self.dim, keepdim=True)


def softmax(x, dim):
    """exp(x) / sum(exp(x)) along ``dim``, shifted by the max so it never overflows."""
    x = _floating(x)
    return Softmax(normalize_dim(dim, x.ndim, "softmax"))(x)


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
        keep = self.generator.uniform(x.shape, backend.float32) >= self.p
        scale = x.dtype.type(1.0 / (1.0 - self.p))
        mask = keep * scale if x.dtype.kind == "f" else keep.astype(x.dtype) * scale
        if self.needs_input_grad is not None:
            self.saved = mask
        return x * mask

    def backward(self, g, x):
        return g * _wrap(self.saved)


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
        from .indexing import index_add
        flat_idx = index.reshape(-1)
        rows = g.reshape(-1, weight.shape[1])
        if self.padding_idx is not None:
            rows = where((flat_idx == self.padding_idx).unsqueeze(1), 0.0, rows)
        return index_add(g.new_zeros(weight.shape), 0, flat_idx, rows), None


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
        lo, hi = int(index.data.min()), int(index.data.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"embedding: index out of range [0, {n}) for weight of shape {weight.shape}: "
                             f"got values in [{lo}, {hi}]")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += n
    return Embedding(padding_idx)(weight, index)
