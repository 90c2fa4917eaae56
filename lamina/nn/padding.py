"""Padding layers with PyTorch's names and argument order: ``ZeroPad``, ``ConstantPad``,
``ReflectionPad``, ``ReplicationPad`` and ``CircularPad`` for 1, 2 and 3 spatial dims. Each is
``F.pad`` with a fixed mode; ``padding`` is an int (every side) or (left, right[, top, bottom[,
front, back]])."""
from __future__ import annotations

from .. import ops
from ..tensor import Tensor
from .module import Module


class _PadNd(Module):
    d = 1
    mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        name = type(self).__name__
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * (2 * self.d)
        padding = tuple(padding)
        if len(padding) != 2 * self.d or not all(isinstance(p, int) and not isinstance(p, bool) for p in padding):
            raise ValueError(f"{name}: padding must be an int or {2 * self.d} ints, got {padding!r}")
        self.padding, self.value = padding, value

    def forward(self, x):
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(x).__name__}")
        if self.mode != "constant" and x.ndim not in (self.d + 1, self.d + 2):
            raise ValueError(f"{name}: expected a {self.d + 1}-D or {self.d + 2}-D input, got shape {x.shape}")
        if x.ndim < self.d:
            raise ValueError(f"{name}: expected an input of at least {self.d} dims, got shape {x.shape}")
        return ops.pad(x, self.padding, self.mode, self.value)

    def extra_repr(self):
        return f"{self.padding}"


class ConstantPad1d(_PadNd):
    d = 1

    def __init__(self, padding, value: float):
        super().__init__(padding, value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ConstantPad2d(ConstantPad1d):
    d = 2


class ConstantPad3d(ConstantPad1d):
    d = 3


class ZeroPad1d(_PadNd):
    d = 1

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(ZeroPad1d):
    d = 2


class ZeroPad3d(ZeroPad1d):
    d = 3


class ReflectionPad1d(_PadNd):
    """Mirror without repeating the edge (each width must be smaller than the padded dim)."""
    d, mode = 1, "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReflectionPad2d(ReflectionPad1d):
    d = 2


class ReflectionPad3d(ReflectionPad1d):
    d = 3


class ReplicationPad1d(_PadNd):
    """Repeat the edge values."""
    d, mode = 1, "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad2d(ReplicationPad1d):
    d = 2


class ReplicationPad3d(ReplicationPad1d):
    d = 3


class CircularPad1d(_PadNd):
    """Wrap around: the left pad comes from the right end and vice versa."""
    d, mode = 1, "circular"

    def __init__(self, padding):
        super().__init__(padding)


class CircularPad2d(CircularPad1d):
    d = 2


class CircularPad3d(CircularPad1d):
    d = 3
