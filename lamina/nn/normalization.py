"""Normalisation layers: ``BatchNorm1d``/``BatchNorm2d`` (running statistics, momentum, train vs
eval), ``LayerNorm``, ``GroupNorm`` and ``InstanceNorm1d``/``2d``/``3d``."""
from __future__ import annotations

import warnings

from .. import backend, creation
from . import functional as F
from .module import Module
from .parameter import Parameter



def _affine_parameters(module, n, affine, bias, device, dtype):
    """The per-feature scale (ones) and shift (zeros) of a normalisation layer, or None for each
    that the layer is built without."""
    weight = Parameter(creation.ones(n, device=device, dtype=dtype)) if affine else None
    shift = Parameter(creation.zeros(n, device=device, dtype=dtype)) if affine and bias else None
    for name, p in (("weight", weight), ("bias", shift)):
        if p is None:
            module.register_parameter(name, None)
        else:
            setattr(module, name, p)

class _BatchNorm(Module):
    expected_dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _affine_parameters(self, num_features, affine, bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", creation.ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", creation.zeros((), dtype=backend.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def forward(self, x):
        name = type(self).__name__
        if x.ndim not in self.expected_dims:
            raise ValueError(f"{name}: expected input of {' or '.join(map(str, self.expected_dims))} dims, "
                             f"got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels (dim 1), got input shape {x.shape}")
        momentum = self.momentum
        use_batch = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
        update = self.training and self.track_running_stats
        return F.batch_norm(x, self.running_mean if (update or not use_batch) else None,
                            self.running_var if (update or not use_batch) else None,
                            self.weight, self.bias, use_batch, momentum if momentum is not None else 0.0, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) input."""
    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) input."""
    expected_dims = (4,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(creation.ones(self.normalized_shape, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(creation.zeros(self.normalized_shape, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Normalise each group of ``num_channels / num_groups`` channels of each sample, then an
    optional per-channel scale and shift."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine_parameters(self, num_channels, affine, bias, device, dtype)

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input (N, {self.num_channels}, *), got shape {x.shape}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(_BatchNorm):
    """Per-sample, per-channel normalisation. Defaults differ from batch norm (no affine, no
    running statistics); with ``track_running_stats`` eval mode uses the running statistics.
    The parameters and buffers have batch norm's names, as in PyTorch."""

    spatial = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, x):
        name = type(self).__name__
        d = self.spatial
        if x.ndim not in (d + 1, d + 2):
            raise ValueError(f"{name}: expected a {d + 1}-D (unbatched) or {d + 2}-D input, got shape {x.shape}")
        batched = x.ndim == d + 2
        if x.shape[1 if batched else 0] != self.num_features:
            msg = (f"{name}: expected {self.num_features} channels (dim {1 if batched else 0}), got input shape "
                   f"{x.shape}")
            if self.affine or self.track_running_stats:
                raise ValueError(msg)
            warnings.warn(msg + "; normalising every channel, as num_features has no effect without affine "
                          "parameters or running statistics", stacklevel=2)
        xb = x if batched else x.unsqueeze(0)
        use_input = self.training or not self.track_running_stats
        out = F.instance_norm(xb, self.running_mean, self.running_var, self.weight, self.bias, use_input,
                              self.momentum if self.momentum is not None else 0.0, self.eps)
        return out if batched else out.squeeze(0)


class InstanceNorm1d(_InstanceNorm):
    """Over (N, C, L) or unbatched (C, L) input."""
    spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Over (N, C, H, W) or unbatched (C, H, W) input."""
    spatial = 2


class InstanceNorm3d(_InstanceNorm):
    """Over (N, C, D, H, W) or unbatched (C, D, H, W) input."""
    spatial = 3
