import numpy as np
import pytest
import scipy.special as sp
import torch
import torch.nn.functional as TF

from lamina import kernels as K

from .conftest import rand

SQRT2PI = np.sqrt(2 * np.pi)


def _ref(name, x, alpha=0.01):
    """Forward and derivative in float64 (erfc, not 1 + erf, so the lower tail stays exact)."""
    x = x.astype(np.float64)
    if name == "gelu":
        phi = 0.5 * sp.erfc(-x / np.sqrt(2))
        return x * phi, phi + x * np.exp(-0.5 * x * x) / SQRT2PI
    if name == "gelu_tanh":
        k = np.sqrt(2 / np.pi)
        s = sp.expit(2 * k * (x + 0.044715 * x ** 3))
        return x * s, s + x * s * (1 - s) * 2 * k * (1 + 3 * 0.044715 * x * x)
    if name == "silu":
        s = sp.expit(x)
        return x * s, s * (1 + x * (1 - s))
    if name == "sigmoid":
        s = sp.expit(x)
        return s, s * (1 - s)
    if name == "tanh":
        t = np.tanh(x)
        return t, 1 - t * t
    if name == "relu":
        return np.maximum(x, 0), (x > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(x > 0, x, alpha * x), np.where(x > 0, 1.0, alpha)
    raise KeyError(name)


_TORCH = {"gelu": TF.gelu, "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh"), "silu": TF.silu,
          "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": TF.relu,
          "leaky_relu": lambda t: TF.leaky_relu(t, 0.01)}

_CALLS = {
    "gelu": (K.gelu_forward, lambda g, x, y: K.gelu_backward(g, x)),
    "gelu_tanh": (lambda x: K.gelu_forward(x, "tanh"), lambda g, x, y: K.gelu_backward(g, x, "tanh")),
    "silu": (K.silu_forward, lambda g, x, y: K.silu_backward(g, x)),
    "sigmoid": (K.sigmoid_forward, lambda g, x, y: K.sigmoid_backward(g, y)),
    "tanh": (K.tanh_forward, lambda g, x, y: K.tanh_backward(g, y)),
    "relu": (K.relu_forward, lambda g, x, y: K.relu_backward(g, x)),
    "leaky_relu": (lambda x: K.leaky_relu_forward(x, 0.01), lambda g, x, y: K.leaky_relu_backward(g, x, 0.01)),
}


@pytest.mark.parametrize("name", sorted(_CALLS))
def test_activation_matches_reference_and_torch(name, dtype, parts):
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 1001), dtype, 4.0)  # odd size; spans both tails
    x[0, :4] = [0.0, -0.0, 30.0, -30.0]
    g = rand(rng, x.shape, dtype)
    fwd, bwd = _CALLS[name]
    y = fwd(x)
    dx = bwd(g, x, y)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    ry, rd = _ref(name, x)
    # relative to the value, with a floor near the zeros of the function
    rtol, atol = (2e-6, 1e-7) if dtype == np.float32 else (1e-12, 1e-300)
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, g * rd, rtol=rtol * 10, atol=2e-6 if dtype == np.float32 else 1e-13)
    tx = torch.from_numpy(x).requires_grad_()
    ty = _TORCH[name](tx)
    tdx, = torch.autograd.grad(ty, tx, torch.from_numpy(g))
    # torch's own float32 GELU loses the lower tail (1 + erf cancels), so compare absolutely there
    close = 4e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=close, atol=close)
    np.testing.assert_allclose(dx, tdx.numpy(), rtol=close * 10, atol=close * 10)


def test_float32_gelu_accuracy_over_the_range():
    x = np.linspace(-12, 12, 200001, dtype=np.float32)
    y = K.gelu_forward(x)
    ref, _ = _ref("gelu", x)
    big = np.abs(ref) > 1e-30
    rel = np.abs(y[big] - ref[big]) / np.abs(ref[big])
    mid = np.abs(x[big]) < 5  # where float32 inputs are not yet deep in the tail
    assert rel[mid].max() < 3e-6
    assert rel.max() < 3e-5


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)
    with np.errstate(invalid="ignore"):
        assert np.isnan(K.gelu_forward(x)[0]) and K.gelu_forward(x)[1] == np.inf and K.gelu_forward(x)[3] == 0
        assert list(K.sigmoid_forward(x)[1:]) == [1.0, 0.0, 0.5]
        assert list(K.tanh_forward(x)[1:]) == [1.0, -1.0, 0.0]
        assert np.isnan(K.relu_forward(x)[0]) and K.relu_forward(x)[2] == 0


@pytest.mark.parametrize("act", ["identity", "relu", "gelu", "tanh", "sigmoid"])
def test_bias_activation(act, dtype, parts):
    rng = np.random.default_rng(2)
    x, g = rand(rng, (37, 19), dtype), rand(rng, (37, 19), dtype)
    b = rand(rng, (19,), dtype)
    y = K.bias_act_forward(x, b, act)
    name = "relu" if act == "relu" else act
    ry, rd = (x.astype(np.float64) + b, np.ones(x.shape)) if act == "identity" else _ref(name, x + b.astype(np.float64))
    rtol = 3e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=rtol)
    dx, db = K.bias_act_backward(g, x, b, act)
    np.testing.assert_allclose(dx, g * rd, rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_allclose(db, (g * rd).sum(0), rtol=rtol * 10, atol=rtol * 20)
    assert db.dtype == dtype


def test_declines_what_it_does_not_take():
    x = np.ones((4, 6), np.float32)
    assert K.gelu_forward(x.T) is None  # not C-contiguous
    assert K.gelu_forward(x[:, ::2]) is None
    assert K.gelu_forward(x.astype(np.float16)) is None
    assert K.gelu_forward(x.astype(np.int64)) is None
    assert K.gelu_backward(x, x.astype(np.float64)) is None  # mixed dtypes
    assert K.relu_backward(x, x[:2]) is None
    assert K.bias_act_forward(x, np.ones(5, np.float32), "relu") is None
    with pytest.raises(ValueError, match="approximate"):
        K.gelu_forward(x, "fast")
    with pytest.raises(ValueError, match="unknown activation"):
        K.bias_act_forward(x, np.ones(6, np.float32), "swish")


def test_empty_and_scalar():
    assert K.gelu_forward(np.zeros(0, np.float32)).shape == (0,)
    y = K.silu_forward(np.array(2.0))
    assert y.shape == () and abs(float(y) - 2 / (1 + np.exp(-2))) < 1e-15


def test_gelu_keeping_the_cdf_gives_the_same_numbers(dtype, parts):
    rng = np.random.default_rng(3)
    x, g = rand(rng, (5, 203), dtype, 3.0), rand(rng, (5, 203), dtype)
    y, cdf = K.gelu_forward(x, keep_cdf=True)
    # the same formula, but fused multiply-adds may round in other places: a few ulps apart
    ulps = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, K.gelu_forward(x), rtol=ulps, atol=1e-30)
    np.testing.assert_allclose(cdf, 0.5 * sp.erfc(-x.astype(np.float64) / np.sqrt(2)),
                               rtol=3e-5 if dtype == np.float32 else 1e-13, atol=1e-30)  # float32 tail: see scalar.py
    np.testing.assert_allclose(K.gelu_backward(g, x, cdf=cdf), K.gelu_backward(g, x), rtol=ulps, atol=ulps)
    with pytest.raises(ValueError, match="keep_cdf"):
        K.gelu_forward(x, "tanh", keep_cdf=True)
    assert K.gelu_backward(g, x, cdf=cdf[:, :-1]) is None
