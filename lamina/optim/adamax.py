"""``Adamax``: Adam with the infinity norm in place of the second moment (PyTorch's rule)."""
from __future__ import annotations

from .optimizer import Optimizer


class Adamax(Optimizer):
    """θ ← θ − lr/(1 − β₁ᵗ)·m/u, with m the running mean of gradients and
    u = max(β₂·u, |g| + eps) the decaying infinity norm.

    ``weight_decay`` adds ``weight_decay``·θ to the gradient.
    """

    _state_keys = ("exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        self._check_adam_family(group)

    def _update(self, group, xp, param, grad, state, tmp, step):
        beta1, beta2 = group["betas"]
        weight_decay = group["weight_decay"]
        exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            xp.multiply(param, weight_decay, out=tmp)
            grad += tmp
        xp.subtract(grad, exp_avg, out=tmp)  # exp_avg.lerp_(grad, 1 - beta1)
        tmp *= 1 - beta1
        exp_avg += tmp
        exp_inf *= beta2
        xp.abs(grad, out=tmp)
        tmp += group["eps"]
        xp.maximum(exp_inf, tmp, out=exp_inf)
        clr = group["lr"] / (1 - beta1 ** step)
        xp.divide(exp_avg, exp_inf, out=tmp)
        tmp *= -clr
        param += tmp
