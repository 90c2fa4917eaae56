"""Layers against PyTorch: the same weights (copied through state_dict, so the names must match),
the same input, equal outputs and gradients in float64, in train and eval mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lamina
import lamina.nn as nn

# (id, lamina factory, torch factory, input shape, integer input range or None)
LAYERS = [
    ("linear", lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), (4, 5), None),
    ("linear_nobias_3d", lambda: nn.Linear(5, 3, bias=False), lambda: torch.nn.Linear(5, 3, bias=False), (2, 4, 5), None),
    ("conv1d", lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), lambda: torch.nn.Conv1d(3, 4, 3, stride=2, padding=1),
     (2, 3, 9), None),
    ("conv2d", lambda: nn.Conv2d(3, 4, 3, padding=1, groups=1), lambda: torch.nn.Conv2d(3, 4, 3, padding=1),
     (2, 3, 6, 5), None),
    ("conv2d_groups_dil", lambda: nn.Conv2d(4, 6, (2, 3), dilation=2, groups=2, bias=False),
     lambda: torch.nn.Conv2d(4, 6, (2, 3), dilation=2, groups=2, bias=False), (2, 4, 7, 8), None),
    ("conv2d_reflect", lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
     lambda: torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (1, 2, 5, 5), None),
    ("conv2d_same", lambda: nn.Conv2d(2, 3, 4, padding="same"), lambda: torch.nn.Conv2d(2, 3, 4, padding="same"),
     (1, 2, 6, 6), None),
    ("conv_transpose1d", lambda: nn.ConvTranspose1d(3, 2, 3, stride=2), lambda: torch.nn.ConvTranspose1d(3, 2, 3, stride=2),
     (2, 3, 5), None),
    ("conv_transpose2d", lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
     lambda: torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 4, 3), None),
    ("max_pool2d", lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 3, 6, 6), None),
    ("max_pool2d_pad", lambda: nn.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7), None),
    ("max_pool1d", lambda: nn.MaxPool1d(2), lambda: torch.nn.MaxPool1d(2), (2, 3, 8), None),
    ("avg_pool2d", lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (2, 3, 6, 6), None),
    ("avg_pool1d", lambda: nn.AvgPool1d(3, 2, 1), lambda: torch.nn.AvgPool1d(3, 2, 1), (2, 3, 8), None),
    ("adaptive_avg_pool2d", lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: torch.nn.AdaptiveAvgPool2d((2, 3)),
     (2, 3, 5, 7), None),
    ("adaptive_avg_pool2d_1", lambda: nn.AdaptiveAvgPool2d(1), lambda: torch.nn.AdaptiveAvgPool2d(1), (2, 3, 5, 7), None),
    ("flatten", lambda: nn.Flatten(), lambda: torch.nn.Flatten(), (2, 3, 4), None),
    ("unflatten", lambda: nn.Unflatten(1, (2, 6)), lambda: torch.nn.Unflatten(1, (2, 6)), (3, 12), None),
    ("identity", lambda: nn.Identity(), lambda: torch.nn.Identity(), (3, 4), None),
    ("relu", lambda: nn.ReLU(), lambda: torch.nn.ReLU(), (3, 4), None),
    ("leaky_relu", lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1), (3, 4), None),
    ("gelu", lambda: nn.GELU(), lambda: torch.nn.GELU(), (3, 4), None),
    ("gelu_tanh", lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh"), (3, 4), None),
    ("silu", lambda: nn.SiLU(), lambda: torch.nn.SiLU(), (3, 4), None),
    ("tanh", lambda: nn.Tanh(), lambda: torch.nn.Tanh(), (3, 4), None),
    ("sigmoid", lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), (3, 4), None),
    ("softplus", lambda: nn.Softplus(beta=2.0, threshold=3.0), lambda: torch.nn.Softplus(beta=2.0, threshold=3.0),
     (3, 4), None),
    ("elu", lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7), (3, 4), None),
    ("softmax", lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1), (3, 4), None),
    ("log_softmax", lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1), (3, 4), None),
    ("batch_norm1d", lambda: nn.BatchNorm1d(4), lambda: torch.nn.BatchNorm1d(4), (6, 4), None),
    ("batch_norm1d_3d", lambda: nn.BatchNorm1d(4, momentum=0.3), lambda: torch.nn.BatchNorm1d(4, momentum=0.3),
     (3, 4, 5), None),
    ("batch_norm2d", lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (2, 3, 4, 5), None),
    ("batch_norm2d_cma", lambda: nn.BatchNorm2d(3, momentum=None), lambda: torch.nn.BatchNorm2d(3, momentum=None),
     (2, 3, 4, 5), None),
    ("batch_norm2d_noaffine", lambda: nn.BatchNorm2d(3, affine=False, track_running_stats=False),
     lambda: torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False), (2, 3, 4, 5), None),
    ("layer_norm", lambda: nn.LayerNorm(5), lambda: torch.nn.LayerNorm(5), (2, 3, 5), None),
    ("layer_norm_2d", lambda: nn.LayerNorm((3, 5), eps=1e-3), lambda: torch.nn.LayerNorm((3, 5), eps=1e-3),
     (2, 3, 5), None),
    ("embedding", lambda: nn.Embedding(10, 4), lambda: torch.nn.Embedding(10, 4), (3, 5), 10),
    ("embedding_pad", lambda: nn.Embedding(10, 4, padding_idx=2), lambda: torch.nn.Embedding(10, 4, padding_idx=2),
     (3, 5), 10),
    ("dropout_eval", lambda: nn.Dropout(0.5).eval(), lambda: torch.nn.Dropout(0.5).eval(), (3, 4), None),
    ("lenet", lambda: nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                                    nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                                    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
     lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
                                 torch.nn.Linear(84, 10)), (3, 1, 28, 28), None),
]


def copy_weights(lm, tm):
    """Load the lamina module's state into the torch module, by name (names must match)."""
    sd = {k: torch.from_numpy(np.array(v.numpy())) for k, v in lm.state_dict().items()}
    tm.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,make,make_ref,shape,int_range", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_torch(name, make, make_ref, shape, int_range, train):
    lm, tm = make().double(), make_ref().double()
    copy_weights(lm, tm)
    lm.train(train)
    tm.train(train)
    if name == "dropout_eval":
        lm.eval(), tm.eval()
    rng = np.random.default_rng(0)
    if int_range:
        x = rng.integers(0, int_range, shape)
        lx, tx = lamina.tensor(x), torch.from_numpy(x)
    else:
        x = rng.standard_normal(shape)
        lx = lamina.tensor(x, dtype=lamina.float64, requires_grad=True)
        tx = torch.tensor(x, requires_grad=True)
    for step in range(2):  # twice: running statistics must evolve the same way
        out, tout = lm(lx), tm(tx)
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(tout.shape)
    (out * lamina.tensor(w, dtype=lamina.float64)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    if not int_range:
        np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    tparams = dict(tm.named_parameters())
    for pname, p in lm.named_parameters():
        tg = tparams[pname].grad
        assert (p.grad is None) == (tg is None), pname
        if tg is not None:
            np.testing.assert_allclose(p.grad.numpy(), tg.numpy(), rtol=1e-9, atol=1e-12, err_msg=pname)
    tbuffers = dict(tm.named_buffers())
    for bname, b in lm.named_buffers():
        np.testing.assert_allclose(b.numpy(), tbuffers[bname].numpy(), rtol=1e-12, err_msg=bname)


@pytest.mark.parametrize("name,make,make_ref,shape,int_range", LAYERS, ids=[c[0] for c in LAYERS])
def test_state_dict_keys_and_shapes_match_torch(name, make, make_ref, shape, int_range):
    lsd, tsd = make().state_dict(), make_ref().state_dict()
    assert list(lsd) == list(tsd)
    for k in lsd:
        assert lsd[k].shape == tuple(tsd[k].shape), k


# (id, lamina factory, torch factory, uniform bound 1/sqrt(fan_in), or None for N(0, 1))
INIT_CASES = [
    ("linear", lambda: nn.Linear(300, 200), lambda: torch.nn.Linear(300, 200), 1 / np.sqrt(300)),
    ("conv2d", lambda: nn.Conv2d(16, 32, 3), lambda: torch.nn.Conv2d(16, 32, 3), 1 / np.sqrt(16 * 9)),
    ("conv_transpose2d", lambda: nn.ConvTranspose2d(16, 32, 3), lambda: torch.nn.ConvTranspose2d(16, 32, 3),
     1 / np.sqrt(32 * 9)),
    ("embedding", lambda: nn.Embedding(1000, 64), lambda: torch.nn.Embedding(1000, 64), None),
]


@pytest.mark.parametrize("name,make,make_ref,bound", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_default_init_matches_torch_distribution(name, make, make_ref, bound):
    """Lamina's and PyTorch's default parameters pass the same distribution checks: the range
    and the standard deviation (within 5 standard errors) of PyTorch's scheme."""
    lsd, tsd = make().state_dict(), make_ref().state_dict()
    assert list(lsd) == list(tsd)
    for k in lsd:
        for who, arr in (("lamina", lsd[k].numpy().ravel()), ("torch", tsd[k].numpy().ravel())):
            std = 1.0 if bound is None else bound / np.sqrt(3)
            assert abs(arr.std() - std) < 5 * std / np.sqrt(arr.size), (who, k)
            assert abs(arr.mean()) < 5 * std / np.sqrt(arr.size), (who, k)
            if bound is not None:
                assert np.abs(arr).max() <= bound * (1 + 1e-6), (who, k)


def test_init_functions_match_torch_statistics():
    from lamina.nn import init
    w = lamina.empty(256, 512)
    for fn, kwargs, expected_std in [
        (init.kaiming_uniform_, dict(nonlinearity="relu"), np.sqrt(2 / 512)),
        (init.kaiming_normal_, dict(mode="fan_out", nonlinearity="relu"), np.sqrt(2 / 256)),
        (init.xavier_uniform_, dict(), np.sqrt(2 / (256 + 512))),
        (init.xavier_normal_, dict(gain=2.0), 2 * np.sqrt(2 / (256 + 512))),
        (init.normal_, dict(std=0.02), 0.02),
        (init.trunc_normal_, dict(std=0.02, a=-0.04, b=0.04), 0.02 * 0.88),
    ]:
        fn(w, **kwargs)
        assert abs(w.numpy().std() - expected_std) < 0.03 * expected_std, fn.__name__
    init.uniform_(w, -0.5, 0.25)
    assert w.numpy().min() >= -0.5 and w.numpy().max() < 0.25
    init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.numpy()).max() <= 0.5
    init.zeros_(w)
    assert not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    q = lamina.empty(6, 10)
    init.orthogonal_(q, gain=1.5)
    np.testing.assert_allclose(q.numpy() @ q.numpy().T, 2.25 * np.eye(6), atol=1e-5)
    q = lamina.empty(10, 6)
    init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy().T @ q.numpy(), np.eye(6), atol=1e-5)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))
    assert init.calculate_gain("tanh") == pytest.approx(torch.nn.init.calculate_gain("tanh"))


