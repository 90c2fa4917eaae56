"""Shape ops: reshape/view, permute/transpose, expand, squeeze/unsqueeze, flatten, cat/stack,
split/chunk/unbind, pad, flip, repeat, tril/triu, clone, and dtype/device conversion.

Ops whose result is a view of their input share the input's version counter, so an in-place
change through the view is seen by every node that saved the input.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..grad_mode import _mode
from ..tensor import Tensor, _register_view
from .base import Op, normalize_dim, unbroadcast, xp_of
from ..amp.autocast_mode import autocast_op
from .indexing import index_select


def _share_version(out: Tensor, x: Tensor, replay=None) -> Tensor:
    """Give a view its input's version counter; under grad mode also note how to remake the view
    from its input (``replay``), so in-place writes through either rebase the other's history."""
    if xp_of(x.array).may_share_memory(out.array, x.array):
        out._version = x._version
        if replay is not None and _mode.enabled:
            _register_view(out, x, replay)
    return out


def _shape_args(shape, fname):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{fname}: shape must be integers, got {shape!r}") from None


# ---------------------------------------------------------------- views

class Reshape(Op):
    needs_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, g, x):
        return g.reshape(x.shape)

    def backward_arrays(self, g, x):
        return g.reshape(x.shape)

    def onnx(self, g, x):
        shape, twin = list(self.shape), list(g.twin_attr("shape"))
        moving = [i for i, (a, b) in enumerate(zip(shape, twin)) if a != b]
        if len(moving) == 1 and -1 not in shape and len(shape) == len(twin):
            # one size follows the dynamic axes: Reshape infers it from -1, with no Shape arithmetic
            shape[moving[0]] = twin[moving[0]] = -1
        return g.op("Reshape", [x, g.vector(shape, twin)])


class Permute(Op):
    needs_inputs = False

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, g, x):
        return g.permute(*np.argsort(self.dims).tolist())

    def backward_arrays(self, g, x):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return g.transpose(inverse)

    def onnx(self, g, x):
        return g.op("Transpose", [x], perm=list(self.dims))


class Expand(Op):
    needs_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return xp_of(x).broadcast_to(x, self.shape)

    def backward(self, g, x):
        return unbroadcast(g, x.shape)

    def onnx(self, g, x):
        return g.op("Expand", [x, g.vector(self.shape, g.twin_attr("shape"))])


