"""Fused loss primitives. ``cross_entropy`` in lamina.nn is written from log_softmax and gather;
this op computes the same thing for the common (N, C) case in one pass over the logits and keeps
only one number per row for backward. The composite stays as its test oracle."""
from __future__ import annotations

import numpy as np

from .. import kernels as _kernels
from ..creation import arange
from ..tensor import _wrap
from .base import Op, xp_of
from .elementwise import where
from .indexing import index_put, index_select
from .nn import softmax


class CrossEntropy(Op):
    """Cross entropy of logits (N, C) against class indices (N,), with an optional class weight,
    ``ignore_index`` and label smoothing; ``reduction`` is 'none', 'mean' or 'sum'.

    Per row: (1 - eps) w[t] (lse - x[t]) + (eps / C) sum_c w_c (lse - x_c), zero for ignored rows;
    'mean' divides by the summed w[t] of the rows that are not ignored (PyTorch's rule).
    """
    name = "cross_entropy"

    def __init__(self, ignore_index, reduction, label_smoothing):
        self.ignore_index, self.reduction, self.eps = ignore_index, reduction, label_smoothing

    def forward(self, x, target, weight=None):
        if weight is None and type(x) is np.ndarray:
            # compiled: loss and gradient in one pass over the logits; backward only scales it
            res = _kernels.cross_entropy(x, target, self.ignore_index, self.reduction, self.eps)
            if res is not None:
                loss, grad = res
                if self.needs_input_grad is not None:
                    denom = np.count_nonzero(target != self.ignore_index) if self.reduction == "mean" else None
                    self.saved = (denom, grad)
                return loss
        xp = xp_of(x)
        c = x.shape[1]
        valid = target != self.ignore_index
        t = xp.where(valid, target, 0)
        m = x.max(axis=1, keepdims=True)
        lse = xp.log(xp.exp(x - m).sum(axis=1)) + m[:, 0]
        nll = lse - xp.take_along_axis(x, t[:, None], axis=1)[:, 0]
        wt = (weight[t] if weight is not None else xp.ones_like(lse)) * valid
        loss = nll * wt if not self.eps else nll * wt * (1.0 - self.eps)
        if self.eps:
            sw = weight.sum() if weight is not None else c
            sx = (x * weight).sum(axis=1) if weight is not None else x.sum(axis=1)
            loss = loss + (self.eps / c) * (lse * sw - sx) * valid
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        denom = wt.sum()
        self.saved = (denom, None)
        if xp is np:
            with np.errstate(invalid="ignore", divide="ignore"):  # every row ignored: 0/0 = nan, as PyTorch
                return loss.sum() / denom
        return loss.sum() / denom

    def backward(self, g, x, target, weight=None):
        n, c = x.shape
        valid = target != self.ignore_index
        t = where(valid, target, 0)
        validf = valid.to(x.dtype)
        wt = index_select(weight, 0, t) * validf if weight is not None else validf
        coef = g  # 0-d, or per row for 'none'
        if self.reduction == "mean":
            denom = float(self.saved[0])
            coef = g / denom if denom else g * 0.0  # no row counted: the loss is nan, its gradient 0 (PyTorch)
        pick = coef * wt * (1.0 - self.eps)  # per row: the weight of the one-hot part of the gradient
        scale = pick
        if self.eps:
            sw = weight.sum() if weight is not None else float(c)
            scale = pick + coef * validf * (self.eps / c) * sw
        # d/dx = softmax(x) * scale - pick at the target class (- the smoothing spread below)
        grad = index_put(softmax(x, 1) * scale.reshape(-1, 1), (arange(n, device=x.device), t), -pick,
                         accumulate=True)
        if self.eps:
            spread = (coef * validf * (self.eps / c)).reshape(-1, 1)
            grad = grad - (spread * weight if weight is not None else spread)
        return (grad, None) if weight is None else (grad, None, None)

    def backward_arrays(self, g, x, target, weight=None):
        grad = self.saved[1] if self.saved is not None else None
        if grad is not None and type(g) is np.ndarray:
            # the kernel's gradient is for an upstream gradient of 1 (of 1 per row for 'none')
            if g.ndim == 0 and g == 1:
                # loss.backward(): the gradient as it is, handed over (a second backward through
                # a retained graph recomputes it)
                self.saved = (self.saved[0], None)
                return grad, None
            s = g.reshape(-1, 1) if self.reduction == "none" else g
            out = _kernels.scale_rows(grad, s)
            return (grad * s if out is None else out), None
        return NotImplemented

    def onnx(self, g, x, target, weight=None):
        # forward's formula over LogSoftmax: per row (1 - eps) w[t] nll - (eps / C) sum_c w_c logp_c
        dt = g.out_dtype()
        c = g.in_shape(0)[1]
        logp = g.op("LogSoftmax", [x], axis=1)
        valid = g.op("Not", [g.op("Equal", [target, g.scalar(self.ignore_index, g.in_dtype(1))])])
        t = g.op("Where", [valid, target, g.scalar(0, g.in_dtype(1))])
        picked = g.op("GatherElements", [logp, g.op("Unsqueeze", [t, g.ints([1])])], axis=1)
        nll = g.op("Neg", [g.op("Squeeze", [picked, g.ints([1])])])
        validf = g.op("Cast", [valid], to=g.tensor_type(dt))
        wt = validf if weight is None else g.op("Mul", [g.op("Gather", [weight, t], axis=0), validf])
        loss = g.op("Mul", [nll, wt])
        if self.eps:
            loss = g.op("Mul", [loss, g.scalar(1.0 - self.eps, dt)])
            spread = logp if weight is None else g.op("Mul", [logp, weight])
            smooth = g.op("Neg", [g.reduce("ReduceSum", spread, [1], False)])
            smooth = g.op("Mul", [g.op("Mul", [smooth, validf]), g.scalar(self.eps / c, dt)])
            loss = g.op("Add", [loss, smooth])
        if self.reduction == "none":
            return loss
        total = g.reduce("ReduceSum", loss, [0], False)
        if self.reduction == "sum":
            return total
        return g.op("Div", [total, g.reduce("ReduceSum", wt, [0], False)])
