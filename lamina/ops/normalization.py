"""Group and instance normalisation, composed from reductions and elementwise ops (their
gradients follow from those primitives): ``group_norm`` normalises each group of channels of
each sample, ``instance_norm`` each channel of each sample, with optional running statistics."""
from __future__ import annotations

from ..tensor import Tensor
from .base import check_float
from ..amp.autocast_mode import autocast_op
from ..grad_mode import no_grad


def _check_affine(opname, c, x, weight, bias):
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"{opname}: {name} must have shape ({c},) for input of shape {x.shape}, got {t.shape}")


def _affine(out, weight, bias):
    shape = (1, out.shape[1]) + (1,) * (out.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


@autocast_op("group_norm")
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, *) input over each group of C / num_groups channels and all spatial
    positions of each sample (biased variance), then scale and shift per channel."""
    opname = "group_norm"
    if not isinstance(input, Tensor) or input.ndim < 2:
        raise ValueError(f"group_norm: expected input of at least 2 dims (N, C, *), got "
                         f"{input.shape if isinstance(input, Tensor) else type(input).__name__}")
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"group_norm: channels {c} of input shape {input.shape} are not divisible by "
                         f"num_groups={num_groups}")
    _check_affine(opname, c, input, weight, bias)
    check_float(input, opname)
    g = input.reshape(n, num_groups, -1)
    mean = g.mean(dim=2, keepdim=True)
    centered = g - mean
    var = (centered * centered).mean(dim=2, keepdim=True)
    out = (centered * (var + eps).rsqrt()).reshape(input.shape)
    return _affine(out, weight, bias)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each channel of each sample of (N, C, *) input over its spatial positions.

    With ``use_input_stats`` the sample's own statistics normalise and, if running buffers are
    given, move them in place towards the batch average of the per-instance mean and unbiased
    variance (as PyTorch); otherwise the running statistics normalise.
    """
    opname = "instance_norm"
    if not isinstance(input, Tensor) or input.ndim < 3:
        raise ValueError(f"instance_norm: expected input of at least 3 dims (N, C, *spatial), got "
                         f"{input.shape if isinstance(input, Tensor) else type(input).__name__}")
    n, c = input.shape[:2]
    _check_affine(opname, c, input, weight, bias)
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"{opname}: {name} must have shape ({c},) for input of shape {input.shape}, "
                             f"got {t.shape}")
    check_float(input, opname)
    dims = tuple(range(2, input.ndim))
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError(f"{opname}: running_mean and running_var are needed when use_input_stats=False")
        # the statistics take the input's dtype, as PyTorch keeps float32 activations float32
        mean, var = running_mean.reshape(shape).to(input.dtype), running_var.reshape(shape).to(input.dtype)
        out = (input - mean) * (var + eps).rsqrt()
        return _affine(out, weight, bias)
    count = input.numel() // max(n * c, 1)
    if count <= 1 and n * c:
        raise ValueError(f"{opname}: expected more than 1 spatial element per channel, got input shape {input.shape}")
    mean = input.mean(dim=dims, keepdim=True)
    centered = input - mean
    var = (centered * centered).mean(dim=dims, keepdim=True)
    if running_mean is not None or running_var is not None:
        with no_grad():
            m = momentum
            if running_mean is not None:
                running_mean.mul_(1 - m).add_(mean.detach().reshape(n, c).mean(dim=0) * m)
            if running_var is not None:
                unbiased = var.detach().reshape(n, c).mean(dim=0) * (count / (count - 1))
                running_var.mul_(1 - m).add_(unbiased * m)
    out = centered * (var + eps).rsqrt()
    return _affine(out, weight, bias)
