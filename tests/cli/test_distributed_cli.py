"""``lamina train ... --distributed`` on 2 MPI ranks (``mpiexec -n 2 python -m mpi4py -m lamina``,
started by each test; skipped without mpi4py or mpiexec): the same training as one process with
the same global batch, rank 0 alone writing the run folder, ``--resume`` across world sizes, and
a failing rank ending the job."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import lamina
from lamina.cli import main
from lamina.cli.parallel import Ranks
from tests.cli.test_lenet_cli import _synthetic_mnist
from tests.cli.test_textlm_cli import TEXT
from tests.distributed.helpers import REPO, WORKERS, need_mpi

RUN_FILES = {".lock", "checkpoint.safetensors", "metrics.json", "loss.png"}


def _env(tmp_path):
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                NUMBA_NUM_THREADS="1", LAMINA_HOME=str(tmp_path / "home"),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _mpi_cmd(n, *args, script=None):
    target = [str(script)] if script else ["-m", "lamina"]
    return ["mpiexec", "-n", str(n), sys.executable, "-m", "mpi4py", *target, *map(str, args)]


def _mpi(tmp_path, n, *args, timeout=120, script=None):
    """Run ``lamina <args>`` on ``n`` ranks; a hang becomes a test failure."""
    need_mpi()
    popen = subprocess.Popen(_mpi_cmd(n, *args, script=script), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(tmp_path), cwd=str(REPO), start_new_session=True)
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
        pytest.fail(f"lamina {args} on {n} ranks did not finish within {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)


def _state(run):
    return lamina.io.load_checkpoint(Path(run) / "checkpoint.safetensors")


def _assert_same_training(a, b, weights_atol, curve_until=None):
    """Same steps, loss curve to 1e-5 (up to step ``curve_until``: a run resumed mid-epoch restarts
    its running loss), weights to ``weights_atol`` (float32 sums in another order)."""
    sa, sb = _state(a), _state(b)
    assert sa["step"] == sb["step"] and sa["epoch"] == sb["epoch"]
    ca, cb = np.array(sa["metrics"]["steps"]), np.array(sb["metrics"]["steps"])
    assert ca.shape == cb.shape and len(ca) >= 2
    if curve_until is not None:
        ca, cb = ca[ca[:, 0] <= curve_until], cb[cb[:, 0] <= curve_until]
    np.testing.assert_allclose(ca, cb, rtol=0, atol=1e-5)
    for k, v in sa["model"].items():
        np.testing.assert_allclose(sb["model"][k].numpy(), v.numpy(), rtol=0, atol=weights_atol, err_msg=k)
    assert sa["metrics"]["epochs"][-1]["eval_loss"] == pytest.approx(sb["metrics"]["epochs"][-1]["eval_loss"],
                                                                      abs=1e-4)


def _only_rank0_wrote(run, proc):
    """The folder holds one run's files, locked by rank 0, and every line was printed once."""
    assert {p.name for p in Path(run).iterdir()} == RUN_FILES
    pids = dict(re.findall(r"rank (\d+) pid (\d+)", proc.stderr))
    assert set(pids) == {"0", "1"}, proc.stderr
    assert (Path(run) / ".lock").read_text().strip() == pids["0"]
    assert proc.stdout.count("run folder") == 1 and proc.stdout.count("checkpoint, metrics and plot in") == 1
    assert "x 2 ranks" in proc.stdout


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return _synthetic_mnist(tmp_path_factory.mktemp("mnist") / "mnist", 300, 40)


def _lenet_args(mnist, out, *extra):
    # 300 images in batches of 15: every batch splits unevenly (7 + 8 rows)
    return ["train", "lenet", "--batch-size", "15", "--data-dir", str(mnist), "--out", str(out), "--device", "cpu",
            "--quiet", "--threads", "1", "--distributed", *extra]


