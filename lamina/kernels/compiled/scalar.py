"""Scalar math shared by the kernels, inlined into their loops.

The pip wheels of Numba have no vector math library, so ``math.exp``/``math.erf`` in a loop are
scalar library calls that stop vectorisation. For float32 these are polynomial versions written
with float32 constants only (a float64 constant silently turns the arithmetic into float64);
they vectorise, and are accurate to a few float32 ulps. float64 keeps ``math``'s functions.

``like(v, c)`` makes the constant ``c`` in the type of ``v``, so one kernel body serves both dtypes.
No fast-math flags: ``-inf`` and NaN must go through exactly. Every kernel compiles with
``error_model="numpy"``: Python's model checks each float division for zero, and that branch
alone keeps LLVM from vectorising a loop (sigmoid ran 15x slower with it).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .. import _runtime

# Options of every kernel called from Python: on-disk cache when usable, NumPy's float error
# model, and no GIL (``lamina.kernels._runtime.run_parts`` runs parts of a call in threads).
# Without fast-math flags a kernel rounds as the same arithmetic in NumPy does (the optimiser
# updates are checked bit for bit against their NumPy rules).
JIT = dict(cache=_runtime.cache_enabled(), error_model="numpy", nogil=True)
# Kernels built on the polynomials below also allow fused multiply-add ("contract", which never
# changes how -inf and NaN go through): a polynomial is then one FMA per term instead of a
# multiply and an add, which made the float32 exact GELU 1.45x faster.
JIT_FMA = dict(JIT, fastmath={"contract"})
# The helpers are compiled on their own and inlined, keeping their own flags.
SCALAR = dict(error_model="numpy", fastmath={"contract"})
# Fast-math flags for loops that sum: reassociation lets LLVM vectorise a reduction (and sum in
# several lanes, which is no less accurate). Never nnan/ninf: -inf and NaN must stay exact.
REDUCE = dict(error_model="numpy", fastmath={"reassoc", "nsz", "contract"})


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


def like(v, c):
    """``c`` converted to the floating type of ``v`` (compiled code only)."""
    raise NotImplementedError("like() is only defined inside compiled kernels")


@overload(like)
def _like(v, c):
    if v == types.float32:
        return lambda v, c: np.float32(c)
    return lambda v, c: np.float64(c)


@njit(**SCALAR)
def exp32(x):
    """exp for float32: x = n ln2 + r (ln2 split in two for exactness), a degree-6 polynomial
    for exp(r) on |r| <= ln2/2, and 2^n built from its exponent bits. Exactly 0 below -87.3
    (so exp(-inf) == 0), NaN in NaN out, max relative error ~1e-7."""
    xc = min(max(x, np.float32(-87.3)), np.float32(88.7))
    n = np.floor(xc * np.float32(1.44269504088896341) + np.float32(0.5))
    r = xc - n * np.float32(0.693359375)
    r = r + n * np.float32(2.12194440e-4)
    # the polynomial by Estrin's scheme: three independent pairs, so its chain of dependent
    # operations is 4 long instead of Horner's 7
    r2 = r * r
    p01 = np.float32(5.0000001201e-1) + np.float32(1.6666665459e-1) * r
    p23 = np.float32(4.1665795894e-2) + np.float32(8.3334519073e-3) * r
    p45 = np.float32(1.3981999507e-3) + np.float32(1.9875691500e-4) * r
    p = p01 + r2 * (p23 + r2 * p45)
    p = p * r2 + r + np.float32(1.0)
    y = p * _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    # NaN needs no case of its own: it reaches p and stays NaN
    return np.float32(0.0) if x < np.float32(-87.3) else y


def fexp(x):
    raise NotImplementedError("fexp() is only defined inside compiled kernels")


@overload(fexp)
def _fexp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


@njit(**SCALAR)
def erfc32_pos(z):
    """erfc(z) for float32 z >= 0: erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2), with the
    Chebyshev-fitted P of Numerical Recipes (fractional error < 1.2e-7 for every z >= 0).
    Rounding p - z^2 to float32 adds up to |z^2| * 6e-8 relative: measured max relative
    error of Phi(x) 2e-6 for |x| < 5 and 2e-5 down to x = -12."""
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.5) * z)
    # P(t) of degree 9 by Estrin's scheme (pairs, then t^2 and t^4 and t^8 steps): a dependency
    # chain of 5 instead of Horner's 9, which made the float32 exact GELU ~15 % faster
    t2 = t * t
    t4 = t2 * t2
    p01 = np.float32(-1.26551223) + np.float32(1.00002368) * t
    p23 = np.float32(0.37409196) + np.float32(0.09678418) * t
    p45 = np.float32(-0.18628806) + np.float32(0.27886807) * t
    p67 = np.float32(-1.13520398) + np.float32(1.48851587) * t
    p89 = np.float32(-0.82215223) + np.float32(0.17087277) * t
    p = (p01 + t2 * p23) + t4 * ((p45 + t2 * p67) + t4 * p89)
    return t * exp32(p - z * z)


def ncdf(x):
    """Phi(x), the standard normal CDF (compiled code only)."""
    raise NotImplementedError("ncdf() is only defined inside compiled kernels")


@njit(**SCALAR)
def _ncdf32(x):
    # Phi(x) = erfc(-x/sqrt 2)/2: through erfc of |x| on both sides, so the lower tail keeps its
    # relative accuracy (1 + erf(x) would cancel to nothing below x ~ -4)
    z = abs(x) * np.float32(0.70710678118654752)
    h = np.float32(0.5) * erfc32_pos(z)
    return np.float32(1.0) - h if x > np.float32(0.0) else h  # NaN: h is NaN


@njit(**SCALAR)
def _ncdf64(x):
    return 0.5 * math.erfc(-x * 0.70710678118654752)


@overload(ncdf)
def _ncdf(x):
    if x == types.float32:
        return lambda x: _ncdf32(x)
    return lambda x: _ncdf64(x)


@njit(**SCALAR)
def sigmoid_of(x):
    """1/(1 + exp(-x)) in the type of x; exact 0 and 1 at -inf and +inf."""
    return like(x, 1.0) / (like(x, 1.0) + fexp(-x))


@njit(**SCALAR)
def _tanh32(x):
    # |x| < 0.625: Cephes' odd minimax polynomial (no cancellation near 0); beyond it
    # 1 - 2/(exp(2|x|) + 1), which saturates to exactly +-1.
    a = abs(x)
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z + np.float32(-5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z + np.float32(-3.33332819422e-1)
    small = x + x * z * p
    big = np.float32(1.0) - np.float32(2.0) / (exp32(np.float32(2.0) * a) + np.float32(1.0))
    if x < np.float32(0.0):
        big = -big
    return small if a < np.float32(0.625) else big


def ftanh(x):
    raise NotImplementedError("ftanh() is only defined inside compiled kernels")


@overload(ftanh)
def _ftanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


def flog(x):
    raise NotImplementedError("flog() is only defined inside compiled kernels")


@overload(flog)
def _flog(x):
    # once per row, not per element: the library log is fine
    if x == types.float32:
        return lambda x: np.float32(math.log(x))
    return lambda x: math.log(x)