def reshape(x, *shape):
    shape = _shape_args(shape, "reshape")
    if shape == x.shape:
        return x
    n, known, unknown = x.numel(), 1, [i for i, s in enumerate(shape) if s == -1]
    for s in shape:
        if s != -1:
            known *= s
    bad = len(unknown) > 1 or any(s < -1 for s in shape) or (
        known != n if not unknown else (known == 0 or n % known != 0))
    if bad:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({n} elements) into shape {shape}")
    if unknown:
        shape = tuple(n // known if s == -1 else s for s in shape)
    return _share_version(Reshape(shape)(x), x, lambda b: Reshape(shape)(b))


view = reshape


def permute(x, *dims):
    dims = _shape_args(dims, "permute")
    if len(dims) != x.ndim:
        raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor of {x.ndim} dims (shape {x.shape})")
    dims = tuple(normalize_dim(d, x.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of 0..{x.ndim - 1}")
    if dims == tuple(range(x.ndim)):
        return x
    return _share_version(Permute(dims)(x), x, lambda b: Permute(dims)(b))


def transpose(x, dim0, dim1):
    nd = x.array.ndim
    d0, d1 = normalize_dim(dim0, nd, "transpose"), normalize_dim(dim1, nd, "transpose")
    if d0 == d1:
        return x
    dims = list(range(nd))
    dims[d0], dims[d1] = d1, d0
    dims = tuple(dims)
    return _share_version(Permute(dims)(x), x, lambda b: Permute(dims)(b))


def expand(x, *shape):
    """A broadcast view of ``x`` with ``shape``; -1 keeps a dim. No memory is copied."""
    shape = _shape_args(shape, "expand")
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: target shape {shape} has fewer dims than the tensor's shape {x.shape}")
    full = []
    for i, s in enumerate(shape):
        if i < lead:
            if s < 0:
                raise ValueError(f"expand: -1 is not allowed for new leading dim {i} in {shape}")
            full.append(s)
            continue
        have = x.shape[i - lead]
        if s == -1 or s == have:
            full.append(have)
        elif have == 1 and s >= 0:
            full.append(s)
        else:
            raise ValueError(f"expand: cannot expand shape {x.shape} to {shape} (dim {i}: {have} -> {s})")
    full = tuple(full)
    if full == x.shape:
        return x
    return _share_version(Expand(full)(x), x)


broadcast_to = expand


def broadcast_shapes(*shapes) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"broadcast_shapes: shapes {', '.join(map(str, shapes))} do not broadcast") from None


def squeeze(x, dim=None):
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = {normalize_dim(d, x.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)}
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return reshape(x, shape)


def unsqueeze(x, dim):
    d = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, (1,))
    s = normalize_dim(start_dim, x.ndim, "flatten")
    e = normalize_dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def unflatten(x, dim, sizes):
    d = normalize_dim(dim, x.ndim, "unflatten")
    sizes = tuple(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes = tuple(x.shape[d] // known if s == -1 else s for s in sizes)
    if math.prod(sizes) != x.shape[d]:
        raise ValueError(f"unflatten: sizes {sizes} do not multiply to dim {dim}'s size {x.shape[d]}")
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


# ---------------------------------------------------------------- joining and splitting

class Cat(Op):
    needs_inputs = False

    def __init__(self, dim):
        self.dim = dim

    def forward(self, *arrays):
        return xp_of(arrays[0]).concatenate(arrays, axis=self.dim)

    def backward(self, g, *inputs):
        sizes = [t.shape[self.dim] for t in inputs]
        pieces = split(g, sizes, self.dim)
        return tuple(p if need else None for p, need in zip(pieces, self.needs_input_grad))

    def onnx(self, g, *xs):
        return g.op("Concat", g.cast_inputs(list(xs)), axis=self.dim)


class Split(Op):
    needs_inputs = False

    def __init__(self, sizes, dim):
        self.sizes, self.dim = sizes, dim
        self.n_outputs = len(sizes)

    def forward(self, x):
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp_of(x).split(x, bounds, axis=self.dim))

    def _pieces(self, grads, x, zeros):
        """The output gradients in order, ``zeros(shape)`` for the outputs that got none."""
        parts = []
        for g, size in zip(grads, self.sizes):
            if g is None:
                shape = list(x.shape)
                shape[self.dim] = size
                g = zeros(tuple(shape))
            parts.append(g)
        return parts

    def backward(self, grads, x):
        return cat(self._pieces(grads, x, lambda shape: x.new_zeros(shape, dtype=x.dtype)), self.dim)

    def backward_arrays(self, grads, x):
        xp = xp_of(x)
        whole = _joined(grads, x, self.dim, self.sizes)
        if whole is not None:
            return whole
        return xp.concatenate(self._pieces(grads, x, lambda shape: xp.zeros(shape, dtype=x.dtype)), axis=self.dim)

    def onnx(self, g, x):
        return g.op("Split", [x, g.vector(self.sizes, g.twin_attr("sizes"))], n_out=len(self.sizes),
                    axis=self.dim)


def _joined(parts, x, dim, sizes):
    """An array of x's shape whose consecutive slices along ``dim`` the NumPy arrays ``parts``
    already are, or None. A kernel that computes the gradients of several pieces of one array
    (attention's q, k and v split off one projection) writes them into one buffer, and joining
    them is then free."""
    owner = getattr(parts[0], "base", None)  # NumPy's views point at the array owning the memory
    if (type(owner) is not np.ndarray or owner.dtype != x.dtype or owner.size != x.size
            or not owner.flags.c_contiguous or not owner.flags.writeable):
        return None
    whole = owner.reshape(x.shape)
    start, offset = whole.__array_interface__["data"][0], 0
    for g, size in zip(parts, sizes):
        if (type(g) is not np.ndarray or g.base is not owner or g.strides != whole.strides
                or g.shape[dim] != size or g.__array_interface__["data"][0] != start + offset * whole.strides[dim]):
            return None
        offset += size
    return whole


@autocast_op("cat")
def cat(tensors, dim=0):
    """Join tensors along an existing dim; all other dims must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    d = normalize_dim(dim, first.ndim, "cat")
    dtype = first.dtype
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat: element {i} is a {type(t).__name__}, not a Tensor")
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != d):
            raise ValueError(f"cat: tensors must have the same shape except in dim {dim}; got {first.shape} "
                             f"(input 0) and {t.shape} (input {i})")
        dtype = backend.result_type(dtype, t.dtype)
    tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    return Cat(d)(*tensors)


concat = concatenate = cat


@autocast_op("stack")
def stack(tensors, dim=0):
    """Join same-shaped tensors along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have one shape; got {tensors[0].shape} (input 0) "
                             f"and {t.shape} (input {i})")
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


def split(x, split_size_or_sections, dim=0):
    """Split into pieces of ``split_size`` (the last may be smaller) or of the listed sizes."""
    d = normalize_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [step] * (n // step) + ([n % step] if n % step else [])
        if not sizes:
            sizes = [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to dim {dim}'s size {n} (shape {x.shape})")
    if len(sizes) == 1:
        return (x,)
    sizes = tuple(sizes)
    return tuple(_share_version(p, x, lambda b, i=i: Split(sizes, d)(b)[i])
                 for i, p in enumerate(Split(sizes, d)(x)))


def chunk(x, chunks, dim=0):
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[normalize_dim(dim, x.ndim, "chunk")]
    return split(x, max(1, math.ceil(n / chunks)), dim)


def unbind(x, dim=0):
    d = normalize_dim(dim, x.ndim, "unbind")
    return tuple(squeeze(p, d) for p in split(x, 1, d)) if x.shape[d] else ()


# ---------------------------------------------------------------- padding, flipping, repeating

class Pad(Op):
    """Constant padding; ``widths`` is one (before, after) pair per dim."""
    needs_inputs = False

    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = xp_of(x)
        shape = tuple(s + a + b for s, (a, b) in zip(x.shape, self.widths))
        out = xp.full(shape, self.value, dtype=x.dtype)
        out[tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, self.widths))] = x
        return out

    def backward(self, g, x):
        return g[tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, self.widths))]

    def onnx(self, g, x):
        pads = [a for a, _ in self.widths] + [b for _, b in self.widths]
        return g.op("Pad", [x, g.ints(pads), g.scalar(self.value, g.out_dtype())], mode="constant")


