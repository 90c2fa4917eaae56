"""The Normal (Gaussian) distribution with reparameterised sampling."""
from __future__ import annotations

import math

from .. import creation
from ..ops import erf, log
from .distribution import LOG_SQRT_2PI, Distribution, broadcast_all, check_all


class Normal(Distribution):
    """Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi)).

    ``loc`` and ``scale`` (Tensors or numbers) broadcast to the batch shape; ``scale`` must be > 0.
    ``rsample`` draws loc + scale * eps with eps ~ N(0, 1), so gradients reach loc and scale.
    """

    has_rsample = True
    arg_names = ("loc", "scale")

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all("Normal", loc, scale)
        super().__init__(self.loc.shape, (), validate_args)

    def _check_parameters(self):
        check_all("Normal", "loc", ~self.loc.isnan(), self.loc, "a real number (not NaN)")
        check_all("Normal", "scale", self.scale > 0, self.scale, "positive")

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def stddev(self):
        return self.scale

    @property
    def variance(self):
        return self.scale * self.scale

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        eps = creation.randn(*shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.scale

    def log_prob(self, value):
        value = self._value_tensor(value, self.loc)
        if self._validate_args:
            check_all("Normal.log_prob", "value", ~value.isnan(), value, "a real number (not NaN)")
        var = self.scale * self.scale
        return -((value - self.loc) ** 2) / (2 * var) - log(self.scale) - LOG_SQRT_2PI

    def cdf(self, value):
        value = self._value_tensor(value, self.loc)
        return 0.5 * (1 + erf((value - self.loc) / (self.scale * math.sqrt(2))))

    def entropy(self):
        return 0.5 + LOG_SQRT_2PI + log(self.scale)
