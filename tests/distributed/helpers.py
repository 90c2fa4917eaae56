"""Start a worker script on several MPI ranks (``mpiexec -n N python -m mpi4py``) from a test."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKERS = Path(__file__).parent / "workers"
REPO = Path(__file__).resolve().parents[2]


def need_mpi():
    """Skip (with the reason) where multi-process tests cannot run."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("needs mpi4py (pip install 'lamina[dist]')")
    if shutil.which("mpiexec") is None:
        pytest.skip("needs mpiexec on PATH (pip install mpich)")


def run_mpi(script, *args, n=2, timeout=60, check=True):
    """Run ``workers/<script>`` on ``n`` ranks; return (CompletedProcess, seconds).

    One BLAS thread per rank (the ranks share the machine's cores, like the rest of the suite);
    the timeout turns a hang into a test failure instead of a stuck CI job.
    """
    need_mpi()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["mpiexec", "-n", str(n), sys.executable, "-m", "mpi4py", str(WORKERS / script), *map(str, args)]
    t0 = time.monotonic()
    # its own session, so that a hang can be ended with every rank mpiexec started
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             cwd=str(REPO), start_new_session=True)
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
        pytest.fail(f"{script} on {n} ranks did not finish within {timeout} s; output:\n{out}\n{err}")
    took = time.monotonic() - t0
    proc = subprocess.CompletedProcess(cmd, popen.returncode, out, err)
    if check and proc.returncode != 0:
        pytest.fail(f"{script} on {n} ranks exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc, took
