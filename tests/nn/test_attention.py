"""MultiheadAttention against PyTorch: the same weights (copied through the state dict, so names must
match), the same inputs and masks, equal outputs, attention weights and gradients in float64."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lamina
from lamina.nn.attention import MultiheadAttention

E, H = 8, 2


def copy_state(lm, tm):
    """Load the lamina module's state into the torch module by name; the key lists must be equal."""
    lsd = lm.state_dict()
    assert list(lsd) == list(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in lsd.items()}, strict=True)


def as_lamina(a, grad=False):
    if a is None:
        return None
    return lamina.tensor(a, dtype=lamina.float64 if a.dtype.kind == "f" else None, requires_grad=grad)


def as_torch(a, grad=False):
    if a is None:
        return None
    return torch.tensor(a, requires_grad=grad)


def assert_close(a, b, what, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def assert_parity(lm, tm, arrays, call, train, rng):
    """Run ``call(module, inputs, framework_converter)`` in both frameworks; compare every output, then
    backpropagate the same random cotangents and compare gradients of the inputs and of all parameters."""
    copy_state(lm, tm)
    lm.train(train), tm.train(train)
    lx = [as_lamina(a, grad=True) for a in arrays]
    tx = [as_torch(a, grad=True) for a in arrays]
    louts = call(lm, lx, as_lamina)
    touts = call(tm, tx, as_torch)
    louts = louts if isinstance(louts, tuple) else (louts,)
    touts = touts if isinstance(touts, tuple) else (touts,)
    lloss, tloss = 0, 0
    for i, (lo, to) in enumerate(zip(louts, touts)):
        assert (lo is None) == (to is None), f"output {i}"
        if lo is None:
            continue
        assert lo.shape == tuple(to.shape), f"output {i}: {lo.shape} vs {tuple(to.shape)}"
        assert_close(lo.detach().numpy(), to.detach().numpy(), f"output {i}")
        w = rng.standard_normal(lo.shape)
        lloss = lloss + (lo * as_lamina(w)).sum()
        tloss = tloss + (to * torch.tensor(w)).sum()
    lloss.backward()
    tloss.backward()
    for i, (a, b) in enumerate(zip(lx, tx)):
        assert_close(a.grad.numpy(), b.grad.numpy(), f"grad of input {i}")
    tparams = dict(tm.named_parameters())
    lparams = dict(lm.named_parameters())
    assert list(lparams) == list(tparams)
    for name, p in lparams.items():
        tg = tparams[name].grad
        assert (p.grad is None) == (tg is None), name
        if tg is not None:
            assert_close(p.grad.numpy(), tg.numpy(), f"grad of {name}")


# ---------------------------------------------------------------- masks

def bool_mask(rng, shape):
    """Random True (= masked out) entries; the first key is always visible, so no row is all masked."""
    m = rng.random(shape) < 0.35
    m[..., 0] = False
    return m


def float_mask(rng, shape):
    m = np.where(rng.random(shape) < 0.25, -np.inf, rng.standard_normal(shape))
    m[..., 0] = 0.0
    return m


def causal_float(L, S):
    return np.triu(np.full((L, S), -np.inf), 1)


def make_attn_mask(kind, rng, L, S, n_heads_batch):
    if kind is None:
        return None
    return {"bool": lambda: bool_mask(rng, (L, S)), "float": lambda: float_mask(rng, (L, S)),
            "bool3": lambda: bool_mask(rng, (n_heads_batch, L, S)),
            "float3": lambda: float_mask(rng, (n_heads_batch, L, S)),
            "causal": lambda: causal_float(L, S), "causal_bool": lambda: np.triu(np.ones((L, S), bool), 1)}[kind]()


def make_kpm(kind, rng, N, S):
    if kind is None:
        return None
    shape = (N, S) if N is not None else (S,)
    return bool_mask(rng, shape) if kind == "bool" else float_mask(rng, shape)


# ---------------------------------------------------------------- MultiheadAttention parity

# (id, constructor kwargs, call): call keys — mode: "self" (query is key is value), "kv" (key is value,
# a different memory) or "cross" (three inputs); L, S, N (None: unbatched); attn / kpm: mask kinds;
# need_weights, average, is_causal.
MHA_CASES = [
    ("self", {}, dict(mode="self")),
    ("self_bf_sdpa", dict(batch_first=True), dict(mode="self", need_weights=False)),
    ("self_bool_kpm", {}, dict(mode="self", attn="bool", kpm="bool", average=False)),
    ("self_float_floatkpm_sdpa", dict(batch_first=True), dict(mode="self", attn="float", kpm="float",
                                                             need_weights=False)),
    ("self_bool3_bf", dict(batch_first=True), dict(mode="self", attn="bool3")),
    ("self_float3_boolkpm", {}, dict(mode="self", attn="float3", kpm="bool", average=False)),
    ("self_float3_sdpa", {}, dict(mode="self", attn="float3", kpm="bool", need_weights=False)),
    ("self_causal_hint_sdpa", dict(batch_first=True), dict(mode="self", attn="causal", is_causal=True,
                                                          need_weights=False)),
    ("self_causal_weights_kpm", {}, dict(mode="self", attn="causal_bool", is_causal=True, kpm="bool")),
    ("kv_kpm", {}, dict(mode="kv", L=4, S=6, kpm="bool")),
    ("kv_bf_float_sdpa", dict(batch_first=True), dict(mode="kv", L=4, S=6, attn="float", need_weights=False)),
    ("cross_bf_bool_sdpa", dict(batch_first=True), dict(mode="cross", L=4, S=6, attn="bool", kpm="bool",
                                                       need_weights=False)),
    ("cross_avg_false", {}, dict(mode="cross", L=5, S=3, attn="float", average=False)),
    ("cross_causal_hint_l_lt_s", {}, dict(mode="cross", L=3, S=6, attn="causal_bool", is_causal=True,
                                          need_weights=False)),
    ("cross_causal_hint_l_gt_s", dict(batch_first=True), dict(mode="cross", L=6, S=4, attn="causal",
                                                             is_causal=True, need_weights=False)),
    ("kdim_vdim_bf", dict(kdim=6, vdim=5, batch_first=True), dict(mode="cross", L=4, S=6, kpm="bool",
                                                                  average=False)),
    ("kdim_vdim_sdpa", dict(kdim=6, vdim=5), dict(mode="cross", L=4, S=6, attn="bool3", need_weights=False)),
    ("kdim_only_kv", dict(kdim=6, vdim=6), dict(mode="kv", L=4, S=5, attn="float")),
    ("unbatched_self", {}, dict(mode="self", N=None, attn="bool")),
    ("unbatched_cross_bf", dict(batch_first=True), dict(mode="cross", N=None, L=4, S=6, attn="float3",
                                                       kpm="bool", average=False)),
    ("unbatched_sdpa", {}, dict(mode="kv", N=None, L=4, S=6, kpm="float", need_weights=False)),
    ("unbatched_kdim", dict(kdim=6, vdim=5), dict(mode="cross", N=None, L=4, S=6)),
    ("no_bias", dict(bias=False), dict(mode="self", attn="bool", kpm="bool")),
    ("no_bias_kv_sdpa", dict(bias=False), dict(mode="kv", L=4, S=6, need_weights=False)),
    ("bias_kv", dict(add_bias_kv=True), dict(mode="self", attn="bool", kpm="bool")),
    ("bias_kv_sdpa_3d", dict(add_bias_kv=True, batch_first=True), dict(mode="cross", L=4, S=6, attn="float3",
                                                                     need_weights=False)),
    ("zero_attn", dict(add_zero_attn=True), dict(mode="kv", L=4, S=6, attn="float", kpm="bool",
                                                 need_weights=False)),
    ("bias_kv_zero_attn", dict(add_bias_kv=True, add_zero_attn=True), dict(mode="self", kpm="bool",
                                                                            average=False)),
]


def run_mha_case(kwargs, spec, train, rng):
    lm = MultiheadAttention(E, H, **kwargs).double()
    tm = torch.nn.MultiheadAttention(E, H, **kwargs).double()
    mode, N = spec["mode"], spec.get("N", 3)
    L = spec.get("L", 5)
    S = L if mode == "self" else spec.get("S", 5)
    bf = kwargs.get("batch_first", False)
    kdim, vdim = kwargs.get("kdim") or E, kwargs.get("vdim") or E

    def shape(length, feat):
        if N is None:
            return (length, feat)
        return (N, length, feat) if bf else (length, N, feat)

    q = rng.standard_normal(shape(L, E))
    if mode == "self":
        arrays = [q]
    elif mode == "kv":
        arrays = [q, rng.standard_normal(shape(S, kdim))]
    else:
        arrays = [q, rng.standard_normal(shape(S, kdim)), rng.standard_normal(shape(S, vdim))]
    attn = make_attn_mask(spec.get("attn"), rng, L, S, H * (N or 1))
    kpm = make_kpm(spec.get("kpm"), rng, N, S)
    need_weights, average = spec.get("need_weights", True), spec.get("average", True)

    def call(m, xs, conv):
        query, key, value = (xs * 3)[:3] if len(xs) == 1 else (xs[0], xs[1], xs[-1])
        return m(query, key, value, key_padding_mask=conv(kpm), need_weights=need_weights, attn_mask=conv(attn),
                 average_attn_weights=average, is_causal=spec.get("is_causal", False))

    assert_parity(lm, tm, arrays, call, train, rng)


@pytest.mark.filterwarnings("ignore:Support for mismatched")
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,kwargs,spec", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_matches_torch(name, kwargs, spec, train):
    run_mha_case(kwargs, spec, train, np.random.default_rng(0))


def test_is_causal_without_mask_applies_the_causal_mask():
    """PyTorch requires attn_mask with is_causal; lamina builds the causal mask when it is missing."""
    m = MultiheadAttention(E, H, batch_first=True).double()
    x = lamina.tensor(np.random.default_rng(1).standard_normal((2, 5, E)), dtype=lamina.float64)
    mask = lamina.tensor(causal_float(5, 5), dtype=lamina.float64)
    with lamina.no_grad():
        ref, ref_w = m(x, x, x, attn_mask=mask)
        results = [m(x, x, x, is_causal=True, need_weights=nw) for nw in (True, False)]
    for need_weights, (out, w) in zip((True, False), results):
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12, atol=1e-14)
        if need_weights:
            np.testing.assert_allclose(w.numpy(), ref_w.numpy(), rtol=1e-12, atol=1e-14)
            assert not np.triu(w.numpy()[0], 1).any()


