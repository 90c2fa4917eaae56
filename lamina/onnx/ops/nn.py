"""ONNX neural-network operators on Lamina ops: Gemm, MatMul, Einsum, Conv, ConvTranspose,
pooling, batch/layer/instance normalisation, Softmax, LogSoftmax, Dropout.

ONNX allows asymmetric padding and ``auto_pad``; Lamina's convolutions and pools take one
symmetric padding, so uneven or large paddings are applied as an explicit pad of the input
(or a crop of the output, for ConvTranspose) around an unpadded Lamina op.
"""
from __future__ import annotations

import math

import numpy as np

import lamina
import lamina.nn.functional as F
from lamina.ops.conv import conv as _conv_nd, conv_transpose as _conv_transpose_nd
from lamina.ops.pool import max_pool as _max_pool_nd

from . import onnx_op
from ._util import axis, check_size, fail, host, is_float, raw, scalar, wrap

# ---------------------------------------------------------------- products


def _matmul(a, b):
    out = lamina.matmul(a, b)
    # Lamina multiplies bfloat16 in float32 and returns float32; ONNX keeps the input type
    return out.to(a.dtype) if out.dtype != a.dtype and is_float(a) else out


@onnx_op("MatMul")
def matmul(node, a, b):
    return _matmul(a, b)


@onnx_op("Gemm")
def gemm(node, a, b, c=None):
    if node.attr("transA", 0):
        a = a.mT if a.ndim == 2 else a
    if node.attr("transB", 0):
        b = b.mT if b.ndim == 2 else b
    y = _matmul(a, b)
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@onnx_op("Einsum")
def einsum(node, *xs):
    return einsum_tensors(node, node.attr("equation"), xs)


def einsum_tensors(node, equation, xs):
    """einsum from Lamina ops: take repeated-letter diagonals, align every operand on one letter
    order by broadcasting, multiply, sum the letters the output drops and order the rest."""
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(xs):
        fail(node, f"equation {equation!r} names {len(terms)} operands, got {len(xs)}")
    used = set(eq) - set(",->.")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell_n = max((x.ndim - len(t.replace("...", "")) for t, x in zip(terms, xs) if "..." in t), default=0)
    ell = "".join(spare[:ell_n])
    ops, subs = [], []
    for t, x in zip(terms, xs):
        if "..." in t:
            k = x.ndim - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_n - k:] if k else "")
        if len(t) != x.ndim:
            fail(node, f"term {t!r} of {equation!r} does not fit operand shape {x.shape}")
        # repeated letters: keep the diagonal (lamina.diagonal puts it last)
        while len(set(t)) != len(t):
            c = next(c for c in t if t.count(c) > 1)
            i = t.index(c)
            j = t.index(c, i + 1)
            x = lamina.ops.diagonal(x, 0, i, j)
            t = t[:i] + t[i + 1:j] + t[j + 1:] + c
        ops.append(x)
        subs.append(t)
    if "->" not in eq:
        rhs = ell + "".join(sorted(c for c in set("".join(subs)) - set(ell) if "".join(subs).count(c) == 1))
    else:
        rhs = rhs.replace("...", ell)
    # letters only one operand has and the output drops are summed away first
    for k, (t, x) in enumerate(zip(subs, ops)):
        others = "".join(subs[:k] + subs[k + 1:]) + rhs
        drop = tuple(i for i, c in enumerate(t) if c not in others)
        if drop:
            ops[k] = lamina.sum(x, drop)
            subs[k] = "".join(c for c in t if c in others)
    # then operands are contracted pairwise, left to right, each contraction one batched matmul
    x, t = ops[0], subs[0]
    for k in range(1, len(ops)):
        later = "".join(subs[k + 1:]) + rhs
        x, t = _contract(x, t, ops[k], subs[k], later)
    extra = tuple(i for i, c in enumerate(t) if c not in rhs)
    if extra:
        x = lamina.sum(x, extra)
        t = "".join(c for c in t if c in rhs)
    if t != rhs:
        x = lamina.permute(x, tuple(t.index(c) for c in rhs))
    return x


