"""DataLoader with worker processes: order, shared-memory batches, seeding, iterable datasets,
persistent workers, errors, dead workers, timeouts, and that no worker outlives its loader."""
import functools
import gc
import glob
import mmap
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lamina
from lamina.data import loader as loader_module
from lamina.multiprocessing.shared_memory import shm_dir
from lamina.utils.data import (
    BatchSampler,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
    get_worker_info,
)
from lamina.utils.data import DataLoader as _DataLoader

# Fork explicitly: the default turns to forkserver once Numba's OpenMP pool runs in this process
# (other test files run kernels), and some tests here use functions that cannot be pickled. The
# default's choice has its own test in a fresh process below.
DataLoader = functools.partial(_DataLoader, multiprocessing_context="fork")


class Numbered(Dataset):
    """Sample i is {"x": [i, i] float32, "y": i}."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float32), "y": i}


class WhoAmI(Dataset):
    """Sample i says which worker made it, with what seed, and what its seeded generators give."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return np.array([info.id, info.num_workers, info.seed, os.getpid(),
                         np.random.randint(2**31), int(random.random() * 2**31),
                         int(lamina.randint(0, 2**31, (1,)).item())], dtype=np.int64)


class Failing(Dataset):
    def __init__(self, n, fail_at, how="raise"):
        self.n, self.fail_at, self.how = n, fail_at, how

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            if self.how == "raise":
                raise KeyError(f"broken sample {i}")
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "exit":
                os._exit(3)
            if self.how == "sleep":
                time.sleep(3)
        return np.array([i])


class Range(IterableDataset):
    """The numbers in [0, n); sharded across workers when ``shard``."""

    def __init__(self, n, shard=True):
        self.n, self.shard = n, shard

    def __iter__(self):
        info = get_worker_info()
        if info is None or not self.shard:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))

    def __len__(self):
        return self.n


class Big(Dataset):
    """Samples of 40 KB, so that a batch travels through shared memory."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return np.full((100, 100), i, np.float32), i


def ys(loader):
    return [b["y"].numpy().tolist() for b in loader]


def worker_children():
    return [p for p in multiprocessing.active_children() if p.name.startswith("lamina-data-worker")]


def leftover_files():
    """Batch files of this process's loaders (other processes may be running loaders too)."""
    return glob.glob(os.path.join(shm_dir(), f"lamina-dl-{os.getpid()}-*"))


@pytest.fixture(autouse=True)
def _no_leftovers():
    before = set(leftover_files())
    yield
    gc.collect()
    assert worker_children() == []
    assert set(leftover_files()) <= before


@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_order_and_values_match_num_workers_0(num_workers):
    expected = ys(DataLoader(Numbered(11), batch_size=3))
    loader = DataLoader(Numbered(11), batch_size=3, num_workers=num_workers)
    batches = list(loader)
    assert [b["y"].numpy().tolist() for b in batches] == expected == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert batches[1]["x"].dtype == lamina.float32 and batches[1]["x"].numpy()[2].tolist() == [5, 5]
    assert len(loader) == 4


def test_shuffle_order_does_not_depend_on_num_workers():
    def epochs(num_workers):
        loader = DataLoader(Numbered(20), batch_size=4, shuffle=True, num_workers=num_workers,
                            generator=lamina.Generator(seed=5))
        return ys(loader), ys(loader)

    assert epochs(0) == epochs(2)
    assert epochs(0)[0] != epochs(0)[1]


def test_large_batches_arrive_through_shared_memory():
    x, y = next(iter(DataLoader(Big(), batch_size=3, num_workers=1)))
    assert x.shape == (3, 100, 100) and y.numpy().tolist() == [0, 1, 2]
    base = x.numpy().base
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, mmap.mmap)  # a view of the worker's shared-memory file
    x.numpy()[0, 0, 0] = 7  # writable, like any batch


def test_small_batches_can_be_forced_through_shared_memory(monkeypatch):
    monkeypatch.setattr(loader_module, "SHM_MIN_BYTES", 0)
    assert ys(DataLoader(Numbered(5), batch_size=2, num_workers=2)) == [[0, 1], [2, 3], [4]]


