"""``NAdam``: Adam with Nesterov momentum and a momentum schedule (PyTorch's rule)."""
from __future__ import annotations

import numpy as np

from .. import backend
from .optimizer import Optimizer


class NAdam(Optimizer):
    """Adam whose step mixes the current gradient and the momentum with Nesterov's look-ahead.

    The momentum coefficient at step t is μₜ = β₁·(1 − ½·0.96^(t·``momentum_decay``)); each
    parameter keeps the running product of the μ's (``mu_product``, one number per parameter).
    ``weight_decay`` adds ``weight_decay``·θ to the gradient, or, with
    ``decoupled_weight_decay=True``, shrinks θ by ``lr``·``weight_decay`` first (NAdamW).
    """

    _state_keys = ("mu_product", "exp_avg", "exp_avg_sq")
    _scalar_keys = ("mu_product",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        self._check_adam_family(group)
        self._require(group["momentum_decay"] >= 0, "momentum_decay", group["momentum_decay"],
                      ">= 0")

    def _state_fill(self, group, kind):
        return 1.0 if kind == "mu_product" else 0.0

    def _mu(self, group, step):
        return group["betas"][0] * (1.0 - 0.5 * (0.96 ** (step * group["momentum_decay"])))

    def _advance_scalars(self, group, scalars, step):
        mu, mu_product = self._mu(group, step), scalars["mu_product"]
        if self._scalar_dtype() == backend.float32:
            # PyTorch keeps mu_product in a float32 scalar unless the default dtype is float64
            return {"mu_product": float(np.float32(mu_product) * np.float32(mu))}
        return {"mu_product": mu_product * mu}

    def _update(self, group, xp, param, grad, state, tmp, step):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        mu_product = state["mu_product"]
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                xp.multiply(param, weight_decay, out=tmp)
                grad += tmp
        mu, mu_next = self._mu(group, step), self._mu(group, step + 1)
        mu_product_next = mu_product * mu_next
        xp.subtract(grad, exp_avg, out=tmp)  # exp_avg.lerp_(grad, 1 - beta1)
        tmp *= 1 - beta1
        exp_avg += tmp
        exp_avg_sq *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        exp_avg_sq += tmp
        xp.divide(exp_avg_sq, 1 - beta2 ** step, out=tmp)
        xp.sqrt(tmp, out=tmp)
        tmp += eps  # denom
        grad /= tmp
        grad *= -lr * (1.0 - mu) / (1.0 - mu_product)
        param += grad
        xp.divide(exp_avg, tmp, out=tmp)
        tmp *= (-lr * mu_next) / (1.0 - mu_product_next)
        param += tmp