def _contract(a, ta, b, tb, later):
    """``a`` (letters ``ta``) times ``b`` (``tb``), summing the shared letters that ``later`` (the
    rest of the equation) does not need: a batched matmul over (batch, left, sum) x (batch, sum,
    right). Size-1 letters broadcast."""
    shared = [c for c in ta if c in tb]
    batch = [c for c in shared if c in later]
    summed = [c for c in shared if c not in later]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]
    size = {c: s for c, s in zip(ta, a.shape)}
    for c, s in zip(tb, b.shape):
        size[c] = max(size.get(c, 1), s)

    def arrange(x, t, order):
        if len(t) > 1 and list(t) != order:
            x = lamina.permute(x, tuple(t.index(c) for c in order))
        return lamina.broadcast_to(x, tuple(size[c] for c in order)) if order else x
    a2 = arrange(a, ta, batch + left + summed)
    b2 = arrange(b, tb, batch + summed + right)
    nb = [size[c] for c in batch]
    nl, ns, nr = (math.prod(size[c] for c in g) for g in (left, summed, right))
    y = _matmul(lamina.reshape(a2, tuple(nb) + (nl, ns)), lamina.reshape(b2, tuple(nb) + (ns, nr)))
    y = lamina.reshape(y, tuple(nb) + tuple(size[c] for c in left + right))
    return y, "".join(batch + left + right)


# ---------------------------------------------------------------- convolution


