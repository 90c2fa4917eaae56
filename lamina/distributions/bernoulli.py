"""The Bernoulli distribution over {0, 1}, parameterised by a probability or a logit."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .. import creation
from ..nn.functional import binary_cross_entropy_with_logits
from ..ops import log, log1p, sigmoid
from .distribution import Distribution, broadcast_all, check_all, clamp_probs


class Bernoulli(Distribution):
    """Bernoulli(probs=None, logits=None): 1 with probability ``probs`` (= sigmoid(``logits``)),
    else 0. Exactly one parameter is given; its shape is the batch shape. Samples are floats in
    the parameter's dtype, as in PyTorch."""

    arg_names = ("probs",)

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Bernoulli: give exactly one of probs or logits, "
                             f"got {'both' if probs is not None else 'neither'}")
        self._given = "probs" if probs is not None else "logits"
        (self._raw,) = broadcast_all("Bernoulli", probs if probs is not None else logits)
        self.__dict__[self._given] = self._raw
        super().__init__(self._raw.shape, (), validate_args)

    def _check_parameters(self):
        raw = self._raw
        if self._given == "probs":
            check_all("Bernoulli", "probs", (raw >= 0) & (raw <= 1), raw, "in [0, 1]")
        else:
            check_all("Bernoulli", "logits", ~raw.isnan(), raw, "real numbers (not NaN)")

    @cached_property
    def probs(self):
        return sigmoid(self.logits)

    @cached_property
    def logits(self):
        p = clamp_probs(self.probs)
        return log(p) - log1p(-p)

    @property
    def param_shape(self) -> tuple:
        return self._batch_shape

    @property
    def mean(self):
        return self.probs

    @property
    def mode(self):
        mode = (self.probs >= 0.5).to(self._raw.dtype)
        return mode.masked_fill(self.probs == 0.5, float("nan"))

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        probs = self.probs.detach().expand(*shape)
        u = creation.rand(*shape, dtype=self._raw.dtype, device=self._raw.device)
        return (u < probs).to(self._raw.dtype)

    def log_prob(self, value):
        value = self._value_tensor(value, self._raw)
        if self._validate_args:
            check_all("Bernoulli.log_prob", "value", (value == 0) | (value == 1), value, "0 or 1")
        value = value.to(self._raw.dtype)
        logits = self.logits
        shape = tuple(np.broadcast_shapes(value.shape, logits.shape))
        return -binary_cross_entropy_with_logits(logits.expand(*shape), value.expand(*shape), reduction="none")

    def entropy(self):
        return binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none")

    def enumerate_support(self, expand=True):
        values = creation.arange(2, dtype=self._raw.dtype, device=self._raw.device)
        values = values.reshape(-1, *((1,) * len(self._batch_shape)))
        if expand:
            values = values.expand(2, *self._batch_shape)
        return values
