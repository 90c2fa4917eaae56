"""How Lamina's matrix products use threads next to the kernels.

OpenBLAS's worker threads busy-wait for a long while (about 0.1 s) after every call that used
them. Next to the kernel threads (``_runtime.run_parts``), which take the other cores between the
products, they took turns on the same cores: two threads of a compiled loop ran 1.65x slower
within 0.1 s of a 2-thread GEMM than after it, and lowering BLAS's thread count does not stop
the waiting. So while the kernels are splitting their calls over threads (one did within
``RECENT_S``), BLAS runs on one thread: a product of moderate size as one call, a large one split
by rows over the kernel threads, each part a single-thread GEMM. A product in a program that
splits no kernel call (a plain matmul loop) keeps BLAS's own threads.

Milliseconds per step at 2 threads on a 2-core machine (AVX2), the two rules for large products
alternating in one process, median of 12 rounds:

                                       LeNet infer b1000   baby GPT train   MLP train b128
    large products on BLAS's threads   47-58               57.1             15.5
    split over the kernel threads      27-35               54.7             16.4

(Before, a moderate product on BLAS's two threads made a LeNet b256 training step 28.0 ms
instead of 16.8.)
"""
from __future__ import annotations

import time

import numpy as np

from . import _checks, _runtime

# Multiply-adds below which OpenBLAS runs on one thread by itself (65536 * 4), and from which a
# product is split over the kernel threads.
BLAS_ALONE = 1 << 18
BLAS_THREADS = 1 << 25
# Seconds after a split kernel call during which moderate products keep BLAS on one thread.
RECENT_S = 0.1


def matmul(a, b):
    """``a @ b`` with BLAS on one thread (a large product split by rows over the kernel threads),
    for CPU float32/float64 ndarrays of one dtype (2-D, or stacks with equal batch dims) while the
    kernels split their calls over several threads; None otherwise: the caller multiplies as
    before."""
    if (type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype
            or a.dtype not in _checks.FLOATS or a.ndim < 2 or b.ndim != a.ndim
            or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]):
        return None
    macs = a.size * b.shape[-1]
    if (macs < BLAS_ALONE or _runtime.threads() == 1 or not _runtime.enabled()
            or time.perf_counter() - _runtime.last_split > RECENT_S):
        return None
    if macs < BLAS_THREADS:
        with _runtime.blas_threads(1):
            return np.matmul(a, b)
    y = np.empty(a.shape[:-1] + (b.shape[-1],), a.dtype)
    with _runtime.blas_threads(1):
        _runtime.run_parts(_rows_product, [(a, b, y, r0, r1) for r0, r1 in
                                           _checks.split(a.shape[-2], min(_runtime.threads(), a.shape[-2]))])
    return y


def _rows_product(a, b, y, r0, r1):
    np.matmul(a[..., r0:r1, :], b, out=y[..., r0:r1, :])