def test_getitems_fast_path_and_tensor_dataset_in_workers():
    ds = TensorDataset(lamina.tensor(np.arange(10, dtype=np.float32)), lamina.tensor(np.arange(10)))
    out = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert [b[1].numpy().tolist() for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert out[0][0].dtype == lamina.float32


def test_worker_info_and_seeds_follow_pytorch():
    assert get_worker_info() is None
    seen = []

    def init(worker_id):
        seen.append(worker_id)  # runs in the worker; the list there is the worker's copy
        np.random.seed(1000 + worker_id)

    def run(seed, init_fn=None):
        loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2, generator=lamina.Generator(seed=seed),
                            worker_init_fn=init_fn)
        return np.concatenate([b.numpy() for b in loader])

    rows = run(1)
    ids, counts, seeds, pids = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    assert ids.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]  # batches go round-robin to the workers
    assert set(counts.tolist()) == {2}
    base = seeds[0]
    assert (seeds == base + ids).all()
    assert len(set(pids.tolist())) == 2 and os.getpid() not in pids.tolist()
    # Every generator is seeded per worker: the same loader seed repeats the draws, and the two
    # workers' draws differ.
    assert (run(1)[:, 4:] == rows[:, 4:]).all()
    assert not (run(2)[:, 4:] == rows[:, 4:]).all()
    assert rows[0, 4] != rows[2, 4] and rows[0, 5] != rows[2, 5] and rows[0, 6] != rows[2, 6]
    # worker_init_fn runs after the seeding, so its choice wins
    with_init = run(1, init)
    assert with_init[0, 4] == np.random.RandomState(1000).randint(2**31)
    assert seen == []  # it ran in the workers, not here


@pytest.mark.parametrize("num_workers", [0, 1, 2, 3])
def test_iterable_dataset_sharded_by_worker_info(num_workers):
    loader = DataLoader(Range(10), batch_size=2, num_workers=num_workers)
    batches = [b.numpy().tolist() for b in loader]
    assert sorted(sum(batches, [])) == list(range(10))
    if num_workers == 2:
        assert batches == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]


def test_iterable_dataset_without_sharding_repeats_per_worker_and_drop_last_per_worker():
    batches = [b.numpy().tolist() for b in DataLoader(Range(5, shard=False), batch_size=2, num_workers=2)]
    assert sorted(sum(batches, [])) == sorted(list(range(5)) * 2)
    dropped = [b.numpy().tolist() for b in DataLoader(Range(10), batch_size=2, num_workers=2, drop_last=True)]
    assert dropped == [[0, 2], [1, 3], [4, 6], [5, 7]]
    unbatched = list(DataLoader(Range(4), batch_size=None, num_workers=2))
    assert unbatched == [0, 1, 2, 3]


def test_persistent_workers_are_reused_and_restart_their_streams():
    def pids(loader):
        return {int(p) for b in loader for p in b[:, 3].numpy()}

    loader = DataLoader(WhoAmI(), batch_size=2, num_workers=2, persistent_workers=True)
    first = pids(loader)
    assert pids(loader) == first and len(worker_children()) == 2
    fresh = DataLoader(WhoAmI(), batch_size=2, num_workers=2)
    assert pids(fresh).isdisjoint(pids(fresh)) and worker_children() == [p for p in worker_children()
                                                                          if p.pid in first]
    stream = DataLoader(Range(6), batch_size=2, num_workers=2, persistent_workers=True)
    assert [b.numpy().tolist() for b in stream] == [b.numpy().tolist() for b in stream] == [[0, 2], [1, 3], [4], [5]]
    # an epoch abandoned half-way: the next one starts clean
    it = iter(loader)
    next(it)
    del it
    assert len(list(loader)) == 4
    old = iter(loader)
    newer = iter(loader)
    with pytest.raises(RuntimeError, match="persistent workers have moved on to a newer iter"):
        next(old)
    assert len(list(newer)) == 4
    del loader, stream, old, newer
    gc.collect()


def test_samplers_and_batch_samplers_with_workers():
    weighted = WeightedRandomSampler([0, 1, 0, 1, 0, 0], num_samples=8, generator=lamina.Generator(seed=0))
    drawn = sum(ys(DataLoader(Numbered(6), batch_size=4, sampler=weighted, num_workers=2)), [])
    assert len(drawn) == 8 and set(drawn) <= {1, 3}
    batches = BatchSampler(SequentialSampler(range(7)), 3, drop_last=True)
    assert ys(DataLoader(Numbered(7), batch_sampler=batches, num_workers=2)) == [[0, 1, 2], [3, 4, 5]]
    assert [b["y"] for b in DataLoader(Numbered(3), batch_size=None, num_workers=2)] == [0, 1, 2]


