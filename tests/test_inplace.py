"""In-place ops under autograd, against PyTorch's gradients.

Every in-place method is run on a non-leaf tensor, on a view of one, and on a tensor another
node has already consumed; the gradients of every leaf must match PyTorch's. Leaves that require
grad (and views of them) refuse in-place changes, and a value a pending backward reads is
protected by its version counter.
"""
import numpy as np
import pytest
import torch

import lamina

RNG = np.random.RandomState(0)
X = RNG.uniform(0.5, 1.5, (3, 4))
Z = RNG.uniform(0.5, 1.5, (3, 4))

# name -> f(lib, t, z): an in-place call on t; z is another tensor that requires grad
METHODS = {
    "add_": lambda L, t, z: t.add_(z),
    "add_alpha": lambda L, t, z: t.add_(z, alpha=-0.5),
    "sub_": lambda L, t, z: t.sub_(z),
    "mul_scalar": lambda L, t, z: t.mul_(2.5),
    "mul_": lambda L, t, z: t.mul_(z),
    "imul": lambda L, t, z: t.__imul__(z),
    "div_": lambda L, t, z: t.div_(z),
    "itruediv": lambda L, t, z: t.__itruediv__(3.0),
    "pow_": lambda L, t, z: t.pow_(2.0),
    "clamp_": lambda L, t, z: t.clamp_(0.7, 1.2),
    "neg_": lambda L, t, z: t.neg_(),
    "exp_": lambda L, t, z: t.exp_(),
    "sqrt_": lambda L, t, z: t.sqrt_(),
    "relu_": lambda L, t, z: t.sub_(1.0).relu_(),
    "sigmoid_": lambda L, t, z: t.sigmoid_(),
    "tanh_": lambda L, t, z: t.tanh_(),
    "abs_": lambda L, t, z: t.sub_(1.0).abs_(),
    "masked_fill_": lambda L, t, z: t.masked_fill_(z > 1.0, 0.25),
    "copy_": lambda L, t, z: t.copy_(z * 3),
    "copy_const": lambda L, t, z: t.copy_(L.ones(t.shape, dtype=t.dtype)),
    "fill_": lambda L, t, z: t.fill_(0.5),
    "zero_": lambda L, t, z: t.zero_(),
    "addcmul_": lambda L, t, z: t.addcmul_(z, z, value=0.5),
    "addcdiv_": lambda L, t, z: t.addcdiv_(z, z + 1, value=2.0),
    "lerp_": lambda L, t, z: t.lerp_(z, 0.25),
    "setitem_slice": lambda L, t, z: t.__setitem__((slice(None), slice(1, 3)), z[:, :2] * 2),
    "setitem_const": lambda L, t, z: t.__setitem__(0, 7.0),
    "index_put_": lambda L, t, z: t.index_put_((L.tensor([0, 2]),), z[:2] * 2),
}

# how the tensor written in place is reached from y = x * 1
TARGETS = {
    "tensor": lambda y: y,
    "row_view": lambda y: y[1:],
    "transposed_view": lambda y: y.t() if hasattr(y, "t") and not isinstance(y, lamina.Tensor) else y.transpose(0, 1),
}


def _run(L, method, target, consumed):
    x = L.tensor(X, dtype=L.float64, requires_grad=True)
    z = L.tensor(Z, dtype=L.float64, requires_grad=True)
    y = x * 1
    early = y * 2 if consumed else None  # a consumer recorded before the write (reads no value of y)
    t = TARGETS[target](y)
    if target == "transposed_view":
        z_used = z.transpose(0, 1)
    elif target == "row_view":
        z_used = z[1:]
    else:
        z_used = z
    METHODS[method](L, t, z_used)
    loss = (y * x).sum() + (t * t).sum()
    if early is not None:
        loss = loss + early.sum()
    loss.backward()
    grads = [x.grad, z.grad]
    return [None if g is None else np.asarray(g.tolist()) for g in grads], np.asarray(y.detach().tolist())


@pytest.mark.parametrize("consumed", [False, True], ids=["fresh", "consumed"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("method", list(METHODS))
def test_inplace_gradients_match_torch(method, target, consumed):
    if method in ("setitem_slice", "index_put_") and target != "tensor":
        pytest.skip("the indexed region is written with values shaped for the whole tensor")
    ours, our_y = _run(lamina, method, target, consumed)
    ref, ref_y = _run(torch, method, target, consumed)
    np.testing.assert_allclose(our_y, ref_y, rtol=1e-12, atol=1e-12)
    for g, r in zip(ours, ref):
        if r is None:
            assert g is None or not np.any(g)
        else:
            assert g is not None
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_inplace_on_leaf_that_requires_grad_raises():
    x = lamina.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="mul_: a leaf tensor that requires grad"):
        x.mul_(2)
    with pytest.raises(RuntimeError, match="view .* of a leaf tensor that requires grad"):
        x[:2].mul_(2)
    with lamina.no_grad():
        x.mul_(2)  # allowed outside grad mode


def test_value_a_pending_backward_reads_is_protected():
    x = lamina.randn(3, requires_grad=True)
    y = x * 1
    w = y * y  # reads y
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        w.sum().backward()


def test_value_no_backward_reads_may_change():
    x = lamina.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    w = y * 3  # reads only the constant
    y.mul_(2)
    (w.sum() + y.sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0, 5.0])


def test_stale_view_is_replayed_from_its_base():
    x = lamina.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    v = y[:2]
    y.mul_(3)
    v.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 0.0])


def test_in_place_with_grad_arguments_turns_constant_into_graph_member():
    buf = lamina.zeros(3, dtype=lamina.float64)
    x = lamina.tensor([1.0, 2.0, 3.0], dtype=lamina.float64, requires_grad=True)
    buf.add_(x * 2)
    assert buf.requires_grad and not buf.is_leaf
    buf.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])
