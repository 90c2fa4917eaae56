"""``Adagrad``: per-coordinate step sizes from the sum of squared gradients (PyTorch's rule)."""
from __future__ import annotations

from .optimizer import Optimizer


class Adagrad(Optimizer):
    """θ ← θ − clr·g/(√Σg² + eps), with clr = lr/(1 + (step − 1)·lr_decay).

    As in PyTorch, every parameter has state (``step`` 0, ``sum`` filled with
    ``initial_accumulator_value``) from construction on.
    """

    _state_keys = ("sum",)
    _eager_state = True

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      maximize=maximize))

    def _check_group(self, group):
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(group["lr_decay"] >= 0, "lr_decay", group["lr_decay"], ">= 0")
        self._require(group["weight_decay"] >= 0, "weight_decay", group["weight_decay"], ">= 0")
        self._require(group["initial_accumulator_value"] >= 0, "initial_accumulator_value",
                      group["initial_accumulator_value"], ">= 0")
        self._require(group["eps"] >= 0, "epsilon", group["eps"], ">= 0")

    def _state_fill(self, group, kind):
        return group["initial_accumulator_value"]

    def _update(self, group, xp, param, grad, state, tmp, step):
        weight_decay = group["weight_decay"]
        state_sum = state["sum"]
        if group["maximize"]:
            xp.negative(grad, out=grad)
        if weight_decay != 0:
            xp.multiply(param, weight_decay, out=tmp)
            grad += tmp
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        xp.multiply(grad, grad, out=tmp)
        state_sum += tmp
        xp.sqrt(state_sum, out=tmp)
        tmp += group["eps"]
        xp.divide(grad, tmp, out=tmp)
        tmp *= -clr
        param += tmp
