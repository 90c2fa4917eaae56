"""Batch assembly: ``default_collate`` turns a list of samples into one batch of Tensors."""
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
    """Stack a list of samples into a batch, keeping the samples' structure.

    - Tensors and NumPy arrays of one shape -> a Tensor with a new leading batch dim.
      Batches are data, so stacking records no autograd history.
    - Python bools, ints, floats -> a 1-d Tensor (bool, int64, float32 like ``lamina.tensor``);
      NumPy scalars keep their dtype.
    - str / bytes -> the list as is.
    - Mappings -> a dict of collated values; tuples (named ones too) and lists -> the same
      type holding one collated batch per position.
    """
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise ValueError(f"default_collate: expected a non-empty list of samples, got {batch!r:.80}")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return wrap_array(_stack([t.data for t in batch], "tensors", backend.xp_of(elem.data)))
    if isinstance(elem, np.ndarray):
        return from_numpy(_stack(batch, "arrays", np))
    if isinstance(elem, np.generic):
        return from_numpy(np.array(batch))
    if isinstance(elem, (bool, numbers.Integral, float)):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in elem}
    if isinstance(elem, (tuple, list)):
        if any(len(sample) != len(elem) for sample in batch):
            lengths = sorted({len(sample) for sample in batch})
            raise ValueError(f"default_collate: samples are sequences of different lengths {lengths}; "
                             "every sample must have the same structure")
        fields = [default_collate(list(column)) for column in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
            return type(elem)(*fields)
        return type(elem)(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: cannot batch samples of type {type(elem).__name__}; expected "
                    "Tensors, NumPy arrays, numbers, strings, or dicts/tuples/lists of those "
                    "(pass collate_fn= to DataLoader for anything else)")


def _stack(arrays, what: str, xp):
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"default_collate: cannot stack {what} of different shapes: sample 0 has "
                             f"{tuple(shape)}, sample {i} has {tuple(a.shape)}")
    return xp.stack(arrays)
