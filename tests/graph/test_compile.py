"""lamina.graph.compile: compiled inference and training steps equal eager Lamina in float64,
guards re-trace on new shapes (logged with LAMINA_LOG=recompiles), memory budgets."""
import numpy as np
import pytest

import lamina
from lamina.graph import compile, costs, passes, trace
from lamina.graph.executor import run
from lamina.models import GPT, GPTConfig

from .models import NAMES, arrays, assert_close, grads, make, train_step, twin


@pytest.mark.parametrize("name", NAMES)
def test_compiled_inference_and_training_equal_eager(name):
    model, loss_fn, inputs = make(name)
    r = np.random.default_rng(5)
    eager = twin(model)
    infer = compile(lambda *xs: loss_fn(model, *xs))
    for _ in range(2):
        new = inputs(r)
        with lamina.no_grad():
            np.testing.assert_allclose(infer(*new).item(), loss_fn(eager, *new).item(), rtol=1e-12)
    step = compile(train_step(model, loss_fn))
    eager_step = train_step(eager, loss_fn)
    for _ in range(3):
        new = inputs(r)
        np.testing.assert_allclose(step(*new).item(), eager_step(*new).item(), rtol=1e-12)
        assert_close(grads(model), grads(eager))
        assert_close(arrays(model), arrays(eager))
    assert len(step.graphs) == 1 and step.recompiles == 0


def test_compiled_module_output_structure():
    model, _, inputs = make("gpt")
    x, t = inputs(np.random.default_rng(0))
    cm = compile(model)
    logits, loss = cm(x, t)
    want_logits, want_loss = model(x, t)
    np.testing.assert_allclose(logits.numpy(), want_logits.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(loss.item(), want_loss.item(), rtol=1e-12)
    logits, loss = cm(x)  # a None argument is part of the guard: a new graph
    assert loss is None and logits.shape == (2, 6, 11) and len(cm.graphs) == 2


def test_guards_retrace_on_new_shapes_and_log(monkeypatch, capsys):
    model, loss_fn, _ = make("mlp")
    f = compile(lambda x: model(x).sum())
    f(lamina.randn(4, 12))
    f(lamina.randn(4, 12))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("LAMINA_LOG", "recompiles")
    x = lamina.randn(7, 12)
    np.testing.assert_allclose(f(x).item(), model(x).sum().item(), rtol=1e-12)
    err = capsys.readouterr().err
    assert "re-tracing" in err and "(4, 12)" in err and "(7, 12)" in err
    f(lamina.randn(4, 12).float())
    assert "float32" in capsys.readouterr().err
    assert f.recompiles == 2 and len(f.graphs) == 3


def test_memory_budget_rematerialises_or_says_it_cannot():
    lamina.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16))
    loss_fn = lambda m, x, t: m(x, t)[1]  # noqa: E731
    r = np.random.default_rng(0)
    x, t = (lamina.tensor(r.integers(0, 11, (8, 16))) for _ in range(2))
    g = passes.optimize(trace(train_step(model, loss_fn), x, t), array_backwards=False)
    peak = costs.peak_bytes(g)
    budget = int(0.7 * peak)  # needs recomputed chains (several ops deep); ~0.66 is the floor here
    g2 = passes.rematerialize(g, budget)
    assert costs.peak_bytes(g2) <= budget
    assert any(n.phase == "recompute" for n in g2.nodes)
    before = arrays(model)
    l1, l2 = run(g, x, t).item(), None
    after1 = arrays(model)
    for n, p in model.named_parameters():
        p.array[...] = before[n]
    l2 = run(g2, x, t).item()
    assert l1 == l2
    assert_close(arrays(model), after1, tol=0)
    with pytest.raises(MemoryError, match="memory_budget of .* cannot be met"):
        passes.rematerialize(g, peak // 10)
    eager = twin(model)
    step = compile(train_step(model, loss_fn), memory_budget=budget)
    eager_step = train_step(eager, loss_fn)
    for _ in range(2):
        np.testing.assert_allclose(step(x, t).item(), eager_step(x, t).item(), rtol=1e-12)
        assert_close(arrays(model), arrays(eager))
    assert costs.peak_bytes(step.graph) <= budget
    with pytest.raises(ValueError, match="memory_budget"):
        compile(lambda x: x, memory_budget="lots")


@pytest.mark.parametrize("name", ["lenet", "gpt"])
def test_compiled_sgd_momentum_nesterov_matches_eager(name, monkeypatch, capsys):
    model, loss_fn, inputs = make(name)
    eager = twin(model)

    def step_of(m):
        opt = lamina.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        return train_step(m, loss_fn, opt=opt), opt
    monkeypatch.setenv("LAMINA_LOG", "recompiles")
    cstep, copt = step_of(model)
    compiled = compile(cstep)
    estep, eopt = step_of(eager)
    r = np.random.default_rng(7)
    for i in range(4):  # the first step makes the momentum buffers (eagerly), the rest run compiled
        new = inputs(r)
        np.testing.assert_allclose(compiled(*new).item(), estep(*new).item(), rtol=1e-12)
        assert_close(arrays(model), arrays(eager))
        for p, q in zip(model.parameters(), eager.parameters()):
            np.testing.assert_allclose(copt.state[p]["momentum_buffer"].numpy(),
                                       eopt.state[q]["momentum_buffer"].numpy(), rtol=1e-10, atol=1e-12)
    assert "no momentum_buffer" in capsys.readouterr().err
    assert len(compiled.graphs) == 1


@pytest.mark.parametrize("kind", ["adamw", "adam_amsgrad"])
def test_compiled_adam_matches_eager_and_hands_back_its_state(kind):
    model, loss_fn, inputs = make("gpt")
    eager = twin(model)

    def step_of(m):
        if kind == "adamw":
            opt = lamina.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1)
        else:
            opt = lamina.optim.Adam(m.parameters(), lr=0.01, weight_decay=0.01, amsgrad=True)
        return train_step(m, loss_fn, opt=opt), opt
    cstep, copt = step_of(model)
    compiled = compile(cstep)
    estep, eopt = step_of(eager)
    r = np.random.default_rng(8)
    for i in range(4):
        new = inputs(r)
        np.testing.assert_allclose(compiled(*new).item(), estep(*new).item(), rtol=1e-12)
        assert_close(arrays(model), arrays(eager))
    for p, q in zip(model.parameters(), eager.parameters()):
        a, b = copt.state[p], eopt.state[q]
        assert float(a["step"]) == float(b["step"]) == 4.0
        np.testing.assert_allclose(a["exp_avg_sq"].numpy(), b["exp_avg_sq"].numpy(), rtol=1e-10, atol=1e-14)
    new = inputs(r)  # an eager step after compiled ones continues from the state they left
    np.testing.assert_allclose(cstep(*new).item(), estep(*new).item(), rtol=1e-12)
    assert_close(arrays(model), arrays(eager))
    assert float(copt.state[next(model.parameters())]["step"]) == 5.0