def _auto_pads(node, spatial, kernel, strides, dilations):
    """(begin, end) pads per spatial dim from ``pads`` or ``auto_pad``."""
    d = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, dl in zip(spatial, kernel, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * dl + 1 - n, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin, end
    if auto == "VALID":
        return [0] * d, [0] * d
    pads = node.attr("pads") or [0] * (2 * d)
    if len(pads) != 2 * d:
        fail(node, f"pads {pads} must hold 2 values per spatial dim ({d})")
    return list(pads[:d]), list(pads[d:])


def _pad_spatial(x, begin, end, value=0.0, node=None):
    if not any(begin) and not any(end):
        return x
    if node is not None:
        check_size(node, list(x.shape[:2]) + [s + b + e for s, b, e in zip(x.shape[2:], begin, end)],
                   x.dtype.itemsize)
    widths = []
    for b, e in zip(reversed(begin), reversed(end)):
        widths += [b, e]
    return lamina.pad(x, widths, value=value)


def _geometry(node, weight_kernel):
    kernel = list(node.attr("kernel_shape") or weight_kernel)
    d = len(kernel)
    strides = list(node.attr("strides") or [1] * d)
    dilations = list(node.attr("dilations") or [1] * d)
    return kernel, strides, dilations, d


@onnx_op("Conv")
def conv(node, x, w, b=None):
    kernel, strides, dilations, d = _geometry(node, w.shape[2:])
    if x.ndim != d + 2:
        fail(node, f"input of shape {x.shape} does not fit a {d}-d kernel {tuple(w.shape)}")
    begin, end = _auto_pads(node, x.shape[2:], kernel, strides, dilations)
    if begin == end:
        pad = begin
    else:
        x, pad = _pad_spatial(x, begin, end, node=node), [0] * d
    group = node.attr("group", 1)
    return _conv_nd(x, w, b, tuple(strides), tuple(pad), tuple(dilations), group, d=d, opname=f"Conv{d}d")


@onnx_op("ConvTranspose")
def conv_transpose(node, x, w, b=None):
    kernel, strides, dilations, d = _geometry(node, w.shape[2:])
    group = node.attr("group", 1)
    out_pad = list(node.attr("output_padding") or [0] * d)
    spatial = x.shape[2:]
    full = [(n - 1) * s + (k - 1) * dl + 1 for n, s, k, dl in zip(spatial, strides, kernel, dilations)]
    out_shape = node.attr("output_shape")
    auto = node.attr("auto_pad", "NOTSET")
    if out_shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [n * s for n, s in zip(spatial, strides)]
    if out_shape is not None:
        out_shape = list(out_shape)[-d:]
        begin, end = [], []
        for f, op_, o in zip(full, out_pad, out_shape):
            total = f + op_ - o
            if auto == "SAME_UPPER":
                begin.append(total // 2)
            else:
                begin.append(total - total // 2)
            end.append(total - begin[-1])
    else:
        begin, end = _auto_pads(node, spatial, kernel, strides, dilations) if auto == "NOTSET" else ([0] * d, [0] * d)
    y = _conv_transpose_nd(x, w, None, tuple(strides), 0, 0, group, tuple(dilations), d=d,
                           opname=f"ConvTranspose{d}d")
    # output_padding and negative pads extend the end, positive pads crop
    grow_b = [max(-p, 0) for p in begin]
    grow_e = [max(op_ - p, 0) for op_, p in zip(out_pad, end)]
    y = _pad_spatial(y, grow_b, grow_e, node=node)
    index = [slice(None), slice(None)]
    for f, p, op_, e, gb in zip(full, begin, out_pad, end, grow_b):
        index.append(slice(p + gb, f + op_ - e + gb))
    y = y[tuple(index)]
    if b is not None:
        y = y + lamina.reshape(b, (1, -1) + (1,) * d)
    return y


# ---------------------------------------------------------------- pooling


def _pool_plan(node, x):
    kernel = list(node.attr("kernel_shape"))
    d = len(kernel)
    strides = list(node.attr("strides") or [1] * d)
    dilations = list(node.attr("dilations") or [1] * d)
    spatial = list(x.shape[2:])
    if len(spatial) != d:
        fail(node, f"input of shape {x.shape} does not fit kernel_shape {kernel}")
    begin, end = _auto_pads(node, spatial, kernel, strides, dilations)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    out, extra = [], []
    for n, k, s, dl, b, e in zip(spatial, kernel, strides, dilations, begin, end):
        eff = (k - 1) * dl + 1
        if node.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)
        else:
            span = n + b + e - eff
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= n + b:
                o -= 1  # the last window must start inside the input or its left padding
        if o < 1:
            fail(node, f"kernel {kernel} (dilations {dilations}) is larger than the padded input {spatial}")
        out.append(o)
        extra.append(max((o - 1) * s + eff - (n + b + e), 0))
    return kernel, strides, dilations, begin, end, extra, out, d


@onnx_op("MaxPool")
def max_pool(node, x):
    kernel, strides, dilations, begin, end, extra, out, d = _pool_plan(node, x)
    low = -np.inf if is_float(x) else np.iinfo(x.dtype).min
    ends = [e + x_ for e, x_ in zip(end, extra)]
    if is_float(x):
        xp_ = _pad_spatial(x, begin, ends, value=float(low), node=node)
    else:
        check_size(node, list(x.shape[:2]) + [s + b + e for s, b, e in zip(x.shape[2:], begin, ends)],
                   x.dtype.itemsize)
        xp_ = raw(lambda xp, a: xp.pad(a, [(0, 0), (0, 0)] + list(zip(begin, ends)), constant_values=low), x)
    want_idx = len(node.outputs) > 1 and node.outputs[1]
    res = _max_pool_nd(xp_, tuple(kernel), tuple(strides), 0, tuple(dilations), False, bool(want_idx), d=d,
                       opname=f"MaxPool{d}d")
    if not want_idx:
        return res
    y, idx = res
    padded = xp_.shape[2:]
    spatial = x.shape[2:]
    order = node.attr("storage_order", 0)

    def to_onnx(i):
        coords = np.unravel_index(i, padded)
        coords = [c - b for c, b in zip(coords, begin)]
        flat = np.ravel_multi_index(coords, spatial, order="F" if order else "C")
        nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * d)
        return (flat + nc * math.prod(spatial)).astype(np.int64)
    return y, wrap(to_onnx(host(idx)), x)


@onnx_op("AveragePool")
def average_pool(node, x):
    kernel, strides, dilations, begin, end, extra, out, d = _pool_plan(node, x)
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    planes = lamina.reshape(x, (n * c, 1) + tuple(spatial))
    ends = [e + x_ for e, x_ in zip(end, extra)]
    planes = _pad_spatial(planes, begin, ends, node=node)
    ones = wrap(np.ones((1, 1) + tuple(kernel), x.dtype), x)
    y = _conv_nd(planes, ones, None, tuple(strides), (0,) * d, tuple(dilations), 1, d=d, opname="AveragePool")
    # how many elements each window averages: padding counts only with count_include_pad,
    # the extra margin of ceil_mode never
    mask = np.zeros([b + s + e for b, s, e in zip(begin, spatial, ends)], np.float64)
    incl = node.attr("count_include_pad", 0)
    lo = [0 if incl else b for b in begin]
    hi = [b + s + (e if incl else 0) for b, s, e in zip(begin, spatial, end)]
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    counts = _conv_nd(wrap(mask[None, None]), wrap(np.ones((1, 1) + tuple(kernel))), None, tuple(strides),
                      (0,) * d, tuple(dilations), 1, d=d, opname="AveragePool")
    inv = wrap((1.0 / np.maximum(host(counts), 1.0)).astype(x.dtype), x)
    return lamina.reshape(y * inv, (n, c) + tuple(y.shape[2:]))


@onnx_op("GlobalAveragePool")
def global_average_pool(node, x):
    return lamina.mean(x, tuple(range(2, x.ndim)), True)


@onnx_op("GlobalMaxPool")
def global_max_pool(node, x):
    return lamina.amax(x, tuple(range(2, x.ndim)), True)


# ---------------------------------------------------------------- normalisation


def _channel(t, ndim):
    return lamina.reshape(t, (1, -1) + (1,) * (ndim - 2))


@onnx_op("BatchNormalization")
def batch_norm(node, x, scale, b, mean, var):
    eps = node.attr("epsilon", 1e-5)
    momentum = node.attr("momentum", 0.9)
    dims = (0,) + tuple(range(2, x.ndim))
    if node.opset >= 14 and node.attr("training_mode", 0):
        bm = lamina.mean(x, dims, True)
        centered = x - bm
        bv = lamina.mean(centered * centered, dims, True)
        y = centered * lamina.rsqrt(bv + eps) * _channel(scale, x.ndim) + _channel(b, x.ndim)
        c = x.shape[1]
        rm = mean * momentum + lamina.reshape(bm, (c,)) * (1 - momentum)
        rv = var * momentum + lamina.reshape(bv, (c,)) * (1 - momentum)
        return (y, rm, rv)[:max(len(node.outputs), 1)]
    if node.training:
        return F.batch_norm(x, mean, var, scale, b, training=True, momentum=1 - momentum, eps=eps)
    return (x - _channel(mean, x.ndim)) * (_channel(scale, x.ndim) * lamina.rsqrt(_channel(var, x.ndim) + eps)) \
        + _channel(b, x.ndim)


@onnx_op("InstanceNormalization")
def instance_norm(node, x, scale, b):
    eps = node.attr("epsilon", 1e-5)
    dims = tuple(range(2, x.ndim))
    m = lamina.mean(x, dims, True)
    c = x - m
    v = lamina.mean(c * c, dims, True)
    return c * lamina.rsqrt(v + eps) * _channel(scale, x.ndim) + _channel(b, x.ndim)


@onnx_op("LayerNormalization")
def layer_norm(node, x, scale, b=None):
    a = axis(node, node.attr("axis", -1), x.ndim)
    eps = node.attr("epsilon", 1e-5)
    dims = tuple(range(a, x.ndim))
    xs = x.to(lamina.float32) if node.attr("stash_type", 1) == 1 and x.dtype in (np.float16,) else x
    mean = lamina.mean(xs, dims, True)
    centered = xs - mean
    inv = lamina.rsqrt(lamina.mean(centered * centered, dims, True) + eps)
    y = centered * inv
    if y.dtype != x.dtype:
        y = y.to(x.dtype)
    y = y * scale
    if b is not None:
        y = y + b
    return (y, mean, inv)[:max(len(node.outputs), 1)]


@onnx_op("Softmax", "LogSoftmax")
def softmax(node, x):
    fn = F.softmax if node.op_type == "Softmax" else F.log_softmax
    if node.opset < 13:
        a = axis(node, node.attr("axis", 1), x.ndim) if x.ndim else 0
        flat = lamina.reshape(x, (math.prod(x.shape[:a]), math.prod(x.shape[a:])))
        return lamina.reshape(fn(flat, 1), x.shape)
    return fn(x, axis(node, node.attr("axis", -1), x.ndim))


@onnx_op("Dropout")
def dropout(node, x, ratio=None, training_mode=None):
    if node.opset < 12:
        p = node.attr("ratio", 0.5)
        train = node.training
    else:
        p = 0.5 if ratio is None else float(scalar(ratio))
        train = bool(scalar(training_mode)) if training_mode is not None else node.training
    want_mask = len(node.outputs) > 1 and bool(node.outputs[1])
    if not train or p == 0.0:
        y, keep = x, np.ones(x.shape, bool)
    else:
        seed = node.attr("seed")
        # with a seed, the draws of the ONNX reference implementation (NumPy's RandomState), so a
        # seeded graph gives the same mask here as there; without one, Lamina's generator
        draws = np.random.RandomState(seed).uniform(0, 1.0, x.shape) if seed is not None else \
            host(lamina.rand(*x.shape))
        keep = draws >= p
        y = x * wrap((keep / (1.0 - p)).astype(x.dtype), x) if p < 1.0 else x * 0
    return (y, wrap(keep, x)) if want_mask else y


@onnx_op("RMSNormalization")
def rms_norm(node, x, scale):
    a = axis(node, node.attr("axis", -1), x.ndim)
    dims = tuple(range(a, x.ndim))
    xs = x.to(lamina.float32) if node.attr("stash_type", 1) == 1 and x.dtype == np.float16 else x
    y = xs * lamina.rsqrt(lamina.mean(xs * xs, dims, True) + node.attr("epsilon", 1e-5))
    return (y.to(x.dtype) if y.dtype != x.dtype else y) * scale


@onnx_op("GroupNormalization")
def group_norm(node, x, scale, b):
    g = node.attr("num_groups")
    n, c = x.shape[:2]
    if not g or c % g:
        fail(node, f"num_groups={g} must divide the {c} channels of input shape {x.shape}")
    groups = lamina.reshape(x, (n, g, -1))
    mean = lamina.mean(groups, 2, True)
    centered = groups - mean
    y = centered * lamina.rsqrt(lamina.mean(centered * centered, 2, True) + node.attr("epsilon", 1e-5))
    if node.opset < 21 and scale.shape[0] == g != c:  # opset 18: one scale and bias per group
        y = y * lamina.reshape(scale, (1, g, 1)) + lamina.reshape(b, (1, g, 1))
        return lamina.reshape(y, x.shape)
    return lamina.reshape(y, x.shape) * _channel(scale, x.ndim) + _channel(b, x.ndim)


@onnx_op("MeanVarianceNormalization")
def mean_variance_norm(node, x):
    dims = tuple(node.attr("axes") or (0, 2, 3))
    mean = lamina.mean(x, dims, True)
    std = lamina.sqrt(lamina.relu(lamina.mean(x * x, dims, True) - mean * mean))
    return (x - mean) / (std + 1e-9)


@onnx_op("LpNormalization")
def lp_norm(node, x):
    d = axis(node, node.attr("axis", -1), x.ndim)
    p = node.attr("p", 2)
    if p not in (1, 2):
        fail(node, f"p must be 1 or 2, got {p}")
    norm = lamina.sum(lamina.abs(x), d, True) if p == 1 else lamina.sqrt(lamina.sum(x * x, d, True))
    zero = norm == 0
    return lamina.where(zero, x * 0, x / lamina.where(zero, norm + 1, norm))


@onnx_op("LRN")
def lrn(node, x):
    size = node.attr("size")
    alpha, beta, bias = node.attr("alpha", 1e-4), node.attr("beta", 0.75), node.attr("bias", 1.0)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = x * x
    c = x.shape[1]
    widths = [0, 0] * (x.ndim - 2) + [lo, hi]
    padded = lamina.pad(sq, widths)
    total = None
    for k in range(size):
        part = padded[:, k:k + c]
        total = part if total is None else total + part
    return x / lamina.pow(total * (alpha / size) + bias, beta)


@onnx_op("NegativeLogLikelihoodLoss")
def nll_loss(node, x, target, weight=None):
    return _nll(node, x, target, weight)


def _nll(node, logp, target, weight):
    """ONNX NegativeLogLikelihoodLoss on Lamina ops: -logp[n, target[n, ...], ...] weighted, with
    ``ignore_index`` and the none/sum/mean reductions (mean divides by the summed weights)."""
    ignore = node.attr("ignore_index")
    reduction = node.attr("reduction", "mean")
    t = host(target).astype(np.int64)
    valid = np.ones(t.shape, bool) if ignore is None else t != ignore
    safe = np.where(valid, t, 0)
    picked = lamina.gather(logp, 1, wrap(safe[:, None], logp))
    picked = lamina.reshape(picked, t.shape)
    w = np.where(valid, 1.0, 0.0).astype(logp.dtype)
    wt = wrap(w, logp)
    if weight is not None:
        wt = wt * lamina.reshape(lamina.index_select(weight, 0, wrap(safe.reshape(-1), logp)), t.shape)
    loss = -picked * wt
    if reduction == "none":
        return loss
    if reduction == "sum":
        return lamina.sum(loss)
    if reduction != "mean":
        fail(node, f"unknown reduction {reduction!r}")
    return lamina.sum(loss) / lamina.sum(wt)


@onnx_op("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy(node, scores, labels, weight=None):
    logp = F.log_softmax(scores, 1)
    loss = _nll(node, logp, labels, weight)
    return (loss, logp)[:max(len(node.outputs), 1)]