def pad(x, pad, mode="constant", value=0.0):
    """Pad the last dims; ``pad`` = (left_last, right_last, left_prev, right_prev, ...) as in PyTorch.

    Modes: constant, reflect (mirror without the edge), replicate (repeat the edge), circular.
    """
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of pad widths for at most {x.ndim} dims, got {tuple(pad)}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative pad widths are not supported, got {tuple(pad)}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if all(w == (0, 0) for w in widths):
        return x
    if mode == "constant":
        return Pad(tuple(widths), value)(x)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: unknown mode {mode!r}; expected constant, reflect, replicate or circular")
    out = x
    for d, (a, b) in enumerate(widths):
        if a == b == 0:
            continue
        n = x.shape[d]
        if mode == "reflect" and (a >= n or b >= n):
            raise ValueError(f"pad: reflect padding ({a}, {b}) must be smaller than dim {d}'s size {n}")
        if n == 0:
            raise ValueError(f"pad: cannot {mode}-pad an empty dim {d}")
        pos = np.arange(-a, n + b)
        if mode == "reflect":
            period = 2 * (n - 1) if n > 1 else 1
            pos = np.abs(pos) % period
            pos = np.where(pos >= n, period - pos, pos)
        elif mode == "replicate":
            pos = np.clip(pos, 0, n - 1)
        else:
            pos = pos % n
        out = index_select(out, d, Tensor(pos, device=x.device))
    return out


