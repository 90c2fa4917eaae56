"""``Dropout`` and the channel dropouts ``Dropout1d``/``2d``/``3d``: active in training mode,
the identity in eval mode."""
from __future__ import annotations

from .. import ops
from . import functional as F
from .module import Module


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(Dropout):
    """Zero whole channels of (N, C, L) or (C, L) input in training mode."""

    def forward(self, x):
        return F.dropout1d(x, self.p, self.training)


class Dropout2d(Dropout):
    """Zero whole channels of (N, C, H, W) input in training mode (a 3-D input is taken as
    (N, C, L), as PyTorch does)."""

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)


class Dropout3d(Dropout):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input in training mode."""

    def forward(self, x):
        return F.dropout3d(x, self.p, self.training)
