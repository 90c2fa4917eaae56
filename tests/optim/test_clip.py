"""clip_grad_norm_ and clip_grad_value_ against torch.nn.utils."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lamina
from lamina.nn import Parameter
from lamina.optim import clip_grad_norm_, clip_grad_value_

SHAPES = [(4, 3), (5,), (), (2, 2, 2)]


def _pair(scale=1.0, poison=None, dtype=np.float64):
    """The same parameters with the same grads in lamina and torch; the last has no grad."""
    rng = np.random.default_rng(0)
    grads = [np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in SHAPES]
    if poison is not None:
        grads[1][2] = poison
    mine, ref = [], []
    for g in grads:
        p = Parameter(lamina.tensor(np.zeros_like(g)))
        p.grad = lamina.tensor(g.copy())
        t = torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
        t.grad = torch.tensor(g.copy())
        mine.append(p)
        ref.append(t)
    mine.append(Parameter(lamina.zeros(3)))
    ref.append(torch.zeros(3, requires_grad=True))
    return mine, ref


def _grads(params):
    return [p.grad.numpy() if isinstance(p, lamina.Tensor) else p.grad.detach().numpy()
            for p in params if p.grad is not None]


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, 0.5, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    mine, ref = _pair()
    total = clip_grad_norm_(mine, max_norm, norm_type)
    ref_total = torch.nn.utils.clip_grad_norm_(ref, max_norm, float(norm_type))
    assert isinstance(total, lamina.Tensor) and total.shape == () and total.dtype == np.float64
    np.testing.assert_allclose(total.item(), ref_total.item(), rtol=1e-12)
    for a, b in zip(_grads(mine), _grads(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert mine[-1].grad is None


def test_clip_grad_norm_float32_and_single_tensor():
    mine, ref = _pair(scale=10.0, dtype=np.float32)
    total = clip_grad_norm_(mine[0], 1.0)
    ref_total = torch.nn.utils.clip_grad_norm_(ref[0], 1.0)
    assert total.dtype == np.float32
    np.testing.assert_allclose(total.item(), ref_total.item(), rtol=1e-6)
    np.testing.assert_allclose(_grads(mine)[0], _grads(ref)[0], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(_grads(mine)[0]), 1.0, rtol=1e-5)


def test_clip_grad_norm_bumps_grad_versions_and_builds_no_graph():
    mine, _ = _pair()
    versions = [p.grad._version[0] for p in mine[:-1]]
    clip_grad_norm_(mine, 0.1)
    assert [p.grad._version[0] for p in mine[:-1]] == [v + 1 for v in versions]
    assert all(p.grad._node is None for p in mine[:-1])


@pytest.mark.parametrize("poison", [math.inf, math.nan])
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_nonfinite_norm_raises_when_asked(poison, norm_type):
    mine, _ = _pair(poison=poison)
    before = _grads(mine)
    with pytest.raises(RuntimeError, match=f"clip_grad_norm_: the total norm of order {norm_type} "
                                           "of the gradients is (inf|nan)"):
        clip_grad_norm_(mine, 1.0, norm_type, error_if_nonfinite=True)
    for a, b in zip(_grads(mine), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("poison", [math.inf, math.nan])
def test_nonfinite_norm_scales_like_torch_otherwise(poison):
    mine, ref = _pair(poison=poison)
    total = clip_grad_norm_(mine, 1.0)
    ref_total = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    np.testing.assert_array_equal(total.item(), ref_total.item())
    for a, b in zip(_grads(mine), _grads(ref)):
        np.testing.assert_array_equal(a, b)


def test_clip_grad_norm_without_grads_is_zero():
    total = clip_grad_norm_([Parameter(lamina.zeros(2))], 1.0)
    assert total.item() == 0.0


@pytest.mark.parametrize("clip_value", [0.3, 2])
def test_clip_grad_value_matches_torch(clip_value):
    mine, ref = _pair()
    assert clip_grad_value_(mine, clip_value) is None
    torch.nn.utils.clip_grad_value_(ref, clip_value)
    for a, b in zip(_grads(mine), _grads(ref)):
        np.testing.assert_array_equal(a, b)
    assert mine[-1].grad is None


def test_clip_rejects_non_tensors():
    with pytest.raises(TypeError, match="clip_grad_value_: parameters must be Tensors, but item 0 is "
                                        "a ndarray"):
        clip_grad_value_([np.zeros(2)], 1.0)
