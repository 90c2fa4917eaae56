"""What the numbers were measured on: CPU model, cores, library versions, BLAS build, GPU, and
the machine's float32 GEMM peak (NumPy's sgemm, or CuPy's on CUDA, at a large size, same run)."""
from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import time

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> dict:
    """NumPy's BLAS/LAPACK build (``numpy.show_config``), and the loaded thread pools if
    threadpoolctl is installed."""
    info = {}
    with contextlib.redirect_stdout(io.StringIO()), _quiet():
        config = np.show_config(mode="dicts")
    deps = config.get("Build Dependencies", {})
    for key in ("blas", "lapack"):
        if key in deps:
            info[key] = {k: deps[key].get(k) for k in ("name", "version", "openblas configuration") if k in deps[key]}
    info["simd"] = config.get("SIMD Extensions", {}).get("found")
    try:
        import threadpoolctl
        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
                               for p in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    return info


@contextlib.contextmanager
def _quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "install pyyaml for better output"
        yield


def git_revision() -> str | None:
    """The checkout's commit, with "+dirty" when the working tree has changes; None outside git."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def describe(device: str, threads: int, thread_method: str) -> dict:
    import torch

    import lamina
    info = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "loadavg_before": os.getloadavg(),
        "blas_threads_set_by": thread_method,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "lamina": lamina.__version__,
        "lamina_git": git_revision(),
        "torch_num_threads": torch.get_num_threads(),
        "blas": blas_info(),
        "device": device,
    }
    if device == "cuda":
        import cupy
        info["gpu"] = torch.cuda.get_device_name()
        info["cupy"] = cupy.__version__
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["torch_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def gemm_peak(ctx, n: int, rounds: int = 3) -> dict:
    """float32 GEMM rate of the raw array module (NumPy/CuPy) at n x n: median of ``rounds`` calls
    after one warm-up call."""
    xp, sync = ctx.xp, ctx.sync_raw
    a, b = xp.asarray(ctx.randn(n, n)), xp.asarray(ctx.randn(n, n))
    a @ b
    times = []
    for _ in range(rounds):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    gflops = 2.0 * n ** 3 / statistics.median(times) / 1e9
    return {"size": n, "gflops": gflops, "library": xp.__name__}
