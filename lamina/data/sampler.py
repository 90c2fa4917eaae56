"""Samplers: the order in which a ``DataLoader`` visits a map-style dataset.

A sampler is any iterable of dataset indices, usually with ``__len__`` (PyTorch's protocol; a
``DistributedSampler`` with ``set_epoch`` is one too). A batch sampler is an iterable of lists of
indices. Randomness comes from a CPU ``lamina.Generator``; without one, a sampler draws a fresh
seed from the default CPU generator at every ``iter()``, so ``lamina.manual_seed`` fixes the
whole sequence, as ``torch.manual_seed`` does for PyTorch's samplers.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor


def _positive_int(name: str, value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
    return int(value)


def _cpu_generator(name: str, generator):
    if generator is not None and (not isinstance(generator, backend.Generator)
                                  or generator.device.type != "cpu"):
        where = generator.device if isinstance(generator, backend.Generator) else type(generator).__name__
        raise ValueError(f"{name}: generator must be a CPU lamina.Generator, got {where}")
    return generator


def _epoch_generator(generator):
    """``generator`` itself, or a new one seeded from the default CPU generator."""
    if generator is not None:
        return generator
    seed = backend.default_generator("cpu").integers(0, 2**63 - 1, (), np.int64)
    return backend.Generator("cpu", int(seed))


class Sampler:
    """Base class of samplers: subclasses define ``__iter__`` (indices) and usually ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def index_array(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """Random indices of ``data_source``.

    Without replacement (default): a permutation; with ``num_samples`` larger than the dataset,
    whole permutations follow each other and the last is cut short, as in PyTorch. With
    ``replacement=True``: ``num_samples`` independent uniform draws.
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement must be a bool, got {replacement!r}")
        if num_samples is not None:
            _positive_int("RandomSampler", num_samples, "num_samples")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = _cpu_generator("RandomSampler", generator)

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def index_array(self) -> np.ndarray:
        """This epoch's indices as one int64 array (draws from the generator)."""
        n, k = len(self.data_source), self.num_samples
        gen = _epoch_generator(self.generator)
        if self.replacement:
            if n == 0:
                raise ValueError("RandomSampler: cannot draw with replacement from an empty dataset")
            return np.asarray(gen.integers(0, n, (k,), np.int64), dtype=np.int64)
        if n == 0:
            return np.zeros(0, np.int64)
        parts = [np.asarray(gen.permutation(n), dtype=np.int64) for _ in range(k // n)]
        if k % n:
            parts.append(np.asarray(gen.permutation(n), dtype=np.int64)[:k % n])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __iter__(self):
        return iter(self.index_array().tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order (a new permutation at every ``iter()``)."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = _cpu_generator("SubsetRandomSampler", generator)

    def __iter__(self):
        order = _epoch_generator(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in np.asarray(order).tolist()])

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices in ``[0, len(weights))`` drawn with probability proportional to
    ``weights`` (which need not sum to 1); without replacement each index appears at most once."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        num_samples = _positive_int("WeightedRandomSampler", num_samples, "num_samples")
        if not isinstance(replacement, bool):
            raise TypeError(f"WeightedRandomSampler: replacement must be a bool, got {replacement!r}")
        w = np.asarray(weights.detach().cpu() if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights must be 1-d, got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and not all "
                             "zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: cannot draw {num_samples} samples without "
                             f"replacement from {np.count_nonzero(w)} non-zero weights")
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = _cpu_generator("WeightedRandomSampler", generator)

    def __iter__(self):
        gen = _epoch_generator(self.generator)
        u = np.asarray(gen.uniform((self.num_samples if self.replacement else len(self.weights),),
                                   np.float64), dtype=np.float64)
        if self.replacement:
            cdf = np.cumsum(self.weights)
            picks = np.searchsorted(cdf, u * cdf[-1], side="right")
            picks = np.minimum(picks, len(self.weights) - 1)
        else:
            # Efraimidis-Spirakis: keeping the k largest u**(1/w) is the same distribution as k
            # successive weighted draws without replacement; zero weights get key -inf.
            with np.errstate(divide="ignore"):
                keys = np.where(self.weights > 0, np.log(np.maximum(u, 1e-300)) / self.weights, -np.inf)
            picks = np.argsort(-keys, kind="stable")[:self.num_samples]
        return iter(picks.astype(np.int64).tolist())

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``; ``drop_last`` drops a final
    shorter list."""

    def __init__(self, sampler, batch_size, drop_last):
        self.batch_size = _positive_int("BatchSampler", batch_size, "batch_size")
        if not isinstance(drop_last, bool):
            raise TypeError(f"BatchSampler: drop_last must be a bool, got {drop_last!r}")
        self.sampler = sampler
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
