"""``Fetcher``: turns one unit of work of a ``DataLoader`` into a batch, the same way in the main
process (``num_workers=0``) and in a worker process.

- Map-style dataset, batching on: the unit is a list of indices; the batch is
  ``dataset.__getitems__(int64 index array)`` when the dataset has that fast path and no
  ``collate_fn`` was given, else ``collate_fn([dataset[i] for i in indices])``.
- Map-style, ``batch_size=None``: the unit is one index; the batch is ``collate_fn(dataset[i])``.
- Iterable dataset: the unit is "the next batch" of the stream that ``start()`` opened; the
  fetcher raises ``StopIteration`` when the stream is done (a short last batch is dropped under
  ``drop_last``).
"""
from __future__ import annotations

import numpy as np


class Fetcher:
    def __init__(self, dataset, iterable: bool, batched: bool, batch_size, drop_last: bool, collate_fn,
                 fast_path: bool):
        self.dataset = dataset
        self.iterable = iterable
        self.batched = batched
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.fast_path = fast_path
        self._stream = None

    def start(self) -> None:
        """Open a fresh pass over an iterable dataset."""
        self._stream = iter(self.dataset)

    def fetch(self, unit):
        if self.iterable:
            return self._next_from_stream()
        if not self.batched:
            return self.collate_fn(self.dataset[unit])
        if self.fast_path:
            return self.dataset.__getitems__(np.asarray(unit, dtype=np.int64))
        if isinstance(unit, np.ndarray):
            unit = unit.tolist()
        return self.collate_fn([self.dataset[i] for i in unit])

    def _next_from_stream(self):
        if self._stream is None:
            raise StopIteration
        if not self.batched:
            try:
                return self.collate_fn(next(self._stream))
            except StopIteration:
                self._stream = None
                raise
        samples = []
        for sample in self._stream:
            samples.append(sample)
            if len(samples) == self.batch_size:
                return self.collate_fn(samples)
        self._stream = None
        if not samples or self.drop_last:
            raise StopIteration
        return self.collate_fn(samples)
