import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from lamina import kernels as K

from .conftest import rand, tol

CONVS = [  # n, c, o, h, w, k, stride, padding, dilation, groups
    (2, 3, 4, 9, 8, 3, 1, 1, 1, 1),
    (2, 4, 6, 10, 11, 3, 2, 2, 1, 1),
    (1, 2, 2, 11, 9, 3, 2, 0, 2, 1),        # dilated: the per-(ki, kj) packing
    (3, 1, 6, 28, 28, 5, 1, 2, 1, 1),
    (2, 6, 4, 7, 7, (3, 1), (1, 2), (0, 1), 1, 1),
    (2, 24, 5, 6, 7, 3, 1, 1, 1, 1),        # kw*C = 72: the wide packing order
    (1, 24, 3, 9, 9, 3, 2, 1, (2, 1), 1),   # wide, strided, dilated along the height only
    (2, 5, 19, 7, 6, (3, 2), (2, 1), (1, 2), (2, 2), 1),  # two vectors of outputs in float32, three in float64
    (3, 9, 5, 7, 8, 1, 1, 0, 1, 1),         # 1x1
    (2, 2, 7, 13, 37, 3, (2, 1), 1, (1, 2), 1),  # planar direct: three vectors of a 37-wide row
    (2, 1, 5, 9, 9, (3, 4), 1, 0, 1, 1),
]


@pytest.fixture(params=["direct", "columns"])
def engine(request, monkeypatch):
    """Layers with few output channels (or few input channels) run the direct kernels; with
    DIRECT_OUT = 0 and PLANAR_DIRECT off the same cases take the packed columns and GEMMs."""
    from lamina.kernels import conv
    if request.param == "columns":
        monkeypatch.setattr(conv, "DIRECT_OUT", 0)
        monkeypatch.setattr(conv, "PLANAR_DIRECT", False)
    return request.param


@pytest.mark.parametrize("case", CONVS)
def test_conv2d_forward_backward_match_torch(case, dtype, parts, engine):
    n, c, o, h, w, k, s, p, d, groups = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(8)
    x, wt, b = rand(rng, (n, c, h, w), dtype), rand(rng, (o, c // groups, kh, kw), dtype), rand(rng, (o,), dtype)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, wt, b))
    ty = TF.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d, groups=groups)
    g = rand(rng, tuple(ty.shape), dtype)
    tgrads = torch.autograd.grad(ty, (tx, tw, tb), torch.from_numpy(g))
    rtol, atol = (2e-5, 2e-5) if dtype == np.float32 else (1e-12, 1e-12)
    y = K.conv2d_forward(x, wt, b, s, p, d, groups)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)
    grads = K.conv2d_backward(g, x, wt, s, p, d, groups)
    for a, t in zip(grads, tgrads):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, t.numpy(), rtol=rtol * 5, atol=atol * 10)
    only_w = K.conv2d_backward(g, x, wt, s, p, d, groups, need_input=False, need_bias=False)
    assert only_w[0] is None and only_w[2] is None
    np.testing.assert_allclose(only_w[1], grads[1], rtol=0, atol=0)
    y2, cols = K.conv2d_forward(x, wt, b, s, p, d, groups, keep_columns=True)
    np.testing.assert_array_equal(y2, y)
    for a, c in zip(K.conv2d_backward(g, x, wt, s, p, d, groups, columns=cols), grads):
        np.testing.assert_array_equal(a, c)


