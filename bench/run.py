"""Lamina against PyTorch, op by op and model by model, in one process with the same threads,
dtype (float32), shapes and data; prints a table and writes JSON.

    python -m bench [--suite ops|models|all] [--device cpu|cuda] [--quick] [--filter TEXT]
                    [--threads N] [--json PATH]

The BLAS thread count is applied before NumPy is first imported (environment variables) and
again through threadpoolctl when it is installed; see bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # ``python bench/run.py``: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("ops", "models", "all"), default="all")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: Lamina on CuPy against PyTorch on CUDA")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few rounds: a smoke run")
    ap.add_argument("--filter", default="", help="run only cases whose name contains this text (case-insensitive)")
    ap.add_argument("--threads", type=int, default=_usable_cpus(),
                    help="CPU threads for PyTorch and NumPy's BLAS (default: all usable cores, %(default)s here)")
    ap.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per implementation (7; quick 3)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per round (0.2; quick 0.01)")
    ap.add_argument("--settle", type=float, default=None, help="idle seconds before each round (0.1, 0.5 with several threads; quick 0)")
    args = ap.parse_args(argv)
    args.argv = argv
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    return args


def set_threads(n: int):
    """Give NumPy's BLAS ``n`` threads; returns how, and threadpoolctl's limiter (or None) to undo it.
    Environment variables only work before the BLAS library is loaded, threadpoolctl also after;
    without either, the BLAS keeps its default."""
    method, limiter = [], None
    if "numpy" not in sys.modules:
        for var in _BLAS_ENV:
            os.environ[var] = str(n)
        method.append("env " + ",".join(_BLAS_ENV))
    import numpy  # noqa: F401  (loads the BLAS so that threadpoolctl can see it)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        limiter = threadpool_limits(limits=n, user_api="blas")
        method.append("threadpoolctl")
    return " + ".join(method) or "not set (NumPy was loaded before the runner and threadpoolctl is missing)", limiter


def select(cases, suite: str, text: str):
    text = text.lower()
    return [c for c in cases if suite in ("all", c.suite) and text in c.name.lower()]


def main(argv=None) -> int:
    """Run the benchmarks; returns the exit status. Thread settings are restored on return, so that
    an in-process caller (the smoke test) keeps its own."""
    args = parse_args(argv)
    thread_method, limiter = set_threads(args.threads)
    import torch

    from lamina.kernels import _runtime
    torch_threads, kernel_threads = torch.get_num_threads(), _runtime._threads
    torch.set_num_threads(args.threads)
    try:
        return run(args, thread_method)
    finally:
        torch.set_num_threads(torch_threads)
        _runtime._threads = kernel_threads
        if limiter is not None:
            limiter.restore_original_limits()


def run(args, thread_method: str) -> int:
    import torch

    import lamina
    lamina.set_num_threads(args.threads)  # the kernels' threads; BLAS's are set above already

    from bench import harness, machine, model_cases, ops_cases, report
    if args.device == "cuda" and not (lamina.cuda_is_available() and torch.cuda.is_available()):
        print(f"error: --device cuda needs an NVIDIA GPU with CuPy (for Lamina) and a CUDA build of PyTorch; "
              f"here lamina.cuda_is_available() is {lamina.cuda_is_available()} and "
              f"torch.cuda.is_available() is {torch.cuda.is_available()}", file=sys.stderr)
        return 2
    cases = select(ops_cases.CASES + model_cases.CASES, args.suite, args.filter)
    if not cases:
        print(f"error: no case in suite {args.suite!r} matches --filter {args.filter!r}", file=sys.stderr)
        return 2
    rounds = args.rounds or (3 if args.quick else 7)
    min_time = args.min_time or (0.01 if args.quick else 0.2)
    warmup = 1 if args.quick else 2
    # PyTorch's OpenMP workers busy-wait for 0.2-0.4 s after its last parallel region (measured
    # here), and a Lamina round started within that time shares the cores with them
    settle = args.settle if args.settle is not None else (0.0 if args.quick else 0.5 if args.threads > 1 else 0.1)

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    ctx = harness.Context(args.device, args.quick)
    info = machine.describe(args.device, args.threads, thread_method)
    raw_name = "cupy" if args.device == "cuda" else "numpy"
    info["raw_library"] = raw_name
    peak = machine.gemm_peak(ctx, ctx.pick(8192 if args.device == "cuda" else 4096, 256))
    info["gemm_peak"] = peak
    print(f"{info['cpu_model']}, {args.threads} threads, device {args.device}"
          + (f" ({info['gpu']})" if args.device == "cuda" else "")
          + f"; numpy {info['numpy']}, torch {info['torch']}, lamina {info['lamina']} ({info['lamina_git']})")
    print(f"float32 GEMM peak ({peak['library']} {peak['size']}x{peak['size']}): {peak['gflops']:.1f} GFLOP/s; "
          f"{rounds} rounds of ~{min_time:g} s, medians; L/T = pytorch time / lamina time (>1: Lamina faster)\n")
    load = info["loadavg_before"][0]  # read before the GEMM peak put load of our own on the machine
    if args.device == "cpu" and load + args.threads > _usable_cpus() + 1.0:
        info["warning"] = (f"load average {load:.1f} on {_usable_cpus()} CPUs before the run: other processes compete "
                           f"with the {args.threads} benchmark threads, so timings will be noisy")
        print("warning: " + info["warning"] + "\n")
    print(report.terminal_line(report.header(raw_name)))
    records = []
    for case in cases:
        record = harness.run_case(case, ctx, rounds, min_time, warmup, settle, peak["gflops"] * 1e9)
        records.append(record)
        print(report.terminal_line(report.row(record)), flush=True)

    info["loadavg_after"] = os.getloadavg()
    command = shlex.join(sys.orig_argv) if args.argv is None else f"bench.run.main({args.argv!r})"
    results = {
        "date": started,
        "command": command,
        "settings": {"suite": args.suite, "device": args.device, "quick": args.quick, "filter": args.filter,
                     "threads": args.threads, "rounds": rounds, "min_time_s": min_time, "warmup_calls": warmup,
                     "settle_s": settle, "dtype": "float32"},
        "machine": info,
        "cases": records,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
