"""Batch assembly: ``default_collate`` turns a list of samples into one batch of Tensors, and
``default_convert`` turns one sample's arrays into Tensors (a DataLoader with ``batch_size=None``)."""
from __future__ import annotations

import collections.abc
import numbers

import numpy as np

from .. import backend
from ..creation import from_dlpack, from_numpy, tensor
from ..tensor import Tensor


def wrap_array(array) -> Tensor:
    """A Tensor sharing memory with a NumPy or CuPy array (a CuPy array stays on its GPU)."""
    if isinstance(array, (np.ndarray, np.generic)):
        # asarray: scalars become 0-d arrays and subclasses (np.memmap) plain ndarray views,
        # since Tensor tells CPU from GPU by the exact type np.ndarray.
        return from_numpy(np.asarray(array))
    return from_dlpack(array)


def default_collate(batch):
    """Stack a list of samples into a batch, keeping the samples' structure, as PyTorch's
    ``default_collate`` does:

    - Tensors and NumPy arrays of one shape -> a Tensor with a new leading batch dim.
      Batches are data, so stacking records no autograd history.
    - Python bools -> bool, ints -> int64, floats -> float64 1-d Tensors (PyTorch's choice: a
      float field keeps full precision); NumPy scalars keep their dtype.
    - str / bytes -> the sequence of them as given.
    - Mappings -> a mapping of the same type of collated values; namedtuples -> the same
      namedtuple of collated fields; other tuples and lists -> a list with one collated batch
      per position (PyTorch also turns tuples into lists).
    """
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise ValueError(f"default_collate: expected a non-empty list of samples, got {batch!r:.80}")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return wrap_array(_stack([t.array for t in batch], "tensors", backend.xp_of(elem.array)))
    if isinstance(elem, np.ndarray):
        _check_numeric(elem.dtype)
        return from_numpy(_stack(batch, "arrays", np))
    if isinstance(elem, np.generic):
        _check_numeric(elem.dtype)
        return from_numpy(np.array(batch))
    if isinstance(elem, bool):
        return tensor(batch, dtype=backend.bool_)
    if isinstance(elem, numbers.Integral):
        return tensor(batch, dtype=backend.int64)
    if isinstance(elem, float):
        return tensor(batch, dtype=backend.float64)
    if isinstance(elem, (str, bytes)):
        return batch  # as PyTorch: the sequence given (a tuple for a field of tuple samples)
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([sample[key] for sample in batch]) for key in elem}
        try:
            return type(elem)(collated)
        except TypeError:  # a mapping type whose constructor takes something else
            return collated
    if isinstance(elem, (tuple, list)):
        if any(len(sample) != len(elem) for sample in batch):
            lengths = sorted({len(sample) for sample in batch})
            raise ValueError(f"default_collate: samples are sequences of different lengths {lengths}; "
                             "every sample must have the same structure")
        fields = [default_collate(column) for column in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
            return type(elem)(*fields)
        return fields
    raise TypeError(f"default_collate: cannot batch samples of type {type(elem).__name__}; expected "
                    "Tensors, NumPy arrays, numbers, strings, or dicts/tuples/lists of those "
                    "(pass collate_fn= to DataLoader for anything else)")


def default_convert(data):
    """One sample with its NumPy arrays and scalars turned into Tensors, the structure kept
    (what a DataLoader with ``batch_size=None`` yields, as PyTorch's ``default_convert``)."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "OUS":
        return from_numpy(data)
    if isinstance(data, np.generic) and data.dtype.kind not in "OUS":
        return from_numpy(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(value) for key, value in data.items()}
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, list):
        return [default_convert(d) for d in data]
    return data


def _check_numeric(dtype):
    if dtype.kind in "OUSV":
        raise TypeError(f"default_collate: cannot batch NumPy arrays of dtype {dtype}; only numeric "
                        "and bool arrays become Tensors")


def _stack(arrays, what: str, xp):
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"default_collate: cannot stack {what} of different shapes: sample 0 has "
                             f"{tuple(shape)}, sample {i} has {tuple(a.shape)}")
    return xp.stack(arrays)
