"""The checks every kernel wrapper makes before calling compiled code: CPU NumPy arrays of
float32 or float64, C-contiguous, all of one dtype. Anything else makes the wrapper return None
so the caller takes its NumPy/CuPy path."""
from __future__ import annotations

import numpy as np

from . import _runtime

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# Elements below which a kernel runs in the calling thread alone: handing parts to the other
# threads costs tens of microseconds per call (more when they have to be woken), more than the
# work saved on smaller arrays. At 2^17 a LeNet step at batch 64 split its ReLUs and ran slower
# with 2 threads than with 1.
PARALLEL_MIN = 1 << 19

# When set, every kernel splits its work into this many parts whatever the size (warm-up and
# tests use it to reach the parallel kernels with small inputs).
force_parts = None


def floats(*arrays) -> bool:
    """Kernels on, and every array a C-contiguous CPU float32/float64 ndarray of the first's dtype."""
    if not _runtime.enabled():
        return False
    dtype = arrays[0].dtype if type(arrays[0]) is np.ndarray else None
    if dtype not in FLOATS:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


# Parts per thread of a split call: the threads take parts in turn (``_runtime.run_parts``), so a
# thread that starts late or runs slower takes fewer of them.
PARTS_PER_THREAD = 2


def parallel(work: int, cost: float = 1) -> int:
    """How many parts to split ``work`` elements into: 1 (serial) below ``PARALLEL_MIN`` weighted
    elements or with one thread, else ``PARTS_PER_THREAD`` per thread, each at least
    ``PARALLEL_MIN / 2``. ``cost``: an element's time relative to a pass that only moves memory
    (a ReLU: 0.2-0.3 ns per float32 element here); an element of exact GELU costs about 8, one
    of an exp or a tanh about 4, so a GELU splits from a quarter of the size of a ReLU."""
    if force_parts is not None:
        return force_parts
    threads = _runtime.threads()
    work = int(work * cost)
    if work < PARALLEL_MIN or threads == 1:
        return 1
    return max(threads, min(threads * PARTS_PER_THREAD, 2 * work // PARALLEL_MIN))


def split(n: int, parts: int):
    """``parts`` contiguous ranges ``(lo, hi)`` covering ``range(n)``, as even as possible."""
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]