def test_attention_dropout_only_in_training():
    m = MultiheadAttention(E, H, dropout=0.5)
    x = lamina.randn(5, 3, E)
    m.eval()
    with lamina.no_grad():
        _check_dropout(m, x)
    m.train()
    with lamina.no_grad():
        _, w = m(x, x, x, average_attn_weights=False)
    assert (w.numpy() == 0).any()  # the returned weights are the dropped-out ones, as in PyTorch


def _check_dropout(m, x):
    for need_weights in (True, False):
        a = m(x, x, x, need_weights=need_weights)[0].numpy()
        b = m(x, x, x, need_weights=need_weights)[0].numpy()
        np.testing.assert_array_equal(a, b)
        m.train()
        c = m(x, x, x, need_weights=need_weights)[0].numpy()
        assert not np.allclose(a, c)
        m.eval()


@pytest.mark.parametrize("kwargs", [{}, dict(kdim=6, vdim=5), dict(bias=False), dict(add_bias_kv=True)],
                         ids=["packed", "kdim_vdim", "no_bias", "bias_kv"])
def test_parameters_names_shapes_and_init_match_torch(kwargs):
    lm, tm = MultiheadAttention(64, 4, **kwargs), torch.nn.MultiheadAttention(64, 4, **kwargs)
    lsd, tsd = lm.state_dict(), tm.state_dict()
    assert list(lsd) == list(tsd)
    for k in lsd:
        assert lsd[k].shape == tuple(tsd[k].shape), k
    for k, v in lsd.items():
        a = v.numpy()
        if k.endswith("proj_weight"):  # xavier uniform
            bound = np.sqrt(6.0 / (a.shape[0] + a.shape[1]))
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound, k
        elif k in ("in_proj_bias", "out_proj.bias"):
            assert not a.any(), k


