"""The ``ops`` suite: single operators, forward and forward+backward, at shapes that matter.

Each builder takes the context plus its sizes and returns a ``Pair``; the ``CASES`` table at the
bottom names every case. ``ctx.pick(full, quick)`` chooses the size for ``--quick``. Backward runs
``y.backward(g)`` with a fixed random upstream gradient (``.sum().backward()`` for the dispatch
cases, as a user would write it); gradients of the leaves are reset to None before every call so
that nothing accumulates.
"""
from __future__ import annotations

from functools import partial

import torch.nn.functional as TF
from lamina.nn import functional as F

from .harness import Case, Pair


def _clear(*tensors):
    for t in tensors:
        t.grad = None


def _shape(*shapes) -> str:
    return ", ".join("x".join(str(d) for d in s) for s in shapes)


# ---------------------------------------------------------------- per-op dispatch on 4x4 tensors
_BINARY = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "matmul": lambda a, b: a @ b}


def dispatch(ctx, op, backward):
    f = _BINARY[op]
    a, b = ctx.randn(4, 4), ctx.randn(4, 4)
    la, lb = ctx.lt(a, backward), ctx.lt(b, backward)
    ta, tb = ctx.tt(a, backward), ctx.tt(b, backward)
    if not backward:
        ra, rb = ctx.raw(a), ctx.raw(b)
        return Pair(lambda: f(la, lb), lambda: f(ta, tb), raw=lambda: f(ra, rb), shape=_shape(a.shape, b.shape),
                    note="per-call overhead")

    def lamina_step():
        _clear(la, lb)
        f(la, lb).sum().backward()

    def torch_step():
        _clear(ta, tb)
        f(ta, tb).sum().backward()
    return Pair(lamina_step, torch_step, shape=_shape(a.shape, b.shape), note="(a op b).sum().backward()")


# ---------------------------------------------------------------- dense linear algebra
def matmul(ctx, n, quick_n):
    n = ctx.pick(n, quick_n)
    a, b = ctx.randn(n, n), ctx.randn(n, n)
    la, lb, ta, tb, ra, rb = ctx.lt(a), ctx.lt(b), ctx.tt(a), ctx.tt(b), ctx.raw(a), ctx.raw(b)
    return Pair(lambda: la @ lb, lambda: ta @ tb, raw=lambda: ra @ rb, flops=2.0 * n ** 3,
                shape=_shape(a.shape, b.shape))


def conv2d(ctx, batch, cin, cout, hw, k, pad, backward, input_grad=True):
    """A conv layer with bias; with backward, the weight and bias gradients always and the input
    gradient only when ``input_grad`` (a network's first layer needs none)."""
    if ctx.quick:
        batch, cin, cout, hw = min(batch, 4), min(cin, 8), min(cout, 8), min(hw, 14)
    x, w, b = ctx.randn(batch, cin, hw, hw), ctx.randn(cout, cin, k, k) * 0.1, ctx.randn(cout)
    out_hw = hw + 2 * pad - k + 1
    fwd_flops = 2.0 * batch * cout * cin * k * k * out_hw * out_hw
    xg = backward and input_grad
    lx, lw, lb = ctx.lt(x, xg), ctx.lt(w, backward), ctx.lt(b, backward)
    tx, tw, tb = ctx.tt(x, xg), ctx.tt(w, backward), ctx.tt(b, backward)
    shape = _shape(x.shape, w.shape)
    if not backward:
        return Pair(lambda: F.conv2d(lx, lw, lb, padding=pad), lambda: TF.conv2d(tx, tw, tb, padding=pad),
                    flops=fwd_flops, shape=shape, note=f"pad {pad}")
    g = ctx.randn(batch, cout, out_hw, out_hw)
    lg, tg = ctx.lt(g), ctx.tt(g)

    def lamina_step():
        _clear(lx, lw, lb)
        F.conv2d(lx, lw, lb, padding=pad).backward(lg)

    def torch_step():
        _clear(tx, tw, tb)
        TF.conv2d(tx, tw, tb, padding=pad).backward(tg)
    return Pair(lamina_step, torch_step, flops=fwd_flops * (3 if xg else 2), shape=shape,
                note=f"pad {pad}" + ("" if xg else ", no input grad"))


