"""Parameter initialisation, in place and without recording a graph, with PyTorch's formulas
(fan computation, gains, kaiming/xavier bounds) so models start from the same distributions."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (as ``torch.nn.init.calculate_gain``)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"init: fan in and fan out need a tensor of at least 2 dims, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fan(t: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


@no_grad()
def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    return t.uniform_(a, b, generator=generator)


@no_grad()
def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    return t.normal_(mean, std, generator=generator)


@no_grad()
def trunc_normal_(t: Tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None) -> Tensor:
    """Normal values redrawn until they fall in [a, b] (rejection sampling)."""
    gen = generator or backend.default_generator(t.device)
    values = gen.normal(t.shape, backend.float64, mean, std)
    bad = (values < a) | (values > b)
    while bool(bad.any()):
        values[bad] = gen.normal((int(bad.sum()),), backend.float64, mean, std)
        bad = (values < a) | (values > b)
    t._write("trunc_normal_", values.astype(t.dtype))
    return t


@no_grad()
def constant_(t: Tensor, val: float) -> Tensor:
    return t.fill_(val)


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


@no_grad()
def eye_(t: Tensor) -> Tensor:
    if t.ndim != 2:
        raise ValueError(f"eye_: expected a 2-D tensor, got shape {t.shape}")
    t._write("eye_", t.device.xp.eye(*t.shape, dtype=t.dtype))
    return t


def xavier_uniform_(t: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    fan = _fan(t, mode)
    if fan == 0:
        return t
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    fan = _fan(t, mode)
    if fan == 0:
        return t
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


@no_grad()
def orthogonal_(t: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """A (semi-)orthogonal matrix from the QR decomposition of a normal one, scaled by ``gain``."""
    if t.ndim < 2:
        raise ValueError(f"orthogonal_: expected a tensor of at least 2 dims, got shape {t.shape}")
    rows, cols = t.shape[0], t.numel() // t.shape[0]
    gen = generator or backend.default_generator(t.device)
    flat = backend.to_device(gen.normal((rows, cols), backend.float64), backend.cpu)
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # makes the decomposition unique, hence uniformly distributed
    if rows < cols:
        q = q.T
    t._write("orthogonal_", backend.to_device((gain * q).reshape(t.shape).astype(t.dtype), t.device))
    return t


def default_layer_init_(weight: Tensor, bias: Tensor | None = None) -> None:
    """PyTorch's default for Linear and Conv layers: kaiming_uniform_(a=sqrt(5)) on the weight,
    which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        if fan_in:
            bound = 1 / math.sqrt(fan_in)
            uniform_(bias, -bound, bound)