def test_conv2d_in_blocks_of_output_rows(monkeypatch, parts):
    from lamina.kernels import conv
    monkeypatch.setattr(conv, "DIRECT_OUT", 0)  # the columns' path
    monkeypatch.setattr(conv, "PLANAR_DIRECT", False)
    rng = np.random.default_rng(9)
    x, w, b = rand(rng, (5, 3, 6, 6), np.float64), rand(rng, (4, 3, 3, 3), np.float64), rand(rng, (4,), np.float64)
    whole = conv.conv2d_forward(x, w, b, padding=1), conv.conv2d_backward(x[:, :1].repeat(4, 1), x, w, padding=1)
    monkeypatch.setattr(conv, "COLUMN_BUDGET", 4 * 27 * 6)  # four output rows per block: blocks straddle samples
    blocked = conv.conv2d_forward(x, w, b, padding=1), conv.conv2d_backward(x[:, :1].repeat(4, 1), x, w, padding=1)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-13)
    for a, c in zip(blocked[1], whole[1]):
        np.testing.assert_allclose(a, c, rtol=1e-13)
    # the forward keeps every block's columns in one array; the backward takes them
    y, cols = conv.conv2d_forward(x, w, b, padding=1, keep_columns=True)
    assert cols is not None and cols.shape == (5 * 36, 27)
    np.testing.assert_array_equal(cols, K.im2col(x, 3, padding=1))
    kept = conv.conv2d_backward(x[:, :1].repeat(4, 1), x, w, padding=1, columns=cols)
    for a, c in zip(kept, whole[1]):
        np.testing.assert_allclose(a, c, rtol=1e-13)
    monkeypatch.setattr(conv, "KEEP_BUDGET", 100)
    assert conv.conv2d_forward(x, w, b, padding=1, keep_columns=True)[1] is None


def test_direct_weight_gradient_in_chunks(monkeypatch, dtype, parts):
    """The direct weight gradient sums a sample's positions in chunks of whole output rows; a
    chunk of one row gives the same sums as chunks of many."""
    from lamina.kernels import _runtime, conv
    rng = np.random.default_rng(14)
    x, w = rand(rng, (3, 6, 12, 11), dtype), rand(rng, (16, 6, 3, 3), dtype)
    g = rand(rng, (3, 16, 10, 9), dtype)
    whole = conv.conv2d_backward(g, x, w)
    # CHUNK is a global frozen into the compiled kernel: compile a fresh copy with CHUNK = 1
    from numba import njit
    d = _runtime.load("conv_direct")
    monkeypatch.setattr(d, "CHUNK", 1)
    fresh = njit(error_model="numpy")(d.weight_grad.py_func)
    monkeypatch.setattr(d, "weight_grad", fresh)
    chunked = conv.conv2d_backward(g, x, w)
    for a, c in zip(chunked, whole):
        np.testing.assert_allclose(a, c, rtol=tol(dtype, 1e-5, 1e-13), atol=tol(dtype, 1e-5, 1e-13))


def test_im2col_layout():
    """Row (n*oh + i)*ow + j of the columns is the window of output (i, j), (ki, kj, c) order."""
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    cols = K.im2col(x, (2, 3), padding=(0, 1))
    oh, ow = 3, 5
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1)))
    for n, i, j in [(0, 0, 0), (1, 2, 4), (1, 1, 2)]:
        window = xp[n, :, i:i + 2, j:j + 3]  # (c, ki, kj)
        np.testing.assert_array_equal(cols[(n * oh + i) * ow + j], window.transpose(1, 2, 0).ravel())


@pytest.mark.parametrize("geo", [dict(stride=2, padding=1), dict(padding=1, dilation=2), dict(padding=(0, 2))])
@pytest.mark.parametrize("channels", [3, 40])
def test_im2col_col2im_are_adjoint(dtype, geo, channels, parts):
    rng = np.random.default_rng(10)
    x = rand(rng, (2, channels, 7, 6), dtype)
    cols = K.im2col(x, 3, **geo)
    r = rand(rng, cols.shape, dtype)
    back = K.col2im(r, x.shape, 3, **geo)
    # <im2col(x), r> == <x, col2im(r)>
    lhs, rhs = float((cols.astype(np.float64) * r).sum()), float((x.astype(np.float64) * back).sum())
    assert abs(lhs - rhs) <= 1e-4 * abs(lhs) + 1e-4


