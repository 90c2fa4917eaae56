"""``DistributedSampler``: this rank's share of a dataset's indices, epoch by epoch.

Every rank draws the same permutation of all indices (seeded by ``seed + epoch``), evens its
length out to a multiple of the number of ranks (by repeating indices from its start, or by
dropping the tail with ``drop_last``), and takes every ``num_replicas``-th index starting at its
rank, as ``torch.utils.data.DistributedSampler`` does. So in one epoch the ranks together see
each sample once (plus the few padded repeats), and ``set_epoch`` reshuffles them all alike.

Resuming: the position is kept as the number of indices of the epoch's permutation that all
ranks together have consumed, which does not depend on the number of ranks; a run saved on 4
ranks can continue on 2 (the rest of the epoch is evened out again for the new count). With a
``DataLoader(dataset, batch_size, sampler=sampler)``, save ``sampler.state_dict(batches_done *
batch_size)`` and, to resume, load it into the new run's sampler and iterate a fresh loader: it
yields the rest of the epoch (``len`` follows). The loader's own state, which counts batches of
one size, only suits a resume on the same number of ranks.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from . import group as dist

_STATE_KEYS = ("epoch", "seed", "shuffle", "drop_last", "num_samples_total", "consumed")


class DistributedSampler:
    """An iterable of this rank's dataset indices (ints) with ``__len__``, ``set_epoch`` and
    ``state_dict``/``load_state_dict``.

    ``num_replicas`` and ``rank`` default to the process group's; ``shuffle`` draws a new
    permutation per epoch from ``seed + epoch``; ``drop_last`` drops the tail that does not
    divide evenly instead of padding it with repeated indices.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            g = dist.current_group()
            num_replicas = g.size if num_replicas is None else num_replicas
            rank = g.rank if rank is None else rank
        for what, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"DistributedSampler: {what} must be an int, got {v!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {num_replicas - 1}], got {rank}")
        if seed < 0:
            raise ValueError(f"DistributedSampler: seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        self._start = 0  # consumed indices (all ranks together) the next iter() starts after
        self._epoch_start = None  # where the latest iter() started (None: none since the position was set)
        self._yielded = 0  # indices this rank has yielded since then

    @property
    def num_samples(self) -> int:
        """Indices per rank in a full epoch."""
        n = len(self.dataset)
        if self.drop_last:
            return n // self.num_replicas
        return -(-n // self.num_replicas)

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def __len__(self) -> int:
        """Indices the next ``iter()`` yields: ``num_samples``, or fewer in an epoch resumed by
        ``load_state_dict`` (so a DataLoader over this sampler counts its batches right)."""
        rest = len(self.dataset) - min(self._start, len(self.dataset))
        w = self.num_replicas
        return rest // w if self.drop_last else -(-rest // w)

    def set_epoch(self, epoch: int) -> None:
        """Pick the permutation of ``epoch`` (call before each epoch, on every rank, with the same
        value); a position restored by ``load_state_dict`` for another epoch is dropped."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"DistributedSampler.set_epoch: epoch must be an int >= 0, got {epoch!r}")
        if int(epoch) != self.epoch:
            self._start, self._epoch_start = 0, None
        self.epoch = int(epoch)

    def _order(self):
        n = len(self.dataset)
        if self.shuffle:
            return np.asarray(backend.Generator("cpu", self.seed + self.epoch).permutation(n), dtype=np.int64)
        return np.arange(n, dtype=np.int64)

    def indices(self) -> np.ndarray:
        """This rank's indices for the rest of the current epoch (all of it unless resumed)."""
        order = self._order()
        w = self.num_replicas
        rest = order[min(self._start, len(order)):]
        if self.drop_last:
            rest = rest[:len(rest) // w * w]
        else:
            pad = (-len(rest)) % w
            if pad:
                # repeat from the start of the permutation, as often as needed (tiny datasets)
                rest = np.concatenate([rest, np.resize(order, pad)])
        return rest[self.rank::w]

    def __iter__(self):
        idx = self.indices()
        self._epoch_start = self._start
        self._start = 0  # iterating again replays the epoch from its beginning, as in PyTorch
        self._yielded = 0
        for i in idx.tolist():
            self._yielded += 1
            yield i

    def state_dict(self, samples_consumed: int | None = None) -> dict:
        """The position to resume from: epoch, seed, and how many indices of the epoch's permutation
        all ranks together have consumed. ``samples_consumed`` is this rank's count in the running
        epoch (e.g. batches done x batch size); by default, the indices this sampler has yielded,
        which counts ahead of the training when a loader prefetches."""
        mine = self._yielded if samples_consumed is None else int(samples_consumed)
        if not 0 <= mine <= self.num_samples:
            raise ValueError(f"DistributedSampler.state_dict: samples_consumed must be in [0, {self.num_samples}], "
                             f"got {mine}")
        if self._epoch_start is None:  # not iterated since the position was set
            consumed = self._start + mine * self.num_replicas
        else:
            consumed = self._epoch_start + mine * self.num_replicas
        return {"epoch": self.epoch, "seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "num_samples_total": len(self.dataset),
                "consumed": min(consumed, len(self.dataset))}

    def load_state_dict(self, state: dict) -> None:
        """Make the next ``iter(self)`` yield this rank's share of the rest of the saved epoch
        (for any number of ranks); later epochs then match an uninterrupted run."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"DistributedSampler.load_state_dict: state lacks {missing}; expected the keys "
                             f"{list(_STATE_KEYS)} of DistributedSampler.state_dict()")
        n = len(self.dataset)
        if state["num_samples_total"] != n:
            raise ValueError(f"DistributedSampler.load_state_dict: state is for a dataset of "
                             f"{state['num_samples_total']} samples, this one has {n}")
        for k in ("seed", "shuffle", "drop_last"):
            if state[k] != getattr(self, k):
                raise ValueError(f"DistributedSampler.load_state_dict: state has {k}={state[k]!r} but this "
                                 f"sampler has {k}={getattr(self, k)!r}")
        if not 0 <= state["consumed"] <= n:
            raise ValueError(f"DistributedSampler.load_state_dict: consumed={state['consumed']} is outside [0, {n}]")
        self.epoch = int(state["epoch"])
        self._start, self._epoch_start, self._yielded = int(state["consumed"]), None, 0
