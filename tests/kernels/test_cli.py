"""``lamina kernels warmup`` and the thread setting shared by the kernels, BLAS and the CLI."""
import pytest

import lamina
from lamina import kernels
from lamina.cli import main


def test_warmup_command_prints_families_and_cache(capsys):
    assert main(["kernels", "warmup", "--dtype", "float64", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    from lamina.kernels.warmup import FAMILIES
    for family in FAMILIES + ("total",):
        assert any(line.split()[0] == family for line in out.splitlines()), out
    assert f"cache: {kernels.cache_dir()}" in out or "cache: none" in out


def test_warmup_command_rejects_an_unknown_dtype(capsys):
    with pytest.raises(SystemExit):
        main(["kernels", "warmup", "--dtype", "float16"])
    assert "float16" in capsys.readouterr().err


def test_set_num_threads_is_shared():
    previous = lamina.get_num_threads()
    try:
        lamina.set_num_threads(2)
        assert lamina.get_num_threads() == kernels.get_num_threads() == 2
        from threadpoolctl import threadpool_info
        assert all(p["num_threads"] == 2 for p in threadpool_info() if p["user_api"] == "blas")
    finally:
        lamina.set_num_threads(previous)
    with pytest.raises(ValueError, match="set_num_threads"):
        lamina.set_num_threads(0)


def test_default_threads_follow_the_environment(monkeypatch):
    """The thread count does not depend on the kernels being on."""
    from lamina.kernels import _runtime
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _runtime.default_threads() == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "100000")
    assert _runtime.default_threads() == len(__import__("os").sched_getaffinity(0))
    monkeypatch.delenv("NUMBA_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert _runtime.default_threads() >= 1


test_default_threads_follow_the_environment.runs_with_kernels_off = True
test_set_num_threads_is_shared.runs_with_kernels_off = True
