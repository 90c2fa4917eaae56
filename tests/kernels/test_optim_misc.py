import numpy as np
import pytest
import torch

import lamina
from lamina import kernels as K
from lamina.optim.adam import Adam, AdamW
from lamina.optim.rmsprop import RMSprop
from lamina.optim.sgd import SGD

from .conftest import rand

OPTIMS = [
    (SGD, "sgd", dict(lr=0.1)),
    (SGD, "sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    (SGD, "sgd", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (Adam, "adam", dict(lr=1e-3, weight_decay=0.1)),
    (Adam, "adam", dict(lr=1e-3, amsgrad=True, maximize=True)),
    (AdamW, "adamw", dict(lr=1e-3, weight_decay=0.1)),
    (RMSprop, "rmsprop", dict(lr=1e-2)),
    (RMSprop, "rmsprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=0.1)),
]


def _reference(cls, kw, p0, grads):
    p = lamina.nn.Parameter(lamina.tensor(p0.copy()))
    opt = cls([p], **kw)
    for g in grads:
        p.grad = lamina.tensor(g.copy())
        opt.step()
    return p.array.copy()


def _kernel(name, kw, p0, grads):
    p = p0.copy()
    s = [np.zeros_like(p) for _ in range(3)]
    for step, g in enumerate(grads, 1):
        g_before = g.copy()
        if name == "sgd":
            assert K.sgd_update(p, g, s[0], step, **kw)
        elif name in ("adam", "adamw"):
            assert K.adam_update(p, g, s[0], s[1], s[2], step, decoupled_weight_decay=name == "adamw", **kw)
        else:
            assert K.rmsprop_update(p, g, s[0], s[1], s[2], **kw)
        np.testing.assert_array_equal(g, g_before)  # the gradient is only read
    return p


@pytest.mark.parametrize("cls,name,kw", OPTIMS, ids=lambda v: str(v) if isinstance(v, dict) else getattr(v, "__name__", v))
def test_optimiser_update_is_bitwise_the_numpy_rule(cls, name, kw, dtype, parts):
    rng = np.random.default_rng(14)
    p0 = rand(rng, (1001,), dtype)
    grads = [rand(rng, (1001,), dtype) for _ in range(3)]
    np.testing.assert_array_equal(_kernel(name, kw, p0, grads), _reference(cls, kw, p0, grads))


def test_adam_matches_torch(dtype):
    rng = np.random.default_rng(15)
    p0, grads = rand(rng, (257,), dtype), [rand(rng, (257,), dtype) for _ in range(3)]
    tp = torch.from_numpy(p0.copy()).requires_grad_()
    opt = torch.optim.AdamW([tp], lr=1e-2, weight_decay=0.1, foreach=False)
    for g in grads:
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
    got = _kernel("adamw", dict(lr=1e-2, weight_decay=0.1), p0, grads)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, tp.detach().numpy(), rtol=rtol, atol=rtol)


def test_optimiser_declines():
    p = np.ones(8, np.float32)
    assert not K.sgd_update(p, np.ones(8, np.float64), None, 1, 0.1)
    assert not K.sgd_update(p, np.ones(7, np.float32), None, 1, 0.1)
    assert not K.adam_update(p.reshape(2, 4), p.reshape(2, 4), p.reshape(2, 4), p.reshape(2, 4), None, 1, 0.1)
    assert not K.adam_update(p[::2], p[::2], p[::2], p[::2], None, 1, 0.1)
    assert (p == 1).all()


def test_embedding_backward_matches_torch(dtype, parts):
    rng = np.random.default_rng(16)
    g = rand(rng, (3, 50, 9), dtype)
    idx = rng.integers(0, 7, (3, 50))
    w = torch.zeros(7, 9, dtype=torch.float32 if dtype == np.float32 else torch.float64, requires_grad=True)
    for pad in (None, 2):
        y = torch.nn.functional.embedding(torch.from_numpy(idx), w, padding_idx=pad)
        tg, = torch.autograd.grad(y, w, torch.from_numpy(g))
        np.testing.assert_allclose(K.embedding_backward(g, idx, 7, pad), tg.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError, match="out of range"):
        K.embedding_backward(g, idx + 1, 7)
    assert K.embedding_backward(g, idx.astype(np.int32), 7) is None


def test_dropout_mask(dtype, parts):
    x = rand(np.random.default_rng(17), (1000, 37), dtype)
    y, mask = K.dropout_forward(x, 0.3, seed=1234)
    assert mask.dtype == dtype and set(np.unique(mask)) == {0, dtype.type(1 / 0.7)}
    assert abs((mask != 0).mean() - 0.7) < 0.01
    np.testing.assert_array_equal(y, x * mask)
    again = K.dropout_forward(x, 0.3, seed=1234)[1]
    np.testing.assert_array_equal(again, mask)                      # same seed, same mask
    assert (K.dropout_forward(x, 0.3, seed=1235)[1] != mask).any()  # another seed, another mask
    assert (K.dropout_forward(x, 0.0, seed=1)[1] == 1).all()
    with pytest.raises(ValueError, match="dropout"):
        K.dropout_forward(x, 1.0, seed=1)


def test_dropout_mask_does_not_depend_on_threads():
    from lamina.kernels import _checks
    x = np.ones(100003, np.float32)
    previous = _checks.force_parts
    try:
        _checks.force_parts = 1
        a = K.dropout_forward(x, 0.5, 7)[1]
        _checks.force_parts = 2
        b = K.dropout_forward(x, 0.5, 7)[1]
    finally:
        _checks.force_parts = previous
    np.testing.assert_array_equal(a, b)


def test_reductions(dtype):
    x = rand(np.random.default_rng(18), (300001,), dtype) + 3
    xd = x.astype(np.float64)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(K.sum_all(x), xd.sum(), rtol=rtol)
    np.testing.assert_allclose(K.mean_all(x), xd.mean(), rtol=rtol)
    np.testing.assert_allclose(K.var_all(x), xd.var(ddof=1), rtol=rtol)
    np.testing.assert_allclose(K.var_all(x, correction=0), torch.from_numpy(x).var(correction=0).item(), rtol=rtol * 10)
    assert K.sum_all(np.zeros(0, dtype)) == 0 and np.isnan(K.var_all(np.ones(1, dtype)))
    assert K.sum_all(x[::2]) is None


@pytest.mark.parametrize("keepdim", [False, True])
def test_whole_array_reductions_as_ops(dtype, keepdim, monkeypatch):
    """sum/mean/var/std over every dim of a large float tensor take the kernels (sum from
    WHOLE_SUM_MIN elements), with the shapes, dtypes and values of PyTorch's and of the NumPy path;
    a dtype=, a strided view or some of the dims go to NumPy; the gradients are unchanged."""
    calls = []
    for name in ("sum_all", "mean_all", "var_all"):
        original = getattr(K, name)
        def taken(*args, _original=original, _name=name):
            out = _original(*args)
            if out is not None:
                calls.append(_name)
            return out
        monkeypatch.setattr(K, name, taken)
    x = rand(np.random.default_rng(19), (3, 7, 1001), dtype) + 2
    tx = torch.from_numpy(x).requires_grad_()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for on in (True, False):
        previous = K.set_enabled(on)
        try:
            calls.clear()
            lx = lamina.tensor(x, requires_grad=True)
            outs = [lx.sum(keepdim=keepdim), lx.mean(dim=(0, 1, 2), keepdim=keepdim),
                    lx.var(keepdim=keepdim), lx.std(keepdim=keepdim, correction=0)]
            assert calls == (["sum_all", "mean_all", "var_all", "var_all"] if on else [])
            sum(o.sum() for o in outs).backward()
            calls.clear()
            other = lamina.float64 if dtype == np.float32 else lamina.float32
            assert lx.sum(dtype=other).dtype == other
            lx[:, :, ::2].sum(), lx.sum(dim=(0, 1)), lx.mean(dim=2)
            assert calls == []
        finally:
            K.set_enabled(previous)
        touts = [tx.sum(), tx.mean(dim=(0, 1, 2), keepdim=keepdim), tx.var(), tx.std(correction=0)]
        if keepdim:
            touts = [t.reshape(1, 1, 1) for t in touts]
        tx.grad = None
        sum(t.sum() for t in touts).backward()
        for o, t in zip(outs, touts):
            assert o.shape == tuple(t.shape) and o.dtype == lx.dtype
            np.testing.assert_allclose(o.array, t.detach().numpy(), rtol=rtol)
        np.testing.assert_allclose(lx.grad.array, tx.grad.numpy(), rtol=rtol, atol=1e-6)


def test_scale_rows(dtype, parts):
    rng = np.random.default_rng(21)
    a = rng.standard_normal((37, 11)).astype(dtype)
    s0 = np.asarray(0.25, dtype)
    s1 = rng.standard_normal((37, 1)).astype(dtype)
    np.testing.assert_array_equal(K.scale_rows(a, s0), a * s0)
    np.testing.assert_array_equal(K.scale_rows(a, s1), a * s1)
    assert K.scale_rows(a, s0).dtype == dtype
    other = np.float64 if dtype == np.float32 else np.float32
    assert K.scale_rows(a, s0.astype(other)) is None       # the caller promotes as NumPy does
    assert K.scale_rows(a, s1[:5]) is None                 # not one value per row
    assert K.scale_rows(a[:, ::2], s0) is None             # not contiguous


@pytest.mark.parametrize("ufunc", [np.add, np.subtract, np.multiply, np.divide])
def test_binary_arithmetic_split_over_threads_equals_numpy(ufunc, dtype, monkeypatch):
    """Large binary arithmetic in row blocks on two kernel threads: NumPy's values, dtype and
    broadcasting (scalars, bias rows, columns, strided views), the caller's error state kept in
    the helper thread; and as an op, the same result as with the kernels off."""
    import warnings
    monkeypatch.setattr(K._runtime, "_threads", 2)
    monkeypatch.setattr(K._checks, "force_parts", 3)
    rng = np.random.default_rng(22)
    a, bias = rand(rng, (301, 17), dtype), rand(rng, (17,), dtype)
    a[0, 0] = 0.0
    for x, y in [(a, bias), (bias, a), (a, 0.5), (2, a), (a, a[:1]), (a[:, :1], a), (a.T, a.T[::-1]),
                 (np.float64(2.0), a), (a, np.zeros((), dtype))]:
        with np.errstate(divide="ignore", invalid="ignore"):
            got, want = K.binary(ufunc, x, y), ufunc(x, y)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        K.binary(ufunc, a, np.zeros_like(a))
    assert K.binary(ufunc, a, 1j) is None and K.binary(ufunc, a.astype(np.int64), 1) is None
    assert K.binary(ufunc, a[:1], bias) is None  # one row: nothing to split
    la, lb = lamina.tensor(a), lamina.tensor(bias)
    op = {np.add: lambda u, v: u + v, np.subtract: lambda u, v: u - v,
          np.multiply: lambda u, v: u * v, np.divide: lambda u, v: u / v}[ufunc]
    on = op(la, lb).array
    previous = K.set_enabled(False)
    try:
        np.testing.assert_array_equal(on, op(la, lb).array)
    finally:
        K.set_enabled(previous)
