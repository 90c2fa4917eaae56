import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from lamina import kernels as K

from .conftest import rand


def _tol(dtype):
    return (2e-6, 2e-6) if dtype == np.float32 else (1e-12, 1e-13)


@pytest.fixture(params=[37, 3, 77], ids=["row37", "row3", "row77"])
def row(request):
    """Row lengths: shorter than one vector, and whole vectors with a tail (float32 and float64)."""
    return request.param


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_torch_with_inf_and_nan_rows(log, dtype, parts, row):
    rng = np.random.default_rng(3)
    x = rand(rng, (6, row), dtype, 3.0)
    x[1, ::3] = -np.inf          # exact zeros / -inf
    x[2, :] = -np.inf            # all -inf: NaN, as torch
    x[3, min(5, row - 1)] = np.nan  # NaN poisons its row
    x[4, 0] = 1e4                # one dominant entry
    g = rand(rng, x.shape, dtype)
    fwd, bwd, tf = ((K.log_softmax_forward, K.log_softmax_backward, TF.log_softmax) if log else
                    (K.softmax_forward, K.softmax_backward, TF.softmax))
    y = fwd(x)
    tx = torch.from_numpy(x).requires_grad_()
    ty = tf(tx, -1)
    tdx, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)  # NaN == NaN here
    if log:
        assert np.all(y[1, ::3] == -np.inf)
    else:
        assert np.all(y[1, ::3] == 0)
    assert np.isnan(y[2]).all() and np.isnan(y[3]).all()
    dx = bwd(g, y)
    ok = [0, 4, 5] if log else [0, 1, 4, 5]  # torch's log_softmax backward of -inf entries is NaN-free too
    np.testing.assert_allclose(dx[ok], tdx.numpy()[ok], rtol=rtol * 5, atol=atol * 5)


def test_softmax_nd_and_declines(dtype):
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 3, 5), dtype)
    np.testing.assert_allclose(K.softmax_forward(x), TF.softmax(torch.from_numpy(x), -1).numpy(),
                               rtol=_tol(dtype)[0], atol=_tol(dtype)[1])
    assert K.softmax_forward(x.transpose(0, 2, 1)) is None
    assert K.softmax_forward(x.astype(np.float16)) is None
    assert K.softmax_backward(x, x.astype(np.float32 if dtype == np.float64 else np.float64)) is None


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_torch(reduction, smoothing, dtype, parts, row):
    rng = np.random.default_rng(5)
    x = rand(rng, (33, row), dtype, 2.0)
    t = rng.integers(0, row, 33)
    t[[2, 7]] = -100
    tx = torch.from_numpy(x).requires_grad_()
    tl = TF.cross_entropy(tx, torch.from_numpy(t), reduction=reduction, label_smoothing=smoothing)
    tg, = torch.autograd.grad(tl.sum(), tx)
    loss, grad = K.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=rtol * 5, atol=atol * 5)
    np.testing.assert_allclose(grad, tg.numpy(), rtol=rtol * 5, atol=atol * 5)
    assert loss.dtype == dtype and grad.dtype == dtype


def test_cross_entropy_edge_cases(parts):
    x = np.random.default_rng(6).standard_normal((4, 3)).astype(np.float32)
    loss, grad = K.cross_entropy(x, np.full(4, -100))  # every row ignored: NaN, zero gradient (torch)
    assert np.isnan(loss) and not grad.any()
    with pytest.raises(IndexError, match="target 3 of row 1 is out of range for 3 classes"):
        K.cross_entropy(x, np.array([0, 3, 1, 1]))
    assert K.cross_entropy(x, np.array([0, 1, 1, 1], np.int32)) is None
    assert K.cross_entropy(np.asfortranarray(x), np.array([0, 1, 1, 1])) is None
    with pytest.raises(ValueError, match="reduction"):
        K.cross_entropy(x, np.array([0, 1, 1, 1]), reduction="avg")


