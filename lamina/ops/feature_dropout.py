"""Channel dropout (``dropout1d``/``dropout2d``/``dropout3d``): whole channels are zeroed with
probability p and the rest scaled by 1/(1-p). The per-channel mask comes from the ``Dropout``
primitive applied to ones of shape (N, C, 1, ...), so it draws from the same seeded streams."""
from __future__ import annotations

import warnings

from ..tensor import Tensor
from .base import check_float
from .nn import dropout


def _feature_dropout(x, p, training):
    mask = dropout(x.new_ones(x.shape[:2] + (1,) * (x.ndim - 2)), p, True)
    return x * mask


def _channel_dropout(opname, x, p, training, spatial, short_is_batched=False):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: expected a Tensor input, got {type(x).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{opname}: p must be in [0, 1], got {p}")
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(f"{opname}: expected a {spatial + 1}-D or {spatial + 2}-D input (optional N, then C and "
                         f"{spatial} spatial dims), got shape {x.shape}")
    check_float(x, opname)
    if not training or p == 0.0:
        return x
    if x.ndim == spatial + 1 and not short_is_batched:
        return _feature_dropout(x.unsqueeze(0), p, training).squeeze(0)
    return _feature_dropout(x, p, training)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) or (C, L) input."""
    return _channel_dropout("dropout1d", input, p, training, 1)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) input. A 3-D input is taken as (N, C, L), with
    PyTorch's warning (it documents this as a behaviour it will change)."""
    if isinstance(input, Tensor) and input.ndim == 3:
        warnings.warn("dropout2d: received a 3-D input and takes it as (N, C, L), dropping whole rows of "
                      "dim 1 per sample, as PyTorch does; use dropout1d for that, or add a batch dim to "
                      "an unbatched (C, H, W) input", stacklevel=2)
    return _channel_dropout("dropout2d", input, p, training, 2, short_is_batched=True)


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input."""
    return _channel_dropout("dropout3d", input, p, training, 3)
