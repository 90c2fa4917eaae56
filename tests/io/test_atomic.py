"""atomic_write and the writers built on it: a crash mid-write leaves the old file intact."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import lamina
import lamina.io as lio
from lamina.io import atomic_write
from tests.io.helpers import temp_files


def test_writes_the_bytes_and_leaves_no_temp_file(tmp_path):
    with atomic_write(tmp_path / "out.json") as f:
        f.write(b'{"loss": 0.5}')
    assert (tmp_path / "out.json").read_bytes() == b'{"loss": 0.5}'
    assert temp_files(tmp_path) == []


def test_permissions_follow_the_umask_like_open(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.bin") as f:
            f.write(b"x")
        with open(tmp_path / "b.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode == (tmp_path / "b.bin").stat().st_mode


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_exception_in_body_keeps_the_old_file(tmp_path, error):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise error
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"partial")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


class _DiskFullAfter:
    """A file object that writes ``limit`` bytes and then fails like a full disk."""

    def __init__(self, f, limit):
        self._f, self._left = f, limit

    def write(self, data):
        n = min(len(data), self._left)
        self._f.write(bytes(data[:n]))
        self._left -= n
        if n < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _good_checkpoint(path):
    state = {"model": {"w": lamina.randn(64, 64)}, "epoch": 1}
    lio.save_checkpoint(path, state)
    return path.read_bytes()


@pytest.mark.parametrize("save", [
    lambda p: lio.save({"w": lamina.randn(64, 64)}, p),
    lambda p: lio.save_checkpoint(p, {"model": {"w": lamina.randn(64, 64)}, "epoch": 2}),
], ids=["save", "save_checkpoint"])
def test_disk_full_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, save):
    target = tmp_path / "ckpt.safetensors"
    good = _good_checkpoint(target)
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _DiskFullAfter(real_fdopen(fd, *a, **k), 1000))
    with pytest.raises(OSError, match="No space left"):
        save(target)
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert lio.load_checkpoint(target)["epoch"] == 1
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_at_fsync_or_rename_keeps_the_previous_file(tmp_path, monkeypatch, step):
    target = tmp_path / "ckpt.safetensors"
    good = _good_checkpoint(target)

    def fail(*args):
        raise OSError(errno.EIO, f"simulated {step} failure")
    monkeypatch.setattr(os, step, fail)
    with pytest.raises(OSError, match=f"simulated {step} failure"):
        lio.save_checkpoint(target, {"epoch": 2, "w": lamina.ones(3)})
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert temp_files(tmp_path) == []


def test_overwrite_replaces_the_whole_file(tmp_path):
    target = tmp_path / "w.safetensors"
    lio.save({"big": lamina.zeros(1000)}, target)
    lio.save({"small": lamina.ones(2)}, target)
    assert list(lio.load(target)) == ["small"]
    np.testing.assert_array_equal(lio.load(target)["small"].numpy(), [1, 1])
    assert temp_files(tmp_path) == []


def test_missing_directory_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        lio.save({"w": lamina.ones(1)}, tmp_path / "no" / "such" / "dir.safetensors")
