"""Elementwise ops: unary math and activations, binary arithmetic with broadcasting, where,
comparisons and logical ops (no gradient)."""
from __future__ import annotations

import math

import numpy as np

from .. import backend, kernels as _kernels
from ..tensor import Tensor, _wrap
from .base import Op, as_tensor, promote, unbroadcast, xp_of

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# Numerical Recipes' Chebyshev fit of erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2): fractional
# error below 1.2e-7, i.e. float32 precision.
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
             1.48851587, -0.82215223, 0.17087277)


def _erf(x):
    """erf of an array. float64 (and every CuPy array) goes to scipy.special / cupyx.scipy.special;
    lower precisions on CPU use the rational fit above in a few in-place passes, which is several
    times faster than SciPy's float32 erf and accurate to float32 rounding."""
    # SciPy (0.4 s to import) and cupyx load on the first float64 / GPU erf, not with lamina
    if xp_of(x) is not np:
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    x = np.asarray(x)
    if x.dtype == np.float64:
        import scipy.special
        return scipy.special.erf(x)
    x32 = x.astype(np.float32, copy=False).reshape(-1)  # 1-d: 0-d arithmetic would give scalars
    f = np.float32
    z = np.abs(x32)
    t = z * f(0.5)
    t += f(1.0)
    np.reciprocal(t, out=t)
    p = np.full_like(z, _ERFC_FIT[-1])
    for c in _ERFC_FIT[-2::-1]:
        p *= t
        p += f(c)
    np.square(z, out=z)
    p -= z
    np.exp(p, out=p)
    p *= t  # erfc(|x|)
    np.subtract(f(1.0), p, out=p)
    return np.copysign(p, x32, out=p).reshape(x.shape).astype(x.dtype, copy=False)


def _floating(x: Tensor) -> Tensor:
    """Integer and bool inputs of float-valued ops become the default float dtype, as in PyTorch."""
    if isinstance(x, Tensor) and not backend.is_floating(x.dtype):
        return x.to(backend.get_default_dtype())
    return x


def _masked(g, keep):
    """``g`` where the bool tensor ``keep`` is True, else exactly 0.

    On CPU this is a product with the mask, which NumPy runs an order of magnitude faster than
    ``where``; a product would turn an infinite or NaN gradient at a masked-out position into
    NaN, so those (rare) gradients take ``where``.
    """
    a = g.array
    if type(a) is np.ndarray and np.isfinite(a).all():
        return g * keep
    return where(keep, g, 0.0)


def _check_tensor(x, opname):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: expected a Tensor, got {type(x).__name__}")


# ---------------------------------------------------------------- unary

class Neg(Op):
    needs_inputs = False

    def forward(self, x):
        return -x

    def backward(self, g, x):
        return -g

    def onnx(self, g, x):
        return g.op("Neg", [x])


class Abs(Op):
    def forward(self, x):
        return xp_of(x).abs(x)

    def backward(self, g, x):
        return g * sign(x)

    def onnx(self, g, x):
        return g.op("Abs", [x])


class Sign(Op):
    needs_inputs = False

    def forward(self, x):
        return xp_of(x).sign(x)

    def backward(self, g, x):
        return g * 0.0

    def onnx(self, g, x):
        return g.op("Sign", [x])


class Exp(Op):
    save_output = True
    needs_inputs = False

    def forward(self, x):
        return xp_of(x).exp(x)

    def backward(self, g, x):
        return g * self.output()

    def onnx(self, g, x):
        return g.op("Exp", [x])


class Log(Op):
    def forward(self, x):
        return xp_of(x).log(x)

    def backward(self, g, x):
        return g / x

    def onnx(self, g, x):
        return g.op("Log", [x])


class Log1p(Op):
    def forward(self, x):
        return xp_of(x).log1p(x)

    def backward(self, g, x):
        return g / (x + 1.0)

    def onnx(self, g, x):
        return g.op("Log", [g.op("Add", [x, g.scalar(1, g.out_dtype())])])


class Sqrt(Op):
    save_output = True
    needs_inputs = False

    def forward(self, x):
        return xp_of(x).sqrt(x)

    def backward(self, g, x):
        return g / (self.output() * 2.0)

    def onnx(self, g, x):
        return g.op("Sqrt", [x])


