"""``DataLoader``: batches, shuffles and prefetches the samples of a dataset, in the main process
or in worker processes, and can save and restore its position inside an epoch."""
from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import numbers
import os
import sys
import time
import weakref

import numpy as np

from .. import backend
from ..multiprocessing.shared_memory import remove_files
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .fetch import Fetcher
from .prefetch import Prefetcher
from .sampler import BatchSampler, RandomSampler, SequentialSampler
from . import worker as _worker

_STATE_KEYS = ("generator_state", "batches_consumed", "num_samples", "batch_size")

# A batch whose arrays hold at least this many bytes travels through a shared-memory file;
# smaller ones are copied through the worker's pipe.
SHM_MIN_BYTES = 64 * 1024
# How long a waiting main process sleeps between checks that its workers are alive (seconds).
WORKER_CHECK_INTERVAL = 0.1
# How long shutdown waits for a worker to finish its current batch before terminating it. Short:
# whatever a busy worker is making will not be used, and its files are removed either way.
WORKER_JOIN_TIMEOUT = 1.0

_pool_ids = itertools.count()


def _numba_openmp_running() -> bool:
    """Whether Numba has started its OpenMP thread pool in this process (never imports Numba)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        return numba.threading_layer() == "omp"
    except ValueError:  # no parallel kernel has run yet: no threads to worry about
        return False


def _is_int(value, low):
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= low


class DataLoader:
    """Iterate over ``dataset`` in batches, as PyTorch's ``torch.utils.data.DataLoader``.

    Order and batching:

    - ``shuffle=True`` draws a new permutation from ``generator`` (a CPU ``lamina.Generator``)
      at the start of every epoch, i.e. every ``iter(loader)``. Without ``generator`` the loader
      makes its own, seeded from the default CPU generator when the loader is built, so
      ``lamina.manual_seed(s)`` before building it fixes every epoch's order.
    - ``sampler``: any iterable of indices (with ``__len__`` for ``len(loader)``), e.g. a
      ``RandomSampler``, ``WeightedRandomSampler`` or a ``DistributedSampler``; excludes
      ``shuffle``. ``batch_sampler``: an iterable of index lists; excludes ``batch_size``,
      ``shuffle``, ``sampler`` and ``drop_last``. ``batch_size=None`` turns batching off: each
      sample is yielded alone, its arrays turned into Tensors (``default_convert``).
    - ``drop_last=True`` drops a final batch smaller than ``batch_size``; ``len(loader)`` is
      the number of batches per epoch either way.
    - Batches come from ``collate_fn(list of samples)``, by default ``default_collate``. When the
      dataset defines ``__getitems__`` and no ``collate_fn`` is given, a batch is one call
      ``dataset.__getitems__(int64 index array)`` instead (the fast path).
    - An ``IterableDataset`` is read as a stream; with workers, every worker iterates its own
      copy (see ``get_worker_info``) and batches come round-robin from the workers.

    Loading:

    - ``num_workers=0`` (default): batches are made in the main process; ``prefetch=k`` (a
      Lamina option) loads up to ``k`` batches ahead in one background thread, ``prefetch=0``
      in the consumer's thread. The thread ends when the epoch ends, when the dataset raises
      (the exception reaches the consumer unchanged), and when the iterator is dropped early.
    - ``num_workers=n > 0``: ``n`` worker processes make the batches, each up to
      ``prefetch_factor`` (default 2) batches ahead, delivered in sampler order. Arrays come back
      through shared memory (see ``lamina.data.worker``). Each worker is seeded as in PyTorch:
      a base seed is drawn from ``generator`` (or the default CPU generator) at every epoch,
      worker ``i`` seeds Python's ``random``, NumPy's global generator and Lamina's generators
      from ``base + i``, then calls ``worker_init_fn(i)``. An exception in a worker is raised
      in the main process with the worker's traceback in its message; a worker that dies (a
      crash, a signal) raises ``RuntimeError`` instead of hanging; ``timeout > 0`` raises when
      one batch takes longer. Workers stop when the epoch ends, when the iterator is dropped or
      closed, on an error, and at exit (Ctrl-C included); ``persistent_workers=True`` keeps
      them for the next epoch.
    - ``multiprocessing_context`` (a start method name or a context): by default the method given
      to ``multiprocessing.set_start_method`` if the program chose one, else ``"fork"`` on
      Linux, as PyTorch there: a worker starts in milliseconds (``"forkserver"``: about 20 ms
      each after a first ~1 s, ``"spawn"``: about 1 s each, measured here) and datasets and
      functions need not be picklable (lambdas, classes defined in a function, scripts without an
      ``if __name__ == "__main__"`` guard). The loader itself runs no thread while workers
      exist. Numba's OpenMP thread pool does not survive a fork: once a parallel kernel has run
      in this process, a forked child that starts one is killed. So workers forked after that
      run Lamina's ops with compiled kernels off (their NumPy paths; same results); a dataset
      calling its own parallel Numba code then needs ``"forkserver"`` (the error says so).
      Elsewhere than Linux the platform's default applies. Choose ``"forkserver"`` or
      ``"spawn"`` yourself when other threads of the program may hold locks at the moment of the
      fork, or when the GPU was initialised.
    - ``pin_memory`` / ``pin_memory_device`` are accepted and change nothing: batches stay in
      ordinary memory (page-locking only pays for host-to-GPU copies, which CuPy stages itself).
      ``in_order=False`` is accepted too; batches still arrive in order (which it permits).

    Resuming mid-epoch: ``state_dict()`` returns a JSON-serialisable dict
    ``{"generator_state": state of the generator when the current epoch began (None without
    shuffle), "batches_consumed": batches already yielded this epoch, "num_samples",
    "batch_size"}``. It counts batches handed to the consumer, not batches prefetched. After the
    last batch of an epoch it describes the start of the next epoch. ``load_state_dict(state)``
    makes the next ``iter(loader)`` redraw that epoch's permutation and yield exactly its
    remaining batches; later epochs then match an uninterrupted run. This relies on the
    generator being used only by this loader between epochs (and, with a custom sampler, on the
    sampler repeating its order)::

        for step, (x, y) in enumerate(loader):
            ...
            if step % 100 == 0:
                save(model, optimizer, loader.state_dict())
        # in a new process:
        loader.load_state_dict(saved_state)
        for x, y in loader:   # the rest of the interrupted epoch
            ...
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 in_order=True, prefetch=2):
        name = "DataLoader"
        if batch_size is not None and not _is_int(batch_size, 1):
            raise ValueError(f"{name}: batch_size must be a positive int or None, got {batch_size!r}")
        if not _is_int(prefetch, 0):
            raise ValueError(f"{name}: prefetch must be an int >= 0, got {prefetch!r}")
        if not _is_int(num_workers, 0):
            raise ValueError(f"{name}: num_workers must be an int >= 0, got {num_workers!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"{name}: timeout must be a number >= 0, got {timeout!r}")
        if num_workers == 0 and timeout:
            raise ValueError(f"{name}: timeout={timeout!r} needs num_workers > 0")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(f"{name}: prefetch_factor={prefetch_factor!r} needs num_workers > 0 "
                             "(with num_workers=0 use prefetch=)")
        if prefetch_factor is not None and not _is_int(prefetch_factor, 1):
            raise ValueError(f"{name}: prefetch_factor must be a positive int, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError(f"{name}: persistent_workers=True needs num_workers > 0")
        if not isinstance(in_order, bool):
            raise TypeError(f"{name}: in_order must be a bool, got {in_order!r}")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"{name}: worker_init_fn must be callable, got {type(worker_init_fn).__name__}")
        if generator is not None and (not isinstance(generator, backend.Generator)
                                      or generator.device.type != "cpu"):
            where = generator.device if isinstance(generator, backend.Generator) else type(generator).__name__
            raise ValueError(f"{name}: generator must be a CPU generator, got one on {where}")
        iterable = isinstance(dataset, IterableDataset)
        if iterable and (shuffle or sampler is not None or batch_sampler is not None):
            what = "shuffle" if shuffle else "sampler" if sampler is not None else "batch_sampler"
            raise ValueError(f"{name}: {what} cannot be used with an IterableDataset ({type(dataset).__name__}); "
                             "a stream decides its own order")
        if sampler is not None and shuffle:
            raise ValueError(f"{name}: sampler and shuffle=True exclude each other (the sampler decides "
                             "the order)")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError(f"{name}: batch_sampler excludes batch_size, shuffle, sampler and drop_last")
        self._mp_context = self._check_context(multiprocessing_context)

        self.dataset = dataset
        self.num_workers = int(num_workers)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        self.prefetch_factor = (2 if prefetch_factor is None else int(prefetch_factor)) if num_workers else None
        self.persistent_workers = bool(persistent_workers)
        self.pin_memory = bool(pin_memory)
        self.pin_memory_device = pin_memory_device
        self.timeout = float(timeout)
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        if self.shuffle and generator is None:
            seed = backend.default_generator("cpu").integers(0, 2**63 - 1, (), np.int64)
            generator = backend.Generator("cpu", int(seed))
        self.generator = generator
        self._iterable = iterable
        if batch_sampler is not None:
            self.batch_size = None
            self.batch_sampler = batch_sampler
            self.sampler = getattr(batch_sampler, "sampler", None)
        else:
            self.batch_size = batch_size
            if iterable:
                self.sampler = None
            elif sampler is not None:
                self.sampler = sampler
            elif self.shuffle:
                self.sampler = RandomSampler(dataset, generator=self.generator)
            else:
                self.sampler = SequentialSampler(dataset)
            self.batch_sampler = (BatchSampler(self.sampler, batch_size, self.drop_last)
                                  if batch_size is not None and not iterable else None)
        self._custom_order = sampler is not None or batch_sampler is not None
        batched = self.batch_sampler is not None or (iterable and batch_size is not None)
        fast_path = collate_fn is None and batched and not iterable and hasattr(dataset, "__getitems__")
        if collate_fn is None:
            collate_fn = default_collate if batched else default_convert
        self.collate_fn = collate_fn
        self._fetcher_args = (dataset, iterable, batched, self.batch_size, self.drop_last, collate_fn,
                              fast_path)
        # Position: the generator state the running epoch started from (None: the next epoch
        # starts from the generator's current state), batches yielded, a state to resume from.
        self._epoch_start = None
        self._consumed = 0
        self._resume = None
        self._serial = 0  # only the newest iterator moves the position
        self._pool = None  # the persistent workers

    @staticmethod
    def _check_context(context):
        """The multiprocessing context for ``context``; None: decided when workers start."""
        if context is None:
            return None
        if isinstance(context, str):
            if context not in multiprocessing.get_all_start_methods():
                raise ValueError(f"DataLoader: multiprocessing_context={context!r} is not a start method "
                                 f"of this system; choose one of {multiprocessing.get_all_start_methods()}")
            context = multiprocessing.get_context(context)
            if context.get_start_method() == "forkserver":
                # The server imports Lamina once, so each worker forked from it starts warm.
                context.set_forkserver_preload(["lamina", "threadpoolctl"])
            return context
        if not hasattr(context, "Process") or not hasattr(context, "get_start_method"):
            raise TypeError(f"DataLoader: multiprocessing_context must be a start method name or a "
                            f"multiprocessing context, got {type(context).__name__}")
        return context

    def _worker_context(self):
        if self._mp_context is not None:
            return self._mp_context
        chosen = multiprocessing.get_start_method(allow_none=True)  # set_start_method's choice
        if chosen is None:
            # fork on Linux; elsewhere the platform's default (spawn on macOS, where fork is
            # unsafe with the system's libraries)
            chosen = "fork" if sys.platform.startswith("linux") else multiprocessing.get_start_method()
        return self._check_context(chosen)

    # ------------------------------------------------------------------ sizes and order
    def __len__(self):
        if self._iterable:
            n = len(self.dataset)  # TypeError for a stream without __len__, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def _sized(self) -> bool:
        try:
            len(self)
        except TypeError:
            return False
        return True

    def _units(self, start):
        """This epoch's units of work (index lists, or single indices), skipping ``start``."""
        if self.batch_sampler is None:
            return itertools.islice(iter(self.sampler), start, None)
        if not self._custom_order and hasattr(self.sampler, "index_array"):
            # The loader's own samplers: slice one index array instead of building lists.
            order = self.sampler.index_array()
            b = self.batch_size
            stop = len(self) * b
            return (order[i:i + b] for i in range(start * b, stop, b))
        return itertools.islice(iter(self.batch_sampler), start, None)

    def _base_seed(self) -> int:
        gen = self.generator if self.generator is not None else backend.default_generator("cpu")
        return int(gen.integers(0, 2**62, (), np.int64))

    def __iter__(self):
        resume, self._resume = self._resume, None
        start = 0
        if resume is not None:
            self._check_state(resume)
            start = resume["batches_consumed"]
            if self.shuffle:
                self.generator.set_state(resume["generator_state"])
        if self.shuffle:
            self._epoch_start = self.generator.get_state()
        # Drawn before the epoch's order and whatever the number of workers, so the order does
        # not depend on num_workers.
        base_seed = self._base_seed() if (self.num_workers or self.generator is not None) else 0
        units = iter(()) if self._iterable else self._units(start)
        self._serial += 1
        self._consumed = start
        remaining = None  # unknown for a stream, or a sampler without __len__
        if not self._iterable and self._sized():
            remaining = len(self) - start
            if remaining == 0:
                self._advance(self._serial, finished=True)
        if self.num_workers == 0:
            return _SingleProcessIterator(self, self._serial, units, remaining)
        pool = self._pool
        if pool is not None and not pool.alive():  # a persistent worker died
            pool.shutdown()
            pool = self._pool = None
        if pool is None:
            pool = _WorkerPool(self, base_seed)
            if self.persistent_workers:
                self._pool = pool
        return _MultiProcessIterator(self, self._serial, units, remaining, pool)

    def _advance(self, serial, finished):
        if serial != self._serial:
            return
        if finished:
            self._epoch_start = None
            self._consumed = 0
        else:
            self._consumed += 1

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict:
        """The position in the current epoch; see the class docstring."""
        if self._iterable:
            raise TypeError("DataLoader.state_dict: the position in an IterableDataset "
                            f"({type(self.dataset).__name__}) cannot be saved")
        if self._resume is not None:
            return dict(self._resume)
        gen_state = None
        if self.shuffle:
            gen_state = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator_state": gen_state, "batches_consumed": self._consumed,
                "num_samples": len(self.dataset), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Make the next ``iter(self)`` continue from ``state`` (from ``state_dict()``)."""
        if self._iterable:
            raise TypeError("DataLoader.load_state_dict: the position in an IterableDataset "
                            f"({type(self.dataset).__name__}) cannot be restored")
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


class _SingleProcessIterator:
    """One epoch made in the main process (optionally by one prefetch thread)."""

    def __init__(self, loader, serial, units, remaining):
        self._loader = loader
        self._serial = serial
        self._remaining = remaining  # None: a stream of unknown length
        self._fetcher = Fetcher(*loader._fetcher_args)
        if loader._iterable:
            self._fetcher.start()
            units = itertools.repeat(None)
        self._units = units
        self._prefetcher = None
        if loader.prefetch and remaining != 0:
            self._prefetcher = Prefetcher(self._fetcher.fetch, units, loader.prefetch)

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader) if self._remaining is None else self._remaining

    def __next__(self):
        if self._remaining == 0:
            raise StopIteration
        try:
            if self._prefetcher is not None:
                batch = self._prefetcher.get()
            else:
                batch = self._fetcher.fetch(next(self._units))
        except BaseException:
            self.close()
            raise
        if self._remaining is not None:
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


# ---------------------------------------------------------------------- worker processes
def _stop_workers(owner_pid, processes, index_queues, readers, shm_prefix) -> None:
    """Stop the workers, close the channels, and remove the shared-memory files nobody read."""
    if os.getpid() != owner_pid:  # a forked worker's copy of a pool: not its to stop
        return
    for q in index_queues:
        try:
            q.put(None)
        except (OSError, ValueError):
            pass
    # Closing our ends unblocks a worker waiting to send a batch we will never read.
    for r in readers:
        r.close()
    deadline = time.monotonic() + WORKER_JOIN_TIMEOUT
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.terminate()
            p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join()
    for q in index_queues:
        q.cancel_join_thread()  # its reader is gone; unsent stop messages do not matter
        q.close()
    remove_files(shm_prefix)


class _WorkerPool:
    """``num_workers`` processes, each with an index queue in and a result pipe out."""

    def __init__(self, loader, base_seed):
        ctx = loader._worker_context()
        self.start_method = ctx.get_start_method()
        kernels_off = self.start_method == "fork" and _numba_openmp_running()
        n = loader.num_workers
        self.num_workers = n
        self.shm_prefix = f"lamina-dl-{os.getpid()}-{next(_pool_ids)}-"
        self.processes, self.index_queues, self.readers = [], [], []
        self._finalizer = weakref.finalize(self, _stop_workers, os.getpid(), self.processes,
                                           self.index_queues, self.readers, self.shm_prefix)
        self.epoch = 0
        _worker.preload_thread_control()  # imported once here, so forked workers start warm
        try:
            for wid in range(n):
                q = ctx.Queue()
                reader, writer = ctx.Pipe(duplex=False)
                p = ctx.Process(
                    target=_worker.worker_loop, name=f"lamina-data-worker-{wid}", daemon=True,
                    args=(*loader._fetcher_args, wid, n, base_seed, loader.worker_init_fn, q, writer,
                          self.shm_prefix, SHM_MIN_BYTES, kernels_off))
                self.index_queues.append(q)
                self.readers.append(reader)
                try:
                    p.start()
                except Exception as error:
                    writer.close()
                    if isinstance(error, (TypeError, AttributeError)) or "pickle" in type(error).__name__.lower():
                        raise TypeError(
                            f"DataLoader: num_workers={n} with the {ctx.get_start_method()!r} start method "
                            f"must pickle the dataset and functions, which failed: {error}; define them at "
                            "module level, or pass multiprocessing_context='fork'") from None
                    raise
                writer.close()  # the worker holds the only writing end: EOF when it dies
                self.processes.append(p)
        except BaseException:
            self.shutdown()
            raise

    def alive(self) -> bool:
        return self._finalizer.alive and all(p.is_alive() for p in self.processes)

    def shutdown(self) -> None:
        self._finalizer()


class _MultiProcessIterator:
    """One epoch made by worker processes, delivered in order."""

    def __init__(self, loader, serial, units, remaining, pool):
        self._loader = loader
        self._serial = serial
        self._remaining = remaining
        self._pool = pool
        pool.epoch += 1
        self._epoch = pool.epoch
        self._units = units
        self._iterable = loader._iterable
        n = pool.num_workers
        self._active = [True] * n  # an iterable dataset's worker turns inactive at its stream's end
        self._next_worker = 0
        self._sent = 0
        self._received = 0  # next task to hand out, in order
        self._owner = {}  # outstanding task -> worker
        self._results = {}  # task -> (kind, data), arrived early
        self._exhausted = remaining == 0
        self._closed = False
        for _ in range(loader.prefetch_factor * n):
            if not self._dispatch():
                break

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader) if self._remaining is None else self._remaining

    def _dispatch(self) -> bool:
        if self._exhausted:
            return False
        if self._iterable:
            unit = None
        else:
            try:
                unit = next(self._units)
            except StopIteration:
                self._exhausted = True
                return False
        n = len(self._active)
        for _ in range(n):
            wid = self._next_worker
            self._next_worker = (wid + 1) % n
            if self._active[wid]:
                break
        else:
            self._exhausted = True
            return False
        self._pool.index_queues[wid].put((self._epoch, self._sent, unit))
        self._owner[self._sent] = wid
        self._sent += 1
        return True

    def __next__(self):
        if self._closed:
            raise StopIteration
        if self._pool.epoch != self._epoch:
            self._closed = True
            raise RuntimeError("DataLoader: this iterator's persistent workers have moved on to a newer "
                               "iter() of the loader; iterate one epoch at a time")
        try:
            while True:
                if self._received == self._sent:
                    self._finish()
                    raise StopIteration
                if self._received not in self._results:
                    self._receive()
                    continue
                kind, data = self._results.pop(self._received)
                wid = self._owner.pop(self._received)
                self._received += 1
                if kind == "end":
                    self._active[wid] = False
                    continue
                if kind == "error":
                    self._raise_worker_error(wid, *data)
                self._dispatch()
                break
        except BaseException:
            self.close()
            raise
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining == 0:
                self._finish()
            self._loader._advance(self._serial, finished=self._remaining == 0)
        return data

    def _receive(self) -> None:
        """Wait for one message from any worker; raise if a worker died or time ran out."""
        pool = self._pool
        timeout = self._loader.timeout
        deadline = time.monotonic() + timeout if timeout else None
        readers = pool.readers
        sentinels = {p.sentinel: wid for wid, p in enumerate(pool.processes)}
        while True:
            wait = WORKER_CHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            ready = multiprocessing.connection.wait(readers + list(sentinels), wait)
            for r in ready:
                if r in sentinels:
                    continue
                try:
                    epoch, task, kind, data = r.recv()
                except (EOFError, OSError):
                    continue  # the worker is gone; its sentinel says how
                if epoch != self._epoch:  # left over from an abandoned epoch (persistent workers)
                    if kind == "batch":
                        _worker.discard_batch(data)
                    continue
                if kind == "batch":
                    data = _worker.unpack_batch(data)
                self._results[task] = (kind, data)
                return
            for p in pool.processes:
                if not p.is_alive():
                    hint = ""
                    if pool.start_method == "fork" and _numba_openmp_running():
                        hint = ("; Numba's OpenMP threads ran in this process before the fork and a "
                                "forked child that starts a parallel region is killed: use "
                                "multiprocessing_context='forkserver'")
                    raise RuntimeError(f"DataLoader worker {pool.processes.index(p)} (pid {p.pid}) "
                                       f"exited unexpectedly ({_exit_reason(p.exitcode)}){hint}")
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {timeout:g} seconds waiting for a batch "
                                   "from its workers")

    def _raise_worker_error(self, wid, exc_type, text):
        name = exc_type.__name__ if exc_type is not None else "an exception"
        message = f"Caught {name} in DataLoader worker process {wid}.\nOriginal {text}"
        error = None
        if exc_type is not None:
            if issubclass(exc_type, KeyError):  # KeyError prints its argument's repr: keep the lines
                message = _VerbatimMessage(message)
            try:
                error = exc_type(message)
            except Exception:  # noqa: BLE001 - its constructor wants other arguments
                error = None
        raise error if isinstance(error, BaseException) else RuntimeError(message)

    def _finish(self) -> None:
        self._closed = True
        self._remaining = 0
        if not self._loader.persistent_workers:
            self._pool.shutdown()

    def close(self) -> None:
        """Stop early: stop the workers (unless persistent); the iterator then yields nothing."""
        if not self._closed:
            self._finish()

    def __del__(self):
        self.close()


class _VerbatimMessage(str):
    """A message whose repr is itself, so a KeyError shows the worker's traceback as lines."""

    def __repr__(self):
        return str(self)


def _exit_reason(code) -> str:
    if code is not None and code < 0:
        try:
            import signal
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
