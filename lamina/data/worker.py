"""DataLoader worker processes: the loop a worker runs, ``get_worker_info()``, and the transport
of batches from a worker to the main process.

Transport: a batch is pickled with every NumPy array and CPU Tensor in it replaced by a
reference. When the referenced arrays hold at least ``min_bytes`` together, they are written
into one shared-memory file (``lamina.multiprocessing.shared_memory``) and only the file's name
and layout travel through the worker's pipe; the main process maps the file and unlinks it at
once, so the batch's arrays are views of memory the worker filled, with no pickling of array
data. Smaller batches travel inline in the message (a file would cost more than the copy).

Messages on a worker's result pipe: ``(epoch, task, kind, data)`` with ``kind`` one of
``"batch"`` (data: a packed batch), ``"end"`` (an iterable dataset's stream is done) and
``"error"`` (data: the exception's type, or None when it cannot be pickled, and the worker's
traceback text).
"""
from __future__ import annotations

import io
import os
import pickle
import queue
import random
import signal
import sys
import traceback

import numpy as np

from .. import backend
from ..creation import from_numpy
from ..multiprocessing import shared_memory
from ..tensor import Tensor
from .fetch import Fetcher

# How often an idle worker checks that the main process is still alive (seconds).
PARENT_CHECK_INTERVAL = 0.5


class WorkerInfo:
    """What a worker knows about itself: ``id``, ``num_workers``, ``seed``, ``dataset`` (its own
    copy)."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002 - PyTorch's field name
        self.id = id
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset

    def __setattr__(self, name, value):
        if hasattr(self, name):
            raise RuntimeError(f"WorkerInfo.{name} cannot be changed")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info = None


def get_worker_info():
    """In a DataLoader worker process: its ``WorkerInfo``; in the main process: None."""
    return _worker_info


# ------------------------------------------------------------------ batch transport
class _BatchPickler(pickle.Pickler):
    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays = []

    def persistent_id(self, obj):
        if type(obj) is np.ndarray and obj.dtype.kind not in "OV":
            self.arrays.append(obj)
            return ("a", len(self.arrays) - 1)
        if type(obj) is Tensor and type(obj.array) is np.ndarray and obj.array.dtype.kind not in "OV":
            self.arrays.append(np.asarray(obj))
            return ("t", len(self.arrays) - 1, obj.requires_grad)
        return None


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, arrays):
        super().__init__(file)
        self.arrays = arrays

    def persistent_load(self, pid):
        if pid[0] == "a":
            return self.arrays[pid[1]]
        t = from_numpy(self.arrays[pid[1]])
        return t.requires_grad_(True) if pid[2] else t


def pack_batch(batch, prefix: str, min_bytes: int):
    """``(payload, path, layout, inline arrays)`` for ``unpack_batch``; see the module docstring."""
    buf = io.BytesIO()
    pickler = _BatchPickler(buf)
    pickler.dump(batch)
    arrays = pickler.arrays
    if sum(a.nbytes for a in arrays) >= min_bytes:
        path, layout = shared_memory.write_arrays(arrays, prefix)
        return buf.getvalue(), path, layout, None
    return buf.getvalue(), None, None, arrays


def unpack_batch(packed):
    payload, path, layout, inline = packed
    arrays = shared_memory.read_arrays(path, layout) if path is not None else inline
    return _BatchUnpickler(io.BytesIO(payload), arrays).load()


def discard_batch(packed) -> None:
    """Free a packed batch nobody will read (its shared-memory file)."""
    if packed[1] is not None:
        try:
            os.unlink(packed[1])
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------ the worker
def _seed_everything(seed: int, base_seed: int, worker_id: int) -> None:
    """Seed Python's, NumPy's global and Lamina's generators as PyTorch seeds a worker's."""
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([base_seed, worker_id]).generate_state(4))
    backend.manual_seed(seed % 2**63)


def preload_thread_control() -> None:
    """Import threadpoolctl (if installed) in the main process, where forked workers inherit it."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        pass


def _limit_threads() -> None:
    # Like PyTorch, a worker runs its BLAS single-threaded: the workers already use the cores,
    # and one BLAS pool per worker would oversubscribe them.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _parent_alive() -> bool:
    import multiprocessing
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _error_message(error: BaseException):
    text = traceback.format_exc()
    exc_type = type(error)
    # the class travels to the main process by reference only if it is importable by its name
    # (a class defined inside a function is not): the same test pickle makes
    module = sys.modules.get(exc_type.__module__)
    found = module
    for part in exc_type.__qualname__.split("."):
        found = getattr(found, part, None)
    return (exc_type if found is exc_type else None), text


def worker_loop(dataset, iterable, batched, batch_size, drop_last, collate_fn, fast_path, worker_id,
                num_workers, base_seed, worker_init_fn, index_queue, result_conn, shm_prefix,
                shm_min_bytes, kernels_off=False):
    """Run in a worker process until told to stop (``None`` on ``index_queue``), until the main
    process is gone, or until the main process closes ``result_conn``. ``kernels_off``: forked
    from a process whose Numba OpenMP pool runs, where a parallel kernel would kill this one."""
    global _worker_info
    if kernels_off:
        from .. import kernels
        kernels.set_enabled(False)
    # Ctrl-C reaches every process of the terminal's group; the main process handles it and
    # stops the workers, so a worker must not die half-way through writing a message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads()
    seed = base_seed + worker_id
    _seed_everything(seed, base_seed, worker_id)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    init_error = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as error:  # noqa: BLE001 - reported to the main process
            init_error = _error_message(error)
    fetcher = Fetcher(dataset, iterable, batched, batch_size, drop_last, collate_fn, fast_path)
    stream_epoch = None
    try:
        while True:
            try:
                message = index_queue.get(timeout=PARENT_CHECK_INTERVAL)
            except queue.Empty:
                if not _parent_alive():
                    return
                continue
            if message is None:
                return
            epoch, task, unit = message
            if init_error is not None:
                result_conn.send((epoch, task, "error", init_error))
                continue
            try:
                if iterable and epoch != stream_epoch:
                    stream_epoch = epoch
                    fetcher.start()
                batch = fetcher.fetch(unit)
                reply = (epoch, task, "batch", pack_batch(batch, shm_prefix, shm_min_bytes))
                del batch
            except StopIteration:
                reply = (epoch, task, "end", None)
            except Exception as error:  # noqa: BLE001 - reported to the main process
                reply = (epoch, task, "error", _error_message(error))
            try:
                result_conn.send(reply)
            except Exception:  # noqa: BLE001 - the message was lost; free what it referenced
                if reply[2] == "batch":
                    discard_batch(reply[3])
                raise
    except (BrokenPipeError, EOFError, ConnectionResetError):
        return  # the main process stopped listening: it is shutting down
    finally:
        result_conn.close()
