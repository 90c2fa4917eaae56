"""``SyncBatchNorm``: batch normalisation whose batch statistics cover the whole global batch.

In training, each rank sums its shard's values per channel; one all-reduce of the sums (and
the counts) gives the global mean, a second of the squared deviations the global variance, and
every rank normalises with them. The all-reduce is a differentiable op (``all_reduce_sum``):
the sum over ranks is its own adjoint, so its backward all-reduces the incoming gradient, which
is what makes each rank's input gradient include the other ranks' share of d(mean) and d(var).
Everything else is ordinary Lamina ops, so backward needs no hand-written formula.
In eval mode, and when the group has one process, it is exactly ``BatchNorm``.
"""
from __future__ import annotations

from .. import backend, ops
from ..autograd import no_grad
from ..nn.module import Module
from ..nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm
from ..ops.base import Op
from ..tensor import _wrap
from . import group as dist


class _AllReduceSum(Op):
    """Y = sum over ranks of X, on every rank; backward: the same sum of the output gradient.

    Kept out of the op registry (leading underscore): its value depends on the other ranks, so
    the single-process op table cannot check it; tests/distributed does, on two ranks.
    """
    name = "all_reduce_sum"
    needs_inputs = False

    def __init__(self, group):
        self.group = group

    def forward(self, a):
        holder = {}
        dist.start_all_reduce(self.group, a, "sum", on_done=lambda res: holder.setdefault("res", res)).wait()
        res = holder["res"]
        return res.copy() if res is a else res

    def backward(self, grad, a):
        return _AllReduceSum(self.group)(grad)


def all_reduce_sum(x, group=None):
    """The sum of ``x`` over all ranks, differentiable (the gradient is summed over ranks too)."""
    return _AllReduceSum(group or dist.current_group())(x)


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over (N, C, ...) input with statistics synchronised across ranks
    (``torch.nn.SyncBatchNorm``). Ranks may hold different batch sizes; each must hold at least
    one sample per call, and the global batch more than one value per channel."""

    expected_dims = (2, 3, 4, 5)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        object.__setattr__(self, "process_group", process_group)

    def forward(self, x):
        g = self.process_group or (dist.current_group() if dist.is_initialized() else None)
        if not self.training or g is None or g.size == 1:
            return super().forward(x)
        name = type(self).__name__
        if x.ndim not in self.expected_dims:
            raise ValueError(f"{name}: expected input of 2 to 5 dims, got shape {x.shape}")
        c = self.num_features
        if x.shape[1] != c:
            raise ValueError(f"{name}: expected {c} channels (dim 1), got input shape {x.shape}")
        dims = (0,) + tuple(range(2, x.ndim))
        shape = (1, c) + (1,) * (x.ndim - 2)
        local_n = x.numel() // c
        # per-channel sums and the count travel in one message; the count column carries no gradient
        count = _wrap(backend.xp_of(x.array).full((1,), float(local_n), dtype=x.array.dtype))
        totals = all_reduce_sum(ops.cat([x.sum(dim=dims), count]), g)
        n = float(totals.array[c])
        if n <= 1:
            raise ValueError(f"{name}: expected more than 1 value per channel over all ranks in training, "
                             f"got {int(n)} (this rank's input shape {x.shape})")
        mean = (totals[:c] / n).reshape(shape)
        centered = x - mean
        var = (all_reduce_sum((centered * centered).sum(dim=dims), g) / n).reshape(shape)
        momentum = self.momentum
        if self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
                if momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked.item())
                self.running_mean.mul_(1 - momentum).add_(mean.detach().reshape(c) * momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach().reshape(c) * (momentum * n / (n - 1)))
        out = centered * ops.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` (the module itself included) by
        a ``SyncBatchNorm`` holding the same parameters, buffers and train/eval mode; returns the
        converted module (``module`` itself unless it was a BatchNorm)."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d)) and not isinstance(module, SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group=process_group)
            for name in ("weight", "bias"):
                p = module._parameters.get(name)
                if p is not None:
                    new._parameters[name] = p
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                new._buffers[name] = module._buffers.get(name)
            object.__setattr__(new, "training", module.training)
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    module._modules[name] = converted
        return module