def test_lenet_two_ranks_train_like_one_process_and_resume_across_world_sizes(mnist, tmp_path, capsys,
                                                                                monkeypatch):
    need_mpi()
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    one, two = tmp_path / "one", tmp_path / "two"
    # SGD: its steps scale with the gradients, so a wrong weighting of the ranks' rows would show
    # --distributed without mpiexec: one process and a one-line note
    assert main(_lenet_args(mnist, one, "--epochs", "1", "--optimizer", "sgd")) == 0
    err = capsys.readouterr().err
    assert err.count("--distributed: not started by mpiexec, so training as 1 process") == 1
    proc = _mpi(tmp_path, 2, *_lenet_args(mnist, two, "--epochs", "1", "--optimizer", "sgd"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _only_rank0_wrote(two, proc)
    _assert_same_training(one, two, weights_atol=1e-5)

    # resumed on the other world size: both continue like the 1-process run resumed on 1 process
    one_on_two, two_on_one = tmp_path / "one_on_two", tmp_path / "two_on_one"
    shutil.copytree(one, one_on_two)
    shutil.copytree(two, two_on_one)
    assert main(["train", "lenet", "--resume", str(one), "--epochs", "2", "--device", "cpu", "--quiet"]) == 0
    assert main(["train", "lenet", "--resume", str(two_on_one), "--epochs", "2", "--device", "cpu", "--quiet",
                 "--distributed"]) == 0
    proc = _mpi(tmp_path, 2, "train", "lenet", "--resume", one_on_two, "--epochs", "2", "--device", "cpu", "--quiet",
                "--distributed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("resuming") == 1 and proc.stdout.count("resume: epochs 1 -> 2") == 1
    assert _state(one)["step"] == 40
    _assert_same_training(one, one_on_two, weights_atol=1e-5)
    _assert_same_training(one, two_on_one, weights_atol=1e-5)


@pytest.mark.parametrize("recipe", ["gpt", pytest.param("char-rnn", marks=pytest.mark.slow)])
def test_text_models_on_two_ranks_train_like_one_process(recipe, tmp_path, capsys):
    need_mpi()
    text = tmp_path / "tiny.txt"
    text.write_text(TEXT)
    args = ["train", recipe, "--text", text, "--max-iters", "30", "--eval-interval", "15", "--batch-size", "4",
            "--block-size", "16", "--n-layer", "1", "--n-embd", "16", "--device", "cpu", "--quiet", "--threads", "1",
            *(["--n-head", "2"] if recipe == "gpt" else ["--hidden-size", "32"])]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([str(a) for a in args] + ["--out", str(one)]) == 0
    capsys.readouterr()
    proc = _mpi(tmp_path, 2, *args, "--out", two, "--distributed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _only_rank0_wrote(two, proc)
    assert proc.stdout.count("sample:") == 1
    _assert_same_training(one, two, weights_atol=1e-5)


def test_mpiexec_without_distributed_and_rank0_errors_end_the_job_with_one_message(mnist, tmp_path):
    need_mpi()
    proc = _mpi(tmp_path, 2, "train", "lenet", "--data-dir", mnist, "--out", tmp_path / "r", "--device", "cpu",
                timeout=60)
    assert proc.returncode != 0
    assert "this process is one of 2 that mpiexec started; pass --distributed" in proc.stderr
    assert not (tmp_path / "r").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    proc = _mpi(tmp_path, 2, *_lenet_args(mnist, taken, "--epochs", "1"), timeout=60)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("lamina: error")]
    assert len(errors) == 1 and "already holds a run" in errors[0], proc.stderr
    assert {p.name for p in taken.iterdir()} == {"metrics.json", ".lock"}


def test_ctrl_c_stops_every_rank_at_one_step_and_the_run_resumes_on_one_process(tmp_path, capsys, monkeypatch):
    need_mpi()
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    mnist = _synthetic_mnist(tmp_path / "mnist", 1600, 20)
    run, full = tmp_path / "run", tmp_path / "full"
    args = _lenet_args(mnist, run, "--epochs", "1", "--batch-size", "16", "--checkpoint-every", "10")
    with open(tmp_path / "out.txt", "w") as out:
        popen = subprocess.Popen(_mpi_cmd(2, *args), stdout=out, stderr=subprocess.STDOUT, env=_env(tmp_path),
                                 cwd=str(REPO), start_new_session=True)
        try:
            deadline = time.time() + 90
            while time.time() < deadline and not (run / "checkpoint.safetensors").exists() and popen.poll() is None:
                time.sleep(0.05)
            popen.send_signal(signal.SIGINT)  # what Ctrl-C does: mpiexec passes it to every rank
            popen.wait(timeout=60)
        finally:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
    output = (tmp_path / "out.txt").read_text()
    assert popen.returncode == 130, output
    stopped = re.findall(r"SIGINT received at step (\d+): checkpoint saved", output)
    stop = int(stopped[0]) if len(stopped) == 1 else -1
    assert 10 <= stop < 100 and _state(run)["step"] == stop, output
    assert main(["train", "lenet", "--resume", str(run), "--device", "cpu", "--quiet"]) == 0
    assert main(_lenet_args(mnist, full, "--epochs", "1", "--batch-size", "16")) == 0
    capsys.readouterr()
    # 100 Adam steps: float32 rounding of the split sums grows a little more than in the shorter runs
    # 100 float32 Adam steps on 2 ranks then 1: rounding in another order, amplified where Adam's
    # second moment is near zero (seen up to 1.6e-4)
    _assert_same_training(full, run, weights_atol=2e-3, curve_until=stop)


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_run_and_the_last_checkpoint_loads(mode, tmp_path):
    need_mpi()
    mnist = _synthetic_mnist(tmp_path / "mnist", 3000, 20)
    run, log_out, log_err = tmp_path / "run", tmp_path / "out.txt", tmp_path / "err.txt"
    args = _lenet_args(mnist, run, "--epochs", "3", "--batch-size", "16", "--checkpoint-every", "5")
    script = WORKERS / "cli_fault.py" if mode == "raise" else None
    with open(log_out, "w") as out, open(log_err, "w") as err:
        popen = subprocess.Popen(_mpi_cmd(2, *args, script=script), stdout=out, stderr=err, env=_env(tmp_path),
                                 cwd=str(REPO), start_new_session=True)
        try:
            deadline = time.time() + 90
            if mode == "kill":
                while time.time() < deadline and not (run / "checkpoint.safetensors").exists():
                    time.sleep(0.05)
                pid = re.search(r"rank 1 pid (\d+)", log_err.read_text())
                assert pid, log_err.read_text()
                failed_at = time.time()
                os.kill(int(pid.group(1)), signal.SIGKILL)
            popen.wait(timeout=90)
            ended = time.time()
        finally:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
    output = log_out.read_text() + log_err.read_text()
    assert popen.returncode != 0, output
    if mode == "raise":
        failed_at = float(re.search(r"FAILING raise at ([\d.]+)", output).group(1))
        assert "rank 1 of 2 failed with ValueError: rank 1 cannot read its batch" in output, output
    else:
        # the launcher names the first rank it finds gone: rank 1, or rank 0 if its clean-up
        # reached rank 0 first; either way one of this job's ranks, ended by the kill signal
        killed = re.search(r"PID (\d+) RUNNING AT", output)
        ranks = re.search(r"rank 0 pid (\d+), rank 1 pid (\d+)", output)
        assert killed and ranks and killed.group(1) in ranks.groups(), output
        assert "signal 9" in output, output
    assert ended - failed_at < 10, f"the job took {ended - failed_at:.1f} s to end after rank 1 failed"
    state = _state(run)  # written atomically by rank 0: whatever was last written loads
    assert state["step"] >= 5 and state["step"] % 5 == 0 and state["step"] < 3 * 3000 // 16
    assert set(state["model"]) == set(lamina.models.LeNet5().state_dict())


# ---------------------------------------------------------------- the batch split, without MPI

def _ranks(rank, size):
    return Ranks(SimpleNamespace(rank=rank, size=size, local_rank=rank))


def test_split_gives_each_rank_its_rows_and_a_share_of_the_loss_weight():
    x, y = lamina.arange(7), lamina.arange(7) * 10
    parts = [_ranks(r, 3).split((x, y)) for r in range(3)]
    assert [p[0][0].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5, 6]]
    assert [p[0][1].tolist() for p in parts] == [[0, 10], [20, 30], [40, 50, 60]]
    assert sum(s for _, s in parts) == pytest.approx(1.0) and parts[2][1] == pytest.approx(3 / 7)
    # a weight other than rows (tokens that are not padding): shares follow it
    w = [_ranks(r, 3).split([x, y], weight=lambda b: int((b[0] > 1).sum().item())) for r in range(3)]
    assert isinstance(w[0][0], list) and [s for _, s in w] == [0.0, pytest.approx(2 / 5), pytest.approx(3 / 5)]
    # fewer rows than ranks: a rank without rows trains on a copy of one with share 0
    tiny = [_ranks(r, 4).split(lamina.arange(2)) for r in range(4)]
    assert [p.tolist() for p, _ in tiny] == [[0], [0], [1], [1]]
    assert [s for _, s in tiny] == [0.0, 0.5, 0.0, 0.5]
    alone = Ranks().split(x)
    assert alone[0] is x and alone[1] == 1.0 and not Ranks().distributed and Ranks().is_main
