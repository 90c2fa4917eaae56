"""Autograd: grad modes, accumulation, graph release, higher-order grad, in-place safety,
hooks, anomaly mode and the printed graph."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

import lamina
from lamina.ops.base import Op


def leaf(*shape, seed=0):
    return lamina.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=lamina.float64,
                         requires_grad=True)


def test_no_grad_records_nothing_and_nests():
    x = leaf(3)
    with lamina.no_grad():
        y = x * 2
        assert not lamina.is_grad_enabled()
        with lamina.enable_grad():
            z = x * 3
            assert lamina.is_grad_enabled()
        assert not lamina.is_grad_enabled()
    assert lamina.is_grad_enabled()
    assert y._node is None and not y.requires_grad
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_decorator_and_set_grad_enabled():
    x = leaf(2)

    @lamina.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert lamina.is_grad_enabled()
    with lamina.set_grad_enabled(False):
        assert not (x + 1).requires_grad
    assert lamina.is_grad_enabled()


def test_grad_mode_is_per_thread():
    import threading
    seen = []
    with lamina.no_grad():
        t = threading.Thread(target=lambda: seen.append(lamina.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_backward_accumulates_into_grad():
    x = leaf(3)
    (x * x).sum().backward()
    first = x.grad.numpy().copy()
    np.testing.assert_allclose(first, 2 * x.detach().numpy())
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), first + 3)


def test_grad_of_shared_input_is_not_aliased():
    # y = x + x hands the same gradient array to both uses; .grad must own its own memory
    x = leaf(3)
    w = leaf(3, seed=1)
    (x + w).sum().backward()
    x.grad.array *= 10
    np.testing.assert_array_equal(w.grad.numpy(), np.ones(3))


def test_backward_twice_needs_retain_graph():
    x = leaf(3)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp(x.detach().numpy()))
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_nonscalar_needs_gradient():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(lamina.ones(3, dtype=lamina.float64))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.ones(3))


def test_backward_on_tensor_without_grad_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        lamina.ones(2).sum().backward()


def test_saved_values_released_after_backward():
    x = leaf(1000)
    y = x.exp()
    node = y.grad_fn
    out_ref = weakref.ref(y.grad_fn)
    y.sum().backward()
    assert node.inputs is None and node.outputs is None and node.saved is None
    del node, y
    gc.collect()
    assert out_ref() is None


def test_grad_function_does_not_touch_dot_grad():
    x, w = leaf(3), leaf(3, seed=1)
    (gx,) = lamina.grad((x * w).sum(), [x])
    np.testing.assert_allclose(gx.numpy(), w.detach().numpy())
    assert x.grad is None and w.grad is None


def test_grad_only_runs_needed_part_of_graph():
    calls = []
    x, w = leaf(3), leaf(3, seed=1)
    y = (x.exp() + w.sin()).sum()
    orig = type(w.sin().grad_fn).backward

    def spy(self, g, *inputs):
        calls.append(1)
        return orig(self, g, *inputs)

    type(w.sin().grad_fn).backward = spy
    try:
        lamina.grad(y, [x])
    finally:
        type(w.sin().grad_fn).backward = orig
    assert calls == []


def test_grad_allow_unused():
    x, w = leaf(3), leaf(3, seed=1)
    with pytest.raises(RuntimeError, match="not reachable"):
        lamina.grad((x * 2).sum(), [x, w])
    gx, gw = lamina.grad((x * 2).sum(), [x, w], allow_unused=True)
    assert gw is None


def test_grad_of_non_leaf_intermediate():
    x = leaf(3)
    h = x * 2
    y = (h * h).sum()
    (gh,) = lamina.grad(y, [h])
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy())


def test_higher_order_matches_torch():
    a = np.random.default_rng(0).standard_normal(4)
    x = lamina.tensor(a, dtype=lamina.float64, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    y = (x.tanh() * x.sin()).sum()
    ty = (tx.tanh() * tx.sin()).sum()
    (g,) = lamina.grad(y, [x], create_graph=True)
    (tg,) = torch.autograd.grad(ty, [tx], create_graph=True)
    (gg,) = lamina.grad(g.sum(), [x], create_graph=True)
    (tgg,) = torch.autograd.grad(tg.sum(), [tx], create_graph=True)
    (ggg,) = lamina.grad(gg.sum(), [x])
    (tggg,) = torch.autograd.grad(tgg.sum(), [tx])
    np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gg.detach().numpy(), tgg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ggg.numpy(), tggg.numpy(), rtol=1e-10)


def test_conv_input_grad_skipped_when_not_needed():
    calls = []
    from lamina.ops.conv import ConvTransposeNd
    orig = ConvTransposeNd.forward

    def spy(self, *a):
        calls.append(1)
        return orig(self, *a)

    ConvTransposeNd.forward = spy
    try:
        x = lamina.randn(2, 3, 8, 8)  # data: does not require grad
        w = lamina.randn(4, 3, 3, 3, requires_grad=True)
        lamina.conv2d(x, w).sum().backward()
    finally:
        ConvTransposeNd.forward = orig
    assert w.grad is not None and calls == []


def test_inplace_on_saved_input_is_detected():
    x = leaf(3)
    h = x * 1.0
    y = h * h  # Mul saves h
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


def test_inplace_on_saved_output_is_detected():
    x = leaf(3)
    y = x.exp()
    with lamina.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match="exp: its output 0 .* in-place"):
        y.sum().backward()


def test_inplace_through_view_is_detected():
    x = leaf(2, 3)
    h = x * 1.0
    y = (h * h).sum()
    h[0].add_(1.0)  # h[0] is a view of h and shares its version counter
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_recorded_when_safe():
    x = leaf(3)
    h = x * 2.0
    h.add_(1.0)  # Add keeps no input values, so this is fine
    (h * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.ones(3))


def test_inplace_on_leaf_needs_no_grad():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x.mul_(2)
    with lamina.no_grad():
        x.mul_(2)
    assert x._version[0] == 1


def test_setitem_with_autograd_matches_torch():
    a = np.random.default_rng(0).standard_normal((3, 4))
    v = np.random.default_rng(1).standard_normal(4)
    x = lamina.tensor(a, dtype=lamina.float64, requires_grad=True)
    lv = lamina.tensor(v, dtype=lamina.float64, requires_grad=True)
    tx, tv = torch.tensor(a, requires_grad=True), torch.tensor(v, requires_grad=True)
    h, th = x * 2, tx * 2
    h[1] = lv
    th[1] = tv
    (h * h).sum().backward()
    (th * th).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())
    np.testing.assert_allclose(lv.grad.numpy(), tv.grad.numpy())


def test_hooks_and_retain_grad():
    x = leaf(3)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 2)
    h = x * 3
    h.retain_grad()
    h.sum().backward()
    np.testing.assert_allclose(seen[0], 3 * np.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.ones(3))
    np.testing.assert_allclose(h.grad.numpy(), np.ones(3))
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.ones(3))


def test_post_accumulate_hook():
    x = leaf(2)
    got = []
    x.register_post_accumulate_grad_hook(lambda t: got.append(t.grad.numpy().copy()))
    (x * 5).sum().backward()
    np.testing.assert_allclose(got[0], [5.0, 5.0])


def test_anomaly_names_forward_op():
    with lamina.detect_anomaly(), np.errstate(all="ignore"):
        with pytest.raises(RuntimeError, match="anomaly: log produced NaN/Inf"):
            lamina.log(lamina.tensor([-1.0]))


def test_anomaly_names_backward_op():
    z = lamina.tensor([0.0], requires_grad=True)
    with lamina.detect_anomaly(), np.errstate(all="ignore"):
        y = lamina.sqrt(z).sum()
        with pytest.raises(RuntimeError, match="backward of sqrt returned NaN/Inf"):
            y.backward()


def test_format_graph_lists_nodes_in_order():
    x = lamina.randn(4, 3)
    w = lamina.randn(3, 2, requires_grad=True)
    y = (x @ w).relu().sum()
    text = lamina.format_graph(y)
    lines = text.splitlines()
    assert lines[0] == "%0 = input float32[4, 3]"
    assert lines[1] == "%1 = param float32[3, 2]"
    assert lines[2].startswith("%2 = matmul(%0, %1) -> float32[4, 2]")
    assert lines[3].startswith("%3 = relu(%2) -> float32[4, 2]")
    assert lines[4].startswith("%4 = sum(%3") and lines[4].endswith("-> float32[]")


def test_registry_ops_are_op_subclasses():
    x = leaf(2)
    assert isinstance((x * 2).grad_fn, Op)


def test_detach_shares_memory_and_version():
    x = leaf(3)
    d = x.detach()
    assert d.grad_fn is None and not d.requires_grad
    with lamina.no_grad():
        d.add_(1.0)
    assert x._version[0] == 1
    np.testing.assert_array_equal(d.numpy(), x.detach().numpy())


def test_dtype_mismatch_grad_is_cast_back():
    x = lamina.randn(3, requires_grad=True)  # float32
    y = lamina.randn(3, dtype=lamina.float64, requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.dtype == lamina.float32 and y.grad.dtype == lamina.float64


def test_queue_callback_runs_after_backward_in_order():
    from lamina.autograd import queue_callback
    seen = []
    x = lamina.ones(3, requires_grad=True)

    def hook(t):
        seen.append(("hook", t.grad is not None))
        queue_callback(lambda: (seen.append("first"), queue_callback(lambda: seen.append("queued by first"))))
        queue_callback(lambda: seen.append("second"))

    x.register_post_accumulate_grad_hook(hook)
    (x * 2).sum().backward()
    assert seen == [("hook", True), "first", "second", "queued by first"]
    with pytest.raises(RuntimeError, match="no backward"):
        queue_callback(lambda: None)


def test_an_op_instance_can_be_called_again_without_misrouting_gradients():
    from lamina.ops.elementwise import Mul
    a, b, c, d = (lamina.tensor([1.0, 2.0], requires_grad=True) for _ in range(4))
    op = Mul()
    y1 = op(a, b * 2)
    y2 = op(c, d * 3)
    assert y1.grad_fn is op and y2.grad_fn is not op
    y1.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(b.grad.numpy(), [2.0, 4.0])
    assert c.grad is None and d.grad is None
    y2.sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), [3.0, 6.0])
    np.testing.assert_allclose(d.grad.numpy(), [3.0, 6.0])


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("n", [3, 300_000])  # the NumPy path and (kernels on) the compiled one
def test_relu_passes_the_gradient_at_nan_as_torch(kernels, n):
    import torch
    a = np.linspace(-1.0, 1.0, n)
    a[1] = np.nan
    t = torch.tensor(a, requires_grad=True)
    torch.relu(t).sum().backward()
    previous = lamina.kernels.set_enabled(kernels)
    try:
        x = lamina.tensor(a, requires_grad=True)
        lamina.relu(x).sum().backward()
    finally:
        lamina.kernels.set_enabled(previous)
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())
    assert x.grad.numpy()[1] == 1.0
