"""ONNX operators that create, reshape, cut, join, index and reorder tensors.

Shapes, indices and counts are small integer tensors read on the host; the data paths (Reshape,
Slice, Gather, Concat, Pad, ...) are Lamina ops, so gradients flow through them.
"""
from __future__ import annotations

import math

import numpy as np

import lamina

from . import onnx_op
from ._util import axes, axis, check_size, fail, host, ints, is_float, raw, scalar, wrap

# ---------------------------------------------------------------- constants and shapes


@onnx_op("Constant")
def constant(node):
    a = node.attrs
    if "value" in a:
        return wrap(a["value"])
    if "value_float" in a:
        return wrap(np.array(a["value_float"], np.float32))
    if "value_floats" in a:
        return wrap(np.array(a["value_floats"], np.float32))
    if "value_int" in a:
        return wrap(np.array(a["value_int"], np.int64))
    if "value_ints" in a:
        return wrap(np.array(a["value_ints"], np.int64))
    fail(node, f"only tensor, float(s) and int(s) values are supported, got attributes {sorted(a)}")


@onnx_op("ConstantOfShape")
def constant_of_shape(node, shape):
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else value
    dims = check_size(node, ints(shape), value.dtype.itemsize)
    return wrap(np.full(dims, value.reshape(-1)[0], dtype=value.dtype), shape)


@onnx_op("Shape")
def shape_(node, x):
    dims = list(x.shape)
    start, end = node.attr("start", 0), node.attr("end", None)
    n = len(dims)
    start = min(max(start + n if start < 0 else start, 0), n)
    end = n if end is None else min(max(end + n if end < 0 else end, 0), n)
    return wrap(np.array(dims[start:end], np.int64), x)


@onnx_op("Size")
def size_(node, x):
    return wrap(np.array(x.numel(), np.int64), x)


@onnx_op("Range")
def range_(node, start, limit, delta):
    s, l, d = scalar(start), scalar(limit), scalar(delta)
    if d == 0:
        fail(node, "delta must not be zero")
    n = max(int(math.ceil((l - s) / d)), 0)
    check_size(node, [n], start.dtype.itemsize)
    dt = start.dtype
    return wrap((s + np.arange(n, dtype=np.float64 if dt.kind == "f" else np.int64) * d).astype(dt), start)


@onnx_op("Reshape")
def reshape(node, x, shape=None):
    dims = node.attr("shape") if node.opset < 5 else ints(shape)
    dims = list(dims)
    if not node.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1:
        fail(node, f"shape {dims} has more than one -1")
    return lamina.reshape(x, tuple(dims))


@onnx_op("Flatten")
def flatten(node, x):
    a = node.attr("axis", 1)
    a = a + x.ndim if a < 0 else a
    if not 0 <= a <= x.ndim:
        fail(node, f"axis {node.attr('axis')} is out of range for shape {x.shape}")
    return lamina.reshape(x, (math.prod(x.shape[:a]), math.prod(x.shape[a:])))


@onnx_op("Squeeze")
def squeeze(node, x, ax=None):
    vals = node.attr("axes") if node.opset < 13 else (None if ax is None else ints(ax))
    if vals is None:
        dims = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        dims = axes(node, vals, x.ndim)
        bad = [d for d in dims if x.shape[d] != 1]
        if bad:
            fail(node, f"cannot squeeze axes {bad} of size != 1 in shape {x.shape}")
    return lamina.reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in dims))


@onnx_op("Unsqueeze")
def unsqueeze(node, x, ax=None):
    vals = node.attr("axes") if node.opset < 13 else ints(ax)
    n = x.ndim + len(vals)
    dims = sorted(axes(node, vals, n))
    shape = list(x.shape)
    for d in dims:
        shape.insert(d, 1)
    return lamina.reshape(x, tuple(shape))


@onnx_op("Transpose")
def transpose(node, x):
    perm = node.attr("perm") or list(range(x.ndim))[::-1]
    return lamina.permute(x, tuple(perm)) if x.ndim else x


@onnx_op("Concat")
def concat(node, *xs):
    xs = [x for x in xs if x is not None]
    d = axis(node, node.attr("axis", 0), xs[0].ndim)
    return lamina.cat(xs, d)


