"""What ``lamina train`` does to keep a user's runs safe: run folders, locks, argument checks,
non-finite losses, interrupts, resuming with changed options, threads."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lamina
from lamina.cli import main
from tests.cli.test_lenet_cli import _synthetic_mnist


@pytest.fixture()
def mnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    return _synthetic_mnist(tmp_path / "mnist", 320, 64)


def _train(mnist_dir, out, *extra):
    return ["train", "lenet", "--epochs", "1", "--batch-size", "32", "--data-dir", str(mnist_dir), "--out", str(out),
            "--device", "cpu", "--quiet", *extra]


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _state(run):
    return lamina.io.load_checkpoint(run / "checkpoint.safetensors")


def _env(tmp_path):
    return {**os.environ, "LAMINA_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------- run folders

def test_a_finished_run_is_not_overwritten_without_a_word(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(_train(mnist_dir, run), capsys)[0] == 0
    before = (run / "checkpoint.safetensors").read_bytes()
    code, _, err = _run(_train(mnist_dir, run, "--seed", "5"), capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run / "checkpoint.safetensors").read_bytes() == before
    # --overwrite replaces every file of the run, so the folder agrees with itself again
    (run / "loss.png").write_bytes(b"stale")
    code, _, _ = _run(_train(mnist_dir, run, "--seed", "5", "--overwrite"), capsys)
    assert code == 0 and _state(run)["config"]["seed"] == 5
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["seed"] == 5 and len(metrics["epochs"]) == 1
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_second_process_on_the_same_folder_fails_at_once_naming_the_holder(mnist_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    import fcntl
    with open(run / ".lock", "a+") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242\n")
        holder.flush()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lamina", *_train(mnist_dir, run)], capture_output=True,
                              text=True, env=_env(tmp_path), timeout=120)
        took = time.perf_counter() - start
    assert proc.returncode == 2
    assert "in use by another lamina process (PID 4242)" in proc.stderr
    assert not (run / "checkpoint.safetensors").exists() and took < 60


def test_unwritable_out_fails_before_any_data_is_loaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(["train", "lenet", "--out", str(blocker / "run"), "--quiet", "--device", "cpu"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("lamina: error:")]
    assert code == 2 and len(errors) == 1 and "cannot create the run folder" in errors[0]
    assert not (tmp_path / "home").exists()  # MNIST was never looked for


def test_stale_temporary_files_are_removed_at_the_next_start(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(_train(mnist_dir, run), capsys)[0] == 0
    stale = run / ".checkpoint.safetensors.1234.abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, _, err = _run(["train", "lenet", "--resume", str(run), "--epochs", "2", "--quiet", "--device", "cpu"],
                        capsys)
    assert code == 0 and not stale.exists() and "removed 1 temporary file" in err


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("argv, message", [
    (["train", "lenet", "--epochs", "0"], "--epochs: expected a positive integer"),
    (["train", "lenet", "--epochs", "-3"], "--epochs: expected a positive integer"),
    (["train", "lenet", "--batch-size", "0"], "--batch-size: expected a positive integer"),
    (["train", "lenet", "--batch-size", "-5"], "--batch-size: expected a positive integer"),
    (["train", "lenet", "--lr", "nan"], "--lr: expected a finite number"),
    (["train", "lenet", "--lr", "inf"], "--lr: expected a finite number"),
    (["train", "lenet", "--lr", "-1"], "--lr: expected a positive number"),
    (["train", "lenet", "--checkpoint-every", "-1"], "--checkpoint-every: expected an integer >= 0"),
    (["train", "lenet", "--data-dir", "/nonexistent/mnist"], "--data-dir: no such directory"),
    (["train", "gpt", "--max-iters", "0"], "--max-iters: expected a positive integer"),
    (["train", "gpt", "--dropout", "1.5"], "--dropout: expected a number in [0, 1)"),
    (["train", "seq2seq", "--nhead", "0"], "--nhead: expected a positive integer"),
    (["predict", "run", "--top", "0"], "--top: expected a positive integer"),
    (["predict", "run", "--top", "-1"], "--top: expected a positive integer"),
    (["generate", "run", "--tokens", "-1"], "--tokens: expected an integer >= 0"),
    (["generate", "run", "--temperature", "-0.5"], "--temperature: expected a number >= 0"),
    (["train", "lenet", "--threads", "0"], "--threads: expected a positive integer"),
])
def test_bad_arguments_are_one_line_before_anything_happens(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder, no download


def test_threads_is_accepted_after_the_sub_command(mnist_dir, tmp_path, capsys):
    assert _run(_train(mnist_dir, tmp_path / "r", "--threads", "1"), capsys)[0] == 0
    assert _run(["--threads", "1", *_train(mnist_dir, tmp_path / "s")], capsys)[0] == 0


def test_a_busy_machine_is_reported_and_gets_fewer_threads(mnist_dir, tmp_path, capsys, monkeypatch):
    import lamina.cli as cli
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 7.5, 7.5))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    chosen = []
    monkeypatch.setattr("threadpoolctl.threadpool_limits", lambda n, **kw: chosen.append(n))
    assert cli.idle_cores() == (4, 1, 7.5)
    code, _, err = _run(_train(mnist_dir, tmp_path / "r"), capsys)
    assert code == 0 and chosen == [1] and "the machine is busy (load 7.5 on 4 cores): using 1 thread" in err


# ---------------------------------------------------------------- non-finite training

def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(_train(mnist_dir, run), capsys)[0] == 0
    good = _state(run)
    code, _, err = _run(["train", "lenet", "--resume", str(run), "--epochs", "2", "--lr", "1e30", "--override-lr",
                         "--checkpoint-every", "1", "--quiet", "--device", "cpu"], capsys)
    assert code == 1 and ("non-finite loss" in err or "non-finite values in parameter" in err)
    after = _state(run)
    for k, v in after["model"].items():
        assert np.isfinite(v.numpy()).all(), k
    assert after["step"] >= good["step"]


def test_on_nan_skip_skips_the_bad_steps(mnist_dir, tmp_path, capsys, monkeypatch):
    from lamina.cli import lenet
    real = lenet.F.cross_entropy
    calls = []

    def sometimes_nan(logits, target, **kw):
        loss = real(logits, target, **kw)
        calls.append(1)
        return loss * float("nan") if len(calls) in (2, 3) else loss

    monkeypatch.setattr(lenet.F, "cross_entropy", sometimes_nan)
    run = tmp_path / "run"
    code, out, err = _run(_train(mnist_dir, run, "--on-nan", "skip"), capsys)
    assert code == 0 and err.count("step skipped") == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_steps"] == [2, 3]
    assert all(np.isfinite(v.numpy()).all() for v in _state(run)["model"].values())


# ---------------------------------------------------------------- interrupts

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_saves_the_current_step_and_resumes_exactly(sig, code, tmp_path):
    mnist_dir = _synthetic_mnist(tmp_path / "mnist", 6400, 32)
    env = _env(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lamina", "train", "lenet", "--epochs", "3", "--batch-size", "16",
           "--data-dir", str(mnist_dir), "--out", str(run), "--device", "cpu", "--quiet", "--checkpoint-every", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # training has started once this line is out
        if line.startswith("training LeNet-5"):
            break
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"{signal.Signals(sig).name} received at step" in err and "--resume" in err
    state = _state(run)
    assert 0 < state["step"] < 1200 and state["epoch"] < 3
    assert not list(run.glob(".*.tmp"))
    done = subprocess.run([*cmd[:-2], "--resume", str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _state(run)["step"] == 1200


# ---------------------------------------------------------------- resume

def test_resume_keeps_the_run_configuration_and_says_what_changed(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(_train(mnist_dir, run, "--lr", "0.002"), capsys)[0] == 0
    code, out, _ = _run(["train", "lenet", "--resume", str(run), "--quiet", "--device", "cpu"], capsys)
    assert code == 0 and "already finished (1 of 1 epochs" in out and "resuming" not in out
    code, _, err = _run(["train", "lenet", "--resume", str(run), "--epochs", "2", "--lr", "0.1", "--quiet"], capsys)
    assert code == 2 and "--override-lr" in err
    code, _, err = _run(["train", "lenet", "--resume", str(run), "--optimizer", "sgd", "--quiet"], capsys)
    assert code == 2 and "--optimizer cannot change when resuming" in err
    code, out, _ = _run(["train", "lenet", "--resume", str(run), "--epochs", "2", "--checkpoint-every", "3",
                         "--quiet", "--device", "cpu"], capsys)
    assert code == 0 and "resume: epochs 1 -> 2" in out and "resuming" in out
    state = _state(run)
    assert state["config"]["epochs"] == 2 and state["config"]["lr"] == 0.002 and state["epoch"] == 2
    assert json.loads((run / "metrics.json").read_text())["config"]["epochs"] == 2
