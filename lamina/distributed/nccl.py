"""NCCL communicators for CUDA tensors, through ``cupy.cuda.nccl``.

One communicator per process group and CUDA device. Rank 0 asks NCCL for a unique id and
broadcasts it over the group's MPI communicator; every rank then joins with
``NcclCommunicator(world_size, uid, rank)`` on its device. Collectives are enqueued on CuPy's
current stream, so later kernels on that stream see their results without a host wait.
Without CuPy's NCCL module ``communicator`` returns None and the group stages CUDA tensors
through host memory and MPI instead.
"""
from __future__ import annotations

import numpy as np

from .. import backend

_UID_BYTES = 128  # sizeof(ncclUniqueId)


def _nccl_module():
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


def communicator(group, device_index):
    """A ``Communicator`` on CUDA device ``device_index`` joining every rank of ``group``, or None
    when CuPy has no NCCL (then all ranks agree on None: rank 0 decides and broadcasts)."""
    nccl = _nccl_module()
    MPI = group.mpi()
    head = np.zeros(2, dtype=np.int64)  # [NCCL usable on rank 0, unique id is bytes (CuPy >= 14)]
    uid_buf = np.zeros(_UID_BYTES, dtype=np.int16)
    if group.rank == 0 and nccl is not None:
        uid = nccl.get_unique_id()
        head[:] = (1, isinstance(uid, (bytes, bytearray)))
        raw = np.frombuffer(bytes(uid), dtype=np.uint8).astype(np.int16) if head[1] else np.asarray(uid, np.int16)
        uid_buf[:raw.size] = raw
    group.comm.Bcast(head, root=0)
    group.comm.Bcast(uid_buf, root=0)
    usable = np.array([int(head[0]) and nccl is not None], dtype=np.int64)
    group.comm.Allreduce(MPI.IN_PLACE, usable, op=MPI.MIN)
    if not usable[0]:
        return None
    uid = uid_buf.astype(np.uint8).tobytes() if head[1] else tuple(int(v) for v in uid_buf)
    cp = backend._import_cupy()
    with cp.cuda.Device(device_index):
        comm = nccl.NcclCommunicator(group.size, uid, group.rank)
    return Communicator(comm, nccl, group.size, device_index)


class Communicator:
    """The collectives the process group needs, on contiguous CuPy arrays of one device."""

    def __init__(self, comm, nccl, size, device_index):
        self._comm, self._nccl, self.size, self.device_index = comm, nccl, size, device_index
        n = nccl
        self._dtypes = {"float16": n.NCCL_FLOAT16, "float32": n.NCCL_FLOAT32, "float64": n.NCCL_FLOAT64,
                        "int8": n.NCCL_INT8, "uint8": n.NCCL_UINT8, "int32": n.NCCL_INT32,
                        "int64": n.NCCL_INT64}
        if hasattr(n, "NCCL_BFLOAT16"):
            self._dtypes["bfloat16"] = n.NCCL_BFLOAT16
        self._ops = {"sum": n.NCCL_SUM, "avg": n.NCCL_SUM, "max": n.NCCL_MAX, "min": n.NCCL_MIN,
                     "product": n.NCCL_PROD}

    def _dtype(self, a):
        name = str(a.dtype)
        if name not in self._dtypes:
            raise TypeError(f"NCCL collectives: dtype {name} is not supported "
                            f"(supported: {', '.join(self._dtypes)})")
        if not a.flags.c_contiguous:
            raise ValueError(f"NCCL collectives: the array (shape {a.shape}) must be contiguous")
        return self._dtypes[name]

    @staticmethod
    def _stream():
        return backend._import_cupy().cuda.get_current_stream().ptr

    def all_reduce(self, a, op):
        """Reduce ``a`` in place over all ranks (``op`` as in ``ReduceOp``; avg = sum / size)."""
        with backend._import_cupy().cuda.Device(self.device_index):
            self._comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._dtype(a), self._ops[op], self._stream())
            if op == "avg":
                a *= 1.0 / self.size

    def broadcast(self, a, root):
        with backend._import_cupy().cuda.Device(self.device_index):
            self._comm.bcast(a.data.ptr, a.size, self._dtype(a), root, self._stream())

    def all_gather(self, src, out):
        """``out`` (size × src.shape) receives every rank's ``src``."""
        with backend._import_cupy().cuda.Device(self.device_index):
            self._comm.allGather(src.data.ptr, out.data.ptr, src.size, self._dtype(src), self._stream())

    def reduce_scatter(self, stacked, out, op):
        """``out`` receives the reduction over ranks of their ``stacked[rank]``."""
        with backend._import_cupy().cuda.Device(self.device_index):
            self._comm.reduceScatter(stacked.data.ptr, out.data.ptr, out.size, self._dtype(out),
                                     self._ops[op], self._stream())
            if op == "avg":
                out *= 1.0 / self.size

    def destroy(self):
        self._comm.destroy()