@pytest.mark.parametrize("stop_after", [0, 2])
def test_state_dict_resume_with_workers(stop_after):
    def make():
        return DataLoader(Numbered(13), batch_size=3, shuffle=True, num_workers=2,
                          generator=lamina.Generator(seed=3))

    reference = make()
    full = [ys(reference) for _ in range(2)]
    loader = make()
    ys(loader)
    it = iter(loader)
    seen = [next(it)["y"].numpy().tolist() for _ in range(stop_after)]
    state = loader.state_dict()
    del it
    resumed = make()
    resumed.load_state_dict(state)
    assert seen + ys(resumed) == full[1]


def test_worker_exception_is_raised_with_the_worker_traceback():
    loader = DataLoader(Failing(10, fail_at=5), batch_size=2, num_workers=2)
    got = []
    with pytest.raises(KeyError) as info:
        for batch in loader:
            got.append(batch.numpy().ravel().tolist())
    assert got == [[0, 1], [2, 3]]
    text = str(info.value)
    assert text.startswith("Caught KeyError in DataLoader worker process 0.\nOriginal Traceback")  # lines, not a repr
    assert "Traceback (most recent call last)" in text and "broken sample 5" in text
    assert "__getitem__" in text  # the worker's own frames


def test_worker_init_fn_exception_is_reported():
    def broken_init(worker_id):
        raise ValueError(f"cannot initialise worker {worker_id}")

    with pytest.raises(ValueError, match="cannot initialise worker 0"):
        list(DataLoader(Numbered(4), num_workers=1, worker_init_fn=broken_init))


@pytest.mark.parametrize("how, reason", [("kill", "killed by signal SIGKILL"), ("exit", "exit code 3")])
def test_dead_worker_is_detected_not_waited_for(how, reason):
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"DataLoader worker 1 \(pid \d+\) exited unexpectedly \({reason}\)"):
        list(DataLoader(Failing(8, fail_at=3, how=how), batch_size=1, num_workers=2))
    assert time.monotonic() - start < 5


