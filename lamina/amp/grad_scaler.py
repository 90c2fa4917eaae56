"""``GradScaler``: dynamic loss scaling for mixed-precision training, as ``torch.amp.GradScaler``.

float16 gradients underflow to zero below about 6e-8. The scaler multiplies the loss by a large
power of two before ``backward`` so the gradients stay representable, divides them back before
the optimiser steps (``unscale_``), skips any step whose gradients hold inf or NaN, and adapts
the scale (``update``): halve it after an overflow, double it after ``growth_interval`` clean
steps. A power-of-two scale changes only exponents, so on float32 (and on the CPU) scaling and
unscaling are exact and a scaled run takes exactly the steps an unscaled run takes, except the
skipped ones. With ``enabled=False`` every method passes through, as in PyTorch.

The usual loop, unchanged from PyTorch::

    scaler = lamina.amp.GradScaler("cpu")
    for x, y in data:
        optimizer.zero_grad()
        with lamina.autocast("cpu", dtype=lamina.bfloat16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)           # optional: to clip the true gradients
        lamina.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True):
        if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"GradScaler: device must be 'cpu' or 'cuda', got {device!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"GradScaler: enabled must be True or False, got {enabled!r}")
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"GradScaler: init_scale must be a positive finite number, got {init_scale!r}")
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor should be > 1, got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor should be in (0, 1), got {backoff_factor!r}")
        if not (isinstance(growth_interval, int) and growth_interval > 0):
            raise ValueError(f"GradScaler: growth_interval should be a positive int, got {growth_interval!r}")
        self._device = device.split(":")[0]
        if enabled and self._device == "cuda" and not backend.cuda_is_available():
            warnings.warn("GradScaler: device 'cuda' but CUDA is not available; disabling it "
                          "(pass device='cpu' to scale on the CPU)", stacklevel=2)
            enabled = False
        self._enabled = enabled
        self._scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._per_optimizer: dict = {}  # id(optimizer) -> {"stage": ..., "found_inf": bool}

    # ------------------------------------------------------------ the training-loop calls
    def scale(self, outputs):
        """``outputs`` (a Tensor, or a list/tuple of them, nested) times the current scale."""
        if not self._enabled:
            return outputs
        from ..tensor import Tensor

        def apply(x):
            if isinstance(x, Tensor):
                if not backend.is_floating(x.dtype):
                    raise TypeError(f"GradScaler.scale: expected floating-point outputs, got a {x.dtype} tensor")
                return x * self._scale  # a Python scale keeps x's dtype; powers of two scale exactly
            if isinstance(x, (list, tuple)):
                return type(x)(apply(v) for v in x)
            raise ValueError(f"GradScaler.scale: outputs must be a Tensor or a list/tuple of Tensors, "
                             f"got {type(x).__name__}")
        return apply(outputs)

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by the scale, in place, and record
        whether any is inf or NaN. At most once per optimizer between two ``update()`` calls."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("GradScaler.unscale_: already called on this optimizer since the last update()")
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.unscale_: called after step(); call it before step(), once per update()")
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        for g in grads:
            if g.dtype == backend.float16:
                raise ValueError("GradScaler.unscale_: the gradients are float16; keep the parameters in float32 "
                                 "and let autocast lower the precision of the ops")
        # the reciprocal in float64, then float32, as PyTorch: exact for a power-of-two scale
        inv = float(np.float32(1.0 / self._scale))
        from ..autograd import no_grad
        found_inf = False
        with no_grad():
            for g in grads:
                if not bool(g.isfinite().all()):
                    found_inf = True
                g.mul_(inv)
        state["found_inf"] = found_inf
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step(*args, **kwargs)`` on unscaled gradients, skipped (returning None) if any
        gradient is inf or NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("GradScaler.step: a closure is not supported while the scaler is enabled")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.step: already called on this optimizer since the last update()")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        out = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = _STEPPED
        return out

    def update(self, new_scale=None) -> None:
        """Adapt the scale to the steps since the last update (or set it to ``new_scale``)."""
        if not self._enabled:
            return
        if new_scale is not None:
            value = float(new_scale.item() if hasattr(new_scale, "item") else new_scale)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"GradScaler.update: new_scale must be a positive finite number, got {new_scale!r}")
            self._scale = value
        else:
            checked = [s for s in self._per_optimizer.values() if s["stage"] != _READY]
            if not checked:
                raise RuntimeError("GradScaler.update: no inf checks were recorded since the last update(); "
                                   "call scaler.step(optimizer) (or unscale_) first")
            if any(s["found_inf"] for s in checked):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = self._scale * self._growth_factor
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer.clear()

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    # ------------------------------------------------------------ settings and state
    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def state_dict(self) -> dict:
        """PyTorch's keys: scale, growth_factor, backoff_factor, growth_interval, _growth_tracker
        (empty when disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty, possibly because it was "
                               "saved from a disabled GradScaler")
        keys = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
        missing = [k for k in keys if k not in state_dict]
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing {', '.join(missing)}")
        def number(v):
            return v.item() if hasattr(v, "item") else v
        values = (float(number(state_dict["scale"])), float(state_dict["growth_factor"]),
                  float(state_dict["backoff_factor"]), int(state_dict["growth_interval"]),
                  int(number(state_dict["_growth_tracker"])))
        (self._scale, self._growth_factor, self._backoff_factor, self._growth_interval,
         self._growth_tracker) = values
