"""Diagonals: ``diagonal`` (a diagonal of two dims, moved to the last dim), ``diag_embed`` (the
last dim placed on a diagonal of zeros) and ``diag`` (vector <-> matrix, as ``torch.diag``).

Two primitives, each the other's gradient: ``Diagonal`` reads a diagonal, ``DiagEmbed`` writes
values onto the diagonal of a zero tensor of a given shape. ``diagonal`` returns a view, as
PyTorch's: an in-place change of the result changes the input (``diag`` returns a copy).
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .base import Op, normalize_dim, xp_of
from .shape import _share_version, clone


def _diag_index(xp, n1, n2, offset):
    """Row and column positions of diagonal ``offset`` of an (n1, n2) matrix."""
    length = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    rows = xp.arange(length) + (0 if offset >= 0 else -offset)
    return rows, rows + offset


class Diagonal(Op):
    """The diagonal ``offset`` of dims (dim1, dim2), as a new last dim (dim1 indexes rows): a
    strided view of the input."""
    needs_inputs = False

    def __init__(self, offset, dim1, dim2):
        self.offset, self.dim1, self.dim2 = offset, dim1, dim2

    def forward(self, x):
        xp = xp_of(x)
        m = xp.moveaxis(x, (self.dim1, self.dim2), (-2, -1))
        n1, n2 = m.shape[-2], m.shape[-1]
        rows, _ = _diag_index(np, n1, n2, self.offset)
        if len(rows) == 0:
            return xp.empty(m.shape[:-2] + (0,), dtype=x.dtype)
        corner = m[..., int(rows[0]):, int(rows[0]) + self.offset:]
        # one step along the diagonal is one row plus one column
        strides = corner.strides[:-2] + (corner.strides[-2] + corner.strides[-1],)
        return xp.lib.stride_tricks.as_strided(corner, m.shape[:-2] + (len(rows),), strides)

    def backward(self, g, x):
        return DiagEmbed(x.shape, self.offset, self.dim1, self.dim2)(g)


class DiagEmbed(Op):
    """Zeros of ``shape`` with the last dim of the input on diagonal ``offset`` of (dim1, dim2)."""
    needs_inputs = False

    def __init__(self, shape, offset, dim1, dim2):
        self.shape, self.offset, self.dim1, self.dim2 = tuple(shape), offset, dim1, dim2

    def forward(self, v):
        xp = xp_of(v)
        out = xp.zeros(self.shape, dtype=v.dtype)
        m = xp.moveaxis(out, (self.dim1, self.dim2), (-2, -1))  # a view: writes land in out
        rows, cols = _diag_index(xp, m.shape[-2], m.shape[-1], self.offset)
        m[..., rows, cols] = v
        return out

    def backward(self, g, v):
        return Diagonal(self.offset, self.dim1, self.dim2)(g)


def _check(x, opname):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: expected a Tensor, got {type(x).__name__}")


def diagonal(input, offset=0, dim1=0, dim2=1):
    """Diagonal ``offset`` (> 0 above, < 0 below the main one) of dims ``dim1`` and ``dim2``,
    appended as the last dim: a view of the input, as ``torch.diagonal``."""
    _check(input, "diagonal")
    if input.ndim < 2:
        raise ValueError(f"diagonal: expected a tensor of at least 2 dims, got shape {input.shape}")
    d1 = normalize_dim(dim1, input.ndim, "diagonal")
    d2 = normalize_dim(dim2, input.ndim, "diagonal")
    if d1 == d2:
        raise ValueError(f"diagonal: dim1 and dim2 must differ, got {dim1} and {dim2} for shape {input.shape}")
    op = Diagonal(int(offset), d1, d2)
    return _share_version(op(input), input, lambda b: Diagonal(int(offset), d1, d2)(b))


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """A tensor whose diagonals (``offset``, dims ``dim1``/``dim2``) hold the last dim of
    ``input``, zeros elsewhere, as ``torch.diag_embed``."""
    _check(input, "diag_embed")
    if input.ndim < 1:
        raise ValueError("diag_embed: expected a tensor of at least 1 dim, got a 0-d tensor")
    nd = input.ndim + 1
    d1 = normalize_dim(dim1, nd, "diag_embed")
    d2 = normalize_dim(dim2, nd, "diag_embed")
    if d1 == d2:
        raise ValueError(f"diag_embed: dim1 and dim2 must differ, got {dim1} and {dim2}")
    n = input.shape[-1] + abs(int(offset))
    batch = iter(input.shape[:-1])
    shape = tuple(n if k in (d1, d2) else next(batch) for k in range(nd))
    return DiagEmbed(shape, int(offset), d1, d2)(input)


def diag(input, diagonal=0):
    """A 1-D input becomes a square matrix with it on diagonal ``diagonal``; a 2-D input gives
    that diagonal as a vector (``torch.diag``)."""
    _check(input, "diag")
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:  # a copy, as torch.diag's
        return clone(Diagonal(int(diagonal), 0, 1)(input))
    raise ValueError(f"diag: expected a 1-D or 2-D tensor, got shape {input.shape}")