class Rsqrt(Op):
    save_output = True

    def forward(self, x):
        xp = xp_of(x)
        return xp.reciprocal(xp.sqrt(x))

    def backward(self, g, x):
        return g * self.output() / x * -0.5

    def onnx(self, g, x):
        return g.op("Reciprocal", [g.op("Sqrt", [x])])


class Sin(Op):
    def forward(self, x):
        return xp_of(x).sin(x)

    def backward(self, g, x):
        return g * cos(x)

    def onnx(self, g, x):
        return g.op("Sin", [x])


class Cos(Op):
    def forward(self, x):
        return xp_of(x).cos(x)

    def backward(self, g, x):
        return -(g * sin(x))

    def onnx(self, g, x):
        return g.op("Cos", [x])


class Tanh(Op):
    save_output = True
    needs_inputs = False

    def forward(self, x):
        if type(x) is np.ndarray:
            y = _kernels.tanh_forward(x)
            if y is not None:
                return y
        return xp_of(x).tanh(x)

    def backward(self, g, x):
        y = self.output()
        return g * (1.0 - y * y)

    def backward_arrays(self, g, x):
        dx = _kernels.tanh_backward(g, self.output().array)
        return NotImplemented if dx is None else dx

    def onnx(self, g, x):
        return g.op("Tanh", [x])


class Sigmoid(Op):
    save_output = True
    needs_inputs = False

    def forward(self, x):
        if type(x) is np.ndarray:
            y = _kernels.sigmoid_forward(x)
            if y is not None:
                return y
        xp = xp_of(x)
        # 0.5 * (1 + tanh(x / 2)) is exact and never overflows, unlike 1 / (1 + exp(-x))
        out = xp.tanh(x * x.dtype.type(0.5))
        out += 1
        out *= 0.5
        return out

    def backward(self, g, x):
        y = self.output()
        return g * (y * (1.0 - y))

    def backward_arrays(self, g, x):
        dx = _kernels.sigmoid_backward(g, self.output().array)
        return NotImplemented if dx is None else dx

    def onnx(self, g, x):
        return g.op("Sigmoid", [x])


class Relu(Op):
    save_output = True
    needs_inputs = False

    def forward(self, x):
        if type(x) is np.ndarray:
            y = _kernels.relu_forward(x)
            if y is not None:
                return y
        return xp_of(x).maximum(x, 0)

    def backward(self, g, x):
        return _masked(g, ~(self.output() <= 0))  # PyTorch's threshold_backward: a NaN passes g

    def backward_arrays(self, g, x):
        dx = _kernels.relu_backward(g, self.output().array)  # output > 0 exactly where input > 0
        return NotImplemented if dx is None else dx

    def onnx(self, g, x):
        return g.op("Relu", [x])


class LeakyRelu(Op):
    def __init__(self, negative_slope):
        self.negative_slope = negative_slope

    def forward(self, x):
        if type(x) is np.ndarray:
            y = _kernels.leaky_relu_forward(x, self.negative_slope)
            if y is not None:
                return y
        return xp_of(x).where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def backward(self, g, x):
        pos = x > 0
        return _masked(g, pos) + _masked(g, ~pos) * self.negative_slope

    def backward_arrays(self, g, x):
        dx = _kernels.leaky_relu_backward(g, x, self.negative_slope)
        return NotImplemented if dx is None else dx

    def onnx(self, g, x):
        return g.op("LeakyRelu", [x], alpha=float(self.negative_slope))


class Erf(Op):
    def forward(self, x):
        return _erf(x)

    def backward(self, g, x):
        return g * exp(-(x * x)) * _TWO_OVER_SQRT_PI

    def onnx(self, g, x):
        return g.op("Erf", [x])


