"""lamina.kernels.matmul: while the kernels split calls, moderate products run BLAS on one thread
and large ones are split by rows over the kernel threads, equal to NumPy's, with BLAS's setting
restored; small ones and what it does not take come back as None (the caller multiplies as
before)."""
import numpy as np
import pytest

from lamina import kernels as K
from lamina.kernels import _runtime, gemm

from .conftest import rand


@pytest.fixture
def two_threads(monkeypatch):
    """Two kernel threads, and a kernel call split over them just now."""
    monkeypatch.setattr(_runtime, "_threads", 2)
    monkeypatch.setattr(_runtime, "last_split", float("inf"))


def _blas():
    from threadpoolctl import threadpool_info
    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.mark.parametrize("shapes", [((256, 128), (128, 80)), ((6, 90, 64), (6, 64, 50)),
                                    ((2, 3, 70, 64), (2, 3, 64, 60))])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_equals_numpy_and_restores_blas(shapes, transposed, dtype, two_threads, monkeypatch):
    seen = []
    original = _runtime.blas_threads
    monkeypatch.setattr(_runtime, "blas_threads", lambda n: seen.append(n) or original(n))
    rng = np.random.default_rng(5)
    a = rand(rng, shapes[0], dtype)
    b = rand(rng, shapes[1][:-2] + shapes[1][:-3:-1], dtype).swapaxes(-1, -2) if transposed else rand(rng, shapes[1], dtype)
    before = _blas()
    got = K.matmul(a, b)
    after = _blas()
    assert seen == [1] and {f: after[f] for f in before} == before
    want = np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)


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
    monkeypatch.setattr(_runtime, "last_split", float("-inf"))
    assert K.matmul(a, b) is None                                       # no kernel split lately
    assert _runtime.run_parts(lambda i: i, [(0,), (1,)]) == [0, 1]      # one now
    assert K.matmul(a, b) is not None
    monkeypatch.setattr(_runtime, "_threads", 1)
    assert K.matmul(a, b) is None                                       # one thread: nothing to do


@pytest.mark.parametrize("shapes", [((256, 128), (128, 80)), ((1, 4096), (4096, 80)), ((6, 91, 64), (6, 64, 50))])
def test_large_matmul_split_by_rows_over_the_kernel_threads(shapes, dtype, two_threads, monkeypatch):
    """Past BLAS_THREADS a product runs as row blocks of single-thread GEMMs on the kernel
    threads (one block per thread, a single row as one), equal to NumPy's."""
    monkeypatch.setattr(gemm, "BLAS_THREADS", 1 << 18)
    calls = []
    original = _runtime.run_parts
    monkeypatch.setattr(_runtime, "run_parts", lambda fn, parts: calls.append(len(parts)) or original(fn, parts))
    rng = np.random.default_rng(6)
    a, b = rand(rng, shapes[0], dtype), rand(rng, shapes[1], dtype)
    before = _blas()
    got = K.matmul(a, b)
    assert {f: _blas()[f] for f in before} == before
    assert calls == [min(2, shapes[0][-2])]
    want = np.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
