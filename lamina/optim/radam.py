"""``RAdam``: Adam with the variance of the adaptive step size rectified (PyTorch's rule)."""
from __future__ import annotations

from .optimizer import Optimizer


class RAdam(Optimizer):
    """Adam whose adaptive term is used only once its variance is tractable (ρₜ > 5) and then
    scaled by the rectification factor; before that the step is plain momentum SGD with
    bias correction.

    ``weight_decay`` adds ``weight_decay``·θ to the gradient, or, with
    ``decoupled_weight_decay=True``, shrinks θ by ``lr``·``weight_decay`` first (RAdamW).
    """

    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_group(self, group):
        self._check_adam_family(group)

    def _update(self, group, xp, param, grad, state, tmp, step):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                xp.multiply(param, weight_decay, out=tmp)
                grad += tmp
        xp.subtract(grad, exp_avg, out=tmp)  # exp_avg.lerp_(grad, 1 - beta1)
        tmp *= 1 - beta1
        exp_avg += tmp
        exp_avg_sq *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        exp_avg_sq += tmp
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        xp.divide(exp_avg, bias_correction1, out=grad)
        grad *= lr
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            xp.sqrt(exp_avg_sq, out=tmp)
            tmp += eps
            xp.divide(bias_correction2 ** 0.5, tmp, out=tmp)  # the adaptive learning rate
            grad *= tmp
            grad *= rect
        param -= grad
