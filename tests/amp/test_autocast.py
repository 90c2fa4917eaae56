"""lamina.amp.autocast against torch.autocast on the CPU (bfloat16 and float16)."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import lamina
import lamina.nn.functional as F
from lamina import amp
from lamina.amp import autocast, autocast_op

torch = pytest.importorskip("torch")

BF16_ULP = 2.0 ** -7  # relative spacing of bfloat16 near 1, so one rounding step
linear = autocast_op("linear")(F.linear)
matmul = autocast_op("matmul")(lamina.matmul)
conv2d = autocast_op("conv2d")(lamina.conv2d)
cross_entropy = autocast_op("cross_entropy")(F.cross_entropy)
cat = autocast_op("cat")(lamina.cat)


def f32(t) -> np.ndarray:
    """Values of a lamina or torch tensor as float32 NumPy."""
    if isinstance(t, torch.Tensor):
        return t.detach().float().numpy()
    return t.detach().to(lamina.float32).numpy()


def rounded(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` rounded to ``dtype`` and back to float32."""
    return lamina.tensor(a).to(dtype).to(lamina.float32).numpy()


def data(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("dtype, tdtype", [(lamina.bfloat16, torch.bfloat16), (lamina.float16, torch.float16)],
                         ids=["bfloat16", "float16"])
def test_linear_runs_in_low_precision_with_float32_accumulation_as_torch(dtype, tdtype):
    x, w, b = data(16, 64), data(8, 64, seed=1), data(8, seed=2)
    lw, lb = lamina.tensor(w, requires_grad=True), lamina.tensor(b, requires_grad=True)
    with autocast("cpu", dtype=dtype):
        y = linear(lamina.tensor(x), lw, lb)
    assert y.dtype == dtype
    # exactly: the rounded inputs' float32 product, rounded once
    expect = rounded(rounded(x, dtype) @ rounded(w, dtype).T + rounded(b, dtype), dtype)
    np.testing.assert_array_equal(f32(y), expect)

    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    with torch.autocast("cpu", dtype=tdtype):
        ty = torch.nn.functional.linear(torch.tensor(x), tw, tb)
    assert ty.dtype == tdtype
    np.testing.assert_allclose(f32(y), f32(ty), rtol=BF16_ULP, atol=1e-3)

    (y.to(lamina.float32) ** 2).sum().backward()
    (ty.float() ** 2).sum().backward()
    assert lw.grad.dtype == lamina.float32 and lb.grad.dtype == lamina.float32  # as torch: params keep float32
    np.testing.assert_allclose(lw.grad.numpy(), tw.grad.numpy(), rtol=3e-2, atol=0.5)
    np.testing.assert_allclose(lb.grad.numpy(), tb.grad.numpy(), rtol=3e-2, atol=0.5)


def test_matmul_and_conv2d_follow_torch_dtypes_and_values():
    a, b = data(3, 5, 7), data(7, 4, seed=1)
    with autocast("cpu"):
        y = matmul(lamina.tensor(a), lamina.tensor(b))
    with torch.autocast("cpu"):
        ty = torch.matmul(torch.tensor(a), torch.tensor(b))
    assert y.dtype == lamina.bfloat16 and ty.dtype == torch.bfloat16
    np.testing.assert_allclose(f32(y), f32(ty), rtol=BF16_ULP, atol=1e-2)

    x, k = data(2, 3, 9, 9), data(4, 3, 3, 3, seed=3)
    with autocast("cpu"):
        y = conv2d(lamina.tensor(x), lamina.tensor(k), padding=1)
    with torch.autocast("cpu"):
        ty = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(k), padding=1)
    assert y.dtype == lamina.bfloat16 and ty.dtype == torch.bfloat16
    np.testing.assert_allclose(f32(y), f32(ty), rtol=BF16_ULP, atol=2e-2)


def test_disabled_autocast_changes_nothing():
    x, w = lamina.tensor(data(4, 6)), lamina.tensor(data(5, 6, seed=1))
    plain = linear(x, w)
    with autocast("cpu", enabled=False):
        off = linear(x, w)
        assert not amp.is_autocast_enabled("cpu")
    assert off.dtype == lamina.float32
    np.testing.assert_array_equal(off.numpy(), plain.numpy())


def test_nesting_decorator_and_state_queries_as_torch():
    x, w = lamina.tensor(data(2, 3)), lamina.tensor(data(4, 3))
    assert not amp.is_autocast_enabled("cpu") and amp.get_autocast_dtype("cpu") == lamina.bfloat16
    assert amp.get_autocast_dtype("cuda") == lamina.float16
    assert str(torch.get_autocast_dtype("cpu")) == "torch.bfloat16"
    with autocast("cpu", dtype=lamina.float16):
        assert amp.is_autocast_enabled("cpu") and amp.get_autocast_dtype("cpu") == lamina.float16
        with autocast("cpu", enabled=False):
            assert linear(x, w).dtype == lamina.float32
        assert linear(x, w).dtype == lamina.float16
    assert not amp.is_autocast_enabled("cpu") and amp.get_autocast_dtype("cpu") == lamina.bfloat16
    assert linear(x, w).dtype == lamina.float32

    @autocast("cpu")
    def forward(a, b):
        return linear(a, b)

    assert forward(x, w).dtype == lamina.bfloat16 and linear(x, w).dtype == lamina.float32


