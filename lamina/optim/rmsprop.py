"""``RMSprop``: gradient scaled by a running RMS, optionally centred and with momentum (PyTorch's rule)."""
from __future__ import annotations

from .. import kernels
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """θ ← θ − lr·g/(√E[g²] + eps); ``centered`` subtracts E[g]² under the root, ``momentum``
    accumulates the scaled gradient in a buffer."""

    _state_keys = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(group["eps"] >= 0, "epsilon", group["eps"], ">= 0")
        self._require(group["momentum"] >= 0, "momentum", group["momentum"], ">= 0")
        self._require(group["weight_decay"] >= 0, "weight_decay", group["weight_decay"], ">= 0")
        self._require(group["alpha"] >= 0, "alpha", group["alpha"], ">= 0")

    def _state_kinds(self, group):
        return tuple(k for k, on in zip(self._state_keys,
                                        (True, group["momentum"] > 0, group["centered"])) if on)

    def _update(self, group, xp, param, grad, state, tmp, step):
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        square_avg = state["square_avg"]
        if kernels.rmsprop_update(param, grad, state["square_avg"], state.get("momentum_buffer"),
                                  state.get("grad_avg"), lr, alpha, eps, weight_decay, momentum,
                                  group["centered"], group["maximize"]):
            return  # the same rule in one compiled pass
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            xp.multiply(param, weight_decay, out=tmp)
            grad += tmp
        square_avg *= alpha
        xp.multiply(grad, grad, out=tmp)
        tmp *= 1 - alpha
        square_avg += tmp
        if group["centered"]:
            grad_avg = state["grad_avg"]
            xp.subtract(grad, grad_avg, out=tmp)  # grad_avg.lerp_(grad, 1 - alpha)
            tmp *= 1 - alpha
            grad_avg += tmp
            xp.multiply(grad_avg, grad_avg, out=tmp)
            xp.subtract(square_avg, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(square_avg, out=tmp)
        tmp += eps
        xp.divide(grad, tmp, out=tmp)
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += tmp
            xp.multiply(buf, -lr, out=tmp)
        else:
            tmp *= -lr
        param += tmp
