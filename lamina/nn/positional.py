"""Position information for attention models, which are otherwise blind to order:
``SinusoidalPositionalEncoding`` (the fixed sin/cos table of "Attention Is All You Need") and
``LearnedPositionalEmbedding`` (a trained vector per position). Both add to a sequence of
embeddings of shape (L, N, d), (N, L, d) with ``batch_first``, or unbatched (L, d).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, creation
from . import init
from .dropout import Dropout
from .module import Module
from .parameter import Parameter


def _positions(layer, x, d_model, max_len, batch_first, offset):
    """The sequence length of ``x``, checked against the layer's size."""
    if x.ndim not in (2, 3) or x.shape[-1] != d_model:
        raise ValueError(f"{layer}: expected input (L, N, {d_model}), (N, L, {d_model}) with batch_first, or "
                         f"(L, {d_model}), got shape {x.shape}")
    L = x.shape[1] if batch_first and x.ndim == 3 else x.shape[0]
    if offset < 0 or offset + L > max_len:
        raise ValueError(f"{layer}: positions {offset}..{offset + L - 1} of input shape {x.shape} "
                         f"(batch_first={batch_first}) exceed max_len={max_len}")
    return L


def _aligned(table, x, batch_first):
    """(L, d) position rows shaped to broadcast against ``x``."""
    return table.unsqueeze(1) if x.ndim == 3 and not batch_first else table


class SinusoidalPositionalEncoding(Module):
    """``x + pe[offset:offset+L]`` then dropout, where ``pe[p, 2i] = sin(p / 10000^(2i/d))`` and
    ``pe[p, 2i+1] = cos(p / 10000^(2i/d))``.

    The table is a non-persistent buffer ``pe`` of shape (max_len, d_model): it follows the module to
    devices and dtypes but stays out of the state dict. ``offset`` shifts the positions (e.g. when
    decoding one token at a time).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0, batch_first: bool = False,
                 device=None, dtype=None):
        super().__init__()
        if d_model <= 0 or max_len <= 0:
            raise ValueError(f"SinusoidalPositionalEncoding: d_model and max_len must be positive, got "
                             f"d_model={d_model}, max_len={max_len}")
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        position = np.arange(max_len, dtype=np.float64)[:, None]
        freq = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
        pe = np.zeros((max_len, d_model))
        pe[:, 0::2] = np.sin(position * freq)
        pe[:, 1::2] = np.cos(position * freq[: d_model // 2])
        dtype = backend.as_dtype(dtype) if dtype is not None else backend.get_default_dtype()
        self.register_buffer("pe", creation.tensor(pe, dtype=dtype, device=device), persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, x, offset: int = 0):
        L = _positions(type(self).__name__, x, self.d_model, self.max_len, self.batch_first, offset)
        return self.dropout(x + _aligned(self.pe[offset:offset + L], x, self.batch_first))

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, batch_first={self.batch_first}"


class LearnedPositionalEmbedding(Module):
    """``x + weight[offset:offset+L]``: an embedding table over positions 0..max_len-1 (parameter
    ``weight`` of shape (max_len, d_model), initialised N(0, 1) like ``Embedding``)."""

    def __init__(self, max_len: int, d_model: int, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if d_model <= 0 or max_len <= 0:
            raise ValueError(f"LearnedPositionalEmbedding: max_len and d_model must be positive, got "
                             f"max_len={max_len}, d_model={d_model}")
        self.max_len, self.d_model, self.batch_first = max_len, d_model, batch_first
        self.weight = Parameter(creation.empty(max_len, d_model, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)

    def forward(self, x, offset: int = 0):
        L = _positions(type(self).__name__, x, self.d_model, self.max_len, self.batch_first, offset)
        return x + _aligned(self.weight[offset:offset + L], x, self.batch_first)

    def extra_repr(self):
        return f"max_len={self.max_len}, d_model={self.d_model}, batch_first={self.batch_first}"
