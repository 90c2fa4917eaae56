"""conv2d as an op with the compiled kernels wired in: the kernel path against the NumPy column
engine (kernels off) and PyTorch, forward and every gradient; what the kernels do not take
(non-contiguous inputs, groups, one input channel, gradients of gradients) takes the NumPy path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import lamina
import lamina.nn.functional as F
from lamina import kernels as K

from .conftest import rand

CASES = [  # n, c, o, hw, k, stride, padding, dilation
    (2, 3, 4, 9, 3, 1, 1, 1),
    (3, 6, 5, 10, 5, 1, 0, 1),
    (2, 24, 4, 7, 3, 2, 1, 1),
    (1, 2, 3, 11, 3, 1, 2, 2),
]


def _run(x, w, b, g, kw, needs_input=True):
    lx = lamina.tensor(x, requires_grad=needs_input)
    lw, lb = lamina.tensor(w, requires_grad=True), lamina.tensor(b, requires_grad=True)
    y = F.conv2d(lx, lw, lb, **kw)
    y.backward(lamina.tensor(g))
    return [y.array] + [t.grad.array if t.grad is not None else None for t in (lx, lw, lb)]


@pytest.fixture
def counted(monkeypatch):
    calls = {"conv2d_forward": 0, "conv2d_backward": 0}
    for name in calls:
        original = getattr(K, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            calls[_name] += out is not None
            return out
        monkeypatch.setattr(K, name, wrapper)
    return calls


@pytest.mark.parametrize("case", CASES)
def test_conv2d_op_kernel_matches_numpy_path_and_torch(case, dtype, counted):
    n, c, o, hw, k, s, p, d = case
    kw = dict(stride=s, padding=p, dilation=d)
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (n, c, hw, hw), dtype), rand(rng, (o, c, k, k), dtype), rand(rng, (o,), dtype)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ty = TF.conv2d(tx, tw, tb, **kw)
    g = rand(rng, tuple(ty.shape), dtype)
    ty.backward(torch.from_numpy(g))
    on = _run(x, w, b, g, kw)
    assert counted == {"conv2d_forward": 1, "conv2d_backward": 1}
    previous = K.set_enabled(False)
    try:
        off = _run(x, w, b, g, kw)
    finally:
        K.set_enabled(previous)
    assert counted == {"conv2d_forward": 1, "conv2d_backward": 1}
    tol = 3e-5 if dtype == np.float32 else 1e-11
    for a, ref, t in zip(on, off, (ty, tx.grad, tw.grad, tb.grad)):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=tol, atol=tol)


def test_conv2d_op_only_weight_gradient(dtype, counted):
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, (4, 3, 8, 8), dtype), rand(rng, (5, 3, 3, 3), dtype), rand(rng, (5,), dtype)
    g = rand(rng, (4, 5, 6, 6), dtype)
    y, gx, gw, gb = _run(x, w, b, g, {}, needs_input=False)
    assert gx is None and counted["conv2d_backward"] == 1
    tw = torch.from_numpy(w).requires_grad_()
    TF.conv2d(torch.from_numpy(x), tw, torch.from_numpy(b)).backward(torch.from_numpy(g))
    tol = 3e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=tol, atol=tol)


@pytest.mark.parametrize("what", ["transposed input", "groups", "float16"])
def test_conv2d_op_falls_back(what, counted):
    rng = np.random.default_rng(5)
    x, w = rand(rng, (2, 4, 7, 7), np.float32), rand(rng, (6, 4, 3, 3), np.float32)
    kw = {}
    if what == "groups":
        w, kw = w[:, :2], dict(groups=2)
    elif what == "float16":
        x, w = x.astype(np.float16), w.astype(np.float16)
    lx, lw = lamina.tensor(x, requires_grad=True), lamina.tensor(w, requires_grad=True)
    tx, tw = torch.from_numpy(x.astype(np.float32)).requires_grad_(), torch.from_numpy(w.astype(np.float32)).requires_grad_()
    lin, tin = (lx.transpose(2, 3), tx.transpose(2, 3)) if what == "transposed input" else (lx, tx)
    if what == "transposed input":
        assert not lin.array.flags.c_contiguous
    y = F.conv2d(lin, lw, **kw)
    y.sum().backward()
    assert counted == {"conv2d_forward": 0, "conv2d_backward": 0}
    TF.conv2d(tin, tw, **kw).sum().backward()
    tol = 2e-2 if what == "float16" else 1e-4
    np.testing.assert_allclose(y.array.astype(np.float32), TF.conv2d(tin, tw, **kw).detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(lx.grad.array.astype(np.float32), tx.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(lw.grad.array.astype(np.float32), tw.grad.numpy(), rtol=tol, atol=tol * 10)


def test_conv2d_op_second_order_with_kernels_on():
    """create_graph takes the Tensor backward (no kernels), so gradients of gradients still work."""
    rng = np.random.default_rng(6)
    x, w = rand(rng, (2, 3, 6, 6), np.float64), rand(rng, (4, 3, 3, 3), np.float64)
    lx, lw = lamina.tensor(x, requires_grad=True), lamina.tensor(w, requires_grad=True)
    gx, = lamina.grad((F.conv2d(lx, lw, padding=1) ** 2).sum(), [lx], create_graph=True)
    gw, = lamina.grad((gx ** 2).sum(), [lw])
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    tgx, = torch.autograd.grad((TF.conv2d(tx, tw, padding=1) ** 2).sum(), [tx], create_graph=True)
    tgw, = torch.autograd.grad((tgx ** 2).sum(), [tw])
    np.testing.assert_allclose(gw.array, tgw.numpy(), rtol=1e-10)


def test_conv2d_op_in_a_module_trains_the_same_with_kernels_on_and_off():
    rng = np.random.default_rng(7)
    x = rand(rng, (4, 3, 8, 8), np.float64)
    grads = []
    for on in (True, False):
        previous = K.set_enabled(on)
        try:
            lamina.manual_seed(0)
            conv = lamina.nn.Conv2d(3, 5, 3, padding=1).double()
            conv(lamina.tensor(x)).relu().sum().backward()
            grads.append((conv.weight.grad.array, conv.bias.grad.array))
        finally:
            K.set_enabled(previous)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_conv2d_op_one_channel_takes_the_kernel_for_large_batches(counted):
    """One input channel runs the column engine for small batches, the kernel's planar columns
    when the batch's columns pass 4M elements (measured faster each way)."""
    rng = np.random.default_rng(8)
    x, w = rand(rng, (11, 1, 128, 128), np.float32), rand(rng, (2, 1, 5, 5), np.float32)
    lw = lamina.tensor(w, requires_grad=True)
    y = F.conv2d(lamina.tensor(x), lw, padding=2)
    y.sum().backward()
    assert counted == {"conv2d_forward": 1, "conv2d_backward": 1}
    tw = torch.from_numpy(w).requires_grad_()
    ty = TF.conv2d(torch.from_numpy(x), tw, padding=2)
    ty.sum().backward()
    np.testing.assert_allclose(y.array, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lw.grad.array, tw.grad.numpy(), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, return_indices=True)])
