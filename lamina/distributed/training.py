"""What a training script needs to run data-parallel, in one object (the ``lamina train``
commands have their own, ``lamina.cli.parallel``, which also splits uneven batches exactly).

``DataParallelRun.setup(global_batch)`` joins the process group, checks that the global batch
splits evenly over the ranks and gives each rank its share; ``wrap`` puts a model in
``DistributedDataParallel``; the data is split either by ``sampler`` (each rank loads only its
shard of the dataset: the scalable way) or by ``shard`` (every rank draws the same global batch
and keeps its rows: bit-for-bit the single-process run, for data that is cheap to load);
``mean`` averages a metric over ranks for logging, and ``is_main`` says whether this rank is the
one that writes files (checkpoints, metrics, plots). Alone (no ``mpiexec``) the same code runs as one process: ``wrap`` returns the
model unchanged and ``sampler`` returns None (the loader shuffles by itself).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import group as dist
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler


class DataParallelRun:
    """Where this process stands in a data-parallel run (see the module docstring)."""

    def __init__(self, group, global_batch: int):
        self.group = group
        self.rank, self.world_size, self.local_rank = group.rank, group.size, group.local_rank
        self.global_batch = global_batch
        self.per_rank_batch = global_batch // group.size

    @classmethod
    def setup(cls, global_batch: int, backend: str | None = None) -> DataParallelRun:
        """Join the group (``lamina.distributed.init``) and split ``global_batch`` over its ranks."""
        if isinstance(global_batch, bool) or not isinstance(global_batch, numbers.Integral) or global_batch < 1:
            raise ValueError(f"DataParallelRun.setup: global_batch must be a positive int, got {global_batch!r}")
        g = dist.init(backend)
        if global_batch % g.size:
            raise ValueError(f"DataParallelRun.setup: the global batch {global_batch} does not split evenly over "
                             f"{g.size} ranks; pick a multiple of {g.size}")
        return cls(g, int(global_batch))

    @property
    def is_main(self) -> bool:
        """Whether this rank writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model, **ddp_options):
        """``DistributedDataParallel(model, **ddp_options)`` on several ranks; ``model`` alone."""
        return DistributedDataParallel(model, process_group=self.group, **ddp_options) if self.distributed else model

    def sampler(self, dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        """This rank's ``DistributedSampler`` of ``dataset`` on several ranks; None alone."""
        if not self.distributed:
            return None
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                  seed=seed, drop_last=drop_last)

    def shard(self, batch):
        """This rank's rows of a global batch (a Tensor or array, or a tuple/list of them): rows
        ``rank * per_rank_batch`` up to the next rank's. When every rank draws the same global
        batches (same seed), this trains exactly like one process, and resuming needs only the
        global loader's position, whatever the number of ranks."""
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.shard(b) for b in batch)
        n = batch.shape[0]
        if n != self.global_batch:
            raise ValueError(f"DataParallelRun.shard: expected a global batch of {self.global_batch} rows, got shape "
                             f"{tuple(batch.shape)}")
        lo = self.rank * self.per_rank_batch
        return batch[lo:lo + self.per_rank_batch]

    def mean(self, value: float) -> float:
        """The mean of a per-rank number (a loss, an accuracy) over all ranks, for logging."""
        buf = np.array([float(value)], dtype=np.float64)
        if self.distributed:
            MPI = self.group.mpi()
            self.group.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            buf /= self.world_size
        return float(buf[0])

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a checkpoint the others will read)."""
        if self.group.comm is not None:
            self.group.comm.Barrier()