@onnx_op("Split")
def split(node, x, sizes=None, num=None):
    d = axis(node, node.attr("axis", 0), x.ndim)
    n_out = len(node.outputs)
    if node.opset < 13:
        parts = node.attr("split")
    else:
        parts = None if sizes is None else ints(sizes)
    if not parts:
        count = node.attr("num_outputs", n_out)
        size = x.shape[d]
        chunk = -(-size // count)
        parts = [min(chunk, size - i * chunk) for i in range(count)]
    if sum(parts) != x.shape[d] or len(parts) != n_out:
        fail(node, f"split sizes {list(parts)} do not cover dim {d} of shape {x.shape} in {n_out} outputs")
    return tuple(lamina.split(x, list(parts), d))


@onnx_op("Slice")
def slice_(node, x, starts=None, ends=None, ax=None, steps=None):
    if node.opset < 10:
        st, en, av, sp = node.attr("starts"), node.attr("ends"), node.attr("axes"), None
    else:
        st, en = ints(starts), ints(ends)
        av = None if ax is None else ints(ax)
        sp = None if steps is None else ints(steps)
    av = list(range(len(st))) if av is None else axes(node, av, x.ndim)
    sp = [1] * len(st) if sp is None else sp
    index = [slice(None)] * x.ndim
    for a, s, e, k in zip(av, st, en, sp):
        if k == 0:
            fail(node, "steps must not be zero")
        n = x.shape[a]
        s, e, k = slice(s, e, k).indices(n)  # Python's clamping is the ONNX rule
        if k < 0 and e < 0:
            e = None
        index[a] = slice(s, e, k)
    return x[tuple(index)]


@onnx_op("Gather")
def gather(node, x, idx):
    d = axis(node, node.attr("axis", 0), x.ndim)
    n = x.shape[d]
    i = raw(lambda xp, a: xp.where(a < 0, a + n, a).astype(np.int64), idx)
    if host(i).size and (host(i).min() < 0 or host(i).max() >= n):
        fail(node, f"indices out of range [-{n}, {n}) for axis {d} of shape {x.shape}")
    flat = lamina.index_select(x, d, lamina.reshape(i, (-1,)))
    return lamina.reshape(flat, x.shape[:d] + tuple(idx.shape) + x.shape[d + 1:])


@onnx_op("GatherElements")
def gather_elements(node, x, idx):
    d = axis(node, node.attr("axis", 0), x.ndim)
    n = x.shape[d]
    i = raw(lambda xp, a: xp.where(a < 0, a + n, a).astype(np.int64), idx)
    return lamina.gather(x, d, i)


@onnx_op("GatherND")
def gather_nd(node, x, idx):
    b = node.attr("batch_dims", 0)
    ind = host(idx).astype(np.int64)
    k = ind.shape[-1]
    batch = x.shape[:b]
    nb = math.prod(batch)
    xs = lamina.reshape(x, (nb,) + x.shape[b:])
    ind = ind.reshape((nb, -1, k))
    rest = x.shape[b + k:]
    bi = np.repeat(np.arange(nb), ind.shape[1])
    cols = [bi] + [np.where(c < 0, c + x.shape[b + j], c) for j, c in enumerate(ind.reshape(-1, k).T)]
    out = xs[tuple(wrap(c, x) for c in cols)]
    return lamina.reshape(out, tuple(idx.shape[:-1]) + rest)


@onnx_op("ScatterElements", "Scatter")
def scatter_elements(node, x, idx, upd):
    d = axis(node, node.attr("axis", 0), x.ndim)
    n = x.shape[d]
    i = raw(lambda xp, a: xp.where(a < 0, a + n, a).astype(np.int64), idx)
    red = node.attr("reduction", "none")
    if red == "add" and is_float(x):
        return lamina.scatter_add(x, d, i, upd)
    if red == "none" and is_float(x):
        # x outside the written places plus the updates: differentiable in both
        written = raw(lambda xp, a, j: _put(xp, xp.zeros_like(a), j, xp.ones_like(a, shape=j.shape), d, "none"),
                      x, i)
        return x * (1 - written) + lamina.scatter_add(x * 0, d, i, upd)
    return raw(lambda xp, a, j, u: _put(xp, a.copy(), j, u, d, red), x, i, upd)


def _put(xp, out, idx, upd, d, red):
    grids = list(xp.indices(idx.shape, sparse=True))
    grids[d] = idx
    where = tuple(grids)
    if red == "none":
        out[where] = upd
    else:
        ufunc = {"add": xp.add, "mul": xp.multiply, "max": xp.maximum, "min": xp.minimum}[red]
        ufunc.at(out, tuple(xp.broadcast_to(g, idx.shape) for g in where), upd)
    return out


@onnx_op("Expand")
def expand(node, x, shape):
    target = ints(shape)
    out = list(np.broadcast_shapes(tuple(x.shape), tuple(max(s, 0) for s in target)))
    check_size(node, out, x.dtype.itemsize)
    if tuple(out) == tuple(x.shape):
        return x
    return lamina.broadcast_to(x, tuple(out))


@onnx_op("Tile")
def tile(node, x, repeats):
    reps = ints(repeats)
    check_size(node, [s * r for s, r in zip(x.shape, reps)], x.dtype.itemsize)
    return lamina.repeat(x, *reps) if x.ndim else x


@onnx_op("Pad")
def pad(node, x, pads=None, value=None, ax=None):
    if node.opset < 11:
        pv, cv, mode = node.attr("pads"), node.attr("value", 0.0), node.attr("mode", "constant")
        av = list(range(x.ndim))
    else:
        pv, mode = ints(pads), node.attr("mode", "constant")
        cv = 0 if value is None or value.numel() == 0 else scalar(value)
        av = list(range(x.ndim)) if ax is None else axes(node, ints(ax), x.ndim)
    k = len(av)
    if len(pv) != 2 * k:
        fail(node, f"pads {list(pv)} must hold 2 values per padded axis ({k} axes)")
    before, after = [0] * x.ndim, [0] * x.ndim
    for j, a in enumerate(av):
        before[a], after[a] = pv[j], pv[j + k]
    # negative pads crop
    if any(p < 0 for p in before + after):
        x = x[tuple(slice(-b if b < 0 else 0, x.shape[i] + a if a < 0 else None)
                    for i, (b, a) in enumerate(zip(before, after)))]
        before, after = [max(p, 0) for p in before], [max(p, 0) for p in after]
    widths = []
    for b, a in zip(reversed(before), reversed(after)):
        widths += [b, a]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if mode is None:
        fail(node, f"unknown mode {node.attr('mode')!r}")
    check_size(node, [s + b + a for s, b, a in zip(x.shape, before, after)], x.dtype.itemsize)
    if mode == "constant" and not is_float(x):
        return raw(lambda xp, arr: xp.pad(arr, list(zip(before, after)), constant_values=cv), x)
    if mode == "constant":
        return lamina.pad(x, widths, value=float(cv))
    return lamina.pad(x, widths, mode=mode)


@onnx_op("Trilu")
def trilu(node, x, k=None):
    diag = 0 if k is None else int(scalar(k))
    return lamina.triu(x, diag) if node.attr("upper", 1) else lamina.tril(x, diag)


@onnx_op("CumSum")
def cumsum(node, x, ax):
    d = axis(node, scalar(ax), x.ndim)
    y = lamina.flip(x, (d,)) if node.attr("reverse", 0) else x
    out = lamina.cumsum(y, d)
    if out.dtype != x.dtype:  # Lamina sums integers in int64, as PyTorch; ONNX keeps the type
        out = out.to(x.dtype)
    if node.attr("exclusive", 0):
        out = out - y
    return lamina.flip(out, (d,)) if node.attr("reverse", 0) else out


@onnx_op("TopK")
def topk(node, x, k=None):
    kk = node.attr("k") if node.opset < 10 else int(scalar(k))
    d = axis(node, node.attr("axis", -1), x.ndim)
    largest = bool(node.attr("largest", 1))
    n = x.shape[d]
    if not 0 <= kk <= n:
        fail(node, f"k={kk} is out of range for axis {d} of shape {x.shape}")

    # ONNX puts equal values in index order: a stable ascending sort does for smallest; for
    # largest, sort the reversed axis and reverse the order back
    def order(xp, a):
        if largest:
            o = n - 1 - xp.flip(xp.argsort(xp.flip(a, d), axis=d, kind="stable"), d)
        else:
            o = xp.argsort(a, axis=d, kind="stable")
        return xp.take(o, xp.arange(kk), axis=d).astype(np.int64)
    idx = raw(order, x)
    return lamina.gather(x, d, idx), idx


@onnx_op("ArgMax", "ArgMin")
def argmax(node, x):
    d = axis(node, node.attr("axis", 0), x.ndim)
    keep = bool(node.attr("keepdims", 1))
    last = bool(node.attr("select_last_index", 0))
    fn = "argmax" if node.op_type == "ArgMax" else "argmin"

    def run(xp, a):
        if last:
            r = a.shape[d] - 1 - getattr(xp, fn)(xp.flip(a, d), axis=d)
        else:
            r = getattr(xp, fn)(a, axis=d)
        r = r.astype(np.int64)
        return xp.expand_dims(r, d) if keep else r
    return raw(run, x)


@onnx_op("OneHot")
def one_hot(node, idx, depth, values):
    n = int(scalar(depth))
    d = node.attr("axis", -1)
    vals = host(values)
    out_nd = idx.ndim + 1
    d = axis(node, d, out_nd)
    check_size(node, list(idx.shape) + [n], vals.dtype.itemsize)

    def run(xp, i):
        i = xp.where(i < 0, i + n, i).astype(np.int64)
        hot = i[..., None] == xp.arange(n)
        out = xp.where(hot, vals[1], vals[0]).astype(vals.dtype)
        return xp.moveaxis(out, -1, d)
    return raw(run, idx)


@onnx_op("NonZero")
def nonzero(node, x):
    return raw(lambda xp, a: xp.stack(xp.nonzero(a)).astype(np.int64) if a.ndim else
               xp.zeros((0, int(bool(a))), np.int64), x)


@onnx_op("DepthToSpace")
def depth_to_space(node, x):
    b = node.attr("blocksize")
    n, c, h, w = x.shape
    if node.attr("mode", "DCR") == "DCR":
        y = lamina.permute(lamina.reshape(x, (n, b, b, c // (b * b), h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = lamina.permute(lamina.reshape(x, (n, c // (b * b), b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return lamina.reshape(y, (n, c // (b * b), h * b, w * b))


@onnx_op("SpaceToDepth")
def space_to_depth(node, x):
    b = node.attr("blocksize")
    n, c, h, w = x.shape
    perm = (0, 3, 5, 1, 2, 4) if node.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    y = lamina.permute(lamina.reshape(x, (n, c, h // b, b, w // b, b)), perm)
    return lamina.reshape(y, (n, c * b * b, h // b, w // b))


@onnx_op("EyeLike")
def eye_like(node, x):
    from ..proto import np_dtype
    dt = x.dtype if node.attr("dtype") is None else np_dtype(node.attr("dtype"), f"{node.where()} dtype")
    return wrap(np.eye(x.shape[0], x.shape[1], node.attr("k", 0), dtype=dt), x)


@onnx_op("ScatterND")
def scatter_nd(node, x, idx, upd):
    ind = host(idx).astype(np.int64)
    k = ind.shape[-1]
    ind = np.where(ind < 0, ind + np.array(x.shape[:k]), ind)
    red = node.attr("reduction", "none")
    cols = tuple(wrap(ind[..., j], x) for j in range(k))
    if is_float(x) and red in ("none", "add"):
        return lamina.ops.index_put(x, cols, upd, accumulate=red == "add")

    def run(xp, a, u):
        out = a.copy()
        where = tuple(ind[..., j] for j in range(k))
        if red == "none":
            out[where] = u
        else:
            {"add": xp.add, "mul": xp.multiply, "max": xp.maximum, "min": xp.minimum}[red].at(out, where, u)
        return out
    return raw(run, x, upd)


@onnx_op("Compress")
def compress(node, x, cond):
    keep = np.nonzero(host(cond).astype(bool))[0]
    a = node.attr("axis")
    if a is None:
        x, a = lamina.reshape(x, (-1,)), 0
    a = axis(node, a, x.ndim)
    keep = keep[keep < x.shape[a]]
    return lamina.index_select(x, a, wrap(keep.astype(np.int64), x))


@onnx_op("ReverseSequence")
def reverse_sequence(node, x, lens):
    ta, ba = node.attr("time_axis", 0), node.attr("batch_axis", 1)
    ln = host(lens).astype(np.int64)
    T, B = x.shape[ta], x.shape[ba]
    t = np.arange(T)[:, None]
    src = np.where(t < ln[None, :], ln[None, :] - 1 - t, t)   # (T, B)
    shape = [1] * x.ndim
    shape[ta], shape[ba] = T, B
    order = src if ta < ba else src.T
    idx = np.broadcast_to(order.reshape(shape), x.shape)
    return lamina.gather(x, ta, wrap(np.ascontiguousarray(idx), x))
