"""``lamina train ... --distributed``: one training run on the processes ``mpiexec`` started.

Every rank builds the same model and draws the same global batches (loaders and generators are
seeded alike on every rank), keeps its own rows of each batch (``Ranks.split``) and trains a
``DistributedDataParallel`` replica, so one step on N ranks is the single-process step on the
whole batch: each rank's loss is weighted by its share of the batch, which keeps the averaged
gradient exact when the rows do not divide evenly (the last batch of an epoch). The position in
the data lives in the global loaders and generators, so a checkpoint does not depend on the
number of ranks and ``--resume`` works on any. Rank 0 alone holds the run folder and writes
files; the other ranks get its path and, on resume, the checkpoint's bytes over MPI, so ranks on
other machines need no shared file system for the run folder.
"""
from __future__ import annotations

import json

import numpy as np


class Ranks:
    """Where this process stands in a training job: alone (``group`` None), or one rank of a
    ``lamina.distributed`` group of several processes."""

    def __init__(self, group=None):
        self.group = group if group is not None and group.size > 1 else None
        self.rank = self.group.rank if self.group else 0
        self.size = self.group.size if self.group else 1
        self.local_rank = group.local_rank if group is not None else 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files, prints and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def wrap(self, model):
        """The model to train: a ``DistributedDataParallel`` replica on several ranks."""
        if not self.distributed:
            return model
        from ..distributed import DistributedDataParallel
        return DistributedDataParallel(model, process_group=self.group)

    def split(self, batch, weight=None):
        """(this rank's rows of ``batch``, this rank's share of the batch's loss weight).

        ``batch`` is a Tensor or a tuple/list of them with the same number of rows; rank r gets
        rows ``r*n//size`` up to ``(r+1)*n//size``. ``weight(batch)`` is what the loss averages
        over (default: rows); the shares add up to 1 over the ranks. A rank left without rows
        (a batch smaller than the number of ranks) trains on a copy of one row with share 0:
        it contributes zeros and still takes part in the gradient all-reduce.
        """
        if not self.distributed:
            return batch, 1.0
        tensors = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        n = tensors[0].shape[0]
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        padded = hi == lo
        if padded:
            lo, hi = min(lo, n - 1), min(lo, n - 1) + 1
        part = tuple(t[lo:hi] for t in tensors)
        part = type(batch)(part) if isinstance(batch, (tuple, list)) else part[0]
        if padded:
            return part, 0.0
        if weight is None:
            return part, (hi - lo) / n
        total = float(weight(batch))
        return part, float(weight(part)) / total if total else 0.0

    def total(self, contribution: float) -> float:
        """The sum of every rank's ``contribution`` (each rank's loss times its share: the loss of
        the global batch), the value every rank decides on, so all skip or stop at the same step."""
        if not self.distributed:
            return contribution
        MPI = self.group.mpi()
        value = np.array([contribution], dtype=np.float64)
        self.group.comm.Allreduce(MPI.IN_PLACE, value, op=MPI.SUM)
        return float(value[0])

    def signal(self, received: int | None) -> int | None:
        """The largest signal number any rank has received (None: none), so that a Ctrl-C, which
        reaches the ranks at slightly different moments, stops all of them after the same step."""
        if not self.distributed:
            return received
        MPI = self.group.mpi()
        sig = np.array([received or 0], dtype=np.int64)
        self.group.comm.Allreduce(MPI.IN_PLACE, sig, op=MPI.MAX)
        return int(sig[0]) or None

    def barrier(self) -> None:
        """Wait until every rank has come here."""
        if self.distributed:
            self.group.comm.Barrier()

    def share_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank (the others pass None)."""
        comm = self.group.comm
        n = np.array([len(data) if self.is_main else 0], dtype=np.int64)
        comm.Bcast(n, root=0)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.is_main else np.empty(int(n[0]), dtype=np.uint8)
        comm.Bcast(buf, root=0)
        return buf.tobytes()

    def share_json(self, obj):
        """Rank 0's JSON-able ``obj`` on every rank (no pickle crosses the wire)."""
        return json.loads(self.share_bytes(json.dumps(obj).encode() if self.is_main else None))

    def seed_streams(self, device, step: int) -> None:
        """Give every rank but 0 its own default random stream on ``device`` (dropout masks of
        different rows should differ); rank 0 keeps the stream the checkpoint saves."""
        if self.rank == 0:
            return
        from .. import backend
        gen = backend.default_generator(device)
        seed = np.random.SeedSequence([gen.initial_seed(), self.rank, step]).generate_state(1)[0]
        gen.manual_seed(int(seed))


SINGLE = Ranks()
