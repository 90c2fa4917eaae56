"""ONNX reductions (ReduceSum, ReduceMean, ReduceMax, ..., ReduceLogSumExp) on Lamina ops.

The axes moved from an attribute to an optional input in opset 13 for ReduceSum and in opset 18
for the others; an empty axes list reduces everything unless ``noop_with_empty_axes``.
"""
from __future__ import annotations

import numpy as np

import lamina

from . import onnx_op
from ._util import axes, ints, raw

_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _dims(node, x, ax):
    if node.opset < _AXES_INPUT_SINCE.get(node.op_type, 18):
        vals = node.attr("axes")
    else:
        vals = None if ax is None else ints(ax)
    if not vals:
        if node.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted(set(axes(node, vals, x.ndim))))


def _empty_result(node, x, dims, keep, fill):
    shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape)) if keep else \
        tuple(s for i, s in enumerate(x.shape) if i not in dims)
    return raw(lambda xp, a: xp.full(shape, fill, dtype=a.dtype), x)


_EMPTY = {"ReduceSum": 0, "ReduceSumSquare": 0, "ReduceL1": 0, "ReduceL2": 0, "ReduceProd": 1,
          "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceLogSumExp": -np.inf, "ReduceLogSum": -np.inf,
          "ReduceMean": np.nan}


@onnx_op(*_EMPTY)
def reduce(node, x, ax=None):
    dims = _dims(node, x, ax)
    if dims is None:
        return x
    keep = bool(node.attr("keepdims", 1))
    op = node.op_type
    if x.numel() == 0:
        fill = _EMPTY[op]
        if op in ("ReduceMax", "ReduceMin") and x.dtype.kind in "iub":
            info = np.iinfo(x.dtype) if x.dtype.kind in "iu" else None
            fill = (info.min if op == "ReduceMax" else info.max) if info else op == "ReduceMin"
        return _empty_result(node, x, dims, keep, fill)
    if x.ndim == 0:
        dims = None
    if op in ("ReduceMax", "ReduceMin") and x.dtype.kind == "b":
        fn = "any" if op == "ReduceMax" else "all"
        return raw(lambda xp, a: getattr(xp, fn)(a, axis=dims, keepdims=keep), x)
    if op == "ReduceSum":
        return lamina.sum(x, dims, keep)
    if op == "ReduceMean":
        return lamina.mean(x, dims, keep)
    if op == "ReduceMax":
        return lamina.amax(x, dims, keep)
    if op == "ReduceMin":
        return lamina.amin(x, dims, keep)
    if op == "ReduceProd":
        return lamina.prod(x, dims, keep)
    if op == "ReduceSumSquare":
        return lamina.sum(x * x, dims, keep)
    if op == "ReduceL1":
        return lamina.sum(lamina.abs(x), dims, keep)
    if op == "ReduceL2":
        return lamina.sqrt(lamina.sum(x * x, dims, keep))
    if op == "ReduceLogSum":
        return lamina.log(lamina.sum(x, dims, keep))
    return lamina.logsumexp(x, dims if dims is not None else tuple(range(x.ndim)), keep)