@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm_matches_torch(affine, dtype, parts):
    rng = np.random.default_rng(7)
    x, g = rand(rng, (2, 13, 3, 7), dtype, 2.0) + 1.5, rand(rng, (2, 13, 3, 7), dtype)
    w = rand(rng, (3, 7), dtype) if affine != "none" else None
    b = rand(rng, (3, 7), dtype) if affine == "both" else None
    y, mean, rstd = K.layer_norm_forward(x, 21, w, b, eps=1e-5)
    leaves = [torch.from_numpy(a).requires_grad_() for a in (x, w, b) if a is not None]
    ty = TF.layer_norm(leaves[0], (3, 7), *leaves[1:], eps=1e-5)
    tgrads = torch.autograd.grad(ty, leaves, torch.from_numpy(g))
    rtol, atol = (1e-5, 1e-5) if dtype == np.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)
    xd = x.reshape(26, 21).astype(np.float64)
    np.testing.assert_allclose(mean, xd.mean(1), rtol=rtol, atol=atol)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(xd.var(1) + 1e-5), rtol=rtol)
    dx, dw, db = K.layer_norm_backward(g, x, mean, rstd, 21, w)
    got = [dx] + ([dw] if w is not None else []) + ([db] if b is not None else [])
    for a, t in zip(got, tgrads):
        assert a.shape == t.shape and a.dtype == dtype
        np.testing.assert_allclose(a, t.numpy(), rtol=rtol * 10, atol=atol * 10)
    if b is None:
        assert (dw is None) == (w is None)
    only_w = K.layer_norm_backward(g, x, mean, rstd, 21, w, need_input=False, need_bias=False)
    assert only_w[0] is None and only_w[2] is None


def test_layer_norm_declines():
    x = np.ones((4, 6), np.float32)
    assert K.layer_norm_forward(x.T, 4) is None
    assert K.layer_norm_forward(x, 6, np.ones(6, np.float64)) is None
    assert K.layer_norm_forward(x, 6, np.ones(5, np.float32)) is None
    assert K.layer_norm_forward(x, 6, None, np.ones(6, np.float32)) is None


@pytest.mark.parametrize("upstream", [None, 2.5])
def test_cross_entropy_op_gradient_through_a_retained_graph(upstream, dtype):
    """loss.backward() hands the kernel's gradient over as it is; a second backward through the
    retained graph (and a scaled upstream gradient) still gives PyTorch's accumulated gradient."""
    import lamina
    from lamina.nn import functional as F
    rng = np.random.default_rng(21)
    x, t = rand(rng, (16, 7), dtype), rng.integers(0, 7, 16)
    lx = lamina.tensor(x, requires_grad=True)
    tx = torch.from_numpy(x).requires_grad_()
    loss, tloss = F.cross_entropy(lx, lamina.tensor(t)), TF.cross_entropy(tx, torch.from_numpy(t))
    g = None if upstream is None else lamina.tensor(np.asarray(upstream, dtype))
    tg = None if upstream is None else torch.tensor(upstream, dtype=tx.dtype)
    for _ in range(2):
        loss.backward(g, retain_graph=True)
        tloss.backward(tg, retain_graph=True)
    np.testing.assert_allclose(lx.grad.array, tx.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 31, 32, 33, 47, 64, 100])
def test_row_max_finds_the_largest_entry_wherever_it_is(n, dtype):
    """The vectorised row maximum, against NumPy's, with the largest entry at every position,
    and with NaN or -inf entries (passed over) around it."""
    k = K.softmax._lib()
    row_max = k._row_max
    rng = np.random.default_rng(n)
    for at in range(n):
        x = rand(rng, (n,), dtype)
        x[at] = 5.0
        assert row_max(x) == 5.0
        y = x.copy()
        y[(at + 1) % n] = np.nan if n > 1 else y[0]
        y[(at + 2) % n] = -np.inf if n > 2 else y[0]
        assert row_max(y) == (5.0 if n > 2 else np.nanmax(y))
    assert row_max(np.full(n, -np.inf, dtype)) == -np.inf
