"""The ``Distribution`` base class: shapes (``batch_shape``, ``event_shape``), sample-shape
arithmetic, argument validation switches, and helpers shared by the concrete distributions.

Shapes follow PyTorch: a sample of ``sample_shape`` has shape ``sample_shape + batch_shape +
event_shape``; ``log_prob`` of such a value has shape ``sample_shape + batch_shape``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend, creation
from ..ops import broadcast_shapes, expand
from ..tensor import Tensor


class Distribution:
    """Base class of probability distributions.

    ``validate_args`` (default ``Distribution._validate_args_default``, True as in PyTorch) checks
    parameters at construction and values given to ``log_prob``; a failed check raises a
    ``ValueError`` naming the distribution, the argument, its shape and the offending values.
    """

    _validate_args_default = True
    has_rsample = False
    arg_names: tuple = ()

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        if value not in (True, False):
            raise ValueError(f"Distribution.set_default_validate_args: expected True or False, got {value!r}")
        Distribution._validate_args_default = value

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = tuple(int(s) for s in batch_shape)
        self._event_shape = tuple(int(s) for s in event_shape)
        self._validate_args = self._validate_args_default if validate_args is None else bool(validate_args)
        if self._validate_args:
            self._check_parameters()

    @property
    def batch_shape(self) -> tuple:
        return self._batch_shape

    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    def _check_parameters(self) -> None:
        """Raise ValueError for parameters outside their domain (subclasses)."""

    def _extended_shape(self, sample_shape=()) -> tuple:
        return _as_shape(sample_shape, type(self).__name__) + self._batch_shape + self._event_shape

    def sample(self, sample_shape=()):
        """A sample of shape ``sample_shape + batch_shape + event_shape``, outside autograd."""
        from ..autograd import no_grad
        with no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=()):
        raise NotImplementedError(f"{type(self).__name__}.rsample: this distribution has no "
                                  "reparameterised sampler; use sample() (no gradients)")

    def sample_n(self, n: int):
        return self.sample((n,))

    def log_prob(self, value):
        raise NotImplementedError(f"{type(self).__name__} does not define log_prob")

    def entropy(self):
        raise NotImplementedError(f"{type(self).__name__} does not define entropy")

    def perplexity(self):
        return self.entropy().exp()

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__} does not define mean")

    @property
    def mode(self):
        raise NotImplementedError(f"{type(self).__name__} does not define mode")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__} does not define variance")

    @property
    def stddev(self):
        return self.variance.sqrt()

    def _value_tensor(self, value, like: Tensor) -> Tensor:
        """``value`` as a Tensor on ``like``'s device, checked to broadcast with the batch shape."""
        name = type(self).__name__
        if not isinstance(value, Tensor):
            if isinstance(value, (numbers.Number, np.ndarray, list, tuple)):
                value = creation.tensor(value, dtype=like.dtype, device=like.device)
            else:
                raise TypeError(f"{name}.log_prob: expected a Tensor value, got {type(value).__name__}")
        if value.device != like.device:
            raise ValueError(f"{name}.log_prob: value is on {value.device} but the distribution on {like.device}")
        event = self._event_shape
        tail = tuple(value.shape[value.ndim - len(event):]) if event else ()
        if event and tail != event:
            raise ValueError(f"{name}.log_prob: value of shape {value.shape} does not end with the "
                             f"event shape {event}")
        try:
            broadcast_shapes(value.shape, self._batch_shape + event)
        except ValueError:
            raise ValueError(f"{name}.log_prob: value of shape {value.shape} does not broadcast with the "
                             f"batch shape {self._batch_shape} + event shape {event}") from None
        return value

    def __repr__(self):
        args = ", ".join(f"{n}: {_describe_param(getattr(self, n))}" for n in self.arg_names)
        return f"{type(self).__name__}({args})"


def _describe_param(p) -> str:
    if isinstance(p, Tensor):
        return str(p.item()) if p.ndim == 0 else f"Tensor of shape {p.shape}"
    return repr(p)


def _as_shape(sample_shape, name: str) -> tuple:
    if isinstance(sample_shape, (int, np.integer)):
        sample_shape = (sample_shape,)
    try:
        shape = tuple(int(s) for s in sample_shape)
    except TypeError:
        raise TypeError(f"{name}.sample: sample_shape must be a tuple of ints, got {sample_shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{name}.sample: sample_shape must not have negative sizes, got {shape}")
    return shape


def broadcast_all(name: str, *values):
    """Tensors (numbers become tensors of the others' dtype, else the default dtype) broadcast to
    one shape. Raises ValueError naming ``name`` and the shapes when they do not broadcast."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    for v in values:
        if not isinstance(v, (Tensor, numbers.Number)):
            raise TypeError(f"{name}: parameters must be Tensors or numbers, got {type(v).__name__}")
    if tensors:
        dtype, device = tensors[0].dtype, tensors[0].device
        if not backend.is_floating(dtype):
            dtype = backend.get_default_dtype()
    else:
        dtype, device = backend.get_default_dtype(), backend.Device("cpu")
    out = [v if isinstance(v, Tensor) else creation.tensor(float(v), dtype=dtype, device=device) for v in values]
    out = [v if backend.is_floating(v.dtype) else v.to(dtype) for v in out]
    devices = {str(v.device) for v in out}
    if len(devices) > 1:
        raise ValueError(f"{name}: parameters are on different devices: {sorted(devices)}")
    try:
        shape = broadcast_shapes(*(v.shape for v in out))
    except ValueError:
        raise ValueError(f"{name}: parameter shapes {', '.join(str(v.shape) for v in out)} do not "
                         "broadcast") from None
    return [v if v.shape == shape else expand(v, shape) for v in out]


def check_all(name: str, what: str, ok: Tensor, values: Tensor, condition: str) -> None:
    """Raise ValueError unless every element of the bool tensor ``ok`` is true, quoting up to three
    offending entries of ``values``."""
    if bool(ok.all()):
        return
    values, ok = values.detach().cpu().numpy(), ok.cpu().numpy()
    bad = values[~ok] if values.shape == ok.shape else values.ravel()
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in bad.ravel()[:3].tolist())
    more = f" (and {bad.size - 3} more)" if bad.size > 3 else ""
    raise ValueError(f"{name}: {what} of shape {values.shape} must be {condition}; found {shown}{more}")


def clamp_probs(probs: Tensor) -> Tensor:
    """``probs`` kept inside [eps, 1 - eps] of its dtype, so log(p) and log(1 - p) stay finite."""
    eps = float(np.finfo(np.dtype(probs.dtype)).eps)
    return probs.clamp(eps, 1.0 - eps)


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
