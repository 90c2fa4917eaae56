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


DTYPES = {"float64": np.float64, "float32": np.float32}


BF16_CASES = [c for c in PARITY_CASES if c.values[0].noncontig]


@pytest.mark.parametrize("info,sample", BF16_CASES)
def test_forward_parity_bfloat16(info, sample):
    """bfloat16 forward against PyTorch's bfloat16, where Lamina's op takes bfloat16 (ops that do
    not say so in one line, a TypeError naming the dtype)."""
    import ml_dtypes
    try:
        _, outs = call(info, sample, "cpu", False, ml_dtypes.bfloat16)
    except TypeError as e:
        if "bfloat16" not in str(e):
            raise
        pytest.skip(f"{info.name} does not take bfloat16: {e}")
    _, touts = _torch_outputs(info, sample, np.float32)
    for k, (o, t) in enumerate(zip(outs, touts)):
        t = t.detach().to(torch.bfloat16).float().numpy() if t.dtype.is_floating_point else t.numpy()
        o = as_numpy(o)
        if o.dtype == ml_dtypes.bfloat16:
            o = o.astype(np.float32)
        assert_close(o, t, 5e-2, 5e-2, f"{info.name} bfloat16 output {k} {sample}")


def _tolerances(info, dtype, grad=False):
    if dtype == "float64":
        return (1e-8, 1e-7) if grad else (info.atol, info.rtol)
    return (10 * info.atol32, 10 * info.rtol32) if grad else (info.atol32, info.rtol32)


def _torch_outputs(info, sample, dtype=np.float64):
    leaves = []
    args, kwargs = to_torch(sample.args, leaves, dtype), to_torch(sample.kwargs, leaves, dtype)
    out = info.ref(*args, **kwargs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return leaves, outs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "noncontig"])
@pytest.mark.parametrize("info,sample", PARITY_CASES)
def test_forward_parity(info, sample, noncontig, dtype, device):
    if noncontig and not info.noncontig:
        pytest.skip("op takes no array inputs to relayout")
    _, outs = call(info, sample, device, noncontig, DTYPES[dtype])
    _, touts = _torch_outputs(info, sample, DTYPES[dtype])
    assert len(outs) == len(touts), f"{info.name}: {len(outs)} outputs, torch gives {len(touts)}"
    atol, rtol = _tolerances(info, dtype)
    for k, (o, t) in enumerate(zip(outs, touts)):
        o, t = as_numpy(o), as_numpy(t)
        if t.dtype.kind == "f":
            assert o.dtype == t.dtype, f"{info.name} output {k}: dtype {o.dtype}, torch gives {t.dtype}"
        assert_close(o, t, atol, rtol, f"{info.name} output {k} {sample} ({dtype})")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("info,sample", PARITY_GRAD_CASES)
def test_backward_parity(info, sample, dtype, device):
    leaves, outs = call(info, sample, device, dtype=DTYPES[dtype])
    outs = float_outputs(outs)
    weights = projection_weights(outs)
    loss = scalar_loss(outs, weights, device)
    grads = lamina.grad(loss, leaves, allow_unused=True)

    tleaves, touts = _torch_outputs(info, sample, DTYPES[dtype])
    touts = [o for o in touts if o.dtype.is_floating_point]
    tloss = sum((o * torch.tensor(w, dtype=o.dtype)).sum() for o, w in zip(touts, weights))
    tgrads = torch.autograd.grad(tloss, tleaves, allow_unused=True)
    atol, rtol = _tolerances(info, dtype, grad=True)
    for k, (g, tg, leaf) in enumerate(zip(grads, tgrads, leaves)):
        g = np.zeros(leaf.shape) if g is None else as_numpy(g)
        tg = np.zeros(leaf.shape) if tg is None else tg.numpy()
        assert_close(g, tg, atol, rtol, f"{info.name} grad of input {k} {sample} ({dtype})")


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


GRADGRAD_CASES = [c for c in GRAD_CASES if c.values[0].gradgrad and c.values[1].fd]


@pytest.mark.parametrize("info,sample", GRADGRAD_CASES)
def test_gradgradcheck(info, sample):
    """Gradients built with create_graph=True differentiate correctly again, with respect to the
    inputs and to the incoming gradient (the vector of the vector-Jacobian product), checked
    against finite differences of the first-order gradient."""
    rng = np.random.default_rng(1)
    with lamina.enable_grad():
        leaves, outs = call(info, sample)
        outs = float_outputs(outs)
    cotangents = [lamina.tensor(w, dtype=lamina.float64, requires_grad=True) for w in projection_weights(outs)]
    vs = [rng.standard_normal(leaf.shape) for leaf in leaves]

    def first_grad_dot(leaves_, outs_, cots):
        loss = None
        for o, w in zip(outs_, cots):
            term = (o * w).sum()
            loss = term if loss is None else loss + term
        grads = lamina.grad(loss, leaves_, create_graph=True, allow_unused=True)
        total = None
        for g, v in zip(grads, vs):
            if g is not None:
                term = (g * lamina.tensor(v, dtype=lamina.float64)).sum()
                total = term if total is None else total + term
        return total

    total = first_grad_dot(leaves, outs, cotangents)
    if total is None or total._node is None:
        pytest.skip("the gradient does not depend on the inputs or the incoming gradient")
    wrt = leaves + cotangents
    analytic = lamina.grad(total, wrt, allow_unused=True)

    def f(values):
        xs, ws = values[:len(leaves)], values[len(leaves):]
        with lamina.enable_grad():
            ls, os_ = [], None
            it = iter(xs)

            def sub(obj):
                if is_float_array(obj):
                    t = lamina.tensor(next(it), dtype=lamina.float64, requires_grad=True)
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
            total_ = first_grad_dot(ls, os_, [lamina.tensor(w, dtype=lamina.float64) for w in ws])
        return 0.0 if total_ is None else float(total_.item())

    # directional derivatives along random directions: two evaluations each, whatever the size
    values = _leaf_values(sample) + [w.detach().numpy().copy() for w in cotangents]
    analytic = [np.zeros(t.shape) if a is None else as_numpy(a) for a, t in zip(analytic, wrt)]
    eps = 1e-5
    for d in range(3):
        us = [rng.standard_normal(v.shape) for v in values]
        up = f([v + eps * u for v, u in zip(values, us)])
        down = f([v - eps * u for v, u in zip(values, us)])
        numeric = (up - down) / (2 * eps)
        exact = sum(float((a * u).sum()) for a, u in zip(analytic, us))
        assert_close(exact, numeric, 1e-4, 1e-3, f"{info.name} second-order along direction {d} {sample}")


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


