"""``DataLoader``: batches, shuffles and prefetches the samples of a map-style dataset, and can
save and restore its position inside an epoch."""
from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import backend
from .collate import default_collate
from .prefetch import Prefetcher

_STATE_KEYS = ("generator_state", "batches_consumed", "num_samples", "batch_size")


def _fetch_batch(dataset, indices):
    return dataset.__getitems__(indices)


def _fetch_samples(dataset, collate_fn, indices):
    return collate_fn([dataset[i] for i in indices.tolist()])


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` samples.

    - ``shuffle=True`` draws a new permutation from ``generator`` (a CPU ``lamina.Generator``)
      at the start of every epoch, i.e. every ``iter(loader)``. Without ``generator`` the loader
      makes its own, seeded from the default CPU generator when the loader is built, so
      ``lamina.manual_seed(s)`` before building it fixes every epoch's order.
    - ``drop_last=True`` drops a final batch smaller than ``batch_size``; ``len(loader)`` is
      the number of batches per epoch either way.
    - Batches come from ``collate_fn(list of samples)``, by default ``default_collate``. When the
      dataset defines ``__getitems__`` and no ``collate_fn`` is given, a batch is one call
      ``dataset.__getitems__(indices)`` instead (the fast path).
    - ``prefetch=k`` loads up to ``k`` batches ahead in one background thread, so loading
      overlaps compute; ``prefetch=0`` loads in the consumer's thread. The thread ends when the
      epoch ends, when the dataset raises (the exception reaches the consumer unchanged), and
      when the iterator is dropped early (``break``) and garbage collected.

    Resuming mid-epoch: ``state_dict()`` returns a JSON-serialisable dict
    ``{"generator_state": state of the generator when the current epoch's permutation was
    drawn (None without shuffle), "batches_consumed": batches already yielded this epoch,
    "num_samples", "batch_size"}``. It counts batches handed to the consumer, not batches
    prefetched. After the last batch of an epoch it describes the start of the next epoch.
    ``load_state_dict(state)`` makes the next ``iter(loader)`` redraw that epoch's permutation and
    yield exactly its remaining batches; later epochs then match an uninterrupted run. This
    relies on the generator being used only by this loader between epochs::

        for step, (x, y) in enumerate(loader):
            ...
            if step % 100 == 0:
                save(model, optimizer, loader.state_dict())
        # in a new process:
        loader.load_state_dict(saved_state)
        for x, y in loader:   # the rest of the interrupted epoch
            ...
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 generator=None, prefetch=2):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, numbers.Integral) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an int >= 0, got {prefetch!r}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"DataLoader: generator must be a CPU generator, got one on {generator.device}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.prefetch = int(prefetch)
        if self.shuffle and generator is None:
            seed = backend.default_generator("cpu").integers(0, 2**63 - 1, (), np.int64)
            generator = backend.Generator("cpu", int(seed))
        self.generator = generator
        if collate_fn is None and hasattr(dataset, "__getitems__"):
            self._fetch = functools.partial(_fetch_batch, dataset)
        else:
            self._fetch = functools.partial(_fetch_samples, dataset, collate_fn or default_collate)
        # Position: the generator state the running epoch started from (None: the next epoch
        # starts from the generator's current state), batches yielded, a state to resume from.
        self._epoch_start = None
        self._consumed = 0
        self._resume = None
        self._serial = 0  # only the newest iterator moves the position

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        resume, self._resume = self._resume, None
        start = 0
        if resume is not None:
            self._check_state(resume)
            start = resume["batches_consumed"]
            if self.shuffle:
                self.generator.set_state(resume["generator_state"])
        if self.shuffle:
            self._epoch_start = self.generator.get_state()
            order = np.asarray(self.generator.permutation(n), dtype=np.int64)
        else:
            order = np.arange(n, dtype=np.int64)
        self._serial += 1
        self._consumed = start
        b = self.batch_size
        stop = len(self) * b
        remaining = len(self) - start
        if remaining == 0:
            self._advance(self._serial, finished=True)
        index_batches = (order[i:i + b] for i in range(start * b, stop, b))
        return _LoaderIterator(self, self._serial, index_batches, remaining)

    def _advance(self, serial, finished):
        if serial != self._serial:
            return
        if finished:
            self._epoch_start = None
            self._consumed = 0
        else:
            self._consumed += 1

    def state_dict(self) -> dict:
        """The position in the current epoch; see the class docstring."""
        if self._resume is not None:
            return dict(self._resume)
        gen_state = None
        if self.shuffle:
            gen_state = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator_state": gen_state, "batches_consumed": self._consumed,
                "num_samples": len(self.dataset), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Make the next ``iter(self)`` continue from ``state`` (from ``state_dict()``)."""
        self._check_state(state)
        self._resume = dict(state)

    def _check_state(self, state):
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"DataLoader.load_state_dict: state lacks {missing}; expected the keys "
                             f"{list(_STATE_KEYS)} of DataLoader.state_dict()")
        n = len(self.dataset)
        if state["num_samples"] != n or state["batch_size"] != self.batch_size:
            raise ValueError(f"DataLoader.load_state_dict: state is for {state['num_samples']} samples in "
                             f"batches of {state['batch_size']}, but this loader has {n} samples in "
                             f"batches of {self.batch_size}")
        if not 0 <= state["batches_consumed"] <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batches_consumed={state['batches_consumed']} "
                             f"is outside [0, {len(self)}]")
        if self.shuffle != (state["generator_state"] is not None):
            raise ValueError("DataLoader.load_state_dict: state was saved by a loader with "
                             f"shuffle={not self.shuffle}, but this loader has shuffle={self.shuffle}")


class _LoaderIterator:
    """One epoch of a DataLoader: yields the batches and reports progress to the loader."""

    def __init__(self, loader, serial, index_batches, remaining):
        self._loader = loader
        self._serial = serial
        self._remaining = remaining
        self._index_batches = index_batches
        self._prefetcher = None
        if loader.prefetch and remaining:
            self._prefetcher = Prefetcher(loader._fetch, index_batches, loader.prefetch)

    def __iter__(self):
        return self

    def __len__(self):
        return self._remaining

    def __next__(self):
        if self._remaining == 0:
            raise StopIteration
        try:
            if self._prefetcher is not None:
                batch = self._prefetcher.get()
            else:
                batch = self._loader._fetch(next(self._index_batches))
        except BaseException:
            self.close()
            raise
        self._remaining -= 1
        if self._remaining == 0:
            self.close()
        self._loader._advance(self._serial, finished=self._remaining == 0)
        return batch

    def close(self) -> None:
        """Stop early: end the prefetch thread; the iterator then yields nothing more."""
        self._remaining = 0
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
