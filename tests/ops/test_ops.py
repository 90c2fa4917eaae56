"""Tests generated from the op table: forward and backward parity with PyTorch (float64),
gradients against central finite differences, and second-order gradients."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import lamina
from tests.conftest import DEVICES
from tests.ops.harness import (
    as_numpy, assert_close, call, call_with, float_outputs, is_float_array, numeric_gradient,
    projection_weights, scalar_loss, to_torch,
)
from tests.ops.opinfo import OPS


def _samples(info):
    return list(info.samples(np.random.default_rng(zlib.crc32(info.name.encode()))))


CASES = [pytest.param(info, sample, id=f"{info.name}-{i}") for info in OPS for i, sample in enumerate(_samples(info))]
GRAD_CASES = [c for c in CASES if c.values[0].grad]
PARITY_CASES = [c for c in CASES if c.values[0].ref is not None]
PARITY_GRAD_CASES = [c for c in PARITY_CASES if c.values[0].grad]


def _leaf_values(sample):
    values = []

    def walk(obj):
        if is_float_array(obj):
            values.append(obj.astype(np.float64).copy())
        elif isinstance(obj, (tuple, list)):
            for o in obj:
                walk(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                walk(o)
    walk(sample.args)
    walk(sample.kwargs)
    return values


def _torch_outputs(info, sample):
    leaves = []
    args, kwargs = to_torch(sample.args, leaves), to_torch(sample.kwargs, leaves)
    out = info.ref(*args, **kwargs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return leaves, outs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "noncontig"])
@pytest.mark.parametrize("info,sample", PARITY_CASES)
def test_forward_parity(info, sample, noncontig, device):
    if noncontig and not info.noncontig:
        pytest.skip("op takes no array inputs to relayout")
    _, outs = call(info, sample, device, noncontig)
    _, touts = _torch_outputs(info, sample)
    assert len(outs) == len(touts), f"{info.name}: {len(outs)} outputs, torch gives {len(touts)}"
    for k, (o, t) in enumerate(zip(outs, touts)):
        assert_close(as_numpy(o), as_numpy(t), info.atol, info.rtol, f"{info.name} output {k} {sample}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("info,sample", PARITY_GRAD_CASES)
def test_backward_parity(info, sample, device):
    leaves, outs = call(info, sample, device)
    outs = float_outputs(outs)
    weights = projection_weights(outs)
    loss = scalar_loss(outs, weights, device)
    grads = lamina.grad(loss, leaves, allow_unused=True)

    tleaves, touts = _torch_outputs(info, sample)
    touts = [o for o in touts if o.dtype.is_floating_point]
    tloss = sum((o * torch.tensor(w)).sum() for o, w in zip(touts, weights))
    tgrads = torch.autograd.grad(tloss, tleaves, allow_unused=True)
    for k, (g, tg, leaf) in enumerate(zip(grads, tgrads, leaves)):
        g = np.zeros(leaf.shape) if g is None else as_numpy(g)
        tg = np.zeros(leaf.shape) if tg is None else tg.numpy()
        assert_close(g, tg, 1e-8, 1e-7, f"{info.name} grad of input {k} {sample}")


@pytest.mark.parametrize("info,sample", GRAD_CASES)
def test_gradcheck(info, sample):
    """Analytic gradients equal central finite differences in float64."""
    if not sample.fd:
        pytest.skip("finite differences cannot see this sample's defined gradient")
    leaves, outs = call(info, sample)
    outs = float_outputs(outs)
    weights = projection_weights(outs)
    loss = scalar_loss(outs, weights)
    analytic = lamina.grad(loss, leaves, allow_unused=True)

    def f(values):
        with lamina.no_grad():
            return float(scalar_loss(float_outputs(call_with(info, sample, "cpu", values)), weights).item())
    numeric = numeric_gradient(f, _leaf_values(sample))
    for k, (a, n, leaf) in enumerate(zip(analytic, numeric, leaves)):
        a = np.zeros(leaf.shape) if a is None else as_numpy(a)
        assert_close(a, n, 1e-5, 1e-4, f"{info.name} gradcheck input {k} {sample}")


GRADGRAD_CASES = []
for _info in OPS:
    if _info.grad and _info.gradgrad:
        _first = [c for c in GRAD_CASES if c.values[0] is _info and c.values[1].fd][:1]
        GRADGRAD_CASES += _first


@pytest.mark.parametrize("info,sample", GRADGRAD_CASES)
def test_gradgradcheck(info, sample):
    """Gradients built with create_graph=True differentiate correctly again."""
    leaves, outs = call(info, sample)
    outs = float_outputs(outs)
    weights = projection_weights(outs)
    rng = np.random.default_rng(1)
    vs = [rng.standard_normal(leaf.shape) for leaf in leaves]

    def first_grad_dot(leaves_, create_graph):
        outs_ = float_outputs(outs) if leaves_ is leaves else None
        loss = scalar_loss(outs_, weights)
        grads = lamina.grad(loss, leaves_, create_graph=create_graph, allow_unused=True)
        total = None
        for g, v in zip(grads, vs):
            if g is None:
                continue
            term = (g * lamina.tensor(v, dtype=lamina.float64)).sum()
            total = term if total is None else total + term
        return total

    total = first_grad_dot(leaves, True)
    if total is None or total._node is None:
        pytest.skip("gradient is constant in the inputs (second derivative is zero)")
    analytic = lamina.grad(total, leaves, allow_unused=True)

    def f(values):
        ls, os_ = [], None
        with lamina.enable_grad():
            vals = [lamina.tensor(v, dtype=lamina.float64, requires_grad=True) for v in values]
            it = iter(vals)

            def sub(obj):
                if is_float_array(obj):
                    t = next(it)
                    ls.append(t)
                    return t
                if isinstance(obj, np.ndarray):
                    return lamina.tensor(obj)
                if isinstance(obj, tuple):
                    return tuple(sub(o) for o in obj)
                if isinstance(obj, list):
                    return [sub(o) for o in obj]
                if isinstance(obj, dict):
                    return {k: sub(v) for k, v in obj.items()}
                return obj
            args, kwargs = sub(sample.args), sub(sample.kwargs)
            if info.random:
                lamina.manual_seed(1234)
            from tests.ops.harness import flat_outputs
            os_ = float_outputs(flat_outputs(info.fn(*args, **kwargs)))
            loss = scalar_loss(os_, weights)
            grads = lamina.grad(loss, ls, allow_unused=True)
        return float(sum(float((g.detach().numpy() * v).sum()) for g, v in zip(grads, vs) if g is not None))

    numeric = numeric_gradient(f, _leaf_values(sample), eps=1e-5)
    for k, (a, n, leaf) in enumerate(zip(analytic, numeric, leaves)):
        a = np.zeros(leaf.shape) if a is None else as_numpy(a)
        assert_close(a, n, 1e-4, 1e-3, f"{info.name} second-order input {k} {sample}")


def _has_array_backward(outs):
    from lamina.autograd import _topological_order
    roots = [o._node for o in outs if o._node is not None]
    return any(n.backward_arrays is not None for n in _topological_order(roots))


ARRAY_PATH_CASES = [c for c in GRAD_CASES
                    if _has_array_backward(float_outputs(call(c.values[0], c.values[1])[1]))]


def test_array_backward_cases_exist():
    """Every op class with an array-level backward is reached by some sample below."""
    from lamina.ops.base import REGISTRY
    with_fast = {name for name, cls in REGISTRY.items() if cls.backward_arrays is not None}
    assert with_fast >= {"Gelu", "LayerNorm", "LSTMSequence", "GRUSequence", "RNNSequence"}
    assert len(ARRAY_PATH_CASES) >= len(with_fast)


@pytest.mark.parametrize("info,sample", ARRAY_PATH_CASES)
def test_array_and_tensor_backward_agree(info, sample):
    """The engine's first-order path (``backward_arrays``) and the graph-building path
    (``backward`` under create_graph) give the same gradients."""
    results = []
    for create_graph in (False, True):
        leaves, outs = call(info, sample)
        outs = float_outputs(outs)
        loss = scalar_loss(outs, projection_weights(outs))
        grads = lamina.grad(loss, leaves, allow_unused=True, create_graph=create_graph)
        results.append([None if g is None else as_numpy(g.detach()) for g in grads])
    for k, (a, b) in enumerate(zip(*results)):
        assert (a is None) == (b is None), f"{info.name} input {k}"
        if a is not None:
            assert_close(a, b, 1e-10, 1e-9, f"{info.name} array vs tensor backward, input {k} {sample}")
