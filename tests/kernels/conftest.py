"""Kernel tests run every kernel serially and split in two parts (the parallel variants), in
float32 and float64; Numba compiles each kernel once per process (or loads it from the cache)."""
import numpy as np
import pytest

from lamina.kernels import _checks, _runtime

pytestmark = pytest.mark.skipif(not _runtime.enabled(), reason="kernels are off (LAMINA_KERNELS=0 or no Numba)")

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def parts(request):
    previous = _checks.force_parts
    _checks.force_parts = request.param
    yield request.param
    _checks.force_parts = previous


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def tol(dtype, f32=1e-5, f64=1e-12):
    return f32 if dtype == np.float32 else f64


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)