def test_conv_declines():
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    assert K.conv2d_forward(x.transpose(0, 1, 3, 2), w) is None
    assert K.conv2d_forward(x, w.astype(np.float64)) is None
    assert K.conv2d_forward(x[0], w) is None
    assert K.conv2d_forward(np.ones((1, 4, 5, 5), np.float32), w, groups=2) is None  # groups: NumPy path
    assert K.conv2d_backward(np.ones((1, 3, 3, 3), np.float32), x, w, groups=2) is None
    assert K.conv2d_backward(np.ones((1, 3, 4, 4), np.float32), x, w) is None  # wrong gradient shape
    with pytest.raises(ValueError, match="conv2d"):
        K.conv2d_forward(x, np.ones((3, 4, 3, 3), np.float32))


POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, ceil_mode=True),
         dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))]


@pytest.mark.parametrize("kw", POOLS)
def test_max_pool2d_matches_torch(kw, dtype):
    rng = np.random.default_rng(11)
    x = rand(rng, (2, 3, 9, 10), dtype)
    x[0, 0, 0, 0] = np.nan
    x[1, 1, :2, :2] = 1.0  # ties: the first index wins, as torch
    x[1, 2, 3:5, 3:5] = np.nan  # several NaNs in a window: the last one wins, as torch
    tx = torch.from_numpy(x).requires_grad_()
    ty, ti = TF.max_pool2d(tx, return_indices=True, **kw)
    g = rand(rng, tuple(ty.shape), dtype)
    tg, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    y, idx = K.max_pool2d_forward(x, **kw)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    np.testing.assert_allclose(K.max_pool2d_backward(g, idx, x.shape), tg.numpy(), rtol=1e-6)


@pytest.mark.parametrize("kernel", [2, 3, (2, 3), (1, 2), (12, 11)])
def test_max_pool_blocks_match_torch(kernel, dtype, parts):
    """Non-overlapping windows (stride = kernel): values and offsets against torch's flat
    indices, NaN first or after a number, ties, rows and columns no window covers; the
    gradient is g at each maximum and exact zeros elsewhere, even for a non-finite g."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    rng = np.random.default_rng(14)
    x = rand(rng, (3, 2, 2 * kh + 1, 3 * kw + kw // 2 + 1), dtype)
    x[0, 0, 0, min(1, kw - 1)] = np.nan   # NaN after the window's first value
    x[1, 1, kh, 0] = np.nan                # NaN first
    x[2, 0, :kh, :kw] = 0.5                # ties: the first offset
    x[2, 1, kh:2 * kh, kw:2 * kw] = np.nan  # NaNs only: the last offset
    x[2, 1, kh, 2 * kw] = np.nan            # a NaN first, then numbers
    tx = torch.from_numpy(x).requires_grad_()
    ty, ti = TF.max_pool2d(tx, kernel, return_indices=True)
    g = rand(rng, tuple(ty.shape), dtype)
    g[0, 1, 0, 0] = np.inf
    tg, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    y, off = K.max_pool_blocks_forward(x, kernel)
    assert off.dtype == (np.int16 if kh * kw >= 128 else np.int8)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    oh, ow = y.shape[2:]
    a, b = np.divmod(off.astype(np.int64), kw)
    flat = (np.arange(oh)[:, None] * kh + a) * x.shape[3] + np.arange(ow) * kw + b
    np.testing.assert_array_equal(flat, ti.numpy())
    np.testing.assert_array_equal(K.max_pool_blocks_backward(g, off, kernel, x.shape), tg.numpy())


@pytest.mark.parametrize("shape", [(3, 25, 6, 8), (2, 40, 5, 7)])
def test_max_pool_blocks_2x2_nan_and_ties_over_chunks(shape, dtype, parts):
    """2 x 2 windows (two passes per chunk of planes): more planes than a chunk, windows with
    every pattern of NaNs and ties drawn from a few values, against torch's flat indices."""
    rng = np.random.default_rng(15)
    x = rng.choice(np.array([-1.0, 0.5, 2.0, np.nan]), size=shape).astype(dtype)
    x[0, 0] = rand(rng, shape[2:], dtype)
    tx = torch.from_numpy(x).requires_grad_()
    ty, ti = TF.max_pool2d(tx, 2, return_indices=True)
    g = rand(rng, tuple(ty.shape), dtype)
    tg, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    y, off = K.max_pool_blocks_forward(x, 2)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    oh, ow = y.shape[2:]
    a, b = np.divmod(off.astype(np.int64), 2)
    flat = (np.arange(oh)[:, None] * 2 + a) * x.shape[3] + np.arange(ow) * 2 + b
    np.testing.assert_array_equal(flat, ti.numpy())
    np.testing.assert_array_equal(K.max_pool_blocks_backward(g, off, 2, x.shape), tg.numpy())


