"""``SGD``: stochastic gradient descent with optional momentum, Nesterov, weight decay (PyTorch's rule)."""
from __future__ import annotations

from .. import kernels
from .optimizer import Optimizer


class SGD(Optimizer):
    """θ ← θ − lr·v, with v the gradient (plus ``weight_decay``·θ), optionally smoothed by momentum.

    As in PyTorch, the momentum buffer starts as the first gradient (no dampening on that step),
    and Nesterov momentum needs ``momentum > 0`` and ``dampening == 0``.
    """

    _state_keys = ("momentum_buffer",)
    _exports_step = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check_group(self, group):
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(group["momentum"] >= 0, "momentum", group["momentum"], ">= 0")
        self._require(group["weight_decay"] >= 0, "weight_decay", group["weight_decay"], ">= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum and zero dampening, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _state_kinds(self, group):
        return self._state_keys if group["momentum"] != 0 else ()

    def _keeps_state(self, group):
        return group["momentum"] != 0

    def _update(self, group, xp, param, grad, state, tmp, step):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay = group["weight_decay"]
        if kernels.sgd_update(param, grad, state.get("momentum_buffer"), step, lr, momentum, dampening,
                              weight_decay, group["nesterov"], group["maximize"]):
            return  # the same rule in one compiled pass
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            xp.multiply(param, weight_decay, out=tmp)
            grad += tmp
        if momentum != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                xp.copyto(buf, grad)
            else:
                buf *= momentum
                xp.multiply(grad, 1 - dampening, out=tmp)
                buf += tmp
            if group["nesterov"]:
                xp.multiply(buf, momentum, out=tmp)
                grad += tmp
            else:
                grad = buf
        xp.multiply(grad, -lr, out=tmp)
        param += tmp