# ---------------------------------------------------------------- pooling and elementwise
def max_pool2d(ctx, shape, backward):
    shape = ctx.pick(shape, (4,) + tuple(shape[1:]))
    x = ctx.randn(*shape)
    lx, tx = ctx.lt(x, backward), ctx.tt(x, backward)
    if not backward:
        return Pair(lambda: F.max_pool2d(lx, 2), lambda: TF.max_pool2d(tx, 2), shape=_shape(shape), note="2x2")
    g = ctx.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    lg, tg = ctx.lt(g), ctx.tt(g)

    def lamina_step():
        _clear(lx)
        F.max_pool2d(lx, 2).backward(lg)

    def torch_step():
        _clear(tx)
        TF.max_pool2d(tx, 2).backward(tg)
    return Pair(lamina_step, torch_step, shape=_shape(shape), note="2x2")


def pointwise(ctx, shape, quick_shape, lamina_fn, torch_fn, backward, params=(), note=""):
    """``y = f(x, *params)`` on random data; with backward, every input gets a gradient."""
    shape = ctx.pick(shape, quick_shape)
    arrays = [ctx.randn(*shape)] + [ctx.randn(*p(shape)) for p in params]
    lt = [ctx.lt(a, backward) for a in arrays]
    tt = [ctx.tt(a, backward) for a in arrays]
    if not backward:
        return Pair(lambda: lamina_fn(*lt), lambda: torch_fn(*tt), shape=_shape(shape), note=note)
    g = ctx.randn(*shape)
    lg, tg = ctx.lt(g), ctx.tt(g)

    def lamina_step():
        _clear(*lt)
        lamina_fn(*lt).backward(lg)

    def torch_step():
        _clear(*tt)
        torch_fn(*tt).backward(tg)
    return Pair(lamina_step, torch_step, shape=_shape(shape), note=note)


def gelu(ctx, backward):
    return pointwise(ctx, (4 << 20,), (128,), F.gelu, TF.gelu, backward, note="exact (erf) GELU")


def bias_relu_scale(ctx, backward):
    def lamina_fn(x, b):
        return F.relu(x + b) * 0.5

    def torch_fn(x, b):
        return TF.relu(x + b) * 0.5
    return pointwise(ctx, (4096, 1024), (8, 16), lamina_fn, torch_fn, backward, params=(lambda s: s[-1:],),
                 note="relu(x + b) * 0.5")


def softmax(ctx, log, backward):
    name = "log_softmax" if log else "softmax"
    return pointwise(ctx, (32, 50257), (4, 257), lambda x: getattr(F, name)(x, -1),
                 lambda x: getattr(TF, name)(x, -1), backward, note="over the last dim")


def layer_norm(ctx):
    def lamina_fn(x, w, b):
        return F.layer_norm(x, (x.shape[-1],), w, b)

    def torch_fn(x, w, b):
        return TF.layer_norm(x, (x.shape[-1],), w, b)
    return pointwise(ctx, (4096, 768), (16, 64), lamina_fn, torch_fn, True, params=(lambda s: s[-1:],) * 2,
                 note="with weight and bias")


def attention(ctx, backward):
    def lamina_fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def torch_fn(q, k, v):
        return TF.scaled_dot_product_attention(q, k, v, is_causal=True)
    return pointwise(ctx, (12, 4, 64, 32), (1, 2, 8, 4), lamina_fn, torch_fn, backward, params=(lambda s: s,) * 2,
                     note="causal; batch, heads, tokens, head size of the baby GPT")


