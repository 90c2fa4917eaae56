import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import lamina
from lamina import kernels as K

from .conftest import rand, tol


def _heads(x, b, t, h, d):
    """(B, T, H*D) -> (B, H, T, D) as a strided view, as a GPT splits its fused projection."""
    return x.reshape(b, t, h, d).transpose(0, 2, 1, 3)


def _torch(q, k, v, g, scale, causal):
    tq, tk, tv = (torch.from_numpy(np.ascontiguousarray(a)).requires_grad_() for a in (q, k, v))
    out = TF.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, scale=scale)
    grads = torch.autograd.grad(out, (tq, tk, tv), torch.from_numpy(np.ascontiguousarray(g)))
    return out.detach().numpy(), [t.numpy() for t in grads]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("L,S", [(6, 6), (4, 7), (7, 4)])
def test_attention_matches_torch_on_strided_heads(causal, L, S, dtype, parts):
    rng = np.random.default_rng(L * 10 + S)
    b, h, d, dv = 3, 2, 4, 5
    q = _heads(rand(rng, (b, L, h * d), dtype), b, L, h, d)
    kv = rand(rng, (b, S, h * (d + dv)), dtype)  # keys and values sliced off one projection
    k = _heads(kv[..., :h * d], b, S, h, d)
    v = _heads(kv[..., h * d:], b, S, h, dv)
    g = _heads(rand(rng, (b, L, h * dv), dtype), b, L, h, dv)  # a transposed upstream gradient
    scale = 0.45
    out, w = K.attention_forward(q, k, v, scale, causal)
    dq, dk, dv_ = K.attention_backward(g, q, k, v, w, scale, causal)
    t_out, (t_dq, t_dk, t_dv) = _torch(q, k, v, g, scale, causal)
    t = tol(dtype, 2e-6, 1e-13)
    for got, want in ((out, t_out), (dq, t_dq), (dk, t_dk), (dv_, t_dv)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=t, atol=t)
    # outputs and gradients keep their input's memory order (the head split reshapes back freely)
    assert out.transpose(0, 2, 1, 3).flags.c_contiguous and dq.transpose(0, 2, 1, 3).flags.c_contiguous
    assert w.shape == (b, h, L, S) and np.allclose(w.sum(-1), 1)
    if causal:
        assert np.all(w[:, :, np.arange(L)[:, None] < np.arange(S)[None, :]] == 0)


def test_attention_one_sequence_splits_its_heads_and_skips_unneeded_gradients(dtype):
    rng = np.random.default_rng(0)
    q, k, v, g = (rand(rng, (1, 5, 6, 4), dtype) for _ in range(4))
    previous = K._checks.force_parts
    K._checks.force_parts = 3
    try:
        out, w = K.attention_forward(q, k, v, 0.5, True)
        dq, dk, dv = K.attention_backward(g, q, k, v, w, 0.5, True, needs=(False, True, False))
    finally:
        K._checks.force_parts = previous
    t_out, (_, t_dk, _) = _torch(q, k, v, g, 0.5, True)
    np.testing.assert_allclose(out, t_out, rtol=tol(dtype, 2e-6), atol=tol(dtype, 2e-6))
    np.testing.assert_allclose(dk, t_dk, rtol=tol(dtype, 2e-6), atol=tol(dtype, 2e-6))
    assert dq is None and dv is None


def test_attention_splits_large_calls_by_heads(monkeypatch, part_counts):
    """Past BLAS_ALONE multiply-adds the heads are split over the kernel threads, two parts per
    thread; a smaller call runs as one part."""
    from lamina.kernels import _runtime
    monkeypatch.setattr(_runtime, "_threads", 2)
    calls = part_counts
    rng = np.random.default_rng(3)
    b, t, h, d = 3, 32, 4, 16  # 12 heads x 32 x 32 x (16 + 16) = 393,216 multiply-adds
    q, k, v = (_heads(rand(rng, (b, t, h * d), np.float32), b, t, h, d) for _ in range(3))
    g = rand(rng, (b, h, t, d), np.float32)
    out, w = K.attention_forward(q, k, v, 0.25, True)
    dq, dk, dv = K.attention_backward(g, q, k, v, w, 0.25, True)
    small = K.attention_forward(q[:1, :1], k[:1, :1], v[:1, :1], 0.25, True)
    assert calls == [4, 4, 1]
    t_out, t_grads = _torch(q, k, v, g, 0.25, True)
    for got, want in zip((out, dq, dk, dv), (t_out, *t_grads)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(small[0], out[:1, :1], rtol=1e-6, atol=1e-6)


def test_attention_nan_poisons_its_rows_like_torch():
    rng = np.random.default_rng(1)
    q, k, v = (rand(rng, (1, 1, 4, 3), np.float64) for _ in range(3))
    k[0, 0, 2, 1] = np.nan  # key 2: causal rows 0 and 1 never see it
    out, _ = K.attention_forward(q, k, v, 1.0, True)
    t_out, _ = _torch(q, k, v, np.ones_like(out), 1.0, True)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(t_out))
    assert not np.isnan(out[0, 0, :2]).any() and np.isnan(out[0, 0, 2:]).all()


