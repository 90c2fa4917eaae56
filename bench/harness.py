"""The timing method shared by every case: a case builds its implementations once, then they run
interleaved (Lamina, PyTorch, raw, Lamina, PyTorch, raw, ...) in the same process, after warm-up,
for a number of rounds each long enough to time reliably; the median time per call is reported.

A case is a ``Case`` entry in a table (``bench/ops_cases.py``, ``bench/model_cases.py``): a name,
a suite and a ``build(ctx) -> Pair`` function. ``Pair`` holds the zero-argument callables that do
one call's work, plus what is needed to turn times into FLOP rates or images/s.
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

IMPLS = ("lamina", "pytorch", "raw")


class Skip(Exception):
    """Raised by a case's build function when the case cannot run here (the reason is reported)."""


@dataclass
class Pair:
    """One case, built: a Lamina and a PyTorch callable doing the same work, and what it means."""
    lamina: Callable[[], object]
    pytorch: Callable[[], object]
    raw: Callable[[], object] | None = None  # the same forward on bare NumPy/CuPy arrays
    flops: float | None = None               # per call; gives GFLOP/s and % of the GEMM peak
    items: int | None = None                 # images or tokens per call; gives a throughput
    shape: str = ""                          # the sizes actually used (``--quick`` shrinks them)
    note: str = ""


@dataclass(frozen=True)
class Case:
    """A table entry. ``unit`` is "time" (reported per call) or an item name ("images", "tokens")."""
    name: str
    suite: str
    build: Callable[["Context"], Pair]
    unit: str = "time"


@dataclass
class Context:
    """What a build function needs: the device, full or quick sizes, and converters that put the same
    NumPy data into a Lamina tensor, a torch tensor and a raw array on that device."""
    device: str
    quick: bool
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        import lamina
        import torch
        self.lamina, self.torch = lamina, torch
        self.rng = np.random.default_rng(self.seed)
        self.torch_device = torch.device(self.device)
        if self.device == "cuda":
            import cupy
            self.xp = cupy
            self.sync_lamina = self.sync_raw = lambda: cupy.cuda.Device().synchronize()
            self.sync_torch = torch.cuda.synchronize
        else:
            self.xp = np
            self.sync_lamina = self.sync_raw = self.sync_torch = _nothing

    def pick(self, full, quick):
        return quick if self.quick else full

    def randn(self, *shape) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)

    def randint(self, high, *shape) -> np.ndarray:
        return self.rng.integers(0, high, shape, dtype=np.int64)

    def lt(self, array: np.ndarray, requires_grad: bool = False):
        return self.lamina.tensor(array, device=self.device, requires_grad=requires_grad)

    def tt(self, array: np.ndarray, requires_grad: bool = False):
        return self.torch.from_numpy(array).to(self.torch_device).requires_grad_(requires_grad)

    def raw(self, array: np.ndarray):
        return self.xp.asarray(array)

    def syncs(self) -> dict:
        return {"lamina": self.sync_lamina, "pytorch": self.sync_torch, "raw": self.sync_raw}


def _nothing():
    return None


def _timed(fn, sync, n: int) -> float:
    """Seconds for ``n`` calls, with the device drained before the clock starts and before it is read."""
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return time.perf_counter() - t0


def _calls_per_round(fn, sync, target_s: float) -> int:
    """How many calls make one round of about ``target_s`` (doubling until a tenth of it is seen)."""
    n, elapsed = 1, _timed(fn, sync, 1)
    while elapsed < target_s / 10 and n < 1 << 24:
        n *= 2
        elapsed = _timed(fn, sync, n)
    return max(1, round(n * target_s / max(elapsed, 1e-9)))


def _prepare(name: str) -> None:
    """The raw column (NumPy) times NumPy with BLAS on its own threads. Lamina's split products
    put NumPy's BLAS on one thread and leave it there (``lamina.kernels._runtime``'s
    ``single_thread_blas``), so its threads are given back before NumPy is timed."""
    if name == "raw":
        from lamina.kernels import _runtime
        _runtime.restore_blas()


def measure(impls: dict, syncs: dict, rounds: int, target_s: float, warmup: int, settle_s: float) -> dict:
    """Per-call times (seconds), one per round, for each implementation, run interleaved.

    Before every round the young garbage is collected and the process idles ``settle_s``, so that a
    round does not start while the other library's worker threads are still spinning (OpenBLAS
    spins for about 0.1 s after a call) or its garbage is still waiting to be collected."""
    for _ in range(warmup):
        for name, fn in impls.items():
            _prepare(name)
            _timed(fn, syncs[name], 1)
    calls = {}
    for name, fn in impls.items():
        _prepare(name)
        calls[name] = _calls_per_round(fn, syncs[name], target_s)
    samples = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            _prepare(name)
            gc.collect(1)  # the young generations: a full collection of the heap torch brings costs ~0.1 s
            time.sleep(settle_s)
            samples[name].append(_timed(fn, syncs[name], calls[name]) / calls[name])
    return {"calls_per_round": calls, "samples_s": samples}


def run_case(case: Case, ctx: Context, rounds: int, target_s: float, warmup: int, settle_s: float,
             peak_flops: float) -> dict:
    """Build and time one case; the returned dict is the case's JSON record."""
    record = {"name": case.name, "suite": case.suite, "unit": case.unit}
    start = time.perf_counter()
    try:
        pair = case.build(ctx)
    except Skip as why:
        record["skipped"] = str(why)
        return record
    impls = {name: getattr(pair, name) for name in IMPLS if getattr(pair, name) is not None}
    timing = measure(impls, ctx.syncs(), rounds, target_s, warmup, settle_s)
    record.update(shape=pair.shape, note=pair.note, flops=pair.flops, items=pair.items, **timing)
    for name, samples in timing["samples_s"].items():
        median = statistics.median(samples)
        record[f"{name}_s"] = median
        if pair.items:
            record[f"{name}_{case.unit}_per_s"] = pair.items / median
        if pair.flops:
            record[f"{name}_gflops"] = pair.flops / median / 1e9
            record[f"{name}_pct_peak"] = 100 * pair.flops / median / peak_flops
    record["ratio"] = record["pytorch_s"] / record["lamina_s"]
    record["wall_s"] = time.perf_counter() - start
    return record