class Gelu(Op):
    """x * Phi(x); ``approximate='tanh'`` uses the tanh form of GPT-2 and BERT's original code."""

    def __init__(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        if type(x) is np.ndarray:
            # the compiled kernel keeps Phi(x) for backward, which then needs one exp per element
            if self.approximate == "tanh":
                y = _kernels.gelu_forward(x, "tanh")
            elif self.needs_input_grad is not None:
                y = _kernels.gelu_forward(x, "none", keep_cdf=True)
                if y is not None:
                    y, self.saved = y
            else:
                y = _kernels.gelu_forward(x, "none")
            if y is not None:
                return y
        xp = xp_of(x)
        t = x.dtype.type
        if self.approximate == "tanh":
            inner = xp.tanh((x + t(0.044715) * x * x * x) * t(_SQRT_2_OVER_PI))
            return t(0.5) * x * (inner + t(1.0))
        cdf = _erf(x * t(1.0 / _SQRT_2))
        cdf += t(1.0)
        cdf *= t(0.5)
        if self.needs_input_grad is not None:
            self.saved = cdf
        return x * cdf

    def backward(self, g, x):
        if self.approximate == "tanh":
            x2 = x * x
            inner = tanh((x + 0.044715 * x2 * x) * _SQRT_2_OVER_PI)
            d_inner = (1.0 + 0.134145 * x2) * _SQRT_2_OVER_PI
            return g * (0.5 * (1.0 + inner) + 0.5 * x * (1.0 - inner * inner) * d_inner)
        cdf = 0.5 * (1.0 + erf(x * (1.0 / _SQRT_2)))
        pdf = exp(-0.5 * (x * x)) * _INV_SQRT_2PI
        return g * (cdf + x * pdf)

    def backward_arrays(self, g, x):
        if type(g) is np.ndarray:
            if self.approximate == "tanh":
                dx = _kernels.gelu_backward(g, x, "tanh")
            else:
                dx = _kernels.gelu_backward(g, x, "none", cdf=self.saved)
            if dx is not None:
                return dx
        if self.approximate == "tanh":
            return NotImplemented
        # g (Phi + x phi), reusing Phi(x) from forward
        xa = x.reshape(-1)  # 1-d: in-place passes need arrays, 0-d arithmetic gives scalars
        xp = xp_of(xa)
        t = xa.dtype.type
        pdf = xa * xa
        pdf *= t(-0.5)
        xp.exp(pdf, out=pdf)
        pdf *= xa
        pdf *= t(_INV_SQRT_2PI)
        pdf += self.saved.reshape(-1)
        pdf *= g.reshape(-1)
        return pdf.reshape(x.shape)

    def onnx(self, g, x):
        if g.opset >= 20:
            return g.op("Gelu", [x], approximate=self.approximate)
        dt = g.out_dtype()
        if self.approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = g.op("Mul", [g.op("Mul", [x, x]), x])
            inner = g.op("Add", [x, g.op("Mul", [cube, g.scalar(0.044715, dt)])])
            t = g.op("Tanh", [g.op("Mul", [inner, g.scalar((2 / 3.141592653589793) ** 0.5, dt)])])
        else:  # 0.5 x (1 + erf(x / sqrt 2))
            t = g.op("Erf", [g.op("Mul", [x, g.scalar(0.5 ** 0.5, dt)])])
        half_x = g.op("Mul", [x, g.scalar(0.5, dt)])
        return g.op("Mul", [half_x, g.op("Add", [t, g.scalar(1, dt)])])


class Silu(Op):
    def forward(self, x):
        if type(x) is np.ndarray:
            y = _kernels.silu_forward(x)
            if y is not None:
                return y
        xp = xp_of(x)
        s = xp.tanh(x * x.dtype.type(0.5))
        s += 1
        s *= 0.5
        return x * s

    def backward(self, g, x):
        s = sigmoid(x)
        return g * (s * (1.0 + x * (1.0 - s)))

    def backward_arrays(self, g, x):
        dx = _kernels.silu_backward(g, x)
        return NotImplemented if dx is None else dx

    def onnx(self, g, x):
        return g.op("Mul", [x, g.op("Sigmoid", [x])])


class Clamp(Op):
    def __init__(self, min, max):
        self.min, self.max = min, max

    def forward(self, x):
        return xp_of(x).clip(x, self.min, self.max)

    def backward(self, g, x):
        keep = None
        if self.min is not None:
            keep = x >= self.min
        if self.max is not None:
            hi = x <= self.max
            keep = hi if keep is None else keep & hi
        return _masked(g, keep)

    def onnx(self, g, x):
        dt = g.out_dtype()
        return g.op("Clip", [x, None if self.min is None else g.scalar(self.min, dt),
                             None if self.max is None else g.scalar(self.max, dt)])


# ---------------------------------------------------------------- binary

class Add(Op):
    needs_inputs = False

    def forward(self, a, b):
        y = _kernels.binary(np.add, a, b)  # large: split over the kernel threads
        return a + b if y is None else y

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, a.shape) if na else None), (unbroadcast(g, b.shape) if nb else None)

    def onnx(self, g, a, b):
        return g.op("Add", g.cast_inputs([a, b]))


