"""Loss functions: the functional forms (``mse_loss``, ``cross_entropy``, ...) and the layer
classes that wrap them (``MSELoss``, ``CrossEntropyLoss``, ...), with PyTorch's arguments,
defaults and normalisation rules.

Every loss is a composition of differentiable ops, so its gradient (and its gradient's gradient)
comes from autograd. Inputs are checked before anything is computed; a bad shape, dtype, class
index or option raises an error that names the loss.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from ..ops import exp, log, log1p, log_softmax, relu, where
from ..ops.loss import CrossEntropy
from ..tensor import Tensor, _wrap
from .module import Module
from ..amp.autocast_mode import autocast_op

_REDUCTIONS = ("none", "mean", "sum")
_KL_REDUCTIONS = ("none", "batchmean", "mean", "sum")


# ---------------------------------------------------------------- checks and shared pieces

def _check_reduction(name, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        options = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{name}: reduction must be one of {options}, got {reduction!r}")


def _check_tensor(name, what, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: {what} must be a Tensor, got {type(x).__name__}")


def _check_float(name, what, x):
    _check_tensor(name, what, x)
    if not x.is_floating_point():
        raise TypeError(f"{name}: {what} must be a floating-point tensor, got {backend.dtype_name(x.dtype)}")


def _check_device(name, what, x, input):
    if x.device != input.device:
        raise ValueError(f"{name}: {what} is on {x.device} but input is on {input.device}")


def _check_same_shape(name, input, target):
    if target.shape != input.shape:
        raise ValueError(f"{name}: target of shape {target.shape} must have the input's shape {input.shape}")


def _check_broadcast_to(name, what, x, input):
    """``x`` (a weight) must broadcast to the input's shape without enlarging it."""
    try:
        ok = np.broadcast_shapes(x.shape, input.shape) == input.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: {what} of shape {x.shape} does not broadcast to the input's shape {input.shape}")


def _check_pair(name, input, target):
    """Input and target of an elementwise loss: PyTorch broadcasts differing shapes with a warning."""
    _check_float(name, "input", input)
    _check_tensor(name, "target", target)
    _check_device(name, "target", target, input)
    if target.shape != input.shape:
        try:
            np.broadcast_shapes(target.shape, input.shape)
        except ValueError:
            raise ValueError(f"{name}: target of shape {target.shape} does not broadcast with the input's "
                             f"shape {input.shape}") from None
        warnings.warn(f"{name}: target shape {target.shape} differs from input shape {input.shape}; "
                      "they are broadcast against each other, which is likely not what you want",
                      stacklevel=3)


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _elementwise_weight(name, weight, input):
    """The optional per-element ``weight`` of mse/l1/huber: exactly the input's shape, as in PyTorch."""
    if weight is None:
        return None
    _check_float(name, "weight", weight)
    _check_device(name, "weight", weight, input)
    if weight.shape != input.shape:
        raise ValueError(f"{name}: weight of shape {weight.shape} must have the input's shape {input.shape}")
    return weight.to(input.dtype)


def _class_weight(name, weight, input, num_classes):
    if weight is None:
        return None
    _check_float(name, "weight", weight)
    _check_device(name, "weight", weight, input)
    if weight.shape != (num_classes,):
        raise ValueError(f"{name}: weight must be 1-D with one entry per class ({num_classes}), "
                         f"got shape {weight.shape}")
    return weight.to(input.dtype)


def _num_classes(input):
    return input.shape[0] if input.ndim == 1 else input.shape[1]