def test_deepcopy_gives_independent_parameters():
    m = MultiheadAttention(E, H)
    c = copy.deepcopy(m)
    for (name, p), (cname, cp) in zip(m.named_parameters(), c.named_parameters()):
        assert name == cname and p is not cp and p.array is not cp.array
        np.testing.assert_array_equal(p.detach().numpy(), cp.detach().numpy())
        assert type(cp) is type(p) and cp.requires_grad
    with lamina.no_grad():
        c.in_proj_weight.fill_(1.0)
    assert not (m.in_proj_weight.detach().numpy() == 1.0).all()
    x = lamina.randn(4, 2, E)
    c(x, x, x)[0].sum().backward()
    assert c.in_proj_weight.grad is not None and m.in_proj_weight.grad is None


# ---------------------------------------------------------------- errors

def _mha_call(m, q=(5, 3, E), k=(6, 3, E), v=(6, 3, E), **kw):
    return m(lamina.randn(*q), lamina.randn(*k), lamina.randn(*v), **kw)


ERROR_CASES = [
    ("heads_divide", lambda: MultiheadAttention(10, 3), ValueError, r"MultiheadAttention.*embed_dim=10.*num_heads=3"),
    ("query_features", lambda: _mha_call(MultiheadAttention(E, H), q=(5, 3, 7)), ValueError,
     r"MultiheadAttention: query must end in 8 features, got shape \(5, 3, 7\)"),
    ("key_features", lambda: _mha_call(MultiheadAttention(E, H, kdim=6, vdim=5), k=(6, 3, 5), v=(6, 3, 5)),
     ValueError, r"key must end in 6 features, got shape \(6, 3, 5\)"),
    ("key_value_length", lambda: _mha_call(MultiheadAttention(E, H), v=(4, 3, E)), ValueError,
     r"key \(6, 3, 8\) and value \(4, 3, 8\)"),
    ("batch", lambda: _mha_call(MultiheadAttention(E, H), k=(6, 2, E), v=(6, 2, E)), ValueError,
     r"same batch size"),
    ("ndim", lambda: _mha_call(MultiheadAttention(E, H), q=(1, 5, 3, E)), ValueError, r"batched 3-D or unbatched"),
    ("attn_mask_shape", lambda: _mha_call(MultiheadAttention(E, H), attn_mask=lamina.zeros(5, 5)), ValueError,
     r"MultiheadAttention: attn_mask must have shape \(5, 6\) or \(6, 5, 6\).*got \(5, 5\)"),
    ("attn_mask_3d_shape", lambda: _mha_call(MultiheadAttention(E, H), attn_mask=lamina.zeros(3, 5, 6)),
     ValueError, r"attn_mask must have shape \(5, 6\) or \(6, 5, 6\)"),
    ("kpm_shape", lambda: _mha_call(MultiheadAttention(E, H), key_padding_mask=lamina.zeros(6, 3, dtype=lamina.bool)),
     ValueError, r"MultiheadAttention: key_padding_mask must have shape \(3, 6\).*got \(6, 3\)"),
    ("mask_dtype", lambda: _mha_call(MultiheadAttention(E, H), attn_mask=lamina.zeros(5, 6, dtype=lamina.int64)),
     TypeError, r"attn_mask must be a bool or floating-point tensor"),
]


@pytest.mark.parametrize("name,fn,exc,match", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_layer_and_shapes(name, fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
