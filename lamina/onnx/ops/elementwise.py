"""Elementwise ONNX operators: arithmetic, comparisons, logic, math functions, activations, Cast.

Float paths run on Lamina ops, so they are differentiable. Integer and boolean arithmetic that
Lamina's ops do not define the ONNX way (truncating division, integer powers, bit casts) runs on
raw arrays: it has no gradient to lose.
"""
from __future__ import annotations

import numpy as np

import lamina
import lamina.nn.functional as F
from lamina.ops import Op

from . import onnx_op
from ._util import is_float, raw, scalar, wrap

# ---------------------------------------------------------------- arithmetic, comparisons, logic

# binary ops that are one Lamina function of their two inputs
_BINARY = {"Add": lamina.add, "Sub": lamina.sub, "Mul": lamina.mul,
           "Equal": lamina.eq, "Greater": lamina.gt, "Less": lamina.lt, "GreaterOrEqual": lamina.ge,
           "LessOrEqual": lamina.le, "And": lamina.logical_and, "Or": lamina.logical_or,
           "Xor": lamina.logical_xor}


@onnx_op(*_BINARY)
def binary(node, a, b):
    return _BINARY[node.op_type](a, b)


@onnx_op("Div")
def div(node, a, b):
    if a.dtype.kind in "iu":  # ONNX integer division truncates toward zero, like C
        return raw(lambda xp, x, y: _trunc_div(xp, x, y), a, b)
    return lamina.div(a, b)


def _trunc_div(xp, x, y):
    q = xp.floor_divide(x, y)
    if x.dtype.kind == "i":
        q = q + ((xp.remainder(x, y) != 0) & ((x < 0) != (y < 0)))
    return q.astype(x.dtype)


@onnx_op("Mod")
def mod(node, a, b):
    if node.attr("fmod", 0):
        return raw(lambda xp, x, y: xp.fmod(x, y), a, b)
    if a.dtype.kind == "f":
        return lamina.remainder(a, b)
    return raw(lambda xp, x, y: xp.mod(x, y), a, b)


@onnx_op("Pow")
def pow_(node, a, b):
    if is_float(a):
        return lamina.pow(a, b if b.dtype == a.dtype else b.to(a.dtype))
    return raw(lambda xp, x, y: xp.power(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype), a, b)