@pytest.mark.parametrize("name", ["gpt", "lenet"])
def test_compiled_step_with_gradient_clipping_matches_eager(name):
    model, loss_fn, inputs = make(name)
    eager = twin(model)

    def step_of(m):
        opt = lamina.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1)
        return train_step(m, loss_fn, opt=opt, clip=0.05)  # small: every step clips
    compiled = compile(step_of(model))
    estep = step_of(eager)
    r = np.random.default_rng(9)
    for _ in range(4):  # the first makes Adam's state eagerly, the rest run compiled
        new = inputs(r)
        np.testing.assert_allclose(compiled(*new).item(), estep(*new).item(), rtol=1e-12)
        assert_close(grads(model), grads(eager))
        assert_close(arrays(model), arrays(eager))
    assert len(compiled.graphs) == 1 and any(n.name == "clamp" for n in compiled.graph.nodes)


def _measured_peak(fn, args):
    """Bytes allocated at the peak of one call above what was allocated before it (tracemalloc),
    plus the buffers a compiled function keeps between calls."""
    import gc
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn(*args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    kept = sum(ex.buffer_bytes for entries in getattr(fn, "cache", {}).values() for ex, *_ in entries)
    return peak + kept, out


def test_gpt_step_below_eager_memory_and_near_half_of_it_under_a_budget():
    lamina.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32))
    loss_fn = lambda m, x, t: m(x, t)[1]  # noqa: E731
    r = np.random.default_rng(3)
    batches = [tuple(lamina.tensor(r.integers(0, 11, (8, 16))) for _ in range(2)) for _ in range(5)]
    eager, plain, budgeted = twin(model), twin(model), twin(model)
    eager_step = train_step(eager, loss_fn)
    eager_step(*batches[0])  # first-call caches out of the figure
    eager_peak, _ = _measured_peak(eager_step, batches[0])
    plain_step = compile(train_step(plain, loss_fn))
    # 0.58: eager's fused attention keeps no scores, so half of its peak is below what recomputing
    # reaches here (the traced GELU backward's temporaries set that floor)
    budget = int(0.58 * eager_peak)
    budget_step = compile(train_step(budgeted, loss_fn), memory_budget=budget)
    for s in (plain_step, budget_step):
        s(*batches[0])
    plain_peak, _ = _measured_peak(plain_step, batches[0])
    budget_peak, _ = _measured_peak(budget_step, batches[0])
    assert plain_peak < eager_peak
    assert budget_peak <= budget and costs.peak_bytes(budget_step.graph) <= budget
    assert any(n.phase == "recompute" for n in budget_step.graph.nodes)
    for xs in batches[1:]:  # the loss curves of the three, on fresh batches
        want = eager_step(*xs).item()
        np.testing.assert_allclose(plain_step(*xs).item(), want, rtol=1e-12)
        np.testing.assert_allclose(budget_step(*xs).item(), want, rtol=1e-12)
    assert_close(arrays(budgeted), arrays(eager))
    assert_close(arrays(plain), arrays(eager))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_relu_max_pool_equals_the_nodes(dtype):
    r = np.random.default_rng(4)
    a = r.standard_normal((2, 3, 7, 6)).astype(dtype)  # 7 rows: the last is outside every window
    a[0, 0, :2, :2] = 1.5  # ties: the first maximum wins
    a[0, 1, :2, :2] = -2.0  # all negative: ReLU's zeros tie
    a[0, 2, 2:4, 2:4] = [[-0.0, 0.0], [0.0, -1.0]]
    a[1, 0, 0, 1] = np.nan  # NaN after the first element of its window
    a[1, 1, 2, 2] = np.nan  # NaN first
    a[1, 2, 4, 4], a[1, 2, 5, 5] = np.inf, -np.inf
    a[1, 1, 0, 1], a[1, 1, 1, 0] = np.nan, np.nan  # two NaNs in a window: the last wins, as torch
    c = r.standard_normal((2, 3, 3, 3)).astype(dtype)
    c[0, 0, 2, 2] = np.inf  # a non-finite gradient: exact zeros off the maximum, as in PyTorch

    class M(lamina.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = lamina.nn.Parameter(lamina.tensor(a.copy()))

        def forward(self, c):
            y = lamina.nn.functional.max_pool2d(lamina.relu(self.p), 2)
            return (y * c).sum(), y
    m, e = M(), M()

    def step_of(mod):
        def step(c):
            mod.p.grad = None
            loss, y = mod(c)
            loss.backward()
            return loss, y.detach()
        return step
    f = compile(step_of(m))
    with np.errstate(invalid="ignore"):  # inf * 0 off the maximum, in both
        want_loss, want_y = step_of(e)(lamina.tensor(c))
        got_loss, got_y = f(lamina.tensor(c))
    ex = f.cache[next(iter(f.cache))][0][0]
    assert len(ex.fused_pools) == 1
    assert np.isnan(want_y.numpy()).sum() == 3 and np.isinf(want_y.numpy()).sum() == 1
    np.testing.assert_array_equal(got_y.numpy(), want_y.numpy())
    np.testing.assert_array_equal(got_loss.item(), want_loss.item())
    np.testing.assert_array_equal(m.p.grad.numpy(), e.p.grad.numpy())
    grad = m.p.grad.numpy()
    assert np.isinf(grad).sum() == 1 and grad[1, 0, 0, 1] == c[1, 0, 0, 0] and grad[1, 0, 0, 0] == 0
    assert grad[1, 1, 1, 0] == c[1, 1, 0, 0] and grad[1, 1, 0, 1] == 0


def test_compiled_updates_write_parameters_in_place_and_keep_gradients():
    model, loss_fn, inputs = make("mlp")
    eager = twin(model)
    step, estep = compile(train_step(model, loss_fn)), train_step(eager, loss_fn)
    r = np.random.default_rng(11)
    step(*inputs(r))
    estep(*inputs(np.random.default_rng(11)))
    ex = step.cache[next(iter(step.cache))][0][0]
    arrays_before = {n: p.array for n, p in model.named_parameters()}
    versions = {n: p._version[0] for n, p in model.named_parameters()}
    for _ in range(2):
        new = inputs(r)
        np.testing.assert_allclose(step(*new).item(), estep(*new).item(), rtol=1e-12)
    # the fused SGD update wrote into each parameter's own memory, once per call
    assert len(ex.written_in_place) == len(arrays_before)
    for n, p in model.named_parameters():
        assert p.array is arrays_before[n] and p._version[0] == versions[n] + 2
    assert_close(arrays(model), arrays(eager))
    assert_close(grads(model), grads(eager))
    g1 = {n: p.grad for n, p in model.named_parameters()}
    step(*inputs(r))  # a gradient handed out is not overwritten by the next call
    assert all(p.grad is not g1[n] and not np.shares_memory(p.grad.array, g1[n].array)
               for n, p in model.named_parameters())