def _class_index_target(name, input, target, weight, ignore_index):
    """Validate class indices for ``input`` (C,) or (N, C, d1, ...).

    Returns the target as int64 (of shape (1,) for an unbatched input), the weight in the input's
    dtype, and the mask of ignored positions (None when there are none, which saves the masking).
    """
    if target.dtype.kind not in "iu":
        hint = f" (or class probabilities of the input's shape {input.shape})" if name == "cross_entropy" else ""
        raise TypeError(f"{name}: target must hold integer class indices{hint}, got "
                        f"{backend.dtype_name(target.dtype)} of shape {target.shape}")
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{name}: target of shape {target.shape} does not fit input of shape {input.shape}; "
                         f"expected class indices of shape {expected}")
    num_classes = _num_classes(input)
    weight = _class_weight(name, weight, input, num_classes)
    target = target.to(backend.int64)
    if input.ndim == 1:
        target = target.reshape(1)
    # checked on the raw array (no graph, no op dispatch): this runs on every loss call
    t = target.array
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if 0 <= lo and hi < num_classes and not lo <= ignore_index <= hi:
            return target, weight, None  # every index a class, none ignored: two reductions
    ignored = t == ignore_index
    bad = ((t < 0) | (t >= num_classes)) & ~ignored
    if bool(bad.any()):
        value = int(t[bad].reshape(-1)[0])
        raise IndexError(f"{name}: target {value} is out of range for {num_classes} classes; class "
                         f"indices must be in [0, {num_classes}) or equal ignore_index ({ignore_index})")
    return target, weight, (_wrap(ignored) if bool(ignored.any()) else None)


def _class_index_loss(logp, target, weight, ignored, reduction, label_smoothing):
    """The loss of log-probabilities ``logp`` (N, C, ...) against class indices ``target`` (N, ...).

    Per position: -w[y]·logp[y], mixed with the smoothing term -Σ_c w_c·logp[c] / C. 'mean' divides
    by the summed weight of the positions that are not ignored (their count without a weight),
    for both terms, as PyTorch does; with all positions ignored that is 0/0 = nan, also as PyTorch.
    """
    num_classes = logp.shape[1]
    safe = target if ignored is None else target.masked_fill(ignored, 0)  # any valid class; masked below
    loss = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    target_weight = None
    if weight is not None:
        target_weight = weight[safe]
        loss = loss * target_weight
    if label_smoothing:
        weighted = logp if weight is None else logp * weight.reshape((num_classes,) + (1,) * (logp.ndim - 2))
        loss = (1.0 - label_smoothing) * loss - (label_smoothing / num_classes) * weighted.sum(1)
    if ignored is not None:
        loss = where(ignored, 0.0, loss)
        if target_weight is not None:
            target_weight = where(ignored, 0.0, target_weight)
    if reduction != "mean":
        return _reduce(loss, reduction)
    if target_weight is not None:
        return loss.sum() / target_weight.sum()
    if ignored is not None:
        return loss.sum() / (~ignored).sum().to(loss.dtype)
    return loss.mean()


def _batched(input):
    """Classes on dim 1: an unbatched (C,) input becomes a batch of one."""
    return input.unsqueeze(0) if input.ndim == 1 else input


def _unbatched(loss, input, reduction):
    """The per-position loss of an unbatched input is 0-d, as in PyTorch."""
    return loss.squeeze(0) if input.ndim == 1 and reduction == "none" else loss


# ---------------------------------------------------------------- regression losses

def _weighted_reduce(loss, weight, reduction, mean_over_weight):
    if weight is None:
        return _reduce(loss, reduction)
    loss = loss * weight
    if reduction == "mean" and mean_over_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


@autocast_op("mse_loss")
def mse_loss(input, target, reduction="mean", weight=None):
    """Squared error (input - target)²; with ``weight``, 'mean' is Σ w·err / Σ w."""
    _check_pair("mse_loss", input, target)
    _check_reduction("mse_loss", reduction)
    weight = _elementwise_weight("mse_loss", weight, input)
    diff = input - target
    return _weighted_reduce(diff * diff, weight, reduction, mean_over_weight=True)


@autocast_op("l1_loss")
def l1_loss(input, target, reduction="mean", weight=None):
    """Absolute error |input - target|; with ``weight``, 'mean' is Σ w·err / Σ w."""
    _check_pair("l1_loss", input, target)
    _check_reduction("l1_loss", reduction)
    weight = _elementwise_weight("l1_loss", weight, input)
    return _weighted_reduce((input - target).abs(), weight, reduction, mean_over_weight=True)


