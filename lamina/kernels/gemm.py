"""Matrix products on the kernel threads: one pool of threads for the whole program.

OpenBLAS's worker threads busy-wait for a long while (about 0.1 s) after every call that used
them. Next to the kernel threads (``_runtime.run_parts``), which take the other cores between the
products, they took turns on the same cores: two threads of a compiled loop ran 1.65x slower
within 0.1 s of a 2-thread GEMM than after it, and lowering BLAS's thread count does not stop
the waiting. So with several threads a product of more than ``BLAS_ALONE`` multiply-adds (the
size from which OpenBLAS would start its workers) runs on the kernel threads: its matrices, or
blocks of their rows or columns, are single-thread GEMMs called from compiled code without the
GIL, through the address of NumPy's own ``cblas_?gemm`` (``compiled/blas.py``), with BLAS on
one thread (``_runtime.single_thread_blas``). OpenBLAS's workers then never wake, and the
kernels can split their calls at any time.

Split this way, a product runs about as fast as on OpenBLAS's own two threads (2-core VM, best
of 7 x 500 calls: 768 x 128 x 128 in 217 against 199 us, 768 x 128 x 384 in 567 against 639,
256 x 256 x 256 in 327 against 236). Without the address (a NumPy built on another BLAS), or
with one thread, products are left to NumPy and its BLAS.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import _checks, _runtime

# Multiply-adds below which OpenBLAS runs on one thread by itself (65536 * 4): such a product is
# left to NumPy, split neither by OpenBLAS nor here.
BLAS_ALONE = 1 << 18

_k = None
_address = None  # {dtype: address of cblas_sgemm/cblas_dgemm}, {} when not found


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("blas")
    return _k


# CBLAS symbols with 64-bit integers (NumPy's wheels bundle OpenBLAS with its names prefixed).
_SYMBOLS = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"), ("cblas_sgemm64_", "cblas_dgemm64_"))


def addresses() -> dict:
    """``{float32: address, float64: address}`` of the ILP64 ``cblas_sgemm``/``cblas_dgemm`` of
    NumPy's OpenBLAS (found through threadpoolctl), or {} when there is none."""
    global _address
    if _address is None:
        found = {}
        try:
            for c in _runtime._blas_controllers():
                if c.internal_api != "openblas":
                    continue
                lib = ctypes.CDLL(c.filepath)
                for single, double in _SYMBOLS:
                    if hasattr(lib, single) and hasattr(lib, double):
                        found = {np.dtype(np.float32): ctypes.cast(getattr(lib, single), ctypes.c_void_p).value,
                                 np.dtype(np.float64): ctypes.cast(getattr(lib, double), ctypes.c_void_p).value}
                        break
                if found:
                    break
        except Exception:  # a library that will not load: NumPy's path
            found = {}
        _address = found
    return _address


def _blas_view(x):
    """x as a 3-D stack whose matrices have a unit stride in one dimension and positive strides
    that are whole elements (a copy only when x has neither)."""
    x3 = x.reshape((-1,) + x.shape[-2:])
    size = x.itemsize
    s = x3.strides
    if not ((s[2] == size and s[1] >= size * x3.shape[2]) or (s[1] == size and s[2] >= size * x3.shape[1])) \
            or s[1] % size or s[2] % size or s[0] % size or s[0] < 0:
        x3 = np.ascontiguousarray(x3)
    return x3


def _takes(a, b):
    """Whether ``a @ b`` is a product these kernels run: CPU float32/float64 ndarrays of one
    dtype, 2-D or stacks with equal batch dims, no dimension 0, kernels on, several threads."""
    return (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype == b.dtype
            and a.dtype in _checks.FLOATS and a.ndim >= 2 and b.ndim == a.ndim
            and a.shape[:-2] == b.shape[:-2] and a.shape[-1] == b.shape[-2]
            and 0 not in a.shape and 0 not in b.shape and _runtime.threads() > 1 and _runtime.enabled())


