"""Hypothesis fuzzes shapes for the broadcasting binary ops: forward and gradients match PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import lamina

BINARY = {
    "add": (lamina.add, torch.add),
    "sub": (lamina.sub, torch.sub),
    "mul": (lamina.mul, torch.mul),
    "div": (lamina.div, torch.div),
    "maximum": (lamina.maximum, torch.maximum),
    "pow": (lamina.pow, torch.pow),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=40, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
       seed=st.integers(0, 2**31 - 1))
def test_broadcast_binary_matches_torch(name, shapes, seed):
    fn, ref = BINARY[name]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.uniform(0.5, 2.0, sa)
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1.0, 1.0], sb)
    la = lamina.tensor(a, dtype=lamina.float64, requires_grad=True)
    lb = lamina.tensor(b, dtype=lamina.float64, requires_grad=True)
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    out, tout = fn(la, lb), ref(ta, tb)
    assert out.shape == tuple(tout.shape) == shapes.result_shape
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    w = rng.standard_normal(shapes.result_shape)
    (out * lamina.tensor(w, dtype=lamina.float64)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    assert la.grad.shape == sa and lb.grad.shape == sb
    np.testing.assert_allclose(la.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lb.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2**31 - 1))
def test_where_broadcast_matches_torch(shapes, seed):
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    c = rng.random(sc) > 0.5
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    la = lamina.tensor(a, dtype=lamina.float64, requires_grad=True)
    lb = lamina.tensor(b, dtype=lamina.float64, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out = lamina.where(lamina.tensor(c), la, lb)
    tout = torch.where(torch.tensor(c), ta, tb)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_array_equal(la.grad.numpy(), ta.grad.numpy())
    np.testing.assert_array_equal(lb.grad.numpy(), tb.grad.numpy())


@settings(max_examples=30, deadline=None)
@given(batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
       m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_matmul_batch_broadcast_matches_torch(batch, m, k, n, seed):
    rng = np.random.default_rng(seed)
    sa, sb = batch.input_shapes
    a, b = rng.standard_normal(sa + (m, k)), rng.standard_normal(sb + (k, n))
    la = lamina.tensor(a, dtype=lamina.float64, requires_grad=True)
    lb = lamina.tensor(b, dtype=lamina.float64, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out, tout = la @ lb, ta @ tb
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(la.grad.numpy(), ta.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lb.grad.numpy(), tb.grad.numpy(), rtol=1e-12, atol=1e-12)