def test_precision_policies_float32_promote_and_untouched_inputs():
    logits = lamina.tensor(data(4, 5)).to(lamina.bfloat16)
    target = lamina.tensor([0, 1, 2, 3])
    with autocast("cpu"):
        loss = cross_entropy(logits, target)  # losses run in float32, as torch's
        joined = cat([logits, lamina.tensor(data(2, 5))])  # mixed inputs promote
        d = matmul(lamina.tensor(data(2, 2)).to(lamina.float64), lamina.tensor(data(2, 2)).to(lamina.float64))
        i = matmul(lamina.tensor([[1, 2]]), lamina.tensor([[3], [4]]))
    with torch.autocast("cpu"):
        tl = torch.nn.functional.cross_entropy(torch.tensor(data(4, 5)).bfloat16(), torch.tensor([0, 1, 2, 3]))
        tj = torch.cat([torch.tensor(data(4, 5)).bfloat16(), torch.tensor(data(2, 5))])
        td = torch.mm(torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64))
    assert loss.dtype == lamina.float32 and tl.dtype == torch.float32
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-6)
    assert joined.dtype == lamina.float32 and tj.dtype == torch.float32
    assert d.dtype == lamina.float64 and td.dtype == torch.float64
    assert i.dtype == lamina.int64 and i.item() == 11


def test_unsupported_settings_warn_and_disable_as_torch():
    with pytest.warns(UserWarning, match="not supported"):
        region = autocast("cpu", dtype=lamina.float32)
    with region:
        assert linear(lamina.ones(1, 2), lamina.ones(3, 2)).dtype == lamina.float32
    if not lamina.cuda_is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            region = autocast("cuda")
        with region:
            assert not amp.is_autocast_enabled("cuda")
    with pytest.raises(ValueError, match="device_type must be 'cpu' or 'cuda'.*'mps'"):
        autocast("mps")
    with pytest.raises(TypeError, match="enabled must be True or False"):
        autocast("cpu", enabled="yes")
    assert amp.is_autocast_available("cpu") and amp.is_autocast_available("cuda") is lamina.cuda_is_available()


def test_autocast_is_per_thread():
    seen = []
    with autocast("cpu"):
        t = threading.Thread(target=lambda: seen.append(amp.is_autocast_enabled("cpu")))
        t.start(), t.join()
        assert amp.is_autocast_enabled("cpu")
    assert seen == [False]


def test_region_state_survives_an_exception():
    with pytest.raises(ValueError):
        with autocast("cpu"):
            linear(lamina.ones(2, 3), lamina.ones(4, 5))  # shape error raised inside the cast op
    assert not amp.is_autocast_enabled("cpu")
    with autocast("cpu"):  # and ops run cast again afterwards
        assert linear(lamina.ones(2, 3), lamina.ones(4, 3)).dtype == lamina.bfloat16


def test_a_model_trains_under_autocast_as_torch(monkeypatch):
    # nn.Linear calls F.linear, so the wrapped function stands in for the op hook here
    monkeypatch.setattr(F, "linear", linear)
    lamina.manual_seed(0)
    model = lamina.nn.Sequential(lamina.nn.Linear(10, 32), lamina.nn.ReLU(), lamina.nn.Linear(32, 3))
    tmodel = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        for p, q in zip(model.parameters(), tmodel.parameters(), strict=True):
            q.copy_(torch.tensor(p.detach().numpy()))
    x, y = data(16, 10, seed=5), np.arange(16) % 3
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    losses, tlosses = [], []
    for _ in range(5):
        opt.zero_grad(), topt.zero_grad()
        with autocast("cpu"):
            out = model(lamina.tensor(x))
            loss = cross_entropy(out, lamina.tensor(y))
        with torch.autocast("cpu"):
            tout = tmodel(torch.tensor(x))
            tloss = torch.nn.functional.cross_entropy(tout, torch.tensor(y))
        assert out.dtype == lamina.bfloat16 and loss.dtype == lamina.float32
        loss.backward(), tloss.backward()
        opt.step(), topt.step()
        losses.append(loss.item()), tlosses.append(tloss.item())
    np.testing.assert_allclose(losses, tlosses, rtol=2e-2)
    assert losses[-1] < losses[0]
    for p, q in zip(model.parameters(), tmodel.parameters(), strict=True):
        assert p.dtype == lamina.float32
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=2e-2)


OPS_WITH_HOOK = [("lamina.ops.linalg", "linear"), ("lamina.ops.linalg", "matmul"), ("lamina.ops.conv", "conv2d"),
                 ("lamina.ops.conv", "conv1d")]


@pytest.mark.parametrize("module, name", OPS_WITH_HOOK, ids=[n for _, n in OPS_WITH_HOOK])
def test_ops_carry_the_autocast_hook(module, name):
    import importlib
    fn = getattr(importlib.import_module(module), name)
    if getattr(fn, "autocast_name", None) is None:
        pytest.skip(f"{module}.{name} is not decorated with lamina.amp.autocast_op yet")
    assert fn.autocast_name == name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with autocast("cpu"):
            if name.startswith("conv"):
                d = 1 if name == "conv1d" else 2
                out = fn(lamina.ones(1, 1, *(4,) * d), lamina.ones(1, 1, *(3,) * d))
            else:
                out = fn(lamina.ones(2, 3), lamina.ones(3, 3))
    assert out.dtype == lamina.bfloat16