class Sub(Op):
    needs_inputs = False

    def forward(self, a, b):
        y = _kernels.binary(np.subtract, a, b)  # large: split over the kernel threads
        return a - b if y is None else y

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, a.shape) if na else None), (unbroadcast(-g, b.shape) if nb else None)

    def onnx(self, g, a, b):
        return g.op("Sub", g.cast_inputs([a, b]))


class Mul(Op):
    def forward(self, a, b):
        y = _kernels.binary(np.multiply, a, b)  # large: split over the kernel threads
        return a * b if y is None else y

    def reads_input(self, i):
        return self.needs_input_grad[1 - i]  # each gradient reads only the other operand

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        return (unbroadcast(g * b, a.shape) if na else None), (unbroadcast(g * a, b.shape) if nb else None)

    def onnx(self, g, a, b):
        return g.op("Mul", g.cast_inputs([a, b]))


class Div(Op):
    def forward(self, a, b):
        y = _kernels.binary(np.divide, a, b)  # large: split over the kernel threads
        return a / b if y is None else y

    def reads_input(self, i):
        return i == 1 or self.needs_input_grad[1]

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        ga = unbroadcast(g / b, a.shape) if na else None
        gb = unbroadcast(-(g * a) / (b * b), b.shape) if nb else None
        return ga, gb

    def onnx(self, g, a, b):
        return g.op("Div", g.cast_inputs([a, b]))


class Pow(Op):
    def forward(self, a, b):
        return xp_of(a).power(a, b)

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = unbroadcast(g * b * pow(a, b - 1.0), a.shape)
        if nb:
            # d(a^b)/db = a^b log a, taken as 0 where a == 0 (as PyTorch does)
            out = pow(a, b)
            gb = unbroadcast(where(a == 0, 0.0, g * out * log(where(a == 0, 1.0, a))), b.shape)
        return ga, gb

    def onnx(self, g, a, b):
        return g.op("Pow", g.cast_inputs([a, b]))


class Maximum(Op):
    def forward(self, a, b):
        return xp_of(a).maximum(a, b)

    def backward(self, g, a, b):
        # ties split the gradient evenly, as PyTorch does
        na, nb = self.needs_input_grad
        tie = _masked(g * 0.5, a == b)
        ga = unbroadcast(_masked(g, a > b) + tie, a.shape) if na else None
        gb = unbroadcast(_masked(g, b > a) + tie, b.shape) if nb else None
        return ga, gb

    def onnx(self, g, a, b):
        return g.op("Max", g.cast_inputs([a, b]))


class Minimum(Op):
    def forward(self, a, b):
        return xp_of(a).minimum(a, b)

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        tie = _masked(g * 0.5, a == b)
        ga = unbroadcast(_masked(g, a < b) + tie, a.shape) if na else None
        gb = unbroadcast(_masked(g, b < a) + tie, b.shape) if nb else None
        return ga, gb

    def onnx(self, g, a, b):
        return g.op("Min", g.cast_inputs([a, b]))


class Where(Op):
    def forward(self, cond, a, b):
        return xp_of(a).where(cond, a, b)

    def backward(self, g, cond, a, b):
        _, na, nb = self.needs_input_grad
        ga = unbroadcast(_masked(g, cond), a.shape) if na else None
        gb = unbroadcast(_masked(g, ~cond), b.shape) if nb else None
        return None, ga, gb

    def onnx(self, g, cond, a, b):
        cond = g.cast(cond, g.in_dtype(0), bool)
        a, b = (g.cast(n, g.in_dtype(i), g.out_dtype()) for i, n in ((1, a), (2, b)))
        return g.op("Where", [cond, a, b])


class Remainder(Op):
    """Python-style remainder (the result has the sign of the divisor), like PyTorch's."""

    def forward(self, a, b):
        return xp_of(a).remainder(a, b)

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        ga = unbroadcast(g, a.shape) if na else None
        gb = unbroadcast(-(g * floor_divide(a, b)), b.shape) if nb else None
        return ga, gb

    def onnx(self, g, a, b):
        a, b = g.cast_inputs([a, b])
        if g.out_dtype().kind in "iu":  # Mod with fmod=0 takes the divisor's sign, as Python's %
            return g.op("Mod", [a, b], fmod=0)
        return g.op("Sub", [a, g.op("Mul", [g.op("Floor", [g.op("Div", [a, b])]), b])])


