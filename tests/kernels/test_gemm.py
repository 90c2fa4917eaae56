"""lamina.kernels.matmul: with several threads, a product past BLAS_ALONE multiply-adds runs on
the kernel threads as (matrix, row block) pairs of single-thread GEMMs called from compiled code
through NumPy's own cblas_?gemm, equal to NumPy's, with BLAS left on one thread; small
products, one thread and what it does not take come back as None (the caller multiplies as
before)."""
import numpy as np
import pytest

from lamina import kernels as K
from lamina.kernels import _runtime, gemm

from .conftest import rand

pytestmark = pytest.mark.skipif(not gemm.addresses(), reason="NumPy's BLAS has no ILP64 cblas_?gemm to call")


@pytest.fixture
def two_threads(monkeypatch):
    """Two kernel threads, and BLAS on two threads until a split product puts it on one."""
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(_runtime, "_threads", 2)
    with threadpool_limits(2, user_api="blas"):
        yield
        _runtime.restore_blas()


def _blas():
    """Thread counts of NumPy's BLAS libraries (the ones the parts call)."""
    return {c.filepath: c.get_num_threads() for c in _runtime._blas_controllers()}


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shapes", [((256, 128), (128, 80)), ((6, 90, 64), (6, 64, 50)),
                                    ((2, 3, 70, 64), (2, 3, 64, 60)), ((1, 4096), (4096, 80)),
                                    ((3, 1, 900), (3, 900, 100))])
@pytest.mark.parametrize("layout", ["c", "a_transposed", "b_transposed", "both_transposed"])
def test_matmul_equals_numpy_on_single_thread_blas(shapes, layout, dtype, two_threads, part_counts):
    calls = part_counts
    rng = np.random.default_rng(5)

    def make(shape, transposed):
        return rand(rng, shape[:-2] + shape[:-3:-1], dtype).swapaxes(-1, -2) if transposed else rand(rng, shape, dtype)
    a = make(shapes[0], layout in ("a_transposed", "both_transposed"))
    b = make(shapes[1], layout in ("b_transposed", "both_transposed"))
    got = K.matmul(a, b)
    assert set(_blas().values()) == {1}  # the parts call BLAS themselves: it runs on one thread
    assert calls == [2]  # a part per thread: whole matrices, or blocks of rows or columns
    want = np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, **_tol(dtype))


def test_matmul_copies_operands_blas_cannot_read(dtype, two_threads):
    rng = np.random.default_rng(7)
    a = rand(rng, (300, 260), dtype)[::-1, ::2]     # negative rows, strided columns
    b = rand(rng, (3, 130, 90), dtype)[::2].swapaxes(0, 1).swapaxes(0, 1)
    b = np.broadcast_to(b[:1], (2, 130, 90))        # a batch stride of 0
    got = K.matmul(np.stack([a, a]), b)
    np.testing.assert_allclose(got, np.matmul(np.stack([a, a]), b), **_tol(dtype))


@pytest.mark.parametrize("shapes", [((5, 7, 3), (5, 3, 4)), ((2, 3, 5), (2, 5, 9)), ((1, 3), (3, 1))],
                         ids=["row_blocks", "column_blocks", "one_element"])
def test_product_splits_into_the_parts_asked_for(shapes, dtype):
    rng = np.random.default_rng(8)
    a, b, bias = rand(rng, shapes[0], dtype), rand(rng, shapes[1], dtype), rand(rng, shapes[1][-1:], dtype)
    for parts in (1, 2, 3, 6, 35, 100):
        np.testing.assert_allclose(gemm.product(a, b, parts), np.matmul(a, b), **_tol(dtype))
        np.testing.assert_allclose(gemm.product(a, b, parts, bias), np.matmul(a, b) + bias, **_tol(dtype))


def test_matmul_declines(two_threads, monkeypatch):
    a = np.ones((256, 128), np.float32)
    b = np.ones((128, 80), np.float32)
    assert K.matmul(a, b) is not None
    assert K.matmul(a, b.astype(np.float64)) is None                    # mixed dtypes
    assert K.matmul(a.astype(np.int64), b.astype(np.int64)) is None
    assert K.matmul(np.ones((2, 256, 128)), np.ones((1, 128, 80))) is None  # broadcast batch dims
    assert K.matmul(np.ones((2, 256, 128)), np.ones((128, 80))) is None     # the caller folds these
    assert K.matmul(a, np.ones((127, 80), np.float32)) is None          # shapes that do not fit
    assert K.matmul(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32)) is None  # small
    assert K.matmul(np.ones((0, 4096), np.float32), np.ones((4096, 80), np.float32)) is None  # empty
    monkeypatch.setattr(gemm, "_address", {})
    assert K.matmul(a, b) is None                                       # no cblas_sgemm to call
    monkeypatch.undo()
    monkeypatch.setattr(_runtime, "_threads", 1)
    assert K.matmul(a, b) is None                                       # one thread: BLAS's own call
    monkeypatch.setattr(_runtime, "_threads", 2)
    previous = _runtime.set_enabled(False)
    try:
        assert K.matmul(a, b) is None                                   # kernels off
    finally:
        _runtime.set_enabled(previous)


