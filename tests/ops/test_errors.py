"""Every error path names the op and the offending shapes, dtypes, devices or indices."""
from __future__ import annotations

import numpy as np
import pytest

import lamina
from tests.conftest import cuda_available


def raises(exc, *fragments):
    """pytest.raises that also checks every fragment appears in the message."""
    class _Ctx:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *a):
            res = self.ctx.__exit__(*a)
            msg = str(self.info.value)
            for f in fragments:
                assert f in msg, f"{f!r} not in error message {msg!r}"
            return res
    return _Ctx()


a23, b45 = lamina.randn(2, 3), lamina.randn(4, 5)


def test_matmul_shape_mismatch():
    with raises(ValueError, "matmul", "(2, 3)", "(4, 5)"):
        a23 @ b45


def test_matmul_batch_mismatch():
    with raises(ValueError, "matmul", "batch dims", "(2, 3, 4)", "(5, 4, 2)"):
        lamina.randn(2, 3, 4) @ lamina.randn(5, 4, 2)


def test_broadcast_mismatch_names_op_and_shapes():
    for fn, name in ((lamina.add, "add"), (lamina.mul, "mul"), (lamina.maximum, "maximum"),
                     (lamina.where, "where")):
        args = (lamina.tensor(np.ones((2, 3), bool)), a23, b45) if name == "where" else (a23, b45)
        with raises(ValueError, name, "(2, 3)", "(4, 5)"):
            fn(*args)


def test_cat_mismatch():
    with raises(ValueError, "cat", "(2, 3)", "(4, 5)", "input 1"):
        lamina.cat([a23, b45])


def test_stack_mismatch():
    with raises(ValueError, "stack", "(2, 3)", "(4, 5)"):
        lamina.stack([a23, b45])


def test_bad_axis():
    with raises(IndexError, "sum", "dim 3", "2 dims"):
        a23.sum(dim=3)
    with raises(IndexError, "softmax", "dim -3"):
        lamina.softmax(a23, -3)
    with raises(IndexError, "cat", "dim 2"):
        lamina.cat([a23, a23], dim=2)
    with raises(IndexError, "transpose", "dim 5"):
        a23.transpose(0, 5)


def test_out_of_range_index():
    with raises(IndexError, "getitem", "index 5", "size 2", "(2, 3)"):
        a23[5]
    with raises(IndexError, "getitem", "index 9"):
        a23[lamina.tensor([0, 9])]
    with raises(IndexError, "gather", "index 7"):
        lamina.gather(a23, 1, lamina.tensor([[0, 7, 1]]))
    with raises(IndexError, "index_select", "index 4", "size 2"):
        lamina.index_select(a23, 0, lamina.tensor([4]))
    with raises(IndexError, "embedding", "[0, 5)", "(5, 2)"):
        lamina.embedding(lamina.tensor([0, 7]), lamina.randn(5, 2))


def test_bad_index_types():
    with raises(IndexError, "getitem", "integer or bool", "float32"):
        a23[lamina.tensor([0.5])]
    with raises(IndexError, "boolean mask", "(3,)", "(2, 3)"):
        a23[lamina.tensor([True, False, True])]
    with raises(TypeError, "gather", "integer tensor", "float32"):
        lamina.gather(a23, 0, lamina.tensor([[0.0]]))


def test_wrong_dtype():
    ints = lamina.tensor([1, 2, 3])
    with raises(TypeError, "mean", "int64"):
        ints.mean()
    with raises(TypeError, "requires_grad_", "int64"):
        ints.requires_grad_()
    with raises(TypeError, "where", "condition", "int64"):
        lamina.where(ints, a23, a23)
    with raises(TypeError, "masked_fill", "mask", "float32"):
        a23.masked_fill(a23, 0.0)
    with raises(TypeError, "exp", "Tensor", "str"):
        lamina.exp("x")
    with raises(TypeError, "dropout", "floating", "int64"):
        lamina.dropout(ints, 0.5)


def test_reshape_and_expand():
    with raises(ValueError, "reshape", "(2, 3)", "(4, 2)"):
        a23.reshape(4, 2)
    with raises(ValueError, "expand", "(2, 3)", "(3, 3)"):
        a23.expand(3, 3)
    with raises(ValueError, "permute", "(0, 0)"):
        a23.permute(0, 0)
    with raises(ValueError, "split", "[1, 1]", "(2, 3)"):
        a23.split([1, 1], dim=1)


def test_conv_errors_name_shapes():
    with raises(ValueError, "conv2d", "(1, 3, 5, 5)", "(2, 4, 3, 3)"):
        lamina.conv2d(lamina.randn(1, 3, 5, 5), lamina.randn(2, 4, 3, 3))
    with raises(ValueError, "conv2d", "larger than the padded input"):
        lamina.conv2d(lamina.randn(1, 3, 2, 2), lamina.randn(2, 3, 3, 3))
    with raises(ValueError, "conv2d", "bias", "(2,)"):
        lamina.conv2d(lamina.randn(1, 3, 5, 5), lamina.randn(2, 3, 3, 3), lamina.randn(3))
    with raises(ValueError, "conv1d", "3 dims"):
        lamina.ops.conv1d(lamina.randn(1, 3, 5, 5), lamina.randn(2, 3, 3))
    with raises(ValueError, "max_pool2d", "larger than the padded input"):
        lamina.max_pool2d(lamina.randn(1, 3, 2, 2), 3)
    with raises(ValueError, "max_pool2d", "padding"):
        lamina.max_pool2d(lamina.randn(1, 3, 8, 8), 2, padding=2)


def test_inplace_dtype_and_shape():
    with raises(ValueError, "add_", "(2, 3)", "(3,)"):
        lamina.zeros(3).add_(a23)


@pytest.mark.skipif(not cuda_available(), reason="needs CUDA and CuPy")
@pytest.mark.gpu
def test_mixed_devices():
    with raises(ValueError, "add", "cpu", "cuda:0"):
        lamina.randn(3) + lamina.randn(3, device="cuda")
    with raises(ValueError, "matmul", "cpu", "cuda:0"):
        lamina.randn(3, 3) @ lamina.randn(3, 3, device="cuda")


def test_cuda_without_cupy_is_a_clear_error():
    if cuda_available():
        pytest.skip("CUDA is available here")
    with raises(RuntimeError, "CuPy"):
        lamina.zeros(2, device="cuda")
