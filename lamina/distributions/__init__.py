"""Probability distributions with PyTorch's ``torch.distributions`` API: ``Normal``, ``Categorical``,
``Bernoulli`` (sampling, reparameterised sampling, log-probabilities, entropy, moments) and
``kl_divergence`` between pairs of them."""
from .bernoulli import Bernoulli  # noqa: F401
from .categorical import Categorical  # noqa: F401
from .distribution import Distribution  # noqa: F401
from .kl import kl_divergence, register_kl  # noqa: F401
from .normal import Normal  # noqa: F401

__all__ = ["Bernoulli", "Categorical", "Distribution", "Normal", "kl_divergence", "register_kl"]