def test_timeout():
    loader = DataLoader(Failing(4, fail_at=0, how="sleep"), num_workers=1, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.3 seconds"):
        next(iter(loader))
    assert time.monotonic() - start < 2.5


def test_workers_stop_on_early_break_close_and_collection():
    loader = DataLoader(Numbered(100), batch_size=2, num_workers=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    gc.collect()
    assert worker_children() == []
    it = iter(loader)
    next(it)
    assert len(worker_children()) == 2
    it.close()
    assert worker_children() == [] and list(it) == []


def test_other_start_methods_and_unpicklable_datasets():
    loader = DataLoader(Numbered(5), batch_size=2, num_workers=1, multiprocessing_context="forkserver")
    assert ys(loader) == [[0, 1], [2, 3], [4]]

    class Local(Numbered):
        pass

    with pytest.raises(TypeError, match="DataLoader: num_workers=1 with the 'spawn' start method must pickle"):
        iter(DataLoader(Local(3), num_workers=1, multiprocessing_context="spawn"))


def test_bad_worker_arguments():
    with pytest.raises(ValueError, match="DataLoader: num_workers must be an int >= 0, got -1"):
        DataLoader(Numbered(3), num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor=2 needs num_workers > 0"):
        DataLoader(Numbered(3), prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers=True needs num_workers > 0"):
        DataLoader(Numbered(3), persistent_workers=True)
    with pytest.raises(ValueError, match="timeout=1 needs num_workers > 0"):
        DataLoader(Numbered(3), timeout=1)
    with pytest.raises(ValueError, match="multiprocessing_context='nope' is not a start method"):
        DataLoader(Numbered(3), num_workers=1, multiprocessing_context="nope")
    with pytest.raises(ValueError, match="sampler and shuffle=True exclude each other"):
        DataLoader(Numbered(3), shuffle=True, sampler=[0, 1])
    with pytest.raises(ValueError, match="batch_sampler excludes batch_size"):
        DataLoader(Numbered(3), batch_size=2, batch_sampler=[[0]])
    with pytest.raises(ValueError, match="shuffle cannot be used with an IterableDataset"):
        DataLoader(Range(3), shuffle=True)
    assert DataLoader(Numbered(3), pin_memory=True, num_workers=1).pin_memory  # accepted, a no-op


# ---------------------------------------------------------------- no orphans (separate processes)
def _run_loader_process(tmp_path, mode, method):
    script = tmp_path / "run_loader.py"
    script.write_text(textwrap.dedent(f"""
        import faulthandler, multiprocessing, signal, sys, time
        import numpy as np
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks on a hang
        from lamina.utils.data import DataLoader, Dataset

        class Slow(Dataset):
            def __len__(self):
                return 10**6

            def __getitem__(self, i):
                if {mode!r} == "crash" and i == 40:
                    raise ValueError("crash in the worker")
                time.sleep(0.005)
                return np.array([i])

        if __name__ == "__main__":
            loader = DataLoader(Slow(), batch_size=2, num_workers=2, multiprocessing_context={method!r})
            for i, batch in enumerate(loader):
                if i == 0:
                    kids = [p.pid for p in multiprocessing.active_children()]
                    print(" ".join(map(str, kids)), flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    kids = [int(p) for p in proc.stdout.readline().split()]
    return proc, kids


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def _communicate(proc, kids, seconds=20):
    """``proc.communicate`` that, when the process hangs, fails with its threads' stacks and its
    workers' states instead of a bare timeout."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        states = {}
        for pid in kids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    states[pid] = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                states[pid] = "gone"
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the loader process hung for {seconds} s; workers {states}; stderr:\n{err}")


def _wait_gone(pids, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


def test_ctrl_c_in_the_main_process_leaves_no_worker(tmp_path):
    proc, kids = _run_loader_process(tmp_path, "run", "fork")
    try:
        assert len(kids) >= 2
        proc.send_signal(signal.SIGINT)
        _, err = _communicate(proc, kids)
        assert "KeyboardInterrupt" in err and proc.returncode != 0
        assert _wait_gone(kids) == []
    finally:
        proc.kill()


def test_crashing_worker_ends_the_program_with_its_traceback_and_no_orphans(tmp_path):
    proc, kids = _run_loader_process(tmp_path, "crash", "fork")
    try:
        _, err = _communicate(proc, kids)
        assert proc.returncode == 1
        assert "ValueError: Caught ValueError in DataLoader worker process" in err
        assert "crash in the worker" in err
        assert _wait_gone(kids) == []
    finally:
        proc.kill()


def test_killed_main_process_leaves_no_worker(tmp_path):
    proc, kids = _run_loader_process(tmp_path, "run", "fork")
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_gone(kids) == []  # the workers notice their parent is gone
    finally:
        proc.kill()


class Unsized:
    """A sampler without __len__, as PyTorch allows."""

    def __iter__(self):
        return iter([4, 0, 2])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_sampler_without_len(num_workers):
    loader = DataLoader(Numbered(5), batch_size=2, sampler=Unsized(), num_workers=num_workers)
    assert ys(loader) == [[4, 0], [2]]
    with pytest.raises(TypeError):
        len(loader)


def test_workers_forked_after_openmp_started_run_kernels_off(tmp_path):
    script = tmp_path / "omp_then_loader.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from numba import njit, prange
        from lamina import kernels
        from lamina.utils.data import DataLoader, Dataset

        @njit(parallel=True, cache=True)
        def total(a):
            s = 0.0
            for i in prange(a.shape[0]):
                s += a[i]
            return s

        class Probe(Dataset):
            def __len__(self):
                return 2

            def __getitem__(self, i):
                return kernels.enabled()

        if __name__ == "__main__":
            loader = DataLoader(Probe(), batch_size=2, num_workers=1, timeout=60)
            before = next(iter(loader)).numpy().tolist()
            total(np.ones(10))  # Numba's thread pool starts in this process
            import numba
            print(loader._worker_context().get_start_method(), numba.threading_layer(), kernels.enabled(),
                  before, next(iter(loader)).numpy().tolist())
    """))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    method, layer, main_kernels, rest = out.stdout.split(maxsplit=3)
    assert method == "fork"
    before = f"[{main_kernels}, {main_kernels}]"  # as in the main process (True unless LAMINA_KERNELS=0)
    after = "[False, False]" if layer == "omp" else before
    assert rest.strip() == f"{before} {after}"


class Mixed(Dataset):
    """Samples as PyTorch programs make them: tuples of an array, an int label, a float and a name."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.full((2, 2), i, np.float32), i, i / 2, f"item{i}"


@pytest.mark.parametrize("batch_size", [2, None])
def test_batches_have_pytorchs_structure(batch_size):
    import torch
    import torch.utils.data as tud
    from tests.data.test_dataset import _like_torch

    ours = list(DataLoader(Mixed(), batch_size=batch_size, num_workers=2))
    theirs = list(tud.DataLoader(Mixed(), batch_size=batch_size))
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        _like_torch(a, b)
    assert isinstance(theirs[0], list) and torch.is_tensor(theirs[0][0])  # tuples come back as lists