def test_matmul_op_takes_the_kernel_threads_and_matches_numpy(two_threads, part_counts):
    """Linear and matmul ops with gradients go through the split products."""
    import lamina
    calls = part_counts
    rng = np.random.default_rng(9)
    x = lamina.tensor(rng.standard_normal((64, 96)).astype(np.float32), requires_grad=True)
    w = lamina.tensor(rng.standard_normal((80, 96)).astype(np.float32), requires_grad=True)
    y = lamina.nn.functional.linear(x, w)
    y.backward(lamina.ones_like(y))
    assert calls == [2, 2]  # the forward split in two; dx and dw at once, one per thread
    xa, wa = x.detach().numpy(), w.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), xa @ wa.T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(x.grad.numpy(), np.ones((64, 80), np.float32) @ wa, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(w.grad.numpy(), np.ones((64, 80), np.float32).T @ xa, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shapes", [((256, 128), (128, 80)), ((6, 90, 64), (6, 64, 50))])
def test_matmul_adds_a_bias_to_every_row(shapes, dtype, two_threads):
    rng = np.random.default_rng(10)
    a, b, bias = rand(rng, shapes[0], dtype), rand(rng, shapes[1], dtype), rand(rng, shapes[1][-1:], dtype)
    np.testing.assert_allclose(K.matmul(a, b, bias), np.matmul(a, b) + bias, **_tol(dtype))
    assert K.matmul(a, b, bias.astype(np.float16)) is None                # another dtype
    assert K.matmul(a, b, np.ones(3, dtype)) is None                      # another length
    assert K.matmul(a, b, np.ones((shapes[1][-1], 2), dtype)[:, 0]) is None  # not contiguous


def test_product_ignores_the_strides_of_dimensions_of_one(dtype):
    """NumPy leaves any stride on a dimension of length 1; BLAS's leading dimensions are made
    valid whatever they say."""
    from numpy.lib.stride_tricks import as_strided
    rng = np.random.default_rng(11)
    flat = rand(rng, (4000,), dtype)
    size = flat.itemsize
    row = as_strided(flat, (1, 300), (size, size))        # one row, row stride 1 element
    column = as_strided(flat, (300, 1), (size, 7 * size))  # one column, column stride 7
    odd_row = as_strided(flat, (1, 300), (0, 3 * size))    # one row, no unit stride at all
    b = rand(rng, (300, 5), dtype)
    for a in (row, odd_row):
        np.testing.assert_allclose(gemm.product(a, b, 2), a @ b, **_tol(dtype))
        np.testing.assert_allclose(gemm.product(b.T, a.T, 2), b.T @ a.T, **_tol(dtype))
    np.testing.assert_allclose(gemm.product(b.T, column, 2), b.T @ column, **_tol(dtype))
    np.testing.assert_allclose(gemm.product(column, row, 3), column @ row, **_tol(dtype))


def test_matmuls_share_the_threads_out_by_work(dtype, two_threads, part_counts):
    """Several products in one hand-over, equal to NumPy's: as many products as threads run
    whole, one part each; a product with most of the work gets the threads to itself."""
    rng = np.random.default_rng(11)
    a, b = rand(rng, (300, 70), dtype), rand(rng, (70, 90), dtype)
    c, d = rand(rng, (90, 300), dtype), rand(rng, (300, 70), dtype)
    got = K.matmuls([(a, b), (c, d)])
    assert part_counts == [2] and set(_blas().values()) == {1}
    for y, (u, v) in zip(got, [(a, b), (c, d)]):
        np.testing.assert_allclose(y, u @ v, **_tol(dtype))
    big, small = (rand(rng, (900, 300), dtype), rand(rng, (300, 200), dtype)), (rand(rng, (4, 5), dtype), rand(rng, (5, 6), dtype))
    got = K.matmuls([big, small])
    assert part_counts[1] == 3  # two blocks of the big one, the small one whole
    for y, (u, v) in zip(got, [big, small]):
        np.testing.assert_allclose(y, u @ v, **_tol(dtype))


def test_matmuls_declines(two_threads):
    rng = np.random.default_rng(12)
    a, b = rand(rng, (300, 70), np.float32), rand(rng, (70, 90), np.float32)
    assert K.matmuls([(a, b), (a.astype(np.float64), b)]) is None      # one pair it cannot take
    assert K.matmuls([(a[:3], b[:, :4])]) is None                        # within BLAS_ALONE
    assert K.matmuls([(a, b[:60])]) is None                              # shapes that do not multiply