def test_max_pool2d_op_kernels_on_and_off_match_torch(kw, dtype):
    """The kernels (non-overlapping windows, other windows) and the NumPy path give torch's
    values, indices and gradients, NaN windows and a non-finite upstream gradient included."""
    rng = np.random.default_rng(9)
    x = rand(rng, (2, 3, 9, 8), dtype)
    x[0, 0, 0, 1] = np.nan
    x[1, 2, 4, 4] = np.nan
    x[1, 1, 2:4, 2:4] = np.nan  # several NaNs in a window: the last one is the maximum
    tx = torch.from_numpy(x).requires_grad_()
    tout = TF.max_pool2d(tx, **kw)
    ty = tout[0] if isinstance(tout, tuple) else tout
    g = rand(rng, tuple(ty.shape), dtype)
    g[0, 1, 1, 1] = np.inf
    ty.backward(torch.from_numpy(g))
    for on in (True, False):
        previous = K.set_enabled(on)
        try:
            lx = lamina.tensor(x, requires_grad=True)
            out = F.max_pool2d(lx, **kw)
            y = out[0] if isinstance(out, tuple) else out
            y.backward(lamina.tensor(g))
        finally:
            K.set_enabled(previous)
        np.testing.assert_array_equal(y.array, ty.detach().numpy())
        if isinstance(out, tuple):
            np.testing.assert_array_equal(out[1].array, tout[1].numpy())
        np.testing.assert_array_equal(lx.grad.array, tx.grad.numpy())