@autocast_op("smooth_l1_loss")
def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5·d²/beta where |d| < beta, |d| - 0.5·beta elsewhere (d = input - target); beta = 0 is L1."""
    _check_pair("smooth_l1_loss", input, target)
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    diff = input - target
    dist = diff.abs()
    if beta == 0:
        return _reduce(dist, reduction)
    return _reduce(where(dist < beta, (0.5 / beta) * (diff * diff), dist - 0.5 * beta), reduction)


@autocast_op("huber_loss")
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5·d² where |d| < delta, delta·(|d| - 0.5·delta) elsewhere; with ``weight``, 'mean' is mean(w·loss)."""
    _check_pair("huber_loss", input, target)
    _check_reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    weight = _elementwise_weight("huber_loss", weight, input)
    diff = input - target
    dist = diff.abs()
    loss = where(dist < delta, 0.5 * (diff * diff), delta * (dist - 0.5 * delta))
    return _weighted_reduce(loss, weight, reduction, mean_over_weight=False)


# ---------------------------------------------------------------- classification losses

@autocast_op("nll_loss")
def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (C,) or (N, C, d1, ...) at integer
    class indices ``target`` () or (N, d1, ...). Positions whose target equals ``ignore_index``
    contribute nothing; 'mean' divides by the summed class weight of the rest."""
    name = "nll_loss"
    _check_float(name, "input", input)
    _check_tensor(name, "target", target)
    _check_device(name, "target", target, input)
    _check_reduction(name, reduction)
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dim, shape (C,) or (N, C, ...), got a 0-d tensor")
    target, weight, ignored = _class_index_target(name, input, target, weight, ignore_index)
    loss = _class_index_loss(_batched(input), target, weight, ignored, reduction, 0.0)
    return _unbatched(loss, input, reduction)


@autocast_op("cross_entropy")
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy between the softmax of logits ``input`` (C,) or (N, C, d1, ...) and ``target``.

    ``target`` is either integer class indices of shape () or (N, d1, ...), or class
    probabilities of the input's own shape. ``label_smoothing`` mixes the target with the uniform
    distribution over the C classes. Built on log_softmax, so huge logits stay finite.
    """
    name = "cross_entropy"
    _check_float(name, "input", input)
    _check_tensor(name, "target", target)
    _check_device(name, "target", target, input)
    _check_reduction(name, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dim, shape (C,) or (N, C, ...), got a 0-d tensor")
    if target.shape == input.shape:
        return _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing)
    target, weight, ignored = _class_index_target(name, input, target, weight, ignore_index)
    if input.ndim == 2:  # the common case runs as one fused op; the composite below is its oracle
        return _fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    logp = log_softmax(_batched(input), 1)
    return _unbatched(_class_index_loss(logp, target, weight, ignored, reduction, label_smoothing),
                      input, reduction)


def _fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    op = CrossEntropy(ignore_index, reduction, label_smoothing)
    return op(input, target) if weight is None else op(input, target, weight)


def _cross_entropy_probs(input, target, weight, ignore_index, reduction, label_smoothing):
    name = "cross_entropy"
    if not target.is_floating_point():
        raise TypeError(f"{name}: a target of the input's shape {input.shape} holds class probabilities "
                        f"and must be floating-point, got {backend.dtype_name(target.dtype)}")
    if ignore_index >= 0:
        raise ValueError(f"{name}: ignore_index ({ignore_index}) is not supported with class-probability "
                         "targets; leave it at a negative value")
    num_classes = _num_classes(input)
    weight = _class_weight(name, weight, input, num_classes)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    logp = log_softmax(_batched(input), 1)
    if weight is not None:
        logp = logp * weight.reshape((num_classes,) + (1,) * (logp.ndim - 2))
    # 'mean' averages over the N·d1·... positions, so it is the plain mean of the per-position loss
    loss = _reduce(-(logp * _batched(target)).sum(1), reduction)
    return _unbatched(loss, input, reduction)


def _log_clamped(fn, x, singular):
    """``fn(x)`` clamped to >= -100 as PyTorch's BCE does. Where ``fn`` would be -inf (``singular``)
    the value is -100 with a zero gradient; clamping -inf alone would give a NaN one (0 · inf)."""
    safe = where(singular, 0.5, x)
    return where(singular, -100.0, fn(safe).clamp(min=-100.0))


