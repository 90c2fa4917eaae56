"""The Categorical distribution over ``K`` classes, parameterised by probabilities or logits."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .. import backend, creation
from ..ops import log, logsumexp, multinomial, softmax
from ..tensor import Tensor
from .distribution import Distribution, check_all, clamp_probs


class Categorical(Distribution):
    """Categorical(probs=None, logits=None): index ``k`` in ``0..K-1`` with probability
    ``probs[..., k]``.

    Exactly one of ``probs`` (non-negative, normalised along the last dim) or ``logits``
    (unnormalised log-probabilities, normalised by logsumexp) is given; the last dim is the
    classes, the others are the batch shape. Samples are int64 class indices.
    """

    arg_names = ("probs",)

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Categorical: give exactly one of probs or logits, "
                             f"got {'both' if probs is not None else 'neither'}")
        given = probs if probs is not None else logits
        what = "probs" if probs is not None else "logits"
        if not isinstance(given, Tensor):
            given = creation.tensor(given, dtype=backend.get_default_dtype())
        if not backend.is_floating(given.dtype):
            given = given.to(backend.get_default_dtype())
        if given.ndim < 1:
            raise ValueError(f"Categorical: {what} must have at least one dim (the classes), got shape {given.shape}")
        self._given = what
        if probs is not None:
            self._raw = given
            self.__dict__["probs"] = given / given.sum(-1, keepdim=True)
        else:
            self._raw = given
            self.__dict__["logits"] = given - logsumexp(given, -1, keepdim=True)
        self._num_events = given.shape[-1]
        super().__init__(given.shape[:-1], (), validate_args)

    def _check_parameters(self):
        raw = self._raw
        if self._given == "probs":
            check_all("Categorical", "probs", (raw >= 0) & raw.isfinite(), raw, "finite and non-negative")
            total = raw.sum(-1)
            check_all("Categorical", "probs (sum over the last dim)", total > 0, total, "positive")
        else:
            check_all("Categorical", "logits", ~raw.isnan(), raw, "real numbers (not NaN)")

    @cached_property
    def probs(self):
        return softmax(self.logits, -1)

    @cached_property
    def logits(self):
        return log(clamp_probs(self.probs))

    @property
    def param_shape(self) -> tuple:
        return self._batch_shape + (self._num_events,)

    @property
    def mean(self):
        return creation.full(self._extended_shape(), float("nan"), dtype=self._raw.dtype, device=self._raw.device)

    @property
    def mode(self):
        return self.probs.argmax(-1)

    @property
    def variance(self):
        return self.mean

    def sample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        n = int(np.prod(shape[:len(shape) - len(self._batch_shape)], dtype=np.int64))
        if n == 0:
            return creation.zeros(*shape, dtype=backend.int64, device=self._raw.device)
        probs_2d = self.probs.detach().reshape(-1, self._num_events)
        draws = multinomial(probs_2d, n, replacement=True)  # (batch, n)
        return draws.transpose(0, 1).reshape(*shape)

    def log_prob(self, value):
        value = self._value_tensor(value, self._raw)
        if self._validate_args:
            v = value.to(backend.float64)
            ok = (v >= 0) & (v < self._num_events) & (v == v.long().to(backend.float64))
            check_all("Categorical.log_prob", "value", ok, value,
                      f"an integer class index in 0..{self._num_events - 1}")
        value = value.long()
        shape = tuple(np.broadcast_shapes(value.shape, self._batch_shape))
        index = value.expand(*shape).unsqueeze(-1)
        log_pmf = self.logits.expand(*shape, self._num_events)
        return log_pmf.gather(-1, index).squeeze(-1)

    def entropy(self):
        # PyTorch's convention: a zero probability contributes 0, not 0 * -inf
        min_real = float(np.finfo(np.dtype(self.logits.dtype)).min)
        logits = self.logits.clamp(min=min_real)
        return -(logits * self.probs).sum(-1)

    def enumerate_support(self, expand=True):
        values = creation.arange(self._num_events, dtype=backend.int64, device=self._raw.device)
        values = values.reshape(-1, *((1,) * len(self._batch_shape)))
        if expand:
            values = values.expand(self._num_events, *self._batch_shape)
        return values
