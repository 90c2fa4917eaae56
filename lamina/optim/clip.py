"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` (PyTorch's ``nn.utils`` semantics).

Both work with Tensor ops under ``no_grad``, writing the gradients in place (``mul_``,
``clamp_``), so a traced training step records its clipping as graph nodes and a compiled step
clips as the eager one does. Both bump each gradient's version counter.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import _mode, no_grad
from ..creation import tensor
from ..ops import abs as _abs, amax, amin, cat, sqrt, stack, sum as _sum
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


def _vector_norm(g, p: float):
    """The ``p``-norm of a 1-D Tensor, as ``numpy.linalg.norm`` defines it for vectors."""
    if p == 2.0:
        return sqrt(_sum(g * g))
    if p == math.inf:
        return amax(_abs(g))
    if p == -math.inf:
        return amin(_abs(g))
    if p == 0.0:
        return _sum((g != 0).to(g.dtype))
    if p == 1.0:
        return _sum(_abs(g))
    return _sum(_abs(g) ** p) ** (1.0 / p)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients so that their joint ``norm_type``-norm is at most ``max_norm``.

    The norm is taken over all gradients as if concatenated (``inf`` for the max-abs norm). Every
    gradient is multiplied by ``min(max_norm / (total_norm + 1e-6), 1)``. Returns the total norm
    before clipping as a 0-d Tensor; raises ``RuntimeError`` when it is NaN or infinite and
    ``error_if_nonfinite`` is set (that check needs the norm's value in Python, so a traced step
    cannot make it).
    """
    grads = _grads(parameters, "clip_grad_norm_")
    norm_type = float(norm_type)
    if error_if_nonfinite and _mode.__dict__.get("tracer") is not None:
        raise RuntimeError("clip_grad_norm_: error_if_nonfinite=True reads the norm's value in Python, which a "
                           "traced or compiled step cannot do on every call; pass error_if_nonfinite=False there "
                           "and check the returned norm outside the step")
    # Empty gradients add nothing to any norm (NumPy's max-abs norm refuses them).
    by_device = {}
    for g in grads:
        if g.numel():
            by_device.setdefault(g.device, []).append(g)
    if not by_device:
        return tensor(0.0)
    first = next(iter(by_device))
    dtype = np.result_type(*[g.dtype for gs in by_device.values() for g in gs])
    # Non-finite gradients are the caller's to report (error_if_nonfinite), not NumPy warnings.
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):
        # As in PyTorch: a norm per gradient (on its device), then the norm of those norms.
        norms = []
        for device, gs in by_device.items():
            per_grad = stack([_vector_norm(g.reshape(-1), norm_type).to(dtype) for g in gs])
            norms.append(per_grad if device == first else per_grad.to(first))
        total = _vector_norm(norms[0] if len(norms) == 1 else cat(norms), norm_type)
        if error_if_nonfinite and not math.isfinite(float(total)):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                f"{float(total)}, so it cannot be clipped; pass error_if_nonfinite=False to scale "
                "the gradients by the non-finite norm anyway")
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for device, gs in by_device.items():
            device_coef = coef if device == first else coef.to(device)
            for g in gs:
                g.mul_(device_coef if device_coef.dtype == g.dtype else device_coef.to(g.dtype))
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters, "clip_grad_value_"):
            g.clamp_(-clip_value, clip_value)