@autocast_op("binary_cross_entropy")
def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-w·(t·log(p) + (1 - t)·log(1 - p)) for probabilities ``input`` in [0, 1], each log clamped
    to >= -100 so p = 0 or 1 gives a finite loss."""
    name = "binary_cross_entropy"
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_device(name, "target", target, input)
    _check_reduction(name, reduction)
    _check_same_shape(name, input, target)
    if weight is not None:
        _check_float(name, "weight", weight)
        _check_device(name, "weight", weight, input)
        _check_broadcast_to(name, "weight", weight, input)
        weight = weight.to(input.dtype)
    for what, x in (("input", input), ("target", target)):
        if not ((x >= 0) & (x <= 1)).all():
            raise ValueError(f"{name}: all elements of {what} must be in [0, 1]")
    log_p = _log_clamped(log, input, input == 0)
    log_q = _log_clamped(lambda p: log1p(-p), input, input == 1)
    loss = -(target * log_p + (1.0 - target) * log_q)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross entropy of sigmoid(``input``), computed from the logits so it stays finite and
    exact for any |logit|. ``pos_weight`` scales the positive term and broadcasts along the last
    (class) dim."""
    name = "binary_cross_entropy_with_logits"
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_device(name, "target", target, input)
    _check_reduction(name, reduction)
    _check_same_shape(name, input, target)
    for what, w in (("weight", weight), ("pos_weight", pos_weight)):
        if w is not None:
            _check_float(name, what, w)
            _check_device(name, what, w, input)
            _check_broadcast_to(name, what, w, input)
    # softplus(-x) = -log(sigmoid(x)) = m + log(e^-m + e^(-x-m)) for any m; m = max(-x, 0) keeps both
    # exponents <= 0. m is held constant: its gradient cancels exactly, so it needs no graph.
    m = relu(-input.detach())
    softplus_neg = log(exp(-m) + exp(-input - m)) + m
    if pos_weight is not None:
        softplus_neg = ((pos_weight.to(input.dtype) - 1.0) * target + 1.0) * softplus_neg
    loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * weight.to(input.dtype)
    return _reduce(loss, reduction)


@autocast_op("kl_div")
def kl_div(input, target, reduction="mean", log_target=False):
    """Pointwise KL divergence t·(log t - input) with ``input`` given as log-probabilities (and
    ``target`` too when ``log_target``). A zero target contributes zero. 'batchmean' divides the sum
    by the batch size (the true KL divergence); 'mean' divides by the number of elements."""
    name = "kl_div"
    _check_float(name, "input", input)
    _check_float(name, "target", target)
    _check_device(name, "target", target, input)
    _check_reduction(name, reduction, _KL_REDUCTIONS)
    try:
        np.broadcast_shapes(target.shape, input.shape)
    except ValueError:
        raise ValueError(f"{name}: target of shape {target.shape} does not broadcast with the input's "
                         f"shape {input.shape}") from None
    if log_target:
        loss = exp(target) * (target - input)
    else:
        # t·log(t) taken as 0 at t = 0 (like xlogy), with log evaluated at 1 there so no NaN leaks
        # into the gradient
        zero = target == 0
        loss = where(zero, 0.0, target * log(where(zero, 1.0, target))) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- layers

class _Loss(Module):
    _reductions = _REDUCTIONS

    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction(type(self).__name__, reduction, self._reductions)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    """A loss with an optional weight tensor, kept as a buffer so it follows ``.to()`` and the state dict."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error; see ``mse_loss``."""

    def forward(self, input, target):
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error; see ``l1_loss``."""

    def forward(self, input, target):
        return l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """See ``smooth_l1_loss``."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """See ``huber_loss``."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross entropy over class dim 1; see ``cross_entropy``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities; see ``nll_loss``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities; see ``binary_cross_entropy``."""

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Binary cross entropy of logits; see ``binary_cross_entropy_with_logits``."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight, reduction)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """KL divergence with log-probability input; see ``kl_div``."""
    _reductions = _KL_REDUCTIONS

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
