"""The kernel layer's switches and machinery: whether kernels run, where Numba's on-disk cache
lives, loading the compiled modules (and importing Numba) on first use, the one-line compile
notice, the thread count shared by the kernels and BLAS, and the pool of threads that runs
parts of a large kernel call at once.

Nothing here imports Numba at module import: importing it costs 0.2-0.4 s, and a process that
never runs a kernel (kernels off, GPU only, a quick CLI command) should not pay that.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

_OFF_VALUES = ("0", "false", "off", "no")

_enabled = os.environ.get("LAMINA_KERNELS", "1").strip().lower() not in _OFF_VALUES
_numba_found = None      # whether Numba can be imported, decided once
_numba = None            # the numba module once loaded
_cache = None            # (use the on-disk cache?, its directory, why not) decided before Numba loads
_modules: dict = {}      # name -> loaded module of lamina.kernels.compiled
_threads = None          # thread count set by set_num_threads (None: the usable cores)
_lock = threading.RLock()

# How long compiling may take, in total, before the one-line notice is printed.
NOTICE_AFTER_S = 1.0


def enabled() -> bool:
    """Whether compiled kernels run: on unless ``LAMINA_KERNELS=0`` or ``set_enabled(False)``, and
    only when Numba is installed."""
    global _numba_found
    if not _enabled:
        return False
    if _numba_found is None:
        _numba_found = importlib.util.find_spec("numba") is not None
    return _numba_found


def set_enabled(on: bool) -> bool:
    """Switch the kernels on or off for this process; returns the previous setting. With kernels
    off every kernel function returns None and the ops take their NumPy path."""
    global _enabled
    if not isinstance(on, bool):
        raise TypeError(f"lamina.kernels.set_enabled: expected a bool, got {type(on).__name__}")
    previous, _enabled = _enabled, on
    if not on:
        restore_blas()  # NumPy's products get BLAS's own threads back
    return previous


def lamina_home() -> Path:
    """``$LAMINA_HOME``, by default ``~/.cache/lamina`` (the same rule as ``lamina.data``)."""
    return Path(os.environ.get("LAMINA_HOME") or "~/.cache/lamina").expanduser()


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def source_stamp() -> str:
    """A hash of the compiled kernels' sources. Numba checks only the timestamp of the file
    that defines a kernel, not of the helpers it inlines from other files (``scalar.py``), so
    the cache lives in a directory named by this hash: any change to any kernel source starts
    a fresh cache instead of loading stale code."""
    import hashlib
    digest = hashlib.sha256()
    for f in sorted((Path(__file__).parent / "compiled").glob("*.py")):
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _decide_cache():
    """Pick the cache directory: ``NUMBA_CACHE_DIR`` when the user set it, else
    ``$LAMINA_HOME/numba-cache/<source stamp>``. A directory that cannot be written turns
    caching off (kernels then compile in memory in every process) instead of failing or writing
    next to the sources."""
    global _cache
    if _cache is not None:
        return _cache
    user = os.environ.get("NUMBA_CACHE_DIR")
    path = Path(user).expanduser() if user else lamina_home() / "numba-cache" / source_stamp()
    if _writable(path):
        if not user:
            os.environ["NUMBA_CACHE_DIR"] = str(path)
            numba = sys.modules.get("numba")
            if numba is not None and not numba.config.CACHE_DIR:
                # Numba was imported before us: its config already read the environment
                numba.config.CACHE_DIR = str(path)
        _cache = (True, path, "")
    else:
        _cache = (False, path, f"{path} is not writable")
    return _cache


def cache_enabled() -> bool:
    """Whether compiled kernels are written to (and loaded from) the on-disk cache."""
    return _decide_cache()[0]


def cache_dir() -> Path:
    """The directory of the on-disk kernel cache (which may be unusable: see ``cache_enabled``)."""
    return _decide_cache()[1]


class _CompileNotice:
    """Prints one line to stderr once the kernels' compile time in this process passes
    ``NOTICE_AFTER_S``, so a cold start says why it is slow; loads from the cache stay silent
    (Numba raises its compile event only for real compilations)."""

    def __init__(self):
        self.spent = 0.0
        self.depth = 0
        self.started = 0.0
        self.timer = None
        self.printed = False

    def message(self) -> str:
        use, path, why = _decide_cache()
        where = f"cached in {path}" if use else f"not cached: {why}"
        return f"lamina: compiling CPU kernels (once; {where})"

    def _fire(self):
        if not self.printed:
            self.printed = True
            print(self.message(), file=sys.stderr, flush=True)

    def on_start(self, event):
        dispatcher = event.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("lamina.kernels"):
            return
        self.depth += 1
        if self.depth == 1:
            self.started = time.perf_counter()
            if not self.printed:
                self.timer = threading.Timer(max(0.0, NOTICE_AFTER_S - self.spent), self._fire)
                self.timer.daemon = True
                self.timer.start()

    def on_end(self, event):
        dispatcher = event.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("lamina.kernels") or self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            self.spent += time.perf_counter() - self.started
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None


notice = _CompileNotice()


def _load_numba():
    global _numba
    if _numba is None:
        _decide_cache()
        import numba
        from numba.core import event

        class _Listener(event.Listener):
            def on_start(self, ev):
                notice.on_start(ev)

            def on_end(self, ev):
                notice.on_end(ev)

        event.register("numba:compile", _Listener())
        _numba = numba
    return _numba


def load(name: str):
    """The compiled module ``lamina.kernels.compiled.<name>``, importing Numba first if needed.
    Its kernels compile (or load from the cache) on their first call."""
    module = _modules.get(name)
    if module is None:
        with _lock:
            module = _modules.get(name)
            if module is None:
                _load_numba()
                module = importlib.import_module(f"lamina.kernels.compiled.{name}")
                _guard_cache(module)
                _modules[name] = module
    return module


def _guard_cache(module) -> None:
    """Make an unreadable cache entry (truncated, corrupted, written by another build) count as a
    miss, and a failed write a no-op: Numba then compiles in memory instead of raising from deep
    inside its unpickler."""
    from numba.core.dispatcher import Dispatcher

    for value in vars(module).values():
        cache = getattr(value, "_cache", None) if isinstance(value, Dispatcher) else None
        if cache is None or getattr(cache, "_lamina_guarded", False):
            continue
        load, save = cache.load_overload, cache.save_overload

        def guarded_load(sig, target_context, _load=load):
            try:
                return _load(sig, target_context)
            except Exception:
                return None

        def guarded_save(sig, data, _save=save):
            try:
                _save(sig, data)
            except Exception:  # a broken index stays broken: this process keeps its compiled code
                pass
        cache.load_overload, cache.save_overload = guarded_load, guarded_save
        cache._lamina_guarded = True


def default_threads() -> int:
    """``NUMBA_NUM_THREADS`` or ``OMP_NUM_THREADS`` when set (the variables that already bound
    Numba's and BLAS's threads, as PyTorch honours the latter), at most the cores this process may
    run on; else those cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n >= 1:
            return min(n, cores)
    return cores


