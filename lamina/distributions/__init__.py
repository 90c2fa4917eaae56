"""Probability distributions with PyTorch's ``torch.distributions`` API: ``Normal``, ``Categorical``,
``Bernoulli`` (sampling, reparameterised sampling, log-probabilities, entropy, moments) and
``kl_divergence`` between pairs of them."""
from .bernoulli import Bernoulli
from .categorical import Categorical
from .distribution import Distribution
from .kl import kl_divergence, register_kl
from .normal import Normal

__all__ = ["Bernoulli", "Categorical", "Distribution", "Normal", "kl_divergence", "register_kl"]
