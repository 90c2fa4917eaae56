"""``Parameter``: a tensor that defines a model and persists between steps (unlike activations)."""
from __future__ import annotations

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and that ``Module`` registers as a parameter."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = []
        if isinstance(data, Tensor):
            self.data = data.data
            self.grad = None
            self._node = None
            self._out_idx = 0
            self._version = [0]
            self._hooks = None
            self._post_hooks = None
            self.requires_grad = False
            if requires_grad:
                self.requires_grad_(True)
        else:
            super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
