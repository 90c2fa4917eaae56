"""Tracing: graphs of the model zoo, forward and whole training steps, replayed on new inputs
against eager Lamina in float64; errors for value-dependent control flow."""
import numpy as np
import pytest

import lamina
from lamina.graph import TraceError, trace
from lamina.graph.executor import run
from lamina.ops.base import REGISTRY

from .models import NAMES, arrays, assert_close, grads, make, train_step, twin


@pytest.mark.parametrize("name", NAMES)
def test_forward_graph_replays_on_new_inputs(name):
    model, loss_fn, inputs = make(name)
    r = np.random.default_rng(1)
    g = trace(lambda *xs: loss_fn(model, *xs), *inputs(r))
    assert all(REGISTRY[n.op_cls.__name__] is n.op_cls for n in g.nodes)
    assert {v.kind for v in g.values} >= {"input", "parameter", "activation"}
    new = inputs(r)
    got = run(g, *new)
    want = loss_fn(model, *new)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_graph_matches_eager(name):
    model, loss_fn, inputs = make(name)
    r = np.random.default_rng(2)
    step = train_step(model, loss_fn)
    before = arrays(model)
    g = trace(step, *inputs(r))
    assert any(n.phase == "backward" for n in g.nodes)
    n_data = sum(1 for (what, _), _v in g.updates if what == "data")
    assert n_data == sum(1 for (what, _), _v in g.updates if what == "grad") > 0
    assert_close(arrays(model), before, tol=0)  # tracing changed no parameter
    assert all(p.grad is None for p in model.parameters())
    eager = twin(model)
    eager_step = train_step(eager, loss_fn)
    for _ in range(2):  # the second step starts from the parameters the first one wrote
        new = inputs(r)
        l1 = run(g, *new)
        l2 = eager_step(*new)
        np.testing.assert_allclose(l1.item(), l2.item(), rtol=1e-12)
        assert_close(grads(model), grads(eager))
        assert_close(arrays(model), arrays(eager))


def test_multi_output_and_module_paths():
    model, loss_fn, inputs = make("gpt")
    g = trace(lambda x, t: loss_fn(model, x, t), *inputs(np.random.default_rng(0)))
    split = [n for n in g.nodes if n.name == "split"]
    assert split and len(split[0].outputs) == 3
    assert any(n.module.startswith("transformer.h.0.attn") for n in g.nodes)
    text = str(g)
    assert "split(" in text and "float64[2, 6, 8]" in text
    assert len(text.splitlines()) >= len(g.nodes)


def test_value_dependent_branch_names_user_line():
    x = lamina.tensor(np.ones(3))

    def f(x):
        y = x * 2
        if y.sum() > 0:  # the line the error must name
            return y
        return -y
    with pytest.raises(TraceError, match=r"test_trace\.py:\d+"):
        trace(f, x)
    for conv in (float, int, lambda t: t.item(), lambda t: t.tolist()):
        with pytest.raises(TraceError, match="needs its value"):
            trace(lambda x: conv(x.sum()), x)
    assert bool(x.sum() > 0)  # outside a trace conversions work again


def test_untraceable_optimizer_is_a_clear_error():
    model, loss_fn, inputs = make("mlp")
    opt = lamina.optim.RMSprop(model.parameters())

    def step(x, t):
        opt.zero_grad()
        loss_fn(model, x, t).backward()
        opt.step()
    with pytest.raises(TraceError, match="RMSprop.step"):
        trace(step, *inputs(np.random.default_rng(0)))


def test_tracing_leaves_op_dispatch_and_other_threads_alone():
    import threading

    from lamina.ops.base import Op
    call = Op.__call__
    x = lamina.tensor(np.ones(3))
    seen = {}
    started, release = threading.Event(), threading.Event()

    def other():
        started.wait()
        seen["y"] = (x * 3).numpy()  # runs while the main thread is inside a trace
        release.set()

    t = threading.Thread(target=other)
    t.start()

    def f(x):
        y = x * 2
        started.set()
        release.wait(10)
        return y + 1
    g = trace(f, x)
    t.join()
    assert [n.name for n in g.nodes] == ["mul", "add"]  # the other thread's mul is not in the graph
    np.testing.assert_array_equal(seen["y"], [3, 3, 3])
    assert Op.__call__ is call
    with pytest.raises(TraceError):
        trace(lambda x: bool(x.sum()), x)
    assert Op.__call__ is call and bool(x.sum())


