"""Matrix product with batching and broadcasting, including the 1-D cases of ``numpy.matmul``."""
from __future__ import annotations

import math

import numpy as np

from .. import kernels as _kernels
from ..tensor import Tensor
from .base import Op, promote, unbroadcast
from ..amp.autocast_mode import autocast_op


def _as_input_dtype(y, a):
    """bfloat16 products come back from NumPy in float32 (accumulated there, as PyTorch does):
    round them once to the inputs' dtype."""
    return y.astype(a.dtype) if y.dtype != a.dtype else y


_PRODUCT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _product(a, b, bias=None):
    """``a @ b (+ bias)``, on the kernel threads where ``lamina.kernels.matmul`` takes the arrays
    (the bias then added to each block of rows as it is computed)."""
    y = _kernels.matmul(a, b, bias)
    if y is None:
        y = a @ b
        if bias is not None:
            y += bias
    return y


class MatMul(Op):
    name = "matmul"

    def forward(self, a, b):
        if b.ndim == 2 and a.ndim > 2:  # one 2-D GEMM instead of one per leading index
            y = _product(a.reshape(math.prod(a.shape[:-1]), a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[1],))
        else:
            y = _product(a, b)
        return y if y.dtype is a.dtype else _as_input_dtype(y, a)

    def backward(self, g, a, b):
        na, nb = self.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if na else None), (g * a if nb else None)
        if b.ndim == 2 and a.ndim >= 2:  # a weight-like right operand: fold a's batch dims
            ga = g @ b.mT if na else None
            rows = math.prod(a.shape[:-1])  # not -1: ambiguous when a dimension is 0
            gb = a.reshape(rows, a.shape[-1]).mT @ g.reshape(rows, g.shape[-1]) if nb else None
            return ga, gb
        a2 = a.unsqueeze(0) if a.ndim == 1 else a
        b2 = b.unsqueeze(-1) if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = g2.unsqueeze(-2)
        if b.ndim == 1:
            g2 = g2.unsqueeze(-1)
        ga = gb = None
        if na:
            ga = unbroadcast(g2 @ b2.mT, a2.shape).reshape(a.shape)
        if nb:
            gb = unbroadcast(a2.mT @ g2, b2.shape).reshape(b.shape)
        return ga, gb

    def onnx(self, g, a, b):
        return g.op("MatMul", g.cast_inputs([a, b]))


@autocast_op("matmul")
def matmul(a, b):
    """``a @ b``: 1-D operands are vectors; leading dims broadcast as batch dims. Both operands
    must have one dtype (PyTorch does not promote here either)."""
    if a.__class__ is Tensor and b.__class__ is Tensor:  # nothing to promote: only check the dtypes
        ad, bd = a.array, b.array
        if ad.dtype is not bd.dtype and ad.dtype != bd.dtype:
            raise TypeError(f"matmul: expected both operands to have the same dtype, got {a.dtype} (shape "
                            f"{a.shape}) and {b.dtype} (shape {b.shape}); convert one with .to(dtype)")
    else:
        a, b = promote(a, b, "matmul", broadcast=False)
        ad, bd = a.array, b.array
    if ad.ndim == 0 or bd.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
    k_a = ad.shape[-1]
    k_b = bd.shape[0] if bd.ndim == 1 else bd.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({k_a} != {k_b})")
    if (ad.ndim > 2 or bd.ndim > 2) and ad.shape[:-2] != bd.shape[:-2]:
        try:
            np.broadcast_shapes(ad.shape[:-2], bd.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dims of shapes {a.shape} and {b.shape} do not broadcast") from None
    if ad.dtype.kind not in "fiuV":
        raise TypeError(f"matmul: unsupported dtype {a.dtype}")
    return MatMul()(a, b)


mm = bmm = matmul


class Linear(Op):
    """``x @ w.T + b`` in one op (the bias added in place into the product)."""

    def forward(self, x, w, b=None):
        # one 2-D GEMM over all leading dims (a stacked matmul would call BLAS once per matrix)
        y = _product(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) if x.ndim > 2 else x, w.T, b)
        return _as_input_dtype(y.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim > 2 else y, x)

    def backward(self, g, x, w, b=None):
        needs = self.needs_input_grad
        gx = g @ w if needs[0] else None
        gw = gb = None
        if needs[1]:
            # sum over every batch dim: (out, batch) @ (batch, in)
            gw = g.reshape(-1, g.shape[-1]).mT @ x.reshape(-1, x.shape[-1])
        if b is not None and needs[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(dim=0)
        return (gx, gw) if b is None else (gx, gw, gb)

    def backward_arrays(self, g, x, w, b=None):
        if x.dtype not in _PRODUCT_DTYPES:  # bfloat16/float16: the Tensor ops' rounding rules
            return NotImplemented
        needs = self.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        both = _kernels.matmuls([(g2, w), (g2.T, x2)]) if needs[0] and needs[1] else None
        if both is not None:  # the two products at once, one per thread
            gx, gw = both[0].reshape(x.shape), both[1]
        else:
            gx = _product(g2, w).reshape(x.shape) if needs[0] else None
            gw = _product(g2.T, x2) if needs[1] else None
        if b is None:
            return gx, gw
        return gx, gw, (g2.sum(axis=0) if needs[2] else None)

    def onnx(self, g, x, w, b=None):
        if len(g.in_shape(0)) == 2:
            return g.op("Gemm", [x, w] + ([b] if b is not None else []), transB=1)
        y = g.op("MatMul", [x, g.op("Transpose", [w], perm=[1, 0])])
        return y if b is None else g.op("Add", [y, b])


@autocast_op("linear")
def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for weight (out_features, in_features) and any leading batch dims."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not end in in_features={weight.shape[1]} "
                         f"(weight shape {weight.shape})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    x, weight = promote(x, weight, "linear", broadcast=False)
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)