@onnx_op("Max")
def max_(node, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = lamina.maximum(out, x)
    return out


@onnx_op("Min")
def min_(node, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = lamina.minimum(out, x)
    return out


@onnx_op("Sum")
def sum_(node, *xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


@onnx_op("Mean")
def mean_(node, *xs):
    return sum_(node, *xs) / len(xs)


# ---------------------------------------------------------------- more logic


@onnx_op("Not")
def not_(node, x):
    return lamina.logical_not(x)


@onnx_op("Where")
def where(node, c, a, b):
    return lamina.where(c, a, b)


@onnx_op("IsNaN")
def isnan(node, x):
    return lamina.isnan(x)


@onnx_op("IsInf")
def isinf(node, x):
    pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
    return raw(lambda xp, a: (xp.isposinf(a) & bool(pos)) | (xp.isneginf(a) & bool(neg)), x)


# ---------------------------------------------------------------- math functions


class _Unary(Op):
    """An elementwise function Lamina has no primitive for, with its derivative as Tensor ops
    (so it is differentiable again). Private: it is not part of Lamina's op registry."""

    def __init__(self, name, fn, deriv):
        self.name, self._fn, self._deriv = name, fn, deriv

    def forward(self, x):
        from lamina.backend import xp_of
        return getattr(xp_of(x), self._fn)(x)

    def backward(self, grad, x):
        return grad * self._deriv(x)


_INVERSE_TRIG = {
    "Asin": ("arcsin", lambda x: lamina.rsqrt(1 - x * x)),
    "Acos": ("arccos", lambda x: -lamina.rsqrt(1 - x * x)),
    "Atan": ("arctan", lambda x: 1 / (1 + x * x)),
}


@onnx_op(*_INVERSE_TRIG)
def inverse_trig(node, x):
    fn, deriv = _INVERSE_TRIG[node.op_type]
    return _Unary(node.op_type.lower(), fn, deriv)(x)


@onnx_op("Asinh")
def asinh(node, x):
    return lamina.sign(x) * lamina.log(lamina.abs(x) + lamina.sqrt(x * x + 1))


@onnx_op("Acosh")
def acosh(node, x):
    return lamina.log(x + lamina.sqrt(x * x - 1))


@onnx_op("Atanh")
def atanh(node, x):
    return 0.5 * (lamina.log1p(x) - lamina.log1p(-x))


@onnx_op("Sinh")
def sinh(node, x):
    return 0.5 * (lamina.exp(x) - lamina.exp(-x))


@onnx_op("Cosh")
def cosh(node, x):
    return 0.5 * (lamina.exp(x) + lamina.exp(-x))


@onnx_op("Tan")
def tan(node, x):
    return lamina.sin(x) / lamina.cos(x)


_SIMPLE = {
    "Abs": lamina.abs, "Neg": lamina.neg, "Exp": lamina.exp, "Log": lamina.log, "Sqrt": lamina.sqrt,
    "Sin": lamina.sin, "Cos": lamina.cos, "Erf": lamina.erf, "Sigmoid": lamina.sigmoid, "Tanh": lamina.tanh,
    "Relu": lamina.relu, "Sign": lamina.sign,
}


@onnx_op(*_SIMPLE)
def simple(node, x):
    if node.op_type == "Relu" and x.dtype.kind in "iu":
        return lamina.maximum(x, wrap(np.zeros((), x.dtype), x))
    return _SIMPLE[node.op_type](x)


@onnx_op("Reciprocal")
def reciprocal(node, x):
    return 1 / x


@onnx_op("Ceil", "Floor", "Round")
def rounding(node, x):
    # piecewise constant: the gradient is zero wherever it exists, so a constant loses nothing
    fn = {"Ceil": "ceil", "Floor": "floor", "Round": "rint"}[node.op_type]
    return raw(lambda xp, a: getattr(xp, fn)(a), x)


@onnx_op("Identity")
def identity(node, x):
    return x


# ---------------------------------------------------------------- activations


@onnx_op("Elu")
def elu(node, x):
    return F.elu(x, node.attr("alpha", 1.0))


@onnx_op("Celu")
def celu(node, x):
    a = node.attr("alpha", 1.0)
    return lamina.relu(x) + lamina.minimum(a * (lamina.exp(x / a) - 1), wrap(np.zeros((), x.dtype), x))


@onnx_op("Selu")
def selu(node, x):
    alpha = node.attr("alpha", 1.67326319217681884765625)
    gamma = node.attr("gamma", 1.05070102214813232421875)
    neg = (lamina.exp(lamina.minimum(x, wrap(np.zeros((), x.dtype), x))) - 1) * alpha
    return lamina.where(x > 0, x, neg) * gamma


@onnx_op("LeakyRelu")
def leaky_relu(node, x):
    return F.leaky_relu(x, node.attr("alpha", 0.01))


@onnx_op("PRelu")
def prelu(node, x, slope):
    return lamina.where(x < 0, x * slope, x)


@onnx_op("ThresholdedRelu")
def thresholded_relu(node, x):
    return lamina.where(x > node.attr("alpha", 1.0), x, x * 0)


@onnx_op("HardSigmoid")
def hard_sigmoid(node, x):
    return lamina.clamp(x * node.attr("alpha", 0.2) + node.attr("beta", 0.5), 0.0, 1.0)


@onnx_op("HardSwish")
def hard_swish(node, x):
    return x * lamina.clamp(x * (1 / 6) + 0.5, 0.0, 1.0)


@onnx_op("Softplus")
def softplus(node, x):
    return F.softplus(x)


@onnx_op("Softsign")
def softsign(node, x):
    return x / (1 + lamina.abs(x))


@onnx_op("Gelu")
def gelu(node, x):
    return F.gelu(x, approximate=node.attr("approximate", "none"))


@onnx_op("Mish")
def mish(node, x):
    return F.mish(x)


@onnx_op("Clip")
def clip(node, x, lo=None, hi=None):
    if node.opset < 11:
        lo_v, hi_v = node.attr("min"), node.attr("max")
    else:
        lo_v = None if lo is None else scalar(lo)
        hi_v = None if hi is None else scalar(hi)
    if lo_v is None and hi_v is None:
        return x
    if x.dtype.kind in "iu":
        def run(xp, a):
            if lo_v is not None:
                a = xp.maximum(a, lo_v)
            if hi_v is not None:
                a = xp.minimum(a, hi_v)
            return a.astype(x.dtype)
        return raw(run, x)
    if lo_v is not None and hi_v is not None and lo_v > hi_v:
        return x * 0 + hi_v  # ONNX (as NumPy): every value becomes max
    return lamina.clamp(x, lo_v, hi_v)


# ---------------------------------------------------------------- casts


def _cast_array(xp, a, to, saturate):
    """``a.astype(to)`` as ONNX defines Cast: float-to-narrow-float saturates finite values when
    ``saturate``; the narrow types convert through float32 as ml_dtypes defines."""
    src, to = a.dtype, np.dtype(to)
    if src == to:
        return a.copy()
    if to.name == "float8_e8m0fnu":
        # a power-of-two scale type with no zero and no sign: ONNX rounds up and saturates, as the
        # onnx package's own converter does (ml_dtypes' cast rounds to nearest and has no saturation)
        from onnx.numpy_helper import to_float8e8m0
        return to_float8e8m0(a.astype(np.float32), saturate=saturate, round_mode="up").view(to)
    if to.name.startswith(("float8", "float4", "float6")):
        import ml_dtypes
        info = ml_dtypes.finfo(to)
        f = a.astype(np.float32)
        if saturate:
            finite_max = float(info.max)
            if to.name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz", "float4_e2m1fn") or \
                    to.name == "float8_e5m2":
                f = np.where(np.isnan(f), f, np.clip(f, -finite_max, finite_max))
        return f.astype(to)
    if to.name in ("int4", "uint4", "int2", "uint2"):
        # as the ONNX reference: ml_dtypes' conversion (rounds to nearest even; out-of-range
        # values wrap the way ml_dtypes defines)
        return (a.astype(np.float32) if src.kind not in "iu" else a).astype(to)
    if src.name.startswith(("float8", "float4", "float6", "int4", "uint4", "int2", "uint2", "bfloat16")):
        return a.astype(np.float32).astype(to)
    return a.astype(to)


@onnx_op("Cast")
def cast(node, x):
    from ..proto import np_dtype
    to = np_dtype(node.attr("to"), f"{node.where()} attribute 'to'")
    return _cast(node, x, to)


@onnx_op("CastLike")
def cast_like(node, x, like):
    return _cast(node, x, like.dtype)


def _cast(node, x, to):
    if x.dtype == to:
        return x
    std = ("float16", "float32", "float64", "bfloat16")
    if x.dtype.name in std and to.name in std:
        return x.to(to)  # a Lamina op: gradients flow through float casts
    saturate = bool(node.attr("saturate", 1))
    return raw(lambda xp, a: _cast_array(xp, a, to, saturate), x)


@onnx_op("Shrink")
def shrink(node, x):
    lambd, bias = node.attr("lambd", 0.5), node.attr("bias", 0.0)
    if not is_float(x):
        return raw(lambda xp, a: xp.where(a < -lambd, a + bias, xp.where(a > lambd, a - bias, 0)).astype(a.dtype), x)
    return lamina.where(x < -lambd, x + bias, lamina.where(x > lambd, x - bias, x * 0))


@onnx_op("Swish")
def swish(node, x):
    return x * lamina.sigmoid(x * node.attr("alpha", 1.0))


@onnx_op("Hardmax")
def hardmax(node, x):
    import math

    def run(xp, a, d):
        idx = xp.argmax(a, axis=d)
        return (xp.expand_dims(idx, d) == xp.arange(a.shape[d]).reshape(
            [-1 if i == d else 1 for i in range(a.ndim)])).astype(a.dtype)
    if node.opset < 13:
        d = node.attr("axis", 1) % max(x.ndim, 1)
        flat = lamina.reshape(x, (math.prod(x.shape[:d]), math.prod(x.shape[d:])))
        return lamina.reshape(raw(lambda xp, a: run(xp, a, 1), flat), x.shape)
    d = node.attr("axis", -1) % max(x.ndim, 1)
    return raw(lambda xp, a: run(xp, a, d), x)


_BITWISE = {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


@onnx_op(*_BITWISE)
def bitwise(node, a, b):
    return raw(lambda xp, x, y: getattr(xp, _BITWISE[node.op_type])(x, y), a, b)


@onnx_op("BitwiseNot")
def bitwise_not(node, x):
    return raw(lambda xp, a: xp.invert(a), x)


@onnx_op("BitShift")
def bit_shift(node, a, b):
    fn = "left_shift" if node.attr("direction") == "LEFT" else "right_shift"
    return raw(lambda xp, x, y: getattr(xp, fn)(x, y).astype(x.dtype), a, b)


def _per_axis(node, param, x):
    """A scale or zero point shaped to broadcast against x: scalar, per-axis (1-d along ``axis``) or
    blocked (same rank as x, each value covering ``block_size`` elements along ``axis``)."""
    p = param
    if p.ndim == 0 or p.size == 1:
        return p.reshape(())
    d = node.attr("axis", 1) % x.ndim
    if p.ndim == 1:
        shape = [1] * x.ndim
        shape[d] = p.shape[0]
        return p.reshape(shape)
    block = node.attr("block_size", 0)
    if block:
        p = np.repeat(p, block, axis=d)
        p = np.take(p, np.arange(x.shape[d]), axis=d)
    return p


@onnx_op("DequantizeLinear")
def dequantize_linear(node, x, scale, zero=None):
    s = _per_axis(node, np.asarray(scale.array), x)
    z = None if zero is None else _per_axis(node, np.asarray(zero.array), x)
    out_dtype = scale.dtype
    xs = x.array.astype(np.float32)
    if z is not None:
        xs = xs - z.astype(np.float32)
    return wrap((xs * s.astype(np.float32)).astype(out_dtype), x)


@onnx_op("QuantizeLinear")
def quantize_linear(node, x, scale, zero=None):
    from ..proto import np_dtype
    s = _per_axis(node, np.asarray(scale.array), x).astype(np.float32)
    if zero is not None:
        to = zero.dtype
    elif node.attr("output_dtype"):
        to = np_dtype(node.attr("output_dtype"), f"{node.where()} output_dtype")
    else:
        to = np.dtype(np.uint8)
    z = np.zeros((), np.float32) if zero is None else _per_axis(node, np.asarray(zero.array), x).astype(np.float32)
    v = np.asarray(x.array).astype(np.float32) / s
    if to.name.startswith(("float8", "float4")):
        return wrap(_cast_array(np, v + z, to, bool(node.attr("saturate", 1))), x)
    import ml_dtypes
    info = ml_dtypes.iinfo(to) if to.name in ("int4", "uint4", "int2", "uint2") else np.iinfo(to)
    q = np.clip(np.rint(v) + z, int(info.min), int(info.max))
    return wrap(q.astype(to), x)


@onnx_op("SwiGLU")
def swiglu(node, a, b):
    return a * lamina.sigmoid(a * node.attr("alpha", 1.0)) * b