# ---------------------------------------------------------------- kernels off
# Ops with compiled CPU kernels keep their NumPy path as the reference: their parity and
# array-backward tests run again with the kernels switched off (the rest of the table never
# reaches a kernel, so running it twice would test nothing new). LAMINA_KERNELS=0 runs the whole
# suite without kernels.
KERNEL_OPS = {"tanh", "sigmoid", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "softmax",
              "log_softmax", "layer_norm", "cross_entropy", "embedding", "conv2d",
              "F.scaled_dot_product_attention"}
_KERNEL_PARITY = [c for c in PARITY_CASES if c.values[0].name in KERNEL_OPS]
_KERNEL_PARITY_GRAD = [c for c in PARITY_GRAD_CASES if c.values[0].name in KERNEL_OPS]
_KERNEL_ARRAY = [c for c in ARRAY_PATH_CASES if c.values[0].name in KERNEL_OPS]


@pytest.fixture
def kernels_off():
    previous = lamina.kernels.set_enabled(False)
    yield
    lamina.kernels.set_enabled(previous)


def test_kernel_cases_exist():
    names = {c.values[0].name for c in _KERNEL_PARITY_GRAD} | {c.values[0].name for c in _KERNEL_ARRAY}
    assert names == KERNEL_OPS


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("info,sample", _KERNEL_PARITY)
def test_forward_parity_kernels_off(info, sample, dtype, kernels_off):
    test_forward_parity(info, sample, False, dtype, "cpu")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("info,sample", _KERNEL_PARITY_GRAD)
def test_backward_parity_kernels_off(info, sample, dtype, kernels_off):
    test_backward_parity(info, sample, dtype, "cpu")


@pytest.mark.parametrize("info,sample", _KERNEL_ARRAY)
def test_array_and_tensor_backward_agree_kernels_off(info, sample, kernels_off):
    test_array_and_tensor_backward_agree(info, sample)


@pytest.mark.parametrize("info,sample", [c for c in GRAD_CASES if c.values[0].name == "dropout"])
def test_dropout_gradcheck_kernels_off(info, sample, kernels_off):
    """Dropout has no PyTorch parity (its random stream is its own): its NumPy mask path is
    checked against finite differences."""
    test_gradcheck(info, sample)


_WIRED = [  # (op-table name, the kernel functions its forward and first-order backward call)
    ("tanh", ("tanh_forward", "tanh_backward")),
    ("sigmoid", ("sigmoid_forward", "sigmoid_backward")),
    ("relu", ("relu_forward", "relu_backward")),
    ("leaky_relu", ("leaky_relu_forward", "leaky_relu_backward")),
    ("gelu", ("gelu_forward", "gelu_backward")),
    ("gelu_tanh", ("gelu_forward", "gelu_backward")),
    ("silu", ("silu_forward", "silu_backward")),
    ("softmax", ("softmax_forward", "softmax_backward")),
    ("log_softmax", ("log_softmax_forward", "log_softmax_backward")),
    ("layer_norm", ("layer_norm_forward", "layer_norm_backward")),
    ("cross_entropy", ("cross_entropy",)),
    ("embedding", ("embedding_backward",)),
    ("dropout", ("dropout_forward",)),
    ("conv2d", ("conv2d_forward", "conv2d_backward")),  # its first sample: 3 channels, groups 1
    ("F.scaled_dot_product_attention", ("attention_forward", "attention_backward")),
]


@pytest.mark.skipif(not lamina.kernels.enabled(), reason="kernels are off (LAMINA_KERNELS=0 or no Numba)")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name,functions", _WIRED, ids=[w[0] for w in _WIRED])
def test_ops_call_their_kernels(name, functions, dtype, monkeypatch):
    """With kernels on, contiguous CPU float inputs reach the compiled kernels (and still match
    PyTorch, checked by the parity tests above)."""
    calls = {f: 0 for f in functions}
    for f in functions:
        original = getattr(lamina.kernels, f)

        def counted(*args, _f=f, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            calls[_f] += out is not None
            return out
        monkeypatch.setattr(lamina.kernels, f, counted)
    info = next(i for i in OPS if i.name == name)
    sample = _samples(info)[0]
    leaves, outs = call(info, sample, dtype=DTYPES[dtype])
    outs = float_outputs(outs)
    lamina.grad(scalar_loss(outs, projection_weights(outs)), leaves, allow_unused=True)
    assert all(calls.values()), f"{name}: kernels not reached: {calls}"