def cross_entropy(ctx, rows, classes):
    rows, classes = ctx.pick(rows, min(rows, 8)), ctx.pick(classes, min(classes, 257))
    x, t = ctx.randn(rows, classes), ctx.randint(classes, rows)
    lx, tx = ctx.lt(x, True), ctx.tt(x, True)
    lt, tt = ctx.lt(t), ctx.tt(t)

    def lamina_step():
        _clear(lx)
        F.cross_entropy(lx, lt).backward()

    def torch_step():
        _clear(tx)
        TF.cross_entropy(tx, tt).backward()
    return Pair(lamina_step, torch_step, shape=_shape(x.shape), note="mean over the batch")


def reduce_sum(ctx):
    n = ctx.pick(16 << 20, 128)
    x = ctx.randn(n)
    lx, tx, rx = ctx.lt(x), ctx.tt(x), ctx.raw(x)
    return Pair(lambda: lx.sum(), lambda: tx.sum(), raw=lambda: rx.sum(), shape=_shape(x.shape))


# ---------------------------------------------------------------- the table
def _case(name, build, **kw):
    return Case(name, "ops", partial(build, **kw))


LENET_C1 = dict(batch=64, cin=1, cout=6, hw=28, k=5, pad=2)
LENET_C2 = dict(batch=64, cin=6, cout=16, hw=14, k=5, pad=0)
RESNET_S1 = dict(batch=32, cin=64, cout=64, hw=56, k=3, pad=1)

CASES = [
    _case("add 4x4 fwd", dispatch, op="add", backward=False),
    _case("mul 4x4 fwd", dispatch, op="mul", backward=False),
    _case("matmul 4x4 fwd", dispatch, op="matmul", backward=False),
    _case("add 4x4 fwd+bwd", dispatch, op="add", backward=True),
    _case("mul 4x4 fwd+bwd", dispatch, op="mul", backward=True),
    _case("matmul 4x4 fwd+bwd", dispatch, op="matmul", backward=True),
    _case("matmul 256", matmul, n=256, quick_n=32),
    _case("matmul 1024", matmul, n=1024, quick_n=64),
    _case("matmul 2048", matmul, n=2048, quick_n=128),
    _case("conv2d lenet-c1 fwd", conv2d, **LENET_C1, backward=False),
    _case("conv2d lenet-c1 fwd+bwd", conv2d, **LENET_C1, backward=True, input_grad=False),
    _case("conv2d lenet-c2 fwd", conv2d, **LENET_C2, backward=False),
    _case("conv2d lenet-c2 fwd+bwd", conv2d, **LENET_C2, backward=True),
    _case("conv2d resnet18-s1 fwd", conv2d, **RESNET_S1, backward=False),
    _case("conv2d resnet18-s1 fwd+bwd", conv2d, **RESNET_S1, backward=True),
    _case("max_pool2d fwd", max_pool2d, shape=(64, 6, 28, 28), backward=False),
    _case("max_pool2d fwd+bwd", max_pool2d, shape=(64, 6, 28, 28), backward=True),
    _case("gelu 4M fwd", gelu, backward=False),
    _case("gelu 4M fwd+bwd", gelu, backward=True),
    _case("bias+relu+scale 4M fwd", bias_relu_scale, backward=False),
    _case("bias+relu+scale 4M fwd+bwd", bias_relu_scale, backward=True),
    _case("softmax 32x50257 fwd", softmax, log=False, backward=False),
    _case("softmax 32x50257 fwd+bwd", softmax, log=False, backward=True),
    _case("log_softmax 32x50257 fwd", softmax, log=True, backward=False),
    _case("log_softmax 32x50257 fwd+bwd", softmax, log=True, backward=True),
    _case("layer_norm 4096x768 fwd+bwd", layer_norm),
    _case("attention 12x4x64x32 fwd", attention, backward=False),
    _case("attention 12x4x64x32 fwd+bwd", attention, backward=True),
    _case("cross_entropy 64x10 fwd+bwd", cross_entropy, rows=64, classes=10),
    _case("cross_entropy 512x50257 fwd+bwd", cross_entropy, rows=512, classes=50257),
    _case("sum 16M", reduce_sum),
]
