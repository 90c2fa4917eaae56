"""Calls that PyTorch programs make in their own spelling: ``randint``'s two forms, the COO
constructor (built dense), ``import torch.backends.cudnn as cudnn``; against torch."""
from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

import lamina
from lamina.creation import randint, sparse_coo_tensor


# ---------------------------------------------------------------- randint

@pytest.mark.parametrize("args,kwargs,shape,low,high", [
    ((10, (3,)), {}, (3,), 0, 10),
    ((2, 5, (4, 2)), {}, (4, 2), 2, 5),
    ((7,), {"size": (2, 3)}, (2, 3), 0, 7),
    ((), {"low": -3, "high": 3, "size": [5]}, (5,), -3, 3),
    ((0, 4, ()), {}, (), 0, 4),
])
def test_randint_takes_both_of_pytorchs_forms(args, kwargs, shape, low, high):
    t = torch.randint(*args, **kwargs)
    lamina.manual_seed(3)
    a = randint(*args, **kwargs)
    assert a.shape == tuple(t.shape) and str(a.dtype) == "int64" and t.dtype == torch.int64
    many = randint(low, high, (4000,)).numpy()
    assert many.min() == low and many.max() == high - 1


def test_randint_is_seeded_and_checks_its_arguments():
    lamina.manual_seed(9)
    a = randint(100, (6,)).numpy()
    lamina.manual_seed(9)
    np.testing.assert_array_equal(a, randint(0, 100, (6,)).numpy())
    assert randint(5, (3,), dtype=lamina.int32).dtype == lamina.int32
    with pytest.raises(TypeError, match="randint: size is required"):
        randint(5)
    with pytest.raises(ValueError, match=r"randint: high \(2\) must be greater than low \(4\)"):
        randint(4, 2, (3,))
    with pytest.raises(RuntimeError, match="randint: only floating-point tensors can require gradients"):
        randint(4, (3,), requires_grad=True)


# ---------------------------------------------------------------- sparse_coo_tensor

@pytest.mark.parametrize("indices,values,size,dtype", [
    ([[0, 1, 1, 0], [2, 0, 2, 2]], [3.0, 4.0, 5.0, 1.0], (2, 3), None),        # a duplicate index is summed
    ([[0, 1, 1, 0], [2, 0, 2, 2]], [3.0, 4.0, 5.0, 1.0], None, None),          # size inferred
    ([[0, 2]], [[1.0, 2.0], [3.0, 4.0]], None, None),                          # a dense trailing dim
    ([[0, 1, 2], [1, 2, 0]], [1.0, 1.0, 1.0], (4, 4), "int64"),               # values cast (GAT's adjacency)
    ([[1, 0], [0, 0], [2, 1]], [2.0, -1.0], (2, 2, 3), "float64"),
])
def test_sparse_coo_tensor_is_pytorchs_dense_result(indices, values, size, dtype):
    a = sparse_coo_tensor(indices, values, size, dtype=getattr(lamina, dtype) if dtype else None)
    t = torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), *([size] if size else []),
                                dtype=getattr(torch, dtype) if dtype else None).to_dense()
    assert a.shape == tuple(t.shape) and str(a.dtype) == str(t.dtype).replace("torch.", "")
    np.testing.assert_array_equal(a.numpy(), t.numpy())


def test_sparse_coo_tensor_sums_with_dense_and_passes_gradients_to_values():
    idx = np.array([[0, 1, 2, 2], [1, 0, 2, 2]])
    adj = lamina.eye(3) + sparse_coo_tensor(idx, lamina.ones(4), (3, 3), dtype=lamina.int64)
    tadj = torch.eye(3) + torch.sparse_coo_tensor(torch.tensor(idx), torch.ones(4), (3, 3), dtype=torch.int64)
    assert str(adj.dtype) == str(tadj.dtype).replace("torch.", "")
    np.testing.assert_array_equal(adj.numpy(), tadj.to_dense().numpy())
    v = lamina.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    w = lamina.tensor(np.arange(9.0).reshape(3, 3))
    (sparse_coo_tensor(idx, v, (3, 3)) * w).sum().backward()
    tv = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    (torch.sparse_coo_tensor(torch.tensor(idx), tv, (3, 3)).to_dense() * torch.arange(9.0).reshape(3, 3)).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy())
    assert sparse_coo_tensor(idx, [1.0] * 4, (3, 3), requires_grad=True).requires_grad


def test_sparse_coo_tensor_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"sparse_coo_tensor: indices must be an integer array of shape "
                                         r"\(sparse_dims, nnz\), got shape \(3,\)"):
        sparse_coo_tensor([0, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"one row per index column \(nnz=2\), got values of shape \(3,\)"):
        sparse_coo_tensor([[0, 1]], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"size \(2, 2\) is too small for indices up to \(3, 1\)"):
        sparse_coo_tensor([[0, 2], [0, 0]], [1.0, 2.0], (2, 2))
    with pytest.raises(ValueError, match="indices must be non-negative, found -1"):
        sparse_coo_tensor([[0, -1]], [1.0, 2.0], (3,))
    with pytest.raises(ValueError, match=r"size \(3,\) must have 1 sparse dims"):
        sparse_coo_tensor([[0, 1]], [[1.0, 2.0], [3.0, 4.0]], (3,))


# ---------------------------------------------------------------- torch.backends.<name> as submodules

@pytest.mark.parametrize("name", ["cudnn", "cuda", "mkldnn", "mps", "mkl", "opt_einsum"])
def test_backends_flags_import_as_submodules(name):
    mod = importlib.import_module(f"lamina.backends.{name}")
    assert mod is getattr(lamina.backends, name) is sys.modules[f"lamina.backends.{name}"]
    assert importlib.import_module(f"torch.backends.{name}") is not None  # the path programs write


def test_import_as_statement_binds_the_flags_object():
    import lamina.backends.cudnn as cudnn
    cudnn.benchmark = True
    try:
        assert lamina.backends.cudnn.benchmark is True
    finally:
        cudnn.benchmark = False
