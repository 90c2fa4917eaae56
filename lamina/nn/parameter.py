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
            self._init(data.array, requires_grad)  # shares the tensor's memory, as in PyTorch
        else:
            super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
