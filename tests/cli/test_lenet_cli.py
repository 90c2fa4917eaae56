"""The ``lamina`` command on a tiny synthetic MNIST written as IDX files: train, eval, predict,
resume after SIGKILL, and one-line errors."""
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
from tests.data.helpers import write_idx


def _synthetic_mnist(root, n_train, n_test, seed=0):
    """Learnable digits: each class is a fixed random pattern plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 28, 28))
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        noise = rng.integers(-40, 40, (n, 28, 28))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, gz=True)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, gz=True)
    return root


@pytest.fixture()
def mnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    return _synthetic_mnist(tmp_path / "mnist", 320, 64)


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_eval_predict(mnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = _run(["train", "lenet", "--epochs", "3", "--batch-size", "16", "--data-dir", str(mnist_dir),
                         "--out", str(run), "--quiet", "--device", "cpu"], capsys)
    assert code == 0
    assert "test accuracy:" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["epochs"][-1]["test_accuracy"] > 0.5  # the patterns are easy to learn
    assert (run / "checkpoint.safetensors").exists()
    pytest.importorskip("matplotlib")
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = _run(["eval", str(run), "--device", "cpu"], capsys)
    assert code == 0 and "test accuracy:" in out and "confusion matrix" in out
    rows = [line for line in out.splitlines() if line.strip() and line.split()[0].isdigit() and len(line.split()) == 11]
    assert sum(sum(int(v) for v in r.split()[1:]) for r in rows) == 64

    code, out, _ = _run(["predict", str(run), "--index", "0", "3", "--device", "cpu"], capsys)
    assert code == 0 and out.count("test[") == 2 and "%" in out

    Image = pytest.importorskip("PIL.Image")
    img = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    code, out, _ = _run(["predict", str(run), str(img), "--device", "cpu"], capsys)
    assert code == 0 and out.startswith(str(img))
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(big)
    code, _, err = _run(["predict", str(run), str(big), "--device", "cpu"], capsys)
    assert code == 2 and err.strip() == f"lamina: error: {big}: expected a 28x28 image, got 30x32"


def test_errors_are_one_line(mnist_dir, tmp_path, capsys):
    code, _, err = _run(["eval", str(tmp_path / "nope"), "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no checkpoint" in err
    other = tmp_path / "other.safetensors"
    lamina.io.save_checkpoint(other, {"model_name": "gpt", "model": {}})
    code, _, err = _run(["predict", str(other), "--index", "0", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "checkpoint of gpt, not lenet5" in err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    code, _, err = _run(["eval", str(junk), "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "junk.safetensors" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["train", "lenet", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"),
                         "--device", "cpu", "--quiet"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("lamina: error:")]
    assert code == 2 and len(errors) == 1 and err.endswith(errors[0] + "\n") and "MNIST" in errors[0]


def _train_cmd(mnist_dir, out, extra=()):
    return [sys.executable, "-m", "lamina", "train", "lenet", "--epochs", "2", "--batch-size", "16",
            "--data-dir", str(mnist_dir), "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _weights(run):
    state = lamina.io.load_checkpoint(run / "checkpoint.safetensors")
    return {k: v.numpy() for k, v in state["model"].items()}, state


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    mnist_dir = _synthetic_mnist(tmp_path / "mnist", 1600, 32)
    env = {**os.environ, "LAMINA_HOME": str(tmp_path / "home")}
    full = tmp_path / "full"
    subprocess.run(_train_cmd(mnist_dir, full), check=True, env=env, capture_output=True)

    part = tmp_path / "part"
    proc = subprocess.Popen(_train_cmd(mnist_dir, part, ["--checkpoint-every", "25"]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = part / "checkpoint.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    _, state = _weights(part)
    assert state["epoch"] == 0 and 0 < state["step"] < 100  # killed inside the first epoch

    subprocess.run(_train_cmd(mnist_dir, part, ["--resume", str(part)]), check=True, env=env, capture_output=True)
    resumed, rstate = _weights(part)
    expected, fstate = _weights(full)
    assert rstate["step"] == fstate["step"] == 200
    for k in expected:
        np.testing.assert_array_equal(resumed[k], expected[k], err_msg=k)
