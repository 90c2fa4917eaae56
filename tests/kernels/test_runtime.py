"""The kernel layer's switches: off switch, lazy Numba import, cache directory, threads."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lamina import kernels as K
from lamina.kernels import _runtime


def _run(code, env_extra=None, tmp_path=None):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_set_enabled_switches_every_kernel_off():
    x = np.ones((4, 8), np.float32)
    previous = K.set_enabled(False)
    try:
        assert not K.enabled()
        assert K.gelu_forward(x) is None and K.softmax_forward(x) is None
        assert K.layer_norm_forward(x, 8) is None and K.conv2d_forward(x[None, None], np.ones((1, 1, 2, 2), np.float32)) is None
        assert not K.adam_update(x[0].copy(), x[0], x[0].copy(), x[0].copy(), None, 1, 1e-3)
        assert K.warmup() == {}
    finally:
        K.set_enabled(previous)
    assert K.enabled() and K.gelu_forward(x) is not None
    with pytest.raises(TypeError, match="set_enabled"):
        K.set_enabled(1)


def test_environment_switch_and_lazy_numba_import(tmp_path):
    out = _run("""
        import sys
        import lamina, lamina.kernels as K
        import numpy as np
        print(K.enabled(), 'numba' in sys.modules, K.gelu_forward(np.ones(3, np.float32)))
    """, {"LAMINA_KERNELS": "0", "LAMINA_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "None"]
    assert not (tmp_path / "numba-cache").exists()


def test_cache_in_lamina_home_loaded_by_a_second_process_and_harmless_when_corrupt(tmp_path):
    code = """
        import sys, numpy as np
        import lamina.kernels as K
        dw = K.embedding_backward(np.array([[-1.0, 2.0]], np.float32), np.array([1]), 2)
        from lamina.kernels import _runtime
        k = _runtime.load('misc')
        print(K.cache_enabled(), K.cache_dir(), sum(k.embedding_backward.stats.cache_hits.values()), dw.tolist())
    """
    env = {"LAMINA_HOME": str(tmp_path)}
    first = _run(code, env)
    assert first.returncode == 0, first.stderr
    enabled, where, hits, _ = first.stdout.split(maxsplit=3)
    assert enabled == "True" and where.startswith(str(tmp_path / "numba-cache")) and hits == "0"
    assert any(p.suffix == ".nbi" for p in (tmp_path / "numba-cache").rglob("*"))
    second = _run(code, env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split()[2] == "1"  # loaded from disk, not compiled
    assert "compiling" not in second.stderr
    for f in (tmp_path / "numba-cache").rglob("*.nb*"):
        f.write_bytes(b"garbage")  # corrupt index and data files: compiled again, no error
    third = _run(code, env)
    assert third.returncode == 0, third.stderr
    assert third.stdout.split(maxsplit=3)[3].strip() == "[[0.0, 0.0], [-1.0, 2.0]]"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache_dir_compiles_in_memory(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    try:
        out = _run("""
            import numpy as np, lamina.kernels as K
            print(K.cache_enabled(), K.embedding_backward(np.array([[-1.0, 2.0]], np.float32), np.array([1]), 2).tolist())
        """, {"LAMINA_HOME": str(home)})
    finally:
        home.chmod(0o700)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "[[0.0,", "0.0],", "[-1.0,", "2.0]]"]


def test_unwritable_cache_dir_as_root_or_user(tmp_path):
    """A path under a regular file can never be created, whoever runs the test."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = _run("""
        import numpy as np, lamina.kernels as K
        print(K.cache_enabled(), K.embedding_backward(np.array([[-1.0, 2.0]], np.float32), np.array([1]), 2).tolist())
    """, {"NUMBA_CACHE_DIR": str(blocker / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "[[0.0,", "0.0],", "[-1.0,", "2.0]]"]
    assert "not cached" in out.stderr or "compiling" not in out.stderr


def test_compile_notice_is_one_line_once():
    notice = _runtime._CompileNotice()
    assert notice.message().startswith("lamina: compiling CPU kernels (once; ")


def test_parts_run_in_threads_and_in_order(monkeypatch):
    """Two parts wait for each other, so they must run at once on two threads; results come
    back in the parts' order whoever ran them."""
    import threading
    monkeypatch.setattr(_runtime, "_threads", 2)
    meet = threading.Barrier(2, timeout=30)

    def part(i):
        if i < 2:
            meet.wait()
        return i, threading.get_ident()
    seen = _runtime.run_parts(part, [(i,) for i in range(5)])
    assert [i for i, _ in seen] == list(range(5))
    assert len({t for _, t in seen}) == 2 and threading.get_ident() in {t for _, t in seen}


def test_parts_error_reaches_the_caller_after_every_part_ran(monkeypatch):
    monkeypatch.setattr(_runtime, "_threads", 2)
    ran = []

    def part(i):
        ran.append(i)
        if i == 1:
            raise ArithmeticError("part 1")
        return i
    with pytest.raises(ArithmeticError, match="part 1"):
        _runtime.run_parts(part, [(i,) for i in range(6)])
    assert sorted(ran) == list(range(6))
    assert _runtime.run_parts(lambda i: i * i, [(i,) for i in range(4)]) == [0, 1, 4, 9]  # still works


def test_spin_to_sees_another_threads_write():
    import threading
    import time
    sync = _runtime.load("sync")
    flag = np.zeros(1, np.int64)
    assert sync.spin_to(flag, 1, 100) == 0  # nothing changed: gives up after its rounds
    timer = threading.Timer(0.05, lambda: flag.__setitem__(0, 7))
    timer.start()
    t = time.perf_counter()
    assert sync.spin_to(flag, 1, 1 << 40) == 7
    assert time.perf_counter() - t < 20
    timer.join()