def test_attention_declines_what_it_does_not_take():
    q = np.ones((1, 1, 3, 2), np.float32)
    assert K.attention_forward(q, q, q.astype(np.float64), 1.0, False) is None  # mixed dtypes
    assert K.attention_forward(q[0], q[0], q[0], 1.0, False) is None            # not 4-D
    assert K.attention_forward(q.astype(np.float16), q.astype(np.float16), q.astype(np.float16), 1.0,
                               False) is None
    wide = np.ones((1, 1, 3, 4), np.float32)[..., ::2]                           # strided rows
    assert K.attention_forward(wide, wide, wide, 1.0, False) is None
    assert K.attention_forward(q, q[:, :, :2, :1], q[:, :, :2], 1.0, False) is None  # q and k widths
    from lamina.kernels import gemm
    previous, gemm._address = gemm._address, {}
    try:
        assert K.attention_forward(q, q, q, 1.0, False) is None                   # no BLAS to call
    finally:
        gemm._address = previous


def test_attention_op_uses_one_node_and_matches_the_composition():
    """nn.functional's attention runs as one op whose gradients equal those of the composition
    it replaces (a bool mask still takes the composition)."""
    rng = np.random.default_rng(2)
    q, k, v = (lamina.tensor(rng.standard_normal((2, 3, 5, 4)), requires_grad=True) for _ in range(3))
    out = lamina.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert type(out._node).__name__ == "ScaledDotProductAttention"
    grads = lamina.grad(out.sum(), (q, k, v))
    mask = lamina.tensor(np.tril(np.ones((5, 5), bool)))
    ref = lamina.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert type(ref._node).__name__ != "ScaledDotProductAttention"
    ref_grads = lamina.grad(ref.sum(), (q, k, v))
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    for a, b in zip(grads, ref_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-13)


test_attention_op_uses_one_node_and_matches_the_composition.runs_with_kernels_off = True


def test_gradients_of_a_fused_projection_are_joined_without_a_copy(monkeypatch):
    """q, k and v split off one projection get their gradients as views of one new array, which
    the split's backward returns as it is; the gradient equals the composition's."""
    from lamina.ops import shape
    joined = []
    original = shape._joined
    monkeypatch.setattr(shape, "_joined", lambda *a: joined.append(original(*a)) or joined[-1])
    rng = np.random.default_rng(4)
    data = rng.standard_normal((2, 5, 3 * 8))

    def run(**kw):
        qkv = lamina.tensor(data, requires_grad=True)
        q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in qkv.split(8, dim=2))
        out = lamina.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
        return lamina.grad((out * out).sum(), qkv)[0].numpy()
    fused = run(is_causal=True)
    assert joined and joined[0] is not None and joined[0].shape == (2, 5, 24)
    composed = run(attn_mask=lamina.tensor(np.tril(np.ones((5, 5), bool))))
    np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)


def test_joined_declines_pieces_that_are_not_one_array_in_order():
    from lamina.ops import shape
    x = np.zeros((2, 6))
    whole = np.arange(12.0).reshape(2, 6)
    a, b = whole[:, :2], whole[:, 2:]
    assert shape._joined([a, b], x, 1, [2, 4]) is not None
    assert shape._joined([b, a], x, 1, [4, 2]) is None                   # out of order
    assert shape._joined([a, b.copy()], x, 1, [2, 4]) is None            # another array
    assert shape._joined([a, whole[:, 3:]], x, 1, [2, 3]) is None        # a gap
    assert shape._joined([whole[:1], whole[1:]], x, 1, [1, 1]) is None  # along another dim
    assert shape._joined([a.astype(np.float32), b], x, 1, [2, 4]) is None
