"""Shared checks for the lamina.io tests: exact equality of tensors and of nested states."""
from __future__ import annotations

import math

import numpy as np

import lamina


def raw(x) -> np.ndarray:
    """The NumPy array behind a Tensor or array, on the CPU."""
    return x.detach().cpu().array if isinstance(x, lamina.Tensor) else x


def assert_bits_equal(a, b) -> None:
    """Same dtype, shape and bytes: exact, and NaN-safe."""
    a, b = raw(a), raw(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def assert_same_state(a, b, path="state") -> None:
    """``b`` has the exact structure, types and values of ``a``."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, (lamina.Tensor, np.ndarray)):
        assert_bits_equal(a, b)
    elif isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, (float, np.floating)) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def temp_files(directory) -> list:
    """Leftover temporary files of atomic_write in ``directory``."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