def matmul(a, b, bias=None):
    """``a @ b`` (``+ bias``, added to every row) split over the kernel threads as single-thread
    GEMMs, for CPU float32/float64 ndarrays of one dtype (2-D, or stacks with equal batch dims)
    of more than ``BLAS_ALONE`` multiply-adds when several threads are set, bias a contiguous
    vector of that dtype; None otherwise: the caller multiplies (and adds) as before."""
    if not _takes(a, b) or a.size * b.shape[-1] < BLAS_ALONE:
        return None
    if bias is not None and (type(bias) is not np.ndarray or bias.dtype != a.dtype
                             or bias.shape != b.shape[-1:] or not bias.flags.c_contiguous):
        return None
    return product(a, b, _runtime.threads(), bias)


def matmuls(pairs):
    """``[a @ b for a, b in pairs]`` on the kernel threads in one hand-over, or None when a pair
    is not one ``matmul`` takes or all of them together are within ``BLAS_ALONE`` multiply-adds.

    The threads are shared out by multiply-adds; with as many products as threads each one runs
    whole on one thread. A Linear layer's two gradient products (input and weight, the same
    multiply-adds) ran 5-15% faster that way on the baby GPT's shapes than one after the other,
    each split in two: no operand is packed twice, and the threads are handed work once."""
    if not all(_takes(a, b) for a, b in pairs):
        return None
    work = [a.size * b.shape[-1] for a, b in pairs]
    total = sum(work)
    if total < BLAS_ALONE:
        return None
    threads = _runtime.threads()
    plans = [_plan(a, b, max(1, round(threads * w / total)), None) for (a, b), w in zip(pairs, work)]
    if any(plan is None for plan in plans):
        return None
    _runtime.single_thread_blas()
    _runtime.run_parts(_lib().product, [part for _, parts, _ in plans for part in parts])
    return [y for y, _, _ in plans]


def _plan(a, b, parts, bias):
    """``(y, parts, operands)``: the output of ``a @ b (+ bias)``, the arguments of up to
    ``parts`` calls of the compiled ``product`` that fill it, and the arrays those read through
    their addresses (copies, when a or b had a layout BLAS cannot read: keep them alive until
    the parts have run); None without NumPy's ``cblas_?gemm``.

    A matrix too few for the parts is cut into blocks of rows when it has more rows than
    columns, else of columns: each block's GEMM packs the whole of the other operand, and that
    way the smaller one is the one packed again (an MLP's 128 x 1024 @ 1024 x 1024 split by rows
    packed the 4 MiB weight once per part)."""
    address = addresses().get(a.dtype)
    if address is None:
        return None
    a3, b3 = _blas_view(a), _blas_view(b)
    batch, M, K = a3.shape
    N = b3.shape[2]
    y = np.empty(a.shape[:-1] + (N,), a.dtype)
    size = a.itemsize
    sa, sb = a3.strides, b3.strides
    d = np.array([a3.ctypes.data, sa[0] // size, sa[1] // size, sa[2] // size,
                  b3.ctypes.data, sb[0] // size, sb[1] // size, sb[2] // size, K], np.int64)
    cuts = -(-parts // batch)  # blocks per matrix
    rows = -(-M // min(M, cuts)) if M >= N else M
    cols = -(-N // min(N, cuts)) if M < N else N
    items = batch * (-(-M // rows)) * (-(-N // cols))
    y3, vector = y.reshape(batch, M, N), (_NO_BIAS[a.dtype] if bias is None else bias)
    return (y, [(address, d, y3, vector, lo, hi, rows, cols) for lo, hi in _checks.split(items, min(parts, items))],
            (a3, b3))


def product(a, b, parts, bias=None):
    """``a @ b (+ bias)`` for float32/float64 arrays of one dtype (2-D, or stacks with equal
    batch dims, no dimension 0) as up to ``parts`` parts on the kernel threads, each part
    single-thread GEMMs over whole matrices or blocks of them (``_plan``); None without NumPy's
    ``cblas_?gemm``."""
    plan = _plan(a, b, parts, bias)
    if plan is None:
        return None
    y, parts, _operands = plan  # the operands stay referenced while the parts read them
    _runtime.single_thread_blas()
    _runtime.run_parts(_lib().product, parts)
    return y


_NO_BIAS = {dt: np.empty(0, dt) for dt in _checks.FLOATS}
