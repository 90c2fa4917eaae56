"""Datasets: the map-style ``Dataset`` protocol, ``TensorDataset``, ``Subset``, ``ConcatDataset``,
``random_split``, and the stream-style ``IterableDataset`` with ``ChainDataset``.

A dataset maps an index in ``range(len(dataset))`` to a sample. It may also define
``__getitems__(indices)`` returning the batch for a 1-d int64 NumPy array of indices, already
collated; ``DataLoader`` then fetches a whole batch with one call instead of one call per sample.
"""
from __future__ import annotations

import bisect
import math

import numpy as np

from .. import backend
from ..tensor import Tensor
from .collate import default_collate, wrap_array


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """Base class of datasets that are streams: subclasses define ``__iter__``.

    A ``DataLoader`` with worker processes gives each worker its own copy of the dataset; each
    copy's ``__iter__`` should then yield only its share, which it can find from
    ``lamina.utils.data.get_worker_info()`` (``id``, ``num_workers``), or every worker yields the
    whole stream and the batches repeat ``num_workers`` times, as in PyTorch.
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __getitem__(self, index):
        raise TypeError(f"{type(self).__name__} is an IterableDataset: iterate over it instead of "
                        "indexing it")

    def __add__(self, other):
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """Several iterable datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        for i, d in enumerate(self.datasets):
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset: dataset {i} is a {type(d).__name__}, expected an "
                                "IterableDataset")

    def __iter__(self):
        for d in self.datasets:
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


class TensorDataset(Dataset):
    """Samples are rows of tensors sharing their first dim: ``dataset[i]`` is ``(t[i] for each t)``.

    Rows are views of the tensors' arrays (no copy, no autograd history). ``__getitems__`` takes
    a whole batch with one fancy index per tensor.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        arrays = []
        for i, t in enumerate(tensors):
            if isinstance(t, Tensor):
                arrays.append(t.array)
            elif isinstance(t, np.ndarray):
                arrays.append(t)
            else:
                raise TypeError(f"TensorDataset: argument {i} is a {type(t).__name__}, "
                                "expected a lamina.Tensor or a NumPy array")
        if any(a.ndim == 0 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"TensorDataset: all tensors must have the same size in dim 0, "
                             f"got shapes {shapes}")
        self.tensors = tuple(wrap_array(a) for a in arrays)
        self._arrays = tuple(arrays)

    def __len__(self):
        return self._arrays[0].shape[0]

    def __getitem__(self, index):
        return tuple(wrap_array(a[index]) for a in self._arrays)

    def __getitems__(self, indices):
        return tuple(wrap_array(a[indices]) for a in self._arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"Subset: indices must be 1-d, got shape {self.indices.shape}")

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __getitems__(self, indices):
        picked = self.indices[indices]
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(picked)
        return default_collate([self.dataset[i] for i in picked.tolist()])


class ConcatDataset(Dataset):
    """The samples of several datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        for i, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise TypeError(f"ConcatDataset: dataset {i} is an IterableDataset; use ChainDataset "
                                "to chain streams")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        index = int(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ConcatDataset: index {index} is out of range for {n} samples")
        if index < 0:
            index += n
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None) -> list:
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given lengths.

    ``lengths`` are either counts summing to ``len(dataset)`` or fractions summing to 1; with
    fractions, each part gets ``floor(fraction * n)`` and the leftover items go one each to the
    parts in order, as in PyTorch. The shuffle draws from ``generator`` (default: the default CPU
    generator), so the same seed gives the same split.
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        if any(not 0 <= f <= 1 for f in lengths):
            raise ValueError(f"random_split: fractions must lie in [0, 1], got {lengths}")
        counts = [math.floor(f * n) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(not isinstance(x, (int, np.integer)) or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing "
                         f"to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} sum to {sum(lengths)} but the dataset "
                         f"has {n} samples")
    gen = backend.default_generator("cpu") if generator is None else generator
    if gen.device.type != "cpu":
        raise ValueError(f"random_split: generator must be a CPU generator, got one on {gen.device}")
    order = np.asarray(gen.permutation(n), dtype=np.int64)
    ends = np.cumsum(lengths)
    return [Subset(dataset, order[end - length:end]) for end, length in zip(ends, lengths)]