def test_init_does_not_record_graph():
    lin = nn.Linear(3, 3)
    nn.init.xavier_uniform_(lin.weight)
    assert lin.weight.grad_fn is None and lin.weight.is_leaf


def test_functional_extras_match_torch():
    import torch.nn.functional as TF
    F = nn.functional
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    la, lb = lamina.tensor(a, dtype=lamina.float64), lamina.tensor(b, dtype=lamina.float64)
    ta, tb = torch.tensor(a), torch.tensor(b)
    np.testing.assert_allclose(F.normalize(la).numpy(), TF.normalize(ta).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.normalize(la, p=1.0, dim=0).numpy(), TF.normalize(ta, p=1.0, dim=0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.cosine_similarity(la, lb).numpy(), TF.cosine_similarity(ta, tb).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.logsigmoid(la).numpy(), TF.logsigmoid(ta).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.mish(la).numpy(), TF.mish(ta).numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.relu6(la * 4).numpy(), TF.relu6(ta * 4).numpy())


@pytest.mark.parametrize("case", ["plain", "causal", "bool_mask", "float_mask", "cross", "scale"])
def test_scaled_dot_product_attention_matches_torch(case):
    import torch.nn.functional as TF
    rng = np.random.default_rng(0)
    L, S = (4, 6) if case == "cross" else (5, 5)
    q, k, v = rng.standard_normal((2, 3, L, 8)), rng.standard_normal((2, 3, S, 8)), rng.standard_normal((2, 3, S, 4))
    kwargs, tkwargs = {}, {}
    if case == "causal":
        kwargs = tkwargs = {"is_causal": True}
    elif case == "bool_mask":
        m = rng.random((L, S)) > 0.3
        m[:, 0] = True  # every query sees something
        kwargs, tkwargs = {"attn_mask": lamina.tensor(m)}, {"attn_mask": torch.tensor(m)}
    elif case == "float_mask":
        m = rng.standard_normal((2, 1, L, S))
        kwargs, tkwargs = {"attn_mask": lamina.tensor(m, dtype=lamina.float64)}, {"attn_mask": torch.tensor(m)}
    elif case == "scale":
        kwargs = tkwargs = {"scale": 0.3}
    lt = [lamina.tensor(a, dtype=lamina.float64, requires_grad=True) for a in (q, k, v)]
    tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = nn.functional.scaled_dot_product_attention(*lt, **kwargs)
    tout = TF.scaled_dot_product_attention(*tt, **tkwargs)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(tout.shape)
    (out * lamina.tensor(w, dtype=lamina.float64)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    for a, b in zip(lt, tt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_fused_linear_and_layer_norm_equal_their_composites():
    """The fused ops against the compositions of primitives they replace."""
    rng = np.random.default_rng(0)
    F = nn.functional
    x = lamina.tensor(rng.standard_normal((2, 3, 6)), dtype=lamina.float64, requires_grad=True)
    w = lamina.tensor(rng.standard_normal((4, 6)), dtype=lamina.float64, requires_grad=True)
    b = lamina.tensor(rng.standard_normal(4), dtype=lamina.float64, requires_grad=True)
    fused = F.linear(x, w, b)
    composite = x @ w.mT + b
    gs = lamina.grad((fused * fused).sum(), [x, w, b])
    gc = lamina.grad((composite * composite).sum(), [x, w, b])
    np.testing.assert_allclose(fused.detach().numpy(), composite.detach().numpy(), rtol=1e-12)
    for a, c in zip(gs, gc):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-11)
    lw = lamina.tensor(rng.standard_normal(6), dtype=lamina.float64, requires_grad=True)
    lb = lamina.tensor(rng.standard_normal(6), dtype=lamina.float64, requires_grad=True)
    fused = F.layer_norm(x, (6,), lw, lb, 1e-5)
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) * (x - mean)).mean(dim=-1, keepdim=True)
    composite = (x - mean) * (var + 1e-5).rsqrt() * lw + lb
    gs = lamina.grad((fused * fused * fused).sum(), [x, lw, lb])
    gc = lamina.grad((composite * composite * composite).sum(), [x, lw, lb])
    np.testing.assert_allclose(fused.detach().numpy(), composite.detach().numpy(), rtol=1e-12)
    for a, c in zip(gs, gc):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-10)
