"""Tensor creation, dtypes, devices, conversion, printing and seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lamina
from tests.conftest import DEVICES


def test_tensor_infers_dtypes_like_torch():
    assert lamina.tensor([1.0, 2.0]).dtype == lamina.float32
    assert lamina.tensor([1, 2]).dtype == lamina.int64
    assert lamina.tensor([True, False]).dtype == lamina.bool_
    assert lamina.tensor(np.zeros(2, dtype=np.float64)).dtype == lamina.float64
    assert lamina.tensor(3.5).shape == ()
    assert lamina.tensor([[1, 2], [3, 4]], dtype=lamina.float16).dtype == lamina.float16


def test_tensor_copies_but_from_numpy_shares():
    a = np.arange(3.0)
    t = lamina.tensor(a)
    s = lamina.from_numpy(a)
    a[0] = 100
    assert t[0].item() == 0.0 and s[0].item() == 100.0


@pytest.mark.parametrize("device", DEVICES)
def test_factories(device):
    assert lamina.zeros(2, 3, device=device).shape == (2, 3)
    assert lamina.ones((4,), device=device).sum().item() == 4
    assert lamina.full((2, 2), 7, device=device).dtype == lamina.int64
    assert lamina.full((2, 2), 7.0, device=device).dtype == lamina.float32
    assert lamina.empty(0, 5, device=device).shape == (0, 5)
    np.testing.assert_array_equal(lamina.arange(5, device=device).cpu().numpy(), np.arange(5))
    assert lamina.arange(0, 1, 0.25, device=device).dtype == lamina.float32
    np.testing.assert_allclose(lamina.linspace(0, 1, 5, device=device).cpu().numpy(), np.linspace(0, 1, 5))
    np.testing.assert_array_equal(lamina.eye(3, device=device).cpu().numpy(), np.eye(3))
    x = lamina.randn(3, 4, device=device)
    for f in (lamina.zeros_like, lamina.ones_like, lamina.empty_like, lamina.rand_like, lamina.randn_like):
        y = f(x)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert lamina.full_like(x, 2.0).sum().item() == 24.0
    r = lamina.rand(1000, device=device)
    assert 0.0 <= r.min().item() and r.max().item() < 1.0
    i = lamina.randint(3, 7, (1000,), device=device)
    assert i.dtype == lamina.int64 and i.min().item() >= 3 and i.max().item() <= 6


def test_manual_seed_reproduces_and_generators_are_independent():
    lamina.manual_seed(42)
    a = lamina.randn(5).numpy().copy()
    lamina.manual_seed(42)
    b = lamina.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    g = lamina.Generator(seed=7)
    c = lamina.randn(5, generator=g).numpy().copy()
    g.manual_seed(7)
    np.testing.assert_array_equal(c, lamina.randn(5, generator=g).numpy())


def test_generator_state_round_trip():
    g = lamina.Generator(seed=3)
    g.uniform((4,), lamina.float32)
    state = g.get_state()
    import json
    state = json.loads(json.dumps(state))
    a = lamina.rand(6, generator=g).numpy().copy()
    g2 = lamina.Generator(seed=99)
    g2.set_state(state)
    np.testing.assert_array_equal(a, lamina.rand(6, generator=g2).numpy())


def test_properties_and_conversion():
    t = lamina.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.ndim == 2 and t.numel() == 4 and t.size(1) == 2 and t.size(-1) == 2
    assert t.device == lamina.Device("cpu") and str(t.device) == "cpu"
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t[1, 0].item() == 3.0
    assert isinstance(t.sum().item(), float)
    np.testing.assert_array_equal(np.asarray(t), t.numpy())
    assert t.to(lamina.float64).dtype == lamina.float64
    assert t.double().dtype == lamina.float64 and t.long().dtype == lamina.int64
    assert t.to("cpu") is t
    assert t.to("float16").dtype == lamina.float16
    assert t.T.shape == (2, 2) and t.T[0, 1].item() == 3.0
    assert float(t[0, 0]) == 1.0 and int(t[1, 1]) == 4
    assert len(t) == 2 and [r.shape for r in t] == [(2,), (2,)]
    assert not t.transpose(0, 1).is_contiguous() and t.transpose(0, 1).contiguous().is_contiguous()


def test_numpy_refuses_grad_tensors():
    t = lamina.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    assert t.detach().numpy().shape == (2,)


def test_bfloat16_where_numpy_can():
    t = lamina.tensor([1.0, 2.5, -3.0], dtype=lamina.bfloat16)
    assert t.dtype == lamina.bfloat16
    np.testing.assert_array_equal(t.float().numpy(), [1.0, 2.5, -3.0])
    assert (t * 2).float().tolist() == [2.0, 5.0, -6.0]
    assert "bfloat16" in repr(t)


def test_dlpack_round_trip_with_torch():
    t = lamina.tensor([[1.0, 2.0], [3.0, 4.0]])
    tt = torch.from_dlpack(t)
    assert tt.shape == (2, 2) and tt[1, 0].item() == 3.0
    back = lamina.from_dlpack(torch.arange(4.0))
    np.testing.assert_array_equal(back.numpy(), [0.0, 1.0, 2.0, 3.0])


def test_repr_is_readable():
    assert repr(lamina.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(lamina.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(lamina.tensor([1.5], dtype=lamina.float64)) == "tensor([1.5], dtype=lamina.float64)"
    assert repr(lamina.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "grad_fn=<Mul>" in repr(lamina.tensor([1.0], requires_grad=True) * 2)


def test_operators_call_ops_and_reflect():
    a = lamina.tensor([1.0, 2.0, 4.0])
    np.testing.assert_allclose((2 - a).numpy(), [1.0, 0.0, -2.0])
    np.testing.assert_allclose((1 / a).numpy(), [1.0, 0.5, 0.25])
    np.testing.assert_allclose((2 ** a).numpy(), [2.0, 4.0, 16.0])
    np.testing.assert_allclose((a // 3).numpy(), [0.0, 0.0, 1.0])
    np.testing.assert_allclose((a % 3).numpy(), [1.0, 2.0, 1.0])
    np.testing.assert_allclose((-a).numpy(), [-1.0, -2.0, -4.0])
    assert (a @ a).item() == 21.0
    assert (a > 1.5).tolist() == [False, True, True]
    assert ((a > 1.5) & (a < 3)).tolist() == [False, True, False]
    assert (~(a > 1.5)).tolist() == [True, False, False]
    assert (a == 2).tolist() == [False, True, False]
    assert (np.float64(2.0) * a).dtype == lamina.float32


def test_scalar_promotion_follows_torch():
    i = lamina.tensor([1, 2])
    assert (i * 2).dtype == lamina.int64
    assert (i * 2.5).dtype == lamina.float32
    assert (i / 2).dtype == lamina.float32
    f16 = lamina.ones(2, dtype=lamina.float16)
    assert (f16 + 1.0).dtype == lamina.float16
    assert (f16 + lamina.ones(2)).dtype == lamina.float32
    assert (i + lamina.ones(2)).dtype == lamina.float32
    assert (lamina.ones(2) + lamina.ones(2, dtype=lamina.float64)).dtype == lamina.float64


def test_inplace_updates_under_no_grad():
    t = lamina.zeros(3)
    t += 1
    t *= lamina.tensor([1.0, 2.0, 3.0])
    t[0] = 10
    np.testing.assert_array_equal(t.numpy(), [10.0, 2.0, 3.0])
    t.zero_().fill_(4)
    np.testing.assert_array_equal(t.numpy(), [4.0, 4.0, 4.0])
    t.copy_(lamina.tensor([1.0]))
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="add_"):
        lamina.zeros(2, dtype=lamina.int64).add_(1.5)


def test_device_parsing():
    assert lamina.Device("cuda") == lamina.Device("cuda:0")
    assert str(lamina.Device("cuda:1")) == "cuda:1"
    with pytest.raises(ValueError, match="unknown device type"):
        lamina.Device("tpu")
    with pytest.raises(ValueError, match="bad device index"):
        lamina.Device("cuda:x")


def test_to_with_an_unknown_name_says_device_or_dtype():
    with pytest.raises(ValueError, match="to: 'foo' is neither a device .* nor a dtype"):
        lamina.ones(2).to("foo")


def test_ragged_nested_lists_get_a_clear_error():
    with pytest.raises(ValueError, match=r"tensor: the nested sequences have different lengths .*\[\[1, 2\], \[3\]\]"):
        lamina.tensor([[1, 2], [3]])


def test_matmul_of_mixed_dtypes_raises_as_pytorch_does():
    import torch
    with pytest.raises(RuntimeError):
        torch.ones(2, 2) @ torch.ones(2, 2, dtype=torch.int64)
    with pytest.raises(TypeError, match="matmul: expected both operands to have the same dtype, got float32"):
        lamina.ones(2, 2) @ lamina.ones(2, 2, dtype=lamina.int64)


def test_data_is_a_tensor_sharing_memory_outside_autograd_as_torch():
    import torch
    for lib in (lamina, torch):
        w = lib.ones(3, requires_grad=True)
        y = (w * w).sum()
        d = w.data
        assert isinstance(d, lib.Tensor) and not d.requires_grad and d.grad_fn is None
        d.mul_(2.0)  # a hand-written update: seen by w, not checked by the pending backward
        assert w.tolist() == [2.0, 2.0, 2.0]
        y.backward()
        assert w.grad.tolist() == [4.0, 4.0, 4.0]  # w * w saved w, so it reads the new value
        w.grad.data.add_(w.grad, alpha=-0.5)
        assert w.grad.tolist() == [2.0, 2.0, 2.0]
        w.data = lib.zeros(2)  # rebinding takes the other tensor's memory, shape included
        assert tuple(w.shape) == (2,) and w.requires_grad


def test_data_assignment_needs_a_tensor():
    t = lamina.ones(2)
    with pytest.raises(TypeError, match=r"Tensor.data: assigned value must be a Tensor, got ndarray"):
        t.data = np.zeros(2)
    assert t.tolist() == [1.0, 1.0]


def test_to_sparse_and_to_dense_give_torchs_dense_values():
    x = np.array([[0.0, 2.0], [3.0, 0.0]])
    t, tt = lamina.tensor(x), torch.tensor(x)
    s = t.to_sparse()
    np.testing.assert_array_equal(s.numpy(), tt.to_sparse().to_dense().numpy())
    assert not np.shares_memory(s.numpy(), t.numpy())
    assert s.to_dense() is s and s.to_dense(lamina.float32).dtype == lamina.float32
    with pytest.raises(ValueError, match=r"to_sparse: sparse_dim must be in \[0, 2\] for a 2-D tensor, got 3"):
        t.to_sparse(3)
    assert lamina.sparse_coo_tensor is lamina.creation.sparse_coo_tensor
