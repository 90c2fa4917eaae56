"""How many threads BLAS gets for Lamina's matrix products.

OpenBLAS's worker threads busy-wait for a long while (about 0.1 s) after every call that used
them. Next to the kernel threads (``_runtime.run_parts``), which take the other cores between the
products, they took turns on the same cores: a LeNet training step at 2 threads ran 1.7x slower
with BLAS on 2 threads than with BLAS on one. So while the kernels are splitting their calls over
threads (one did within ``RECENT_S``), a product of moderate size runs BLAS on one thread; a large
one, where BLAS's own threads pay for themselves (the baby GPT's and the MLP's layers), and any
product in a program that splits no kernel call (a plain matmul loop) keep BLAS's threads.

Milliseconds per training step at 2 threads on a 2-core machine, each configuration in a
process of its own (PyTorch's: GPT 59-64, LeNet b256 24, LeNet b64 9.5):

                                                          GPT      LeNet b256   LeNet b64
    every product on BLAS's threads                       67-69    28.0         10.8
    products split over the kernel threads (BLAS on one)  76-85    18.9
    this rule                                             72       16.8         5.6

Splitting a product over the kernel threads (each part a single-thread GEMM of its own) is slower
than OpenBLAS's own split on the GPT's layers (second row), so it is not done.
"""
from __future__ import annotations

import time

import numpy as np

from . import _checks, _runtime

# Multiply-adds below which OpenBLAS runs on one thread by itself (65536 * 4), and from which
# BLAS's own threads are used.
BLAS_ALONE = 1 << 18
BLAS_THREADS = 1 << 25
# Seconds after a split kernel call during which moderate products keep BLAS on one thread.
RECENT_S = 0.1


def matmul(a, b):
    """``a @ b`` with BLAS on one thread, for CPU float32/float64 ndarrays of one dtype whose
    product is of moderate size (2-D, or stacks with equal batch dims) while the kernels split
    their calls over several threads; None otherwise: the caller multiplies as before."""
    if (type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype
            or a.dtype not in _checks.FLOATS or a.ndim < 2 or b.ndim != a.ndim
            or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]):
        return None
    macs = a.size * b.shape[-1]
    if (not BLAS_ALONE <= macs < BLAS_THREADS or _runtime.threads() == 1 or not _runtime.enabled()
            or time.perf_counter() - _runtime.last_split > RECENT_S):
        return None
    with _runtime.blas_threads(1):
        return np.matmul(a, b)
