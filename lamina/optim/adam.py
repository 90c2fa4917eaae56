"""``Adam`` and ``AdamW``: adaptive moment estimation, with L2 or decoupled weight decay (PyTorch's rules)."""
from __future__ import annotations

from .. import kernels
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam: θ ← θ − lr·m̂/(√v̂ + eps) with bias-corrected first and second moments.

    ``weight_decay`` adds ``weight_decay``·θ to the gradient (L2), or, with
    ``decoupled_weight_decay=True``, shrinks θ by ``lr``·``weight_decay`` first (AdamW).
    ``amsgrad`` normalises by the running maximum of the second moment.
    """

    _state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 *, maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check_group(self, group):
        self._check_adam_family(group)

    def _state_kinds(self, group):
        return self._state_keys if group["amsgrad"] else self._state_keys[:2]

    def _update(self, group, xp, param, grad, state, tmp, step):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if kernels.adam_update(param, grad, state["exp_avg"], state["exp_avg_sq"],
                               state.get("max_exp_avg_sq"), step, lr, beta1, beta2, eps, weight_decay,
                               group["amsgrad"], group["decoupled_weight_decay"], group["maximize"]):
            return  # the same rule in one compiled pass
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                xp.multiply(param, weight_decay, out=tmp)
                grad += tmp
        # exp_avg.lerp_(grad, 1 - beta1), in lerp's own form for the same rounding
        xp.subtract(grad, exp_avg, out=tmp)
        tmp *= 1 - beta1
        exp_avg += tmp
        exp_avg_sq *= beta2
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        exp_avg_sq += tmp
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            exp_avg_sq = max_exp_avg_sq
        xp.sqrt(exp_avg_sq, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += eps
        xp.divide(exp_avg, tmp, out=tmp)
        tmp *= -step_size
        param += tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (θ ← θ·(1 − lr·weight_decay) before the Adam step)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def _check_group(self, group):
        # A state saved by Adam (or an old AdamW) must still load as decoupled, as in PyTorch.
        group["decoupled_weight_decay"] = True
        super()._check_group(group)
