"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` (PyTorch's ``nn.utils`` semantics).

Both work in place on the raw gradient arrays (no autograd graph) and bump each gradient's
version counter.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..creation import from_dlpack, tensor
from ..tensor import Tensor


def _grads(parameters, fname):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{fname}: parameters must be Tensors, but item {i} is a "
                            f"{type(p).__name__}")
        if p.grad is not None:
            grads.append(p.grad)
    return grads


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients so that their joint ``norm_type``-norm is at most ``max_norm``.

    The norm is taken over all gradients as if concatenated (``inf`` for the max-abs norm). Every
    gradient is multiplied by ``min(max_norm / (total_norm + 1e-6), 1)``. Returns the total norm
    before clipping as a 0-d Tensor; raises ``RuntimeError`` when it is NaN or infinite and
    ``error_if_nonfinite`` is set.
    """
    grads = _grads(parameters, "clip_grad_norm_")
    norm_type = float(norm_type)
    # Empty gradients add nothing to any norm (NumPy's max-abs norm refuses them).
    by_device = {}
    for g in grads:
        if g.data.size:
            by_device.setdefault(g.device, []).append(g)
    if not by_device:
        return tensor(0.0)
    first = next(iter(by_device))
    xp = backend.xp_of(by_device[first][0].data)
    # Non-finite gradients are the caller's to report (error_if_nonfinite), not NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        # As in PyTorch: a norm per gradient (on its device), then the norm of those norms.
        norms = []
        for device, gs in by_device.items():
            dxp = backend.xp_of(gs[0].data)
            with backend.device_context(device):
                per_grad = dxp.stack([dxp.linalg.norm(g.data.reshape(-1), norm_type) for g in gs])
            norms.append(backend.to_device(per_grad, first))
        total = xp.asarray(xp.linalg.norm(xp.concatenate(norms), norm_type))
        if error_if_nonfinite and not math.isfinite(float(total)):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                f"{float(total)}, so it cannot be clipped; pass error_if_nonfinite=False to scale "
                "the gradients by the non-finite norm anyway")
        coef = xp.asarray(xp.minimum(max_norm / (total + 1e-6), 1.0))
        for device, gs in by_device.items():
            device_coef = backend.to_device(coef, device)
            for g in gs:
                g.data *= device_coef
                g._version[0] += 1
    return from_dlpack(total)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters, "clip_grad_value_"):
        backend.xp_of(g.data).clip(g.data, -clip_value, clip_value, out=g.data)
        g._version[0] += 1
