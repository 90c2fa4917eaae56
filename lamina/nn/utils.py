"""``lamina.nn.utils``: gradient clipping under its PyTorch name, and parameter flattening."""
from __future__ import annotations

from .. import ops
from ..grad_mode import no_grad
from ..optim.clip import clip_grad_norm_, clip_grad_value_  # noqa: F401


def parameters_to_vector(parameters):
    """All parameters as one 1-D tensor (a copy)."""
    return ops.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters) -> None:
    """Write consecutive slices of ``vec`` into the parameters, in place."""
    offset = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            if offset + n > vec.numel():
                raise ValueError(f"vector_to_parameters: vector of {vec.numel()} elements is too short")
            p.copy_(vec[offset:offset + n].reshape(p.shape))
            offset += n
    if offset != vec.numel():
        raise ValueError(f"vector_to_parameters: vector has {vec.numel()} elements, parameters {offset}")
