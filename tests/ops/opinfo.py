"""The op table that drives the generated op tests.

Each ``OpInfo`` names a public Lamina function, the PyTorch function it must agree with, and a
sample generator. Samples hold NumPy arrays: float arrays become float64 tensors that require
grad, integer and bool arrays become constant tensors; nested tuples/lists are converted too.
Every Op class in ``lamina.ops.REGISTRY`` must be exercised by some sample (test_registry.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as TF

import lamina
import lamina.ops as ops
from lamina.ops import pool
from lamina.ops.shape import ToDevice


@dataclasses.dataclass
class Sample:
    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    desc: str = ""
    fd: bool = True  # False where finite differences cannot see the defined gradient

    def __repr__(self):
        def show(a):
            if isinstance(a, np.ndarray):
                return f"{a.dtype}{list(a.shape)}"
            if isinstance(a, (list, tuple)):
                return type(a)(show(x) for x in a)
            return repr(a)
        return f"Sample({', '.join(str(show(a)) for a in self.args)}, {self.kwargs}){' ' + self.desc if self.desc else ''}"


@dataclasses.dataclass
class OpInfo:
    name: str
    fn: Callable                   # lamina function
    ref: Callable | None           # torch function taking the same arguments (converted)
    samples: Callable              # rng -> iterable of Sample
    grad: bool = True              # differentiable: gradcheck + backward parity
    gradgrad: bool = True          # second-order check on the first sample
    random: bool = False           # reseed before every call (dropout)
    atol: float = 1e-8
    rtol: float = 1e-7
    atol32: float = 2e-5           # float32 parity (forward; gradients get 10x)
    rtol32: float = 2e-4
    noncontig: bool = True         # also run each sample with non-contiguous inputs


def R(rng, *shape, low=-2.0, high=2.0):
    return np.asarray(rng.uniform(low, high, size=shape))


def Rpos(rng, *shape, low=0.5, high=2.0):
    return np.asarray(rng.uniform(low, high, size=shape))


def Raway(rng, *shape, gap=0.2):
    """Random values at least ``gap`` away from zero (for kinks at 0)."""
    v = rng.uniform(gap, 2.0, size=shape)
    return np.asarray(v * rng.choice([-1.0, 1.0], size=shape))


def Rdistinct(rng, *shape):
    """Random values with no ties (for max/min and sorting-like ops)."""
    n = int(np.prod(shape))
    return np.asarray((rng.permutation(n).reshape(shape) * 0.37 + rng.uniform(0, 0.1, size=shape)) / max(n, 1))


CE_WEIGHT = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
UNARY_SHAPES = [(), (5,), (3, 4), (2, 3, 4), (2, 0, 3)]
BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,)), ((5,), ()),
                   ((0, 3), (3,)), ((1,), (2, 3)), ((4, 1), (1, 5))]


def unary(gen=R, **kwargs):
    def samples(rng):
        for s in UNARY_SHAPES:
            yield Sample((gen(rng, *s),), dict(kwargs))
    return samples


def binary(gen_a=R, gen_b=R):
    def samples(rng):
        for sa, sb in BROADCAST_PAIRS:
            yield Sample((gen_a(rng, *sa), gen_b(rng, *sb)))
        yield Sample((gen_a(rng, 3, 2), 2.5), desc="scalar rhs")
        yield Sample((1.5, gen_b(rng, 2, 3)), desc="scalar lhs")
    return samples


def binary_ref(fn):
    def ref(a, b):
        if not isinstance(a, torch.Tensor):
            a = torch.tensor(a, dtype=b.dtype)
        if not isinstance(b, torch.Tensor):
            b = torch.tensor(b, dtype=a.dtype)
        return fn(a, b)
    return ref


def compare_samples(rng):
    for sa, sb in BROADCAST_PAIRS:
        a = np.round(R(rng, *sa))
        b = np.round(R(rng, *sb))
        yield Sample((a, b))
    yield Sample((np.round(R(rng, 4)), 1.0))


def logical_samples(rng):
    for sa, sb in BROADCAST_PAIRS:
        yield Sample((np.asarray(rng.random(sa) > 0.5), np.asarray(rng.random(sb) > 0.5)))


REDUCE_CASES = [((3, 4, 5), None, False), ((3, 4, 5), 0, False), ((3, 4, 5), -1, True),
                ((3, 4, 5), (0, 2), False), ((3, 4, 5), (1, 2), True), ((4,), 0, False), ((), None, False)]


def reduce_samples(gen=R, cases=REDUCE_CASES, **extra):
    def samples(rng):
        for shape, dim, keepdim in cases:
            yield Sample((gen(rng, *shape),), dict(dim=dim, keepdim=keepdim, **extra))
    return samples


def _tdim(dim, x):
    return tuple(range(x.ndim)) if dim is None else dim


def reduce_ref(fn):
    def ref(x, dim=None, keepdim=False, **kw):
        if dim is None and not keepdim:
            return fn(x, **kw) if not kw else fn(x, dim=tuple(range(x.ndim)) or None, keepdim=False, **kw)
        return fn(x, dim=_tdim(dim, x), keepdim=keepdim, **kw)
    return ref


def _t_index(index):
    """A lamina-style index with NumPy arrays, as a torch index."""
    if isinstance(index, tuple):
        return tuple(_t_index(i) for i in index)
    if isinstance(index, np.ndarray):
        return torch.from_numpy(index)
    return index


def getitem_samples(rng):
    x = R(rng, 4, 5, 6)
    yield Sample((x, 1))
    yield Sample((x, -1))
    yield Sample((x, (slice(1, 3), slice(None, None, 2))))
    yield Sample((x, (Ellipsis, 2)))
    yield Sample((x, (None, 1, Ellipsis, None)))
    yield Sample((x, np.array([0, 2, 2, 3])), desc="repeated int array")
    yield Sample((x, (slice(None), np.array([[0, 1], [4, 4]]))), desc="2-D int array, repeats")
    yield Sample((x, (np.array([0, 3]), slice(1, 4), np.array([1, 5]))), desc="split advanced")
    yield Sample((x, rng.random((4, 5)) > 0.5), desc="bool mask")
    yield Sample((x, (Ellipsis, np.array([-1, 0]))), desc="negative indices")


def getitem_ref(x, index):
    return x[_t_index(index)]


def index_put_samples(rng):
    x = R(rng, 4, 5)
    yield Sample((x, (1,), R(rng, 5)))
    yield Sample((x, (slice(None), slice(1, 3)), R(rng, 4, 2)))
    yield Sample((x, (np.array([0, 2]),), R(rng, 2, 5)))
    yield Sample((x, (np.array([0, 2, 0]), np.array([1, 1, 3])), R(rng, 3)), dict(accumulate=True),
                 desc="accumulate with repeats")
    yield Sample((x, (rng.random((4, 5)) > 0.5,), R(rng, 1)), desc="bool mask, broadcast value")


def index_put_ref(x, index, values, accumulate=False):
    out = x.clone()
    idx = _t_index(index)
    if accumulate:
        return out.index_put(tuple(i if isinstance(i, torch.Tensor) else torch.tensor(i) for i in idx),
                             values, accumulate=True)
    out[idx] = values
    return out


def gather_samples(rng):
    x = R(rng, 3, 4, 5)
    yield Sample((x, 1, rng.integers(0, 4, (3, 6, 5))))
    yield Sample((x, 0, rng.integers(0, 3, (2, 4, 5))), desc="index smaller in other dims")
    yield Sample((x, -1, rng.integers(0, 5, (3, 4, 2))))


def scatter_add_samples(rng):
    x = R(rng, 3, 4)
    yield Sample((x, 1, rng.integers(0, 4, (3, 6)), R(rng, 3, 6)), desc="repeats")
    yield Sample((x, 0, rng.integers(0, 3, (2, 4)), R(rng, 2, 4)))


def scatter_add_large_src_samples(rng):
    yield Sample((R(rng, 3, 4), 0, rng.integers(0, 3, (2, 4)), R(rng, 3, 5)), desc="src larger than index")


def index_select_samples(rng):
    x = R(rng, 4, 5)
    yield Sample((x, 0, np.array([3, 0, 3, 1])))
    yield Sample((x, -1, np.array([4, 4])))
    yield Sample((x, 1, np.zeros(0, dtype=np.int64)), desc="empty index")


def index_add_samples(rng):
    x = R(rng, 4, 5)
    yield Sample((x, 0, np.array([3, 0, 3]), R(rng, 3, 5)))
    yield Sample((x, 1, np.array([1, 1]), R(rng, 4, 2)))


def matmul_samples(rng):
    for sa, sb in [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                   ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
                   ((0, 4), (4, 2))]:
        yield Sample((R(rng, *sa), R(rng, *sb)))


def conv_samples(d):
    def samples(rng):
        sp = (7, 6, 5)[:d]
        yield Sample((R(rng, 2, 3, *sp), R(rng, 4, 3, *((3,) * d))), desc="plain")
        yield Sample((R(rng, 2, 3, *sp), R(rng, 4, 3, *((2,) * d)), R(rng, 4)),
                     dict(stride=2, padding=1), desc="stride 2 pad 1 bias")
        yield Sample((R(rng, 1, 4, *sp), R(rng, 6, 2, *((3,) * d)), R(rng, 6)),
                     dict(padding=2, dilation=2, groups=2), desc="dilation groups")
        if d == 2:
            yield Sample((R(rng, 2, 2, 6, 7), R(rng, 3, 2, 2, 3)), dict(stride=(2, 1), padding=(0, 1)),
                         desc="asymmetric")
            yield Sample((R(rng, 2, 2, 5, 5), R(rng, 3, 2, 2, 3)), dict(padding="same"), desc="same, odd")
            yield Sample((R(rng, 2, 4, 5, 5), R(rng, 4, 1, 3, 3)), dict(groups=4, padding=1), desc="depthwise")
            yield Sample((R(rng, 3, 5, 5), R(rng, 2, 3, 3, 3)), desc="unbatched")
    return samples


def conv_transpose_samples(d):
    def samples(rng):
        sp = (4, 5)[:d]
        yield Sample((R(rng, 2, 3, *sp), R(rng, 3, 2, *((3,) * d))), desc="plain")
        yield Sample((R(rng, 2, 3, *sp), R(rng, 3, 2, *((3,) * d)), R(rng, 2)),
                     dict(stride=2, padding=1, output_padding=1), desc="stride pad outpad bias")
        yield Sample((R(rng, 1, 4, *sp), R(rng, 4, 1, *((2,) * d))),
                     dict(groups=2, dilation=2, stride=3), desc="groups dilation")
    return samples


def conv2d_weight_samples(rng):
    yield Sample((R(rng, 2, 3, 7, 6), (4, 3, 3, 3), R(rng, 2, 4, 5, 4)))
    yield Sample((R(rng, 2, 4, 7, 6), (6, 2, 2, 2), R(rng, 2, 6, 4, 4)), dict(stride=2, padding=1, groups=2))


def conv2d_weight_ref(x, weight_shape, g, **kw):
    return torch.nn.grad.conv2d_weight(x, weight_shape, g, **kw)


def pool_samples(d, max_pool):
    def samples(rng):
        gen = Rdistinct if max_pool else R
        sp = (8, 7)[:d] if d == 2 else (9,)
        yield Sample((gen(rng, 2, 3, *sp), 2))
        yield Sample((gen(rng, 2, 3, *sp), 3), dict(stride=2, padding=1), desc="overlap pad")
        yield Sample((gen(rng, 1, 2, *sp), 3), dict(stride=2, ceil_mode=True), desc="ceil")
        if max_pool:
            yield Sample((gen(rng, 1, 2, *sp), 2), dict(dilation=2), desc="dilation")
            yield Sample((gen(rng, 1, 2, *sp), 2), dict(return_indices=True), desc="indices")
        else:
            yield Sample((gen(rng, 1, 2, *sp), 3), dict(stride=2, padding=1, count_include_pad=False),
                         desc="exclude pad")
            yield Sample((gen(rng, 1, 2, *sp), 3), dict(stride=2, padding=1, ceil_mode=True,
                                                         count_include_pad=False), desc="ceil exclude pad")
            if d == 2:
                yield Sample((gen(rng, 1, 2, *sp), 2), dict(divisor_override=3), desc="divisor")
        yield Sample((gen(rng, 3, *sp), 2), desc="unbatched")
    return samples


def block_samples(rng):
    yield Sample((R(rng, 2, 3, 8, 7), rng.integers(0, 4, (2, 3, 4, 3)).astype(np.int8), 2))
    yield Sample((R(rng, 2, 2, 9), rng.integers(0, 3, (2, 2, 3)).astype(np.int8), 3))


def _window_flat_index(index, kernel, spatial):
    """Window offsets -> flat indices into each input plane (PyTorch's max-pool indices)."""
    index = index.long()
    d = len(kernel)
    flat = torch.zeros_like(index)
    for i in range(d - 1, -1, -1):
        k_i, index = index % kernel[i], index // kernel[i]
        shape = [1] * (2 + d)
        shape[2 + i] = flat.shape[2 + i]
        coord = (torch.arange(flat.shape[2 + i]) * kernel[i]).reshape(shape) + k_i
        flat = flat + coord * int(np.prod(spatial[i + 1:]))
    return flat


def block_gather_ref(x, index, k):
    kernel = (k,) * (x.ndim - 2)
    flat = _window_flat_index(index, kernel, x.shape[2:])
    return x.flatten(2).gather(2, flat.flatten(2)).reshape(index.shape)


def block_scatter_samples(rng):
    yield Sample((R(rng, 2, 3, 4, 3), rng.integers(0, 4, (2, 3, 4, 3)).astype(np.int8), 2, (8, 7)))
    yield Sample((R(rng, 2, 2, 3), rng.integers(0, 3, (2, 2, 3)).astype(np.int8), 3, (9,)))


def block_scatter_ref(g, index, k, spatial):
    kernel = (k,) * (g.ndim - 2)
    flat = _window_flat_index(index, kernel, spatial)
    out = torch.zeros(g.shape[:2] + (int(np.prod(spatial)),), dtype=g.dtype)
    return out.scatter_add(2, flat.flatten(2), g.flatten(2)).reshape(g.shape[:2] + tuple(spatial))


def adaptive_samples(d):
    def samples(rng):
        sp = (7, 9)[:d]
        yield Sample((R(rng, 2, 3, *sp), (3, 4) if d == 2 else 4))
        yield Sample((R(rng, 2, 3, *sp), (7, 1) if d == 2 else 9), desc="identity/one")
        yield Sample((R(rng, 2, 3, *sp), 2 if d == 2 else 3))
    return samples


def pad_samples(rng):
    x = R(rng, 2, 3, 4)
    yield Sample((x, (1, 2)))
    yield Sample((x, (1, 0, 0, 2)), dict(value=1.5))
    for mode in ("reflect", "replicate", "circular"):
        yield Sample((x, (2, 1, 1, 2)), dict(mode=mode), desc=mode)


def split_samples(rng):
    x = R(rng, 5, 4)
    yield Sample((x, 2))
    yield Sample((x, [1, 3, 0], ), dict(dim=1))
    yield Sample((x, 5))


def softmax_samples(rng):
    yield Sample((R(rng, 3, 4), -1))
    yield Sample((R(rng, 3, 4, 5), 1))
    yield Sample((R(rng, 2, 3) * 400.0, 1), desc="large logits")
    yield Sample((R(rng, 5), 0))


def embedding_samples(rng):
    w = R(rng, 6, 3)
    yield Sample((np.array([[0, 2, 2], [5, 1, 0]]), w))
    # the gradient of padding_idx rows is zero by definition, which finite differences cannot see
    yield Sample((np.array([1, 3, 1, 0]), w), dict(padding_idx=1), desc="padding_idx", fd=False)


def embedding_ref(index, weight, padding_idx=None):
    return TF.embedding(index, weight, padding_idx=padding_idx)


def clamp_samples(rng):
    yield Sample((Raway(rng, 3, 4, gap=0.1),), dict(min=-0.5, max=0.6))
    yield Sample((Raway(rng, 5),), dict(min=0.05))
    yield Sample((Raway(rng, 2, 3),), dict(max=-0.05))


def where_samples(rng):
    for sa, sb in BROADCAST_PAIRS:
        shape = np.broadcast_shapes(sa, sb)
        yield Sample((np.asarray(rng.random(shape) > 0.5), R(rng, *sa), R(rng, *sb)))
    yield Sample((rng.random((3,)) > 0.5, R(rng, 2, 3), 0.0), desc="scalar other")


def masked_fill_samples(rng):
    yield Sample((R(rng, 3, 4), rng.random((3, 4)) > 0.5, -1.5))
    yield Sample((R(rng, 3, 4), rng.random((4,)) > 0.5, 2.0), desc="broadcast mask")


def cat_samples(rng):
    yield Sample(([R(rng, 2, 3), R(rng, 4, 3), R(rng, 0, 3)],), dict(dim=0))
    yield Sample(([R(rng, 2, 3), R(rng, 2, 1)],), dict(dim=-1))


def stack_samples(rng):
    yield Sample(([R(rng, 2, 3), R(rng, 2, 3), R(rng, 2, 3)],), dict(dim=0))
    yield Sample(([R(rng, 2, 3), R(rng, 2, 3)],), dict(dim=-1))


def repeat_ref(x, *repeats):
    return x.repeat(*repeats)


def reshape_samples(rng):
    yield Sample((R(rng, 3, 4), (4, 3)))
    yield Sample((R(rng, 3, 4), (2, -1, 2)))
    yield Sample((R(rng, 2, 3, 4), (-1,)))
    yield Sample((R(rng, 1), ()))


def _first(t):
    return t[0] if isinstance(t, tuple) else t


OPS: list[OpInfo] = [
    OpInfo("logit", lamina.logit, torch.logit, lambda rng: [
        Sample((Rpos(rng, 3, 4, low=0.1, high=0.9),)),
        Sample((Rpos(rng, 5, low=0.02, high=0.98),), dict(eps=0.05), fd=False, desc="clamped"),
        Sample((Rpos(rng, 2, 3, low=0.2, high=0.8),), dict(eps=0.01))]),
    # ---- unary
    OpInfo("neg", ops.neg, torch.neg, unary()),
    OpInfo("abs", ops.abs, torch.abs, unary(Raway)),
    OpInfo("sign", ops.sign, torch.sign, unary(Raway)),
    OpInfo("exp", ops.exp, torch.exp, unary()),
    OpInfo("log", ops.log, torch.log, unary(Rpos)),
    OpInfo("log1p", ops.log1p, torch.log1p, unary(Rpos)),
    OpInfo("sqrt", ops.sqrt, torch.sqrt, unary(Rpos)),
    OpInfo("rsqrt", ops.rsqrt, torch.rsqrt, unary(Rpos)),
    OpInfo("sin", ops.sin, torch.sin, unary()),
    OpInfo("cos", ops.cos, torch.cos, unary()),
    OpInfo("tanh", ops.tanh, torch.tanh, unary()),
    OpInfo("sigmoid", ops.sigmoid, torch.sigmoid, unary()),
    OpInfo("relu", ops.relu, torch.relu, unary(Raway)),
    OpInfo("leaky_relu", ops.leaky_relu, TF.leaky_relu, unary(Raway, negative_slope=0.2)),
    OpInfo("gelu", ops.gelu, TF.gelu, unary()),
    OpInfo("gelu_tanh", ops.gelu, TF.gelu, unary(approximate="tanh")),
    OpInfo("erf", ops.erf, torch.erf, unary()),
    OpInfo("silu", ops.silu, TF.silu, unary()),
    OpInfo("clamp", ops.clamp, torch.clamp, clamp_samples),
    OpInfo("isnan", ops.isnan, torch.isnan,
           lambda rng: [Sample((np.array([1.0, np.nan, np.inf, -np.inf]),))], grad=False),
    OpInfo("isfinite", ops.isfinite, torch.isfinite,
           lambda rng: [Sample((np.array([1.0, np.nan, np.inf, -np.inf]),))], grad=False),
    OpInfo("logical_not", ops.logical_not, torch.logical_not,
           lambda rng: [Sample((rng.random((3, 4)) > 0.5,))], grad=False),
    # ---- binary
    OpInfo("add", ops.add, binary_ref(torch.add), binary()),
    OpInfo("sub", ops.sub, binary_ref(torch.sub), binary()),
    OpInfo("mul", ops.mul, binary_ref(torch.mul), binary()),
    OpInfo("div", ops.div, binary_ref(torch.div), binary(R, Raway)),
    OpInfo("pow", ops.pow, binary_ref(torch.pow), binary(Rpos, R)),
    OpInfo("maximum", ops.maximum, binary_ref(torch.maximum), binary()),
    OpInfo("minimum", ops.minimum, binary_ref(torch.minimum), binary()),
    OpInfo("remainder", ops.remainder, binary_ref(torch.remainder),
           lambda rng: [Sample((np.array([5.3, -5.3, 2.2, -7.9]), np.array([2.0, 2.0, -1.5, -3.0])))]),
    OpInfo("floor_divide", ops.floor_divide, binary_ref(torch.floor_divide),
           lambda rng: [Sample((np.array([5.3, -5.3, 2.2]), np.array([2.0, 2.0, -1.5]))),
                        Sample((np.array([7, -7, 9]), np.array([2, 2, -4])))], grad=False),
    OpInfo("where", ops.where, torch.where, where_samples),
    OpInfo("masked_fill", ops.masked_fill, lambda x, m, v: x.masked_fill(m, v), masked_fill_samples),
    *[OpInfo(n, getattr(ops, n), binary_ref(getattr(torch, n)), compare_samples, grad=False)
      for n in ("eq", "ne", "lt", "le", "gt", "ge")],
    *[OpInfo(n, getattr(ops, n), getattr(torch, n), logical_samples, grad=False)
      for n in ("logical_and", "logical_or", "logical_xor")],
    # ---- reductions
    OpInfo("sum", ops.sum, reduce_ref(torch.sum), reduce_samples()),
    OpInfo("mean", ops.mean, reduce_ref(torch.mean), reduce_samples()),
    OpInfo("amax", ops.amax, lambda x, dim=None, keepdim=False: torch.amax(x, _tdim(dim, x), keepdim),
           reduce_samples(Rdistinct)),
    OpInfo("amin", ops.amin, lambda x, dim=None, keepdim=False: torch.amin(x, _tdim(dim, x), keepdim),
           reduce_samples(Rdistinct)),
    OpInfo("amax_ties", ops.amax, lambda x, dim=None, keepdim=False: torch.amax(x, _tdim(dim, x), keepdim),
           lambda rng: [Sample((np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]]),), dict(dim=1))], gradgrad=False),
    OpInfo("max_dim", ops.max, torch.max,
           lambda rng: [Sample((Rdistinct(rng, 3, 4, 5), d, k)) for d, k in ((0, False), (-1, True), (1, False))]),
    OpInfo("min_dim", ops.min, torch.min,
           lambda rng: [Sample((Rdistinct(rng, 3, 4, 5), d, k)) for d, k in ((0, False), (-1, True))]),
    OpInfo("max_all", ops.max, torch.max, lambda rng: [Sample((Rdistinct(rng, 3, 4),))]),
    OpInfo("prod", ops.prod, lambda x, dim=None, keepdim=False: (
        torch.prod(x) if dim is None else torch.prod(x, dim, keepdim)),
        lambda rng: [Sample((R(rng, 3, 4),)), Sample((R(rng, 3, 4),), dict(dim=1, keepdim=True)),
                     Sample((np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, -1.0]]),), dict(dim=1),
                            desc="zeros")]),
    OpInfo("argmax", ops.argmax, torch.argmax,
           lambda rng: [Sample((Rdistinct(rng, 3, 4),)), Sample((Rdistinct(rng, 3, 4),), dict(dim=1)),
                        Sample((Rdistinct(rng, 3, 4),), dict(dim=0, keepdim=True))], grad=False),
    OpInfo("argmin", ops.argmin, torch.argmin,
           lambda rng: [Sample((Rdistinct(rng, 3, 4),)), Sample((Rdistinct(rng, 3, 4),), dict(dim=-1))],
           grad=False),
    OpInfo("var", ops.var, lambda x, dim=None, keepdim=False, correction=1: torch.var(
        x, _tdim(dim, x), keepdim=keepdim, correction=correction),
        reduce_samples(cases=REDUCE_CASES[:-1])),
    OpInfo("var_pop", ops.var, lambda x, dim=None, keepdim=False, correction=1: torch.var(
        x, _tdim(dim, x), keepdim=keepdim, correction=correction),
        reduce_samples(cases=REDUCE_CASES[:-1], correction=0)),
    OpInfo("std", ops.std, lambda x, dim=None, keepdim=False, correction=1: torch.std(
        x, _tdim(dim, x), keepdim=keepdim, correction=correction),
        reduce_samples(cases=REDUCE_CASES[:-1])),
    OpInfo("logsumexp", ops.logsumexp, torch.logsumexp,
           lambda rng: [Sample((R(rng, 3, 4), 1)), Sample((R(rng, 3, 4, 2), (0, 2), True)),
                        Sample((R(rng, 2, 3) * 500, -1), desc="large")]),
    OpInfo("all", ops.all, lambda x, dim=None, keepdim=False: torch.all(x) if dim is None else torch.all(x, dim, keepdim),
           lambda rng: [Sample((rng.random((3, 4)) > 0.2,)), Sample((rng.random((3, 4)) > 0.2,), dict(dim=1))],
           grad=False),
    OpInfo("any", ops.any, lambda x, dim=None, keepdim=False: torch.any(x) if dim is None else torch.any(x, dim, keepdim),
           lambda rng: [Sample((rng.random((3, 4)) > 0.8,)), Sample((rng.random((3, 4)) > 0.8,), dict(dim=0))],
           grad=False),
    # ---- shape
    OpInfo("reshape", ops.reshape, torch.reshape, reshape_samples),
    OpInfo("permute", ops.permute, torch.permute,
           lambda rng: [Sample((R(rng, 2, 3, 4), (2, 0, 1))), Sample((R(rng, 2, 3), (1, 0)))]),
    OpInfo("transpose", ops.transpose, torch.transpose, lambda rng: [Sample((R(rng, 2, 3, 4), 0, -1))]),
    OpInfo("expand", ops.expand, lambda x, shape: x.expand(shape),
           lambda rng: [Sample((R(rng, 3, 1), (2, 3, 4))), Sample((R(rng, 1), (5,))),
                        Sample((R(rng, 3, 1), (-1, 2)))]),
    OpInfo("squeeze", ops.squeeze, lambda x, dim=None: x.squeeze() if dim is None else x.squeeze(dim),
           lambda rng: [Sample((R(rng, 1, 3, 1),)), Sample((R(rng, 1, 3, 1),), dict(dim=-1))]),
    OpInfo("unsqueeze", ops.unsqueeze, torch.unsqueeze, lambda rng: [Sample((R(rng, 2, 3), 1)),
                                                                     Sample((R(rng, 2, 3), -1))]),
    OpInfo("flatten", ops.flatten, torch.flatten, lambda rng: [Sample((R(rng, 2, 3, 4),)),
                                                               Sample((R(rng, 2, 3, 4), 1))]),
    OpInfo("unflatten", ops.unflatten, torch.unflatten, lambda rng: [Sample((R(rng, 2, 12), 1, (3, -1)))]),
    OpInfo("cat", ops.cat, torch.cat, cat_samples),
    OpInfo("stack", ops.stack, torch.stack, stack_samples),
    OpInfo("split", ops.split, torch.split, split_samples),
    OpInfo("chunk", ops.chunk, torch.chunk, lambda rng: [Sample((R(rng, 5, 3), 2)), Sample((R(rng, 4, 6), 3, 1))]),
    OpInfo("unbind", ops.unbind, torch.unbind, lambda rng: [Sample((R(rng, 3, 2), 1))]),
    OpInfo("pad", ops.pad, TF.pad, pad_samples),
    OpInfo("flip", ops.flip, torch.flip, lambda rng: [Sample((R(rng, 3, 4), (0, 1))), Sample((R(rng, 3, 4), (-1,)))]),
    OpInfo("repeat", ops.repeat, repeat_ref, lambda rng: [Sample((R(rng, 2, 3), 2, 1)), Sample((R(rng, 3), 2, 1, 2))]),
    OpInfo("tril", ops.tril, torch.tril, lambda rng: [Sample((R(rng, 4, 5),)), Sample((R(rng, 2, 4, 4), -1))]),
    OpInfo("triu", ops.triu, torch.triu, lambda rng: [Sample((R(rng, 4, 5),)), Sample((R(rng, 2, 4, 4), 1))]),
    OpInfo("clone", ops.clone, torch.clone, lambda rng: [Sample((R(rng, 3, 4),))]),
    OpInfo("cast", lambda x: ops.cast(x, lamina.float32).double(), lambda x: x.float().double(),
           lambda rng: [Sample((R(rng, 3, 4),), fd=False)], atol=1e-6),
    # the op itself, since to_device() skips it when nothing moves (a CPU-only machine)
    OpInfo("to_device", lambda x: ToDevice(lamina.Device("cpu"))(x), lambda x: x.to("cpu") * 1.0,
           lambda rng: [Sample((R(rng, 3),))]),
    # ---- indexing
    OpInfo("getitem", ops.getitem, getitem_ref, getitem_samples),
    OpInfo("index_put", lambda x, index, values, accumulate=False: ops.index_put(x, index, values, accumulate),
           index_put_ref, index_put_samples),
    OpInfo("gather", ops.gather, torch.gather, gather_samples),
    OpInfo("scatter_add", ops.scatter_add, torch.scatter_add, scatter_add_samples),
    # PyTorch's backward cannot handle a src larger than the index, so only the forward is compared
    OpInfo("scatter_add_large_src", ops.scatter_add, torch.scatter_add, scatter_add_large_src_samples,
           grad=False),
    OpInfo("index_select", ops.index_select, torch.index_select, index_select_samples),
    OpInfo("index_add", ops.index_add, torch.index_add, index_add_samples),
    OpInfo("one_hot", ops.one_hot, TF.one_hot,
           lambda rng: [Sample((np.array([[0, 2], [3, 1]]),)), Sample((np.array([1, 0]), 4))], grad=False),
    # ---- linear algebra
    OpInfo("matmul", ops.matmul, torch.matmul, matmul_samples),
    OpInfo("linear", ops.linear, TF.linear,
           lambda rng: [Sample((R(rng, 4, 5), R(rng, 3, 5), R(rng, 3))), Sample((R(rng, 2, 3, 5), R(rng, 4, 5))),
                        Sample((R(rng, 5), R(rng, 2, 5), R(rng, 2)), desc="unbatched")]),
    # ---- neural-network primitives
    OpInfo("conv1d", ops.conv1d, TF.conv1d, conv_samples(1)),
    OpInfo("conv2d", ops.conv2d, TF.conv2d, conv_samples(2)),
    OpInfo("conv3d", ops.conv3d, TF.conv3d,
           lambda rng: [Sample((R(rng, 1, 2, 4, 5, 4), R(rng, 2, 2, 2, 3, 2), R(rng, 2)), dict(padding=1))]),
    OpInfo("conv_transpose1d", ops.conv_transpose1d, TF.conv_transpose1d, conv_transpose_samples(1)),
    OpInfo("conv_transpose2d", ops.conv_transpose2d, TF.conv_transpose2d, conv_transpose_samples(2)),
    OpInfo("conv2d_weight", ops.conv2d_weight, conv2d_weight_ref, conv2d_weight_samples),
    OpInfo("max_pool1d", ops.max_pool1d, TF.max_pool1d, pool_samples(1, True)),
    OpInfo("max_pool2d", ops.max_pool2d, TF.max_pool2d, pool_samples(2, True)),
    OpInfo("block_gather", pool.block_gather, block_gather_ref, block_samples),
    OpInfo("block_scatter", pool.block_scatter, block_scatter_ref, block_scatter_samples),
    OpInfo("avg_pool1d", ops.avg_pool1d, TF.avg_pool1d, pool_samples(1, False)),
    OpInfo("avg_pool2d", ops.avg_pool2d, TF.avg_pool2d, pool_samples(2, False)),
    OpInfo("adaptive_avg_pool1d", ops.adaptive_avg_pool1d, TF.adaptive_avg_pool1d, adaptive_samples(1)),
    OpInfo("adaptive_avg_pool2d", ops.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, adaptive_samples(2)),
    OpInfo("softmax", ops.softmax, torch.softmax, softmax_samples),
    OpInfo("log_softmax", ops.log_softmax, torch.log_softmax, softmax_samples),
    OpInfo("dropout", ops.dropout, None, lambda rng: [Sample((R(rng, 4, 5),), dict(p=0.3)),
                                                      Sample((R(rng, 3, 2, 4),), dict(p=0.6))], random=True),
    OpInfo("embedding", ops.embedding, embedding_ref, embedding_samples),
    OpInfo("layer_norm", ops.layer_norm, TF.layer_norm,
           lambda rng: [Sample((R(rng, 3, 5), (5,), R(rng, 5), R(rng, 5))),
                        Sample((R(rng, 2, 3, 4), (3, 4), R(rng, 3, 4)), dict(eps=1e-3), desc="2-d, no bias"),
                        Sample((R(rng, 4, 6), (6,)), desc="no affine"), Sample((R(rng, 7), (7,), R(rng, 7), R(rng, 7)))]),
    OpInfo("cross_entropy", lambda x, t, **kw: lamina.nn.functional.cross_entropy(x, t, **kw), TF.cross_entropy,
           lambda rng: [Sample((R(rng, 5, 4), np.array([0, 3, 1, 1, 2]))),
                        Sample((R(rng, 6, 3), np.array([2, -100, 0, 1, -100, 2])), dict(reduction="sum")),
                        Sample((R(rng, 4, 3), np.array([1, 7, 0, 2])),
                               dict(ignore_index=7, reduction="none", label_smoothing=0.1))]),
    # class weights are constants (PyTorch has no gradient for them)
    OpInfo("cross_entropy_weighted",
           lambda x, t, **kw: lamina.nn.functional.cross_entropy(
               x, t, weight=lamina.tensor(CE_WEIGHT, dtype=x.dtype), **kw),
           lambda x, t, **kw: TF.cross_entropy(x, t, weight=torch.tensor(CE_WEIGHT, dtype=x.dtype), **kw),
           lambda rng: [Sample((R(rng, 4, 5), np.array([4, 0, 2, 2])), dict(label_smoothing=0.2)),
                        Sample((R(rng, 5, 5), np.array([1, -100, 3, 3, 0])))]),
    # ---- ordering and scanning
    OpInfo("sort", ops.sort, torch.sort,
           lambda rng: [Sample((Rdistinct(rng, 3, 5),)), Sample((Rdistinct(rng, 4, 3), 0, True)),
                        # at ties the gradient follows the stable order, which finite differences cannot see
                        Sample((np.array([[1.0, 2.0, 1.0, 0.5, 2.0]]),), dict(descending=True), desc="ties",
                               fd=False)]),
    OpInfo("topk", ops.topk, torch.topk,
           lambda rng: [Sample((Rdistinct(rng, 3, 6), 2)), Sample((Rdistinct(rng, 5, 4), 3, 0)),
                        Sample((Rdistinct(rng, 2, 5), 2), dict(largest=False))]),
    OpInfo("cumsum", ops.cumsum, torch.cumsum,
           lambda rng: [Sample((R(rng, 3, 4), 1)), Sample((R(rng, 2, 3, 4), 0)), Sample((R(rng, 5), -1))]),
    OpInfo("multinomial", lambda p, n, replacement=False: ops.multinomial(p, n, replacement), None,
           lambda rng: [Sample((Rpos(rng, 3, 6), 2)), Sample((Rpos(rng, 5), 8), dict(replacement=True))],
           grad=False),
]


def _extra_tables():
    """Ops of other families register their samples in tests/ops/opinfo_<family>.py (an ``OPS`` list)."""
    import importlib
    import pathlib
    for path in sorted(pathlib.Path(__file__).parent.glob("opinfo_*.py")):
        OPS.extend(importlib.import_module(f"tests.ops.{path.stem}").OPS)


_extra_tables()