def test_max_pool_blocks_decline():
    x = np.ones((1, 1, 4, 4), np.float32)
    assert K.max_pool_blocks_forward(x.astype(np.int32), 2) is None
    assert K.max_pool_blocks_forward(x[..., ::2], 2) is None  # not contiguous
    assert K.max_pool_blocks_forward(x, 5) is None            # larger than the input
    g, off = K.max_pool_blocks_forward(x, 2)
    assert K.max_pool_blocks_backward(g, off.astype(np.int64), 2, x.shape) is None
    assert K.max_pool_blocks_backward(g, off, 2, (1, 1, 6, 6)) is None


def test_max_pool2d_dilation(dtype):
    x = rand(np.random.default_rng(12), (1, 2, 8, 8), dtype)
    ty, ti = TF.max_pool2d(torch.from_numpy(x), 2, dilation=2, return_indices=True)
    y, idx = K.max_pool2d_forward(x, 2, dilation=2)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())


@pytest.mark.parametrize("kw", POOLS)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(kw, count_include_pad, dtype):
    rng = np.random.default_rng(13)
    x = rand(rng, (2, 3, 9, 10), dtype)
    tx = torch.from_numpy(x).requires_grad_()
    ty = TF.avg_pool2d(tx, count_include_pad=count_include_pad, **kw)
    g = rand(rng, tuple(ty.shape), dtype)
    tg, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(K.avg_pool2d_forward(x, count_include_pad=count_include_pad, **kw), ty.detach().numpy(),
                               rtol=rtol, atol=rtol)
    np.testing.assert_allclose(K.avg_pool2d_backward(g, x.shape, count_include_pad=count_include_pad, **kw),
                               tg.numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("channels", [1, 2])
def test_planar_columns_in_blocks_and_both_weight_gradients(monkeypatch, dtype, parts, channels):
    """Inputs with narrow windows (kw*C <= PLANAR) take planar columns: blocks of samples, and
    small weight gradients by the compiled dot product or by BLAS, agree with PyTorch."""
    from lamina.kernels import conv
    rng = np.random.default_rng(20)
    x, w, b = rand(rng, (5, channels, 9, 8), dtype), rand(rng, (3, channels, 3, 3), dtype), rand(rng, (3,), dtype)
    assert channels * 3 <= conv.PLANAR
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ty = TF.conv2d(tx, tw, tb, padding=1)
    g = rand(rng, tuple(ty.shape), dtype)
    tgrads = torch.autograd.grad(ty, (tx, tw, tb), torch.from_numpy(g))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for budget, small in [(1 << 18, 1024), (2 * 9 * channels * 72, 1024), (2 * 9 * channels * 72, 0)]:
        monkeypatch.setattr(conv, "COLUMN_BUDGET", budget)  # 2 samples per block: 3 blocks
        monkeypatch.setattr(conv, "SMALL_WEIGHT", small)
        np.testing.assert_allclose(conv.conv2d_forward(x, w, b, padding=1), ty.detach().numpy(), rtol=tol, atol=tol)
        for a, t in zip(conv.conv2d_backward(g, x, w, padding=1), tgrads):
            np.testing.assert_allclose(a, t.numpy(), rtol=tol * 5, atol=tol * 10)