class Flip(Op):
    needs_inputs = False

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return xp_of(x).flip(x, self.dims)

    def backward(self, g, x):
        return flip(g, self.dims)

    def onnx(self, g, x):
        n = len(self.dims)
        return g.op("Slice", [x, g.ints([-1] * n), g.ints([-2 ** 63] * n), g.ints(self.dims), g.ints([-1] * n)])


def flip(x, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = tuple(normalize_dim(d, x.ndim, "flip") for d in dims)
    return Flip(dims)(x) if dims else x


class Repeat(Op):
    """Tile the tensor ``repeats[i]`` times along dim i (``torch.Tensor.repeat``)."""
    needs_inputs = False

    def __init__(self, repeats):
        self.repeats = repeats

    def forward(self, x):
        return xp_of(x).tile(x, self.repeats)

    def backward(self, g, x):
        lead = len(self.repeats) - x.ndim
        shape = (1,) * lead + x.shape
        split_shape = []
        for r, s in zip(self.repeats, shape):
            split_shape += [r, s]
        g = g.reshape(split_shape).sum(dim=tuple(range(0, 2 * len(shape), 2)))
        return g.reshape(x.shape)

    def onnx(self, g, x):
        lead = len(self.repeats) - len(g.in_shape(0))
        if lead:
            x = g.op("Unsqueeze", [x, g.ints(range(lead))])
        return g.op("Tile", [x, g.vector(self.repeats, g.twin_attr("repeats"))])


def repeat(x, *repeats):
    repeats = _shape_args(repeats, "repeat")
    if len(repeats) < x.ndim:
        raise ValueError(f"repeat: got {len(repeats)} repeats for a tensor of {x.ndim} dims (shape {x.shape})")
    if any(r < 0 for r in repeats):
        raise ValueError(f"repeat: repeats must be >= 0, got {repeats}")
    return Repeat(repeats)(x)


class Tril(Op):
    needs_inputs = False
    fn = "tril"

    def __init__(self, diagonal):
        self.diagonal = diagonal

    def forward(self, x):
        return getattr(xp_of(x), self.fn)(x, self.diagonal)

    def backward(self, g, x):
        return type(self)(self.diagonal)(g)

    def onnx(self, g, x):
        return g.op("Trilu", [x, g.scalar(self.diagonal, "int64")], upper=int(self.fn == "triu"))


class Triu(Tril):
    fn = "triu"


def tril(x, diagonal=0):
    if x.ndim < 2:
        raise ValueError(f"tril: expected a tensor of at least 2 dims, got shape {x.shape}")
    return Tril(diagonal)(x)


def triu(x, diagonal=0):
    if x.ndim < 2:
        raise ValueError(f"triu: expected a tensor of at least 2 dims, got shape {x.shape}")
    return Triu(diagonal)(x)


# ---------------------------------------------------------------- copies and conversion

class Clone(Op):
    needs_inputs = False

    def forward(self, x):
        return x.copy()

    def backward(self, g, x):
        return g

    def onnx(self, g, x):
        return g.op("Identity", [x])


def clone(x):
    return Clone()(x)


class Cast(Op):
    needs_inputs = False

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, g, x):
        return cast(g, x.dtype)

    def onnx(self, g, x):
        return g.cast(x, g.in_dtype(0), self.dtype) if g.in_dtype(0) != self.dtype else g.op("Identity", [x])


def cast(x, dtype):
    dtype = backend.as_dtype(dtype)
    return x if x.dtype == dtype else Cast(dtype)(x)


class ToDevice(Op):
    needs_inputs = False

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        return backend.to_device(x, self.device)

    def backward(self, g, x):
        return to_device(g, x.device)

    def onnx(self, g, x):
        return g.op("Identity", [x])


def to_device(x, device):
    device = backend.Device(device)
    return x if x.device == device else ToDevice(device)(x)
