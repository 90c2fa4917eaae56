"""``Adadelta``: step sizes from running averages of squared gradients and of squared updates
(PyTorch's rule)."""
from __future__ import annotations

from .optimizer import Optimizer


class Adadelta(Optimizer):
    """Δ = √(E[Δ²] + eps)/√(E[g²] + eps)·g; θ ← θ − lr·Δ; both averages decay by ``rho``.

    ``weight_decay`` adds ``weight_decay``·θ to the gradient.
    """

    _state_keys = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(0 <= group["rho"] <= 1, "rho value", group["rho"], "in [0, 1]")
        self._require(group["eps"] >= 0, "epsilon", group["eps"], ">= 0")
        self._require(group["weight_decay"] >= 0, "weight_decay", group["weight_decay"], ">= 0")

    def _update(self, group, xp, param, grad, state, tmp, step):
        rho, eps, weight_decay = group["rho"], group["eps"], group["weight_decay"]
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            xp.multiply(param, weight_decay, out=tmp)
            grad += tmp
        square_avg *= rho
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - rho
        square_avg += tmp
        xp.add(square_avg, eps, out=tmp)
        xp.sqrt(tmp, out=tmp)  # std
        xp.divide(grad, tmp, out=tmp)
        xp.add(acc_delta, eps, out=grad)
        xp.sqrt(grad, out=grad)
        grad *= tmp  # delta = √(acc_delta + eps)·g/std
        acc_delta *= rho
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - rho
        acc_delta += tmp
        grad *= -group["lr"]
        param += grad
