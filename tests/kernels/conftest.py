"""Kernel tests run every kernel serially and split in two parts (the parallel variants), in
float32 and float64; Numba compiles each kernel once per process (or loads it from the cache)."""
from pathlib import Path

import numpy as np
import pytest

from lamina.kernels import _checks, _runtime


def pytest_collection_modifyitems(config, items):
    """With kernels off (LAMINA_KERNELS=0 or no Numba) the tests here have nothing to run, except
    those marked ``runs_with_kernels_off``; (a ``pytestmark`` in a conftest applies to nothing)."""
    if _runtime.enabled():
        return
    skip = pytest.mark.skip(reason="kernels are off (LAMINA_KERNELS=0 or no Numba)")
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and not getattr(getattr(item, "function", None),
                                                                  "runs_with_kernels_off", False):
            item.add_marker(skip)

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def parts(request):
    previous = _checks.force_parts
    _checks.force_parts = request.param
    yield request.param
    _checks.force_parts = previous


@pytest.fixture
def part_counts(monkeypatch):
    """The number of parts of every ``run_parts`` call made during the test, in call order."""
    counts = []
    original = _runtime.run_parts
    monkeypatch.setattr(_runtime, "run_parts", lambda fn, parts: counts.append(len(parts)) or original(fn, parts))
    return counts


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def tol(dtype, f32=1e-5, f64=1e-12):
    return f32 if dtype == np.float32 else f64


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)