def threads() -> int:
    """Threads a kernel may split its work over now."""
    return _threads if _threads is not None else default_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels and in BLAS (through threadpoolctl) together. Only BLAS
    libraries are limited: an OpenMP runtime in the process (PyTorch's) keeps its own setting.
    With several threads the kernels run large products on their own threads, each calling BLAS,
    and put BLAS on one thread from the first such call (``single_thread_blas``)."""
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1, got {n!r}")
    from threadpoolctl import threadpool_limits
    _blas_before.clear()
    threadpool_limits(n, user_api="blas")
    _threads = n


_blas_libs = None  # threadpoolctl's controllers of NumPy's BLAS, found once
_blas_before: dict = {}  # filepath -> (controller, its thread count before single_thread_blas)


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS that NumPy calls: the library in NumPy's own
    folder (its wheels bundle one), else every BLAS library loaded; [] without threadpoolctl.
    Other BLAS libraries (SciPy's own copy, say) are never called from the kernels' parts."""
    global _blas_libs
    if _blas_libs is None:
        try:
            import numpy as np
            from threadpoolctl import ThreadpoolController
            found = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            here = os.path.dirname(np.__file__)  # .../numpy; wheels put the library in .../numpy.libs
            own = [c for c in found if c.filepath.startswith((here + os.sep, here + ".libs" + os.sep))]
            _blas_libs = own or found
        except Exception:  # threadpoolctl missing or unable to inspect: leave BLAS alone
            _blas_libs = []
    return _blas_libs


def single_thread_blas() -> None:
    """Put BLAS on one thread for parts that call it, and leave it there.

    Parts running at once on the kernel threads each call BLAS (``lamina.kernels.gemm``, the
    convolutions, attention); with BLAS on several threads OpenBLAS's own workers would compete
    with them for the cores. The count is not set back after each call: setting OpenBLAS's count
    to 1 and back around every split product cost 10-30 us a product here (a 2-part 8 x 8 x 8
    product took 50 against 20 us, a 768 x 128 x 128 one 227 against 180), a few percent of the
    baby GPT's step. ``restore_blas`` (run by ``set_num_threads`` and ``set_enabled(False)``)
    puts back the counts found here. Costs a get per library (under a microsecond) when BLAS is
    on one thread already."""
    for c in _blas_controllers():
        n = c.get_num_threads()
        if n is not None and n != 1:
            _blas_before.setdefault(c.filepath, (c, n))
            c.set_num_threads(1)


def restore_blas() -> None:
    """Give BLAS back the thread counts ``single_thread_blas`` found."""
    while _blas_before:
        _, (c, n) = _blas_before.popitem()
        c.set_num_threads(n)


def get_num_threads() -> int:
    """The thread count set by ``set_num_threads`` (by default the usable cores)."""
    return threads()


# ---------------------------------------------------------------- running parts in threads
# Kernels are compiled serial and release the GIL (nogil); a large call is split into parts that
# run at once on a few helper threads and the calling thread. Compared with Numba's parallel=True
# this compiles each kernel once instead of twice (the parallel lowering is the slow part of
# compiling) and survives fork: a child process starts its own helpers.
#
# The parts are handed out one at a time to whichever thread asks next, so a helper that starts
# late (its core busy with other work) only takes fewer parts. Between calls a helper watches for
# the next one for ``SPIN_S`` without the GIL (``compiled/sync.py``) before it sleeps, and the
# calling thread waits for the helpers' last parts the same way: waking a sleeping thread took
# 0.1-1 ms here, as long as a LeNet-sized kernel call, and made LeNet's training step slower
# with 2 threads than with 1.
#
# A thread that asks for the GIL while another holds it sleeps too, and waking it took 20-50 us
# on a virtual machine: twice per call (a helper starting while the caller still held the GIL, the
# caller resuming while the last helper still held it), 60-90 us on a 1 ms call. So the threads
# take turns: a helper takes the GIL for its first part only once the calling thread has gone into
# its own part (``wait_post``), and the last helper says it is done only after letting the GIL go.
SPIN_S = 0.002
GRACE_S = 5e-6  # from "the caller is entering its part" to the caller's kernel letting the GIL go

_helpers = None


class _Batch:
    """The parts of one call, taken in turn by the threads that drain it."""
    __slots__ = ("fn", "parts", "n", "results", "next", "finished", "error", "seq", "complete")

    def __init__(self, fn, parts):
        self.fn, self.parts, self.n = fn, parts, len(parts)
        self.results = [None] * self.n
        self.next = itertools.count()      # next() is atomic: each part is taken once
        self.finished = itertools.count(1)
        self.error = None
        self.seq = 0                       # set when posted
        self.complete = False              # every part ran (set under the helpers' lock)

    def drain(self, entered=None):
        """Run parts until none is left; True when this thread finished the last one. The calling
        thread passes the helpers' state array and says there that it is entering its parts."""
        last = False
        while True:
            i = next(self.next)
            if entered is not None:
                if entered[_ENTERED] < self.seq:  # (another calling thread may be later already)
                    entered[_ENTERED] = self.seq
                entered = None
            if i >= self.n:
                return last
            try:
                self.results[i] = self.fn(*self.parts[i])
            except BaseException as e:  # noqa: BLE001  (re-raised in the calling thread)
                self.error = e
            if next(self.finished) == self.n:
                last = True


_POSTED, _ENTERED, _DONE = 0, 8, 16  # slots of _Helpers.state (compiled/sync.py)


class _Helpers:
    """Helper threads that drain the posted batch. ``state`` holds, a cache line apart, the last
    batch posted, the last one the calling thread entered and the last one a helper finished."""

    def __init__(self, count):
        import numpy as np
        self.sync = load("sync")
        self.state = np.zeros(24, np.int64)
        self.batch = None
        self.cond = threading.Condition()
        self.sleeping = 0
        self.waiting = 0  # calling threads asleep until their batch is complete
        self.pid = os.getpid()
        probe = np.zeros(1, np.int64)
        self.sync.spin_to(probe, 1, 16)  # compiled (or loaded) before it is timed
        self.sync.wait_post(self.state, 0, 16, 16, 0)
        t = time.perf_counter()
        self.sync.spin_to(probe, 1, 20000)
        per_spin = max(time.perf_counter() - t, 1e-6) / 20000
        self.spins = max(1000, int(SPIN_S / per_spin))
        self.grace = max(1, int(GRACE_S / per_spin))
        self.threads = []
        self.grow(count)

    def grow(self, count):
        while len(self.threads) < count:
            t = threading.Thread(target=self._loop, name=f"lamina-kernel-{len(self.threads)}", daemon=True)
            t.start()
            self.threads.append(t)

    def run(self, batch):
        with self.cond:
            batch.seq = int(self.state[_POSTED]) + 1
            self.batch = batch
            self.state[_POSTED] = batch.seq
            if self.sleeping:
                self.cond.notify_all()
        if batch.drain(self.state):
            batch.complete = True  # the calling thread ran the last part itself
            return
        # a helper runs the last part: watch for its word without the GIL, then sleep
        self.sync.spin_to(self.state[_DONE:], batch.seq, self.spins)
        if not batch.complete:
            with self.cond:
                self.waiting += 1
                while not batch.complete:
                    self.cond.wait()
                self.waiting -= 1

    def _loop(self):
        seen = done = 0
        while True:
            seq = self.sync.wait_post(self.state, seen, self.spins, self.grace, done)
            done = 0
            if seq == seen:
                with self.cond:
                    self.sleeping += 1
                    while self.state[_POSTED] == seen:
                        self.cond.wait()
                    self.sleeping -= 1
                    seq = int(self.state[_POSTED])
            seen = seq
            batch = self.batch
            if batch is not None and batch.drain():
                with self.cond:
                    batch.complete = True
                    if self.waiting:
                        self.cond.notify_all()
                done = batch.seq  # published by the next wait_post, once the GIL is let go


def _helpers_for(count):
    global _helpers
    if _helpers is None or _helpers.pid != os.getpid():
        with _lock:
            if _helpers is None or _helpers.pid != os.getpid():
                _helpers = _Helpers(count)
    if len(_helpers.threads) < count:
        with _lock:
            _helpers.grow(count)
    return _helpers


def run_parts(fn, parts):
    """``[fn(*args) for args in parts]``, the parts running at once on the kernel threads."""
    helpers = min(len(parts), threads()) - 1
    if helpers <= 0:
        return [fn(*args) for args in parts]
    pool = _helpers_for(helpers)
    batch = _Batch(fn, parts)
    pool.run(batch)
    if batch.error is not None:
        raise batch.error
    return batch.results