class FloorDivide(Op):
    differentiable = False

    def forward(self, a, b):
        return xp_of(a).floor_divide(a, b)

    def onnx(self, g, a, b):
        a, b = g.cast_inputs([a, b])
        if g.out_dtype().kind in "iu":  # integer Div truncates; (a - a mod b) / b is exact and floors
            return g.op("Div", [g.op("Sub", [a, g.op("Mod", [a, b], fmod=0)]), b])
        return g.op("Floor", [g.op("Div", [a, b])])


# ---------------------------------------------------------------- comparisons and logic (no gradient)

class _Compare(Op):
    differentiable = False
    ufunc = ""

    def forward(self, a, b):
        return getattr(xp_of(a), self.ufunc)(a, b)

    # the ONNX operator of each ufunc; not_equal is Equal then Not
    onnx_ops = {"equal": "Equal", "not_equal": "Equal", "less": "Less", "less_equal": "LessOrEqual",
                "greater": "Greater", "greater_equal": "GreaterOrEqual", "logical_and": "And",
                "logical_or": "Or", "logical_xor": "Xor"}

    def onnx(self, g, a, b):
        if self.ufunc.startswith("logical_"):
            a, b = g.cast_inputs([a, b], bool)
        else:
            a, b = g.cast_inputs([a, b], backend.result_type(g.in_dtype(0), g.in_dtype(1)))
        y = g.op(self.onnx_ops[self.ufunc], [a, b])
        return g.op("Not", [y]) if self.ufunc == "not_equal" else y


def _comparison(name: str, ufunc: str) -> type:
    """An elementwise comparison or logical op computed by the array module's ``ufunc``."""
    return type(name, (_Compare,), {"ufunc": ufunc, "__module__": __name__, "__qualname__": name})


Eq = _comparison("Eq", "equal")
Ne = _comparison("Ne", "not_equal")
Lt = _comparison("Lt", "less")
Le = _comparison("Le", "less_equal")
Gt = _comparison("Gt", "greater")
Ge = _comparison("Ge", "greater_equal")
LogicalAnd = _comparison("LogicalAnd", "logical_and")
LogicalOr = _comparison("LogicalOr", "logical_or")
LogicalXor = _comparison("LogicalXor", "logical_xor")


class LogicalNot(Op):
    differentiable = False

    def forward(self, x):
        return xp_of(x).logical_not(x)

    def onnx(self, g, x):
        return g.op("Not", g.cast_inputs([x], bool))


class IsNan(Op):
    differentiable = False

    def forward(self, x):
        return xp_of(x).isnan(x)

    def onnx(self, g, x):
        return g.op("IsNaN", [x])


class IsFinite(Op):
    differentiable = False

    def forward(self, x):
        return xp_of(x).isfinite(x)

    def onnx(self, g, x):
        return g.op("Not", [g.op("Or", [g.op("IsNaN", [x]), g.op("IsInf", [x])])])


# ---------------------------------------------------------------- functions

def neg(x): return Neg()(x)
def abs(x): return Abs()(x)
def sign(x): return Sign()(x)
def exp(x): return Exp()(_floating(x))
def log(x): return Log()(_floating(x))
def log1p(x): return Log1p()(_floating(x))
def sqrt(x): return Sqrt()(_floating(x))
def rsqrt(x): return Rsqrt()(_floating(x))
def sin(x): return Sin()(_floating(x))
def cos(x): return Cos()(_floating(x))
def tanh(x): return Tanh()(_floating(x))
def sigmoid(x): return Sigmoid()(_floating(x))
def relu(x): return Relu()(x)
def erf(x): return Erf()(_floating(x))
def silu(x): return Silu()(_floating(x))
def isnan(x): return IsNan()(x)
def isfinite(x): return IsFinite()(x)
def logical_not(x): return LogicalNot()(x)


def leaky_relu(x, negative_slope=0.01):
    return LeakyRelu(negative_slope)(_floating(x))


def gelu(x, approximate="none"):
    return Gelu(approximate)(_floating(x))