def test_threads(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits
    before = _runtime._threads
    try:
        K.set_num_threads(1)
        assert K.get_num_threads() == 1
        assert _runtime.threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    finally:
        _runtime._threads = before
        threadpool_limits(1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="set_num_threads"):
            K.set_num_threads(bad)


def test_warmup_compiles_a_family():
    times = K.warmup(families=("optim",), dtypes=("float32",))
    assert set(times) == {"optim"} and times["optim"] >= 0
    with pytest.raises(ValueError, match="unknown kernel families"):
        K.warmup(families=("fft",))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_split_kernels_work_in_a_forked_child():
    """Data-loader workers fork: a child must get its own thread pool, not the parent's dead one."""
    from lamina.kernels import _checks
    x = np.linspace(-3, 3, 1001).astype(np.float32)
    previous = _checks.force_parts
    _checks.force_parts = 2
    try:
        expected = K.relu_forward(x)  # the parent's pool now exists
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report and leave without running the parent's cleanup
            ok = np.array_equal(K.relu_forward(x), expected)
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.read(r, 1) == b"1" and status == 0
        os.close(r)
    finally:
        _checks.force_parts = previous


def test_single_thread_blas_stays_until_set_num_threads_or_kernels_off(monkeypatch):
    """Split parts put BLAS on one thread and leave it there (no set and restore per call);
    set_num_threads gives BLAS the new count, and switching kernels off gives back the count
    BLAS had."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401 - its BLAS is the one to control

    def blas():
        return {c.get_num_threads() for c in _runtime._blas_controllers()}
    if not blas():
        pytest.skip("no BLAS library that threadpoolctl can control")
    previous_threads = _runtime._threads
    try:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            _runtime.single_thread_blas()
            assert blas() == {1}
            _runtime.single_thread_blas()  # already there: nothing changes
            assert blas() == {1}
            _runtime.restore_blas()
            assert blas() == {2}
            _runtime.single_thread_blas()
            _runtime.set_num_threads(2)    # an explicit count replaces what was saved
            assert blas() == {2}
            _runtime.single_thread_blas()
            monkeypatch.setattr(_runtime, "_enabled", True)
            _runtime.set_enabled(False)
            assert blas() == {2}
            _runtime.restore_blas()        # nothing left to restore
            assert blas() == {2}
    finally:
        _runtime._threads = previous_threads
        _runtime.restore_blas()


def test_parts_hand_over_without_losing_a_call(monkeypatch):
    """Many calls in a row, some whose helper part outlasts the calling thread's spin (so the
    caller sleeps until the helper wakes it), some the caller finishes alone, some from a second
    calling thread: every call returns its own results, and none hangs."""
    import threading
    import time
    monkeypatch.setattr(_runtime, "_threads", 2)
    errors = []

    def part(i, delay):
        if delay:
            time.sleep(delay)
        return i * i

    def calls(offset, rounds):
        try:
            for r in range(rounds):
                slow = 2 * _runtime.SPIN_S if r % 50 == 0 else 0.0
                n = 1 + r % 4
                got = _runtime.run_parts(part, [(offset + i, slow if i == n - 1 else 0.0) for i in range(n)])
                if got != [(offset + i) ** 2 for i in range(n)]:
                    errors.append((offset, r, got))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=calls, args=(k * 1000, 400), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call never returned"
    assert errors == []


def test_helper_state_slots_match_the_compiled_waits():
    sync = _runtime.load("sync")
    state = np.zeros(24, np.int64)
    assert (_runtime._POSTED, _runtime._ENTERED, _runtime._DONE) == (sync.POSTED, sync.ENTERED, sync.DONE)
    assert sync.wait_post(state, 0, 10, 1, 5) == 0 and state[sync.DONE] == 5  # publishes, then gives up
    state[sync.POSTED] = 3
    state[sync.ENTERED] = 3
    assert sync.wait_post(state, 2, 10, 1, 0) == 3
    assert sync.spin_to(state[sync.DONE:], 5, 10) == 5 and sync.spin_to(state[sync.DONE:], 6, 10) == 5


def test_parallel_weighs_the_work_by_its_cost(monkeypatch, part_counts):
    """Elements are weighed by their cost (relative to a pass that only moves memory): an exact
    GELU splits from an eighth of the size at which a ReLU does; one thread never splits."""
    from lamina.kernels import _checks, activation
    monkeypatch.setattr(_runtime, "_threads", 2)
    monkeypatch.setattr(_checks, "force_parts", None)
    n = _checks.PARALLEL_MIN // 4
    assert _checks.parallel(n) == 1 and _checks.parallel(n, 4) >= 2
    assert _checks.parallel(_checks.PARALLEL_MIN) >= 2
    calls = part_counts
    x = np.linspace(-3, 3, n).astype(np.float32)
    split = K.gelu_forward(x)
    K.relu_forward(x)
    assert calls[0] >= 2 and calls[1] == 1 and activation.COST["gelu"] > activation.COST["relu"]
    monkeypatch.setattr(_checks, "force_parts", 1)
    np.testing.assert_array_equal(split, K.gelu_forward(x))  # the parts change nothing
    monkeypatch.setattr(_runtime, "_threads", 1)
    assert _checks.parallel(10 * _checks.PARALLEL_MIN, 8) == 1