def test_parameters_the_trace_finds_late_stay_live_and_hidden_updates_are_errors():
    model, loss_fn, inputs = make("mlp")
    holder = {"m": model}  # reached neither as a closure nor as a global Module

    def loss(x, t):
        return loss_fn(holder["m"], x, t)
    g = trace(loss, *inputs(np.random.default_rng(0)))
    assert {v.kind for v in g.live_values()} >= {"parameter"}
    assert not any(v.kind == "constant" and v.shape == (16, 12) for v in g.live_values())
    with lamina.no_grad():
        for p in model.parameters():
            p.mul_(0.5)  # the graph reads the new weights
    new = inputs(np.random.default_rng(1))
    np.testing.assert_allclose(run(g, *new).item(), loss(*new).item(), rtol=1e-12)

    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def hidden_step(x, t):
        holder["opt"].zero_grad()
        l = loss(x, t)
        l.backward()
        holder["opt"].step()  # an optimiser trace cannot reach
        return l
    holder["opt"] = opt
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    with pytest.raises(TraceError, match="changed in place while tracing"):
        trace(hidden_step, *new)
    del before


def test_in_place_buffer_updates_are_errors_and_eval_mode_traces():
    m = lamina.nn.Sequential(lamina.nn.Conv2d(1, 2, 3), lamina.nn.BatchNorm2d(2))
    x = lamina.randn(2, 1, 5, 5)
    stats = m[1].running_mean.numpy().copy()
    with pytest.raises(TraceError, match="in place"):
        trace(m, x)
    m.eval()
    g = trace(m, x)
    assert any(v.kind == "buffer" and v.name == "1.running_mean" for v in g.live_values())
    x2 = lamina.randn(2, 1, 5, 5)
    with lamina.no_grad():
        np.testing.assert_allclose(run(g, x2).numpy(), m(x2).numpy(), rtol=1e-12)
    assert stats.shape == (2,)


def test_direct_writes_to_gradients_are_errors():
    model, loss_fn, inputs = make("mlp")
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step_of(change):
        def step(x, t):
            opt.zero_grad()
            loss = loss_fn(model, x, t)
            loss.backward()
            change()
            opt.step()
            return loss
        return step

    def raw():
        for p in model.parameters():
            p.grad.array *= 0.5  # no op and no version bump: only the memory says it changed
    ex = inputs(np.random.default_rng(0))
    with pytest.raises(TraceError, match="writing its memory directly"):
        trace(step_of(raw), *ex)
    trace(step_of(lambda: None), *ex)  # no change: traces


def test_in_place_ops_on_activations_trace_as_their_result():
    x0 = np.random.default_rng(1).standard_normal((3, 4))

    def f(x):
        y = x * 2.0
        y.mul_(3.0)
        y.add_(x)
        return y.sum()
    g = trace(f, lamina.tensor(x0))
    assert [n.name for n in g.nodes].count("mul") == 2 and "add" in [n.name for n in g.nodes]
    x1 = np.random.default_rng(2).standard_normal((3, 4))
    np.testing.assert_allclose(run(g, lamina.tensor(x1)).item(), (x1 * 6.0 + x1).sum(), rtol=1e-12)

    def stale(x):
        y = x * 2.0
        view = y.reshape(12)
        y.mul_(3.0)
        return view.sum()  # the view's memory changed under it: not a value the graph can name
    with pytest.raises(TraceError, match="changed in place"):
        trace(stale, lamina.tensor(x0))
    g = trace(lambda x: (x * 1.0).mul_(2.0).sum(), lamina.tensor(x0))  # a temporary, written once
    np.testing.assert_allclose(run(g, lamina.tensor(x1)).item(), 2 * x1.sum(), rtol=1e-12)


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_gradient_clipping_traces(clip):
    model, loss_fn, inputs = make("mlp")
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step(x, t):
        opt.zero_grad()
        loss = loss_fn(model, x, t)
        loss.backward()
        if clip == "norm":
            lamina.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        else:
            lamina.nn.utils.clip_grad_value_(model.parameters(), 1e-4)
        opt.step()
        return loss
    ex = inputs(np.random.default_rng(0))
    g = trace(step, *ex)
    assert ("mul" if clip == "norm" else "clamp") in {n.name for n in g.nodes if n.phase == "forward"} | \
        {n.name for n in g.nodes}
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    run(g, *ex)
    traced = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.array[...] = before[n]
    step(*ex)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(traced[n], p.detach().numpy(), rtol=1e-12, atol=1e-15, err_msg=n)
        assert not np.allclose(traced[n], before[n])
    with pytest.raises(RuntimeError, match="error_if_nonfinite"):
        trace(lambda x, t: (step(x, t), lamina.nn.utils.clip_grad_norm_(model.parameters(), 1.0,
                                                                          error_if_nonfinite=True))[0], *ex)
