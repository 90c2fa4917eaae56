"""A restricted unpickler for pickles that hold only NumPy arrays (in tuples, lists, dicts).

Unpickling calls whatever globals the file names, so an ordinary ``pickle.load`` of a downloaded
file can run arbitrary code. This one resolves only the globals that rebuilding an ndarray needs
and refuses every other with an ``UnpicklingError`` before anything is called.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

# ndarray.__reduce__ names its rebuild function; asking NumPy for it avoids importing the
# deprecated ``numpy.core`` alias under NumPy 2 while still accepting pickles written by NumPy 1.
_reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild ndarrays and plain containers, nothing else."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"NumpyUnpickler: refused global {module}.{name}: only NumPy array "
                "reconstruction is allowed in this file") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"NumpyUnpickler: refused persistent id {pid!r}")


def load_numpy_pickle(data: bytes):
    """Unpickle ``data`` with ``NumpyUnpickler``.

    ``encoding="latin1"`` reads Python 2 pickles of arrays (their raw bytes were pickled as str).
    """
    return NumpyUnpickler(io.BytesIO(data), encoding="latin1").load()