def clamp(x, min=None, max=None):
    """Limit ``x`` to [min, max]; either bound may be None. Gradient flows where min <= x <= max."""
    _check_tensor(x, "clamp")
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if min is not None and max is not None and min > max:
        raise ValueError(f"clamp: min ({min}) is greater than max ({max})")
    if isinstance(min, float) or isinstance(max, float):
        x = _floating(x)
    return Clamp(min, max)(x)


def add(a, b, alpha=1):
    a, b = promote(a, b, "add")
    return Add()(a, b if alpha == 1 else b * alpha)


def sub(a, b, alpha=1):
    a, b = promote(a, b, "sub")
    return Sub()(a, b if alpha == 1 else b * alpha)


def mul(a, b):
    a, b = promote(a, b, "mul")
    return Mul()(a, b)


def div(a, b):
    a, b = promote(a, b, "div")
    return Div()(_floating(a), _floating(b))


def pow(a, b):
    a, b = promote(a, b, "pow")
    return Pow()(a, b)


def maximum(a, b):
    a, b = promote(a, b, "maximum")
    return Maximum()(a, b)


def minimum(a, b):
    a, b = promote(a, b, "minimum")
    return Minimum()(a, b)


def remainder(a, b):
    a, b = promote(a, b, "remainder")
    return Remainder()(a, b)


def floor_divide(a, b):
    a, b = promote(a, b, "floor_divide")
    return FloorDivide()(a, b)


def where(condition, a, b):
    """Elementwise ``a if condition else b``; ``a`` and ``b`` may be Tensors or numbers."""
    _check_tensor(condition, "where")
    if condition.dtype != backend.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {condition.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = _scalar_like(a, condition)
    a, b = promote(a, b, "where")
    return Where()(condition, a, b)


def _scalar_like(value, ref: Tensor) -> Tensor:
    dtype = (backend.bool_ if isinstance(value, bool) else backend.int64 if isinstance(value, int)
             else backend.get_default_dtype())
    xp = ref.device.xp
    with backend.device_context(ref.device):
        return _wrap(xp.array(value, dtype=dtype))


def _compare(cls, opname):
    def fn(a, b):
        a, b = promote(a, b, opname)
        return cls()(a, b)
    fn.__name__ = opname
    fn.__doc__ = f"Elementwise {opname} with broadcasting; returns a bool tensor (no gradient)."
    return fn


eq = _compare(Eq, "eq")
ne = _compare(Ne, "ne")
lt = _compare(Lt, "lt")
le = _compare(Le, "le")
gt = _compare(Gt, "gt")
ge = _compare(Ge, "ge")
logical_and = _compare(LogicalAnd, "logical_and")
logical_or = _compare(LogicalOr, "logical_or")
logical_xor = _compare(LogicalXor, "logical_xor")


def masked_fill(x, mask, value):
    """``x`` with ``value`` wherever ``mask`` is True (mask broadcasts against x)."""
    _check_tensor(x, "masked_fill")
    if not isinstance(mask, Tensor) or mask.dtype != backend.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got "
                        f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    if isinstance(value, Tensor):
        value = value.to(x.dtype)
    else:
        value = as_tensor(value, x)
        if value.dtype != x.dtype:
            value = value.to(x.dtype)
    out = where(mask, value, x)
    if out.shape != x.shape:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to the tensor's shape {x.shape}")
    return out


class Logit(Op):
    """log(x / (1 - x)); with ``eps`` the input is first clamped to [eps, 1 - eps] (zero gradient
    outside), as PyTorch's ``logit``."""

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x):
        xp = xp_of(x)
        if self.eps is not None:
            x = xp.clip(x, self.eps, 1 - self.eps)
        return xp.log(x / (1 - x))

    def backward(self, g, x):
        d = g / (x * (1.0 - x))
        if self.eps is None:
            return d
        return where((x < self.eps) | (x > 1 - self.eps), 0.0, d)

    def onnx(self, g, x):
        dt = g.out_dtype()
        if self.eps is not None:
            x = g.op("Clip", [x, g.scalar(self.eps, dt), g.scalar(1 - self.eps, dt)])
        return g.op("Log", [g.op("Div", [x, g.op("Sub", [g.scalar(1, dt), x])])])


def logit(x, eps=None):
    return Logit(eps)(_floating(x))
