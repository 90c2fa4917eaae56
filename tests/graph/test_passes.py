"""Graph passes leave results unchanged (float64, random inputs, before against after), and
each does what it says on a small graph built for it; the planned executor and fused kernels
match eager Lamina on every model's training step."""
import numpy as np
import pytest

import lamina
from lamina.graph import passes, trace
from lamina.graph.executor import Executor, run

from .models import NAMES, arrays, assert_close, grads, make, train_step, twin

PASSES = [passes.dce, passes.cse, passes.fold_constants, passes.simplify, passes.fuse_elementwise,
          passes.array_backward, passes.optimize]


def _run_restoring(g, model, inputs, runner=run):
    """Run a training-step graph, return (loss, grads, params after), and put the model back."""
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    loss = runner(g, *inputs).item() if runner is run else runner(*inputs).item()
    out = (loss, grads(model), arrays(model))
    for n, p in model.named_parameters():
        p.array[...] = before[n]
        p.grad = None
    return out


@pytest.mark.parametrize("name", NAMES)
def test_passes_leave_training_step_unchanged(name):
    model, loss_fn, inputs = make(name)
    r = np.random.default_rng(3)
    g = trace(train_step(model, loss_fn), *inputs(r))
    new = inputs(r)
    want = _run_restoring(g, model, new)
    for p in PASSES:
        g2 = p(g)
        g2.check()
        got = _run_restoring(g2, model, new)
        assert got[0] == pytest.approx(want[0], rel=1e-12), p.__name__
        assert_close(got[1], want[1], tol=1e-12)
        assert_close(got[2], want[2], tol=1e-12)
    assert len(passes.optimize(g).nodes) < len(g.nodes)


@pytest.mark.parametrize("name", NAMES)
def test_planned_fused_executor_matches_eager(name):
    model, loss_fn, inputs = make(name)
    r = np.random.default_rng(4)
    g = passes.optimize(trace(train_step(model, loss_fn), *inputs(r)))
    ex = Executor(g)
    assert ex.fused_chains > 0
    if name in ("gpt", "bert", "seq2seq"):  # gelu / layer_norm backward through their array kernels
        assert any(n.array_backward for n in g.nodes)
    eager = twin(model)
    eager_step = train_step(eager, loss_fn)
    for _ in range(2):
        new = inputs(r)
        np.testing.assert_allclose(ex(*new).item(), eager_step(*new).item(), rtol=1e-12)
        assert_close(grads(model), grads(eager))
        assert_close(arrays(model), arrays(eager))


def _names(g):
    return [n.name for n in g.nodes]


def test_cse_dce_fold_simplify_on_small_graphs():
    x, y = lamina.randn(3, 4), lamina.randn(3, 4)

    def f(x, y):
        unused = x.exp()  # noqa: F841  (dead code)
        c = lamina.ones(4) * 2.0  # constants only: folded
        a = (x * y + c) * 1.0 + 0.0
        b = x * y + c
        t = a.reshape(4, 3).reshape(2, 6).reshape(3, 4)
        return t.transpose(0, 1).transpose(0, 1) + b
    g = trace(f, x, y)
    assert "exp" in _names(g)
    assert "exp" not in _names(passes.dce(g))
    assert _names(passes.cse(g)).count("mul") == _names(g).count("mul") - 1
    folded = passes.fold_constants(g)
    assert len(folded.nodes) == len(g.nodes) - 1
    s = passes.simplify(g)
    assert "reshape" not in _names(s) and "permute" not in _names(s)  # back to the same shape and order
    opt = passes.optimize(g)
    assert _names(opt) == ["mul", "add", "add"]
    x2, y2 = lamina.randn(3, 4), lamina.randn(3, 4)
    want = f(x2, y2).numpy()
    for gg in (g, s, folded, opt):
        np.testing.assert_allclose(run(gg, x2, y2).numpy(), want, rtol=1e-14)
    np.testing.assert_allclose(Executor(opt)(x2, y2).numpy(), want, rtol=1e-14)


def test_fusion_groups_and_memory_plan():
    x = lamina.randn(64, 32)
    b = lamina.randn(32)

    def f(x):
        h = ((x * 2.0 + b).tanh() * x).sigmoid()
        return (h @ h.mT).relu().exp().sum()
    g = passes.fuse_elementwise(trace(f, x))
    groups = {n.group for n in g.nodes if n.group is not None}
    assert len(groups) == 2
    first = [n.name for n in g.nodes if n.group == min(groups)]
    assert first == ["mul", "add", "tanh", "mul", "sigmoid"]
    ex = Executor(g)
    assert ex.fused_chains == 2
    x2 = lamina.randn(64, 32)
    np.testing.assert_allclose(ex(x2).item(), f(x2).item(), rtol=1e-12)
    plan = passes.plan_memory(g)
    assert plan.peak_bytes <= plan.planned_bytes < plan.unplanned_bytes


def test_simplify_composes_reshapes_and_permutes():
    x = lamina.randn(2, 3, 4)
    g = trace(lambda x: x.reshape(6, 4).reshape(4, 6).permute(1, 0).permute(1, 0).transpose(0, 1), x)
    s = passes.simplify(g)
    assert _names(s) == ["reshape", "permute"]
    assert s.nodes[0].inputs[0] is g.inputs[0] and s.nodes[1].op.dims == (1, 0)
    x2 = lamina.randn(2, 3, 4)
    np.testing.assert_array_equal(run(s, x2).numpy(), x2.reshape(4, 6).transpose(0, 1).numpy())
