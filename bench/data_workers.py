"""DataLoader worker processes against loading in the main process, on a CPU-heavy transform
pipeline: each sample is a 64x64 image made from its index, then augmented and normalised with
NumPy and a pure-Python loop (a few ms per sample, like a decode-crop-jitter pipeline).

Prints the seconds per epoch for num_workers=0 and each requested worker count (the best and the
median of interleaved rounds, after one warm-up epoch each), the speed-up over num_workers=0
(from the best rounds: other work on the machine only ever slows a round down), the CPU seconds
an epoch costs in all processes together (what the workers add in overhead, whatever the load),
the load average before and after, and, with --torch, PyTorch's DataLoader on the same dataset.
The speed-up needs as many idle cores as workers.

    python bench/data_workers.py [--samples 256] [--batch-size 16] [--workers 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` when run as a script


class Augmented:
    """Sample i: a synthetic image, randomly cropped, flipped, jittered, blurred and normalised,
    and its label. The work is deliberately mixed: NumPy calls on small arrays plus a Python loop,
    the shape of real per-sample transforms (and of their overhead)."""

    def __init__(self, n, size=64, crop=56, rounds=16):
        self.n, self.size, self.crop, self.rounds = n, size, crop, rounds

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        img = rng.random((3, self.size, self.size), dtype=np.float32)
        for _ in range(self.rounds):  # rounds of crop, flip, jitter and a 3x3 box blur
            y, x = rng.integers(0, self.size - self.crop + 1, 2)
            patch = img[:, y:y + self.crop, x:x + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, :, ::-1]
            patch = patch * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
            padded = np.pad(patch, ((0, 0), (1, 1), (1, 1)), mode="edge")
            blur = sum(padded[:, dy:dy + self.crop, dx:dx + self.crop] for dy in range(3) for dx in range(3)) / 9
            img = np.pad(blur, ((0, 0), (0, self.size - self.crop), (0, self.size - self.crop)), mode="reflect")
        hist = [0] * 16  # a pure-Python pass, like a tokenizer or a label parser
        for v in img[0, ::4, ::4].ravel().tolist():
            hist[min(int(v * 16), 15)] += 1
        out = img[:, :self.crop, :self.crop]
        out = (out - out.mean()) / (out.std() + 1e-6)
        return np.ascontiguousarray(out, dtype=np.float32), int(np.argmax(hist))


def _cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers, once they have exited
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def epoch_seconds(make_loader):
    """Wall seconds, CPU seconds (this process and its finished workers) and samples of one epoch."""
    loader = make_loader()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += len(x)
    wall = time.perf_counter() - start
    del loader
    return wall, _cpu_seconds() - cpu, n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--torch", action="store_true", help="also time PyTorch's DataLoader")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    from lamina.utils.data import DataLoader
    ds = Augmented(args.samples)
    cases = {0: lambda: DataLoader(ds, batch_size=args.batch_size)}
    for w in args.workers:
        cases[w] = lambda w=w: DataLoader(ds, batch_size=args.batch_size, num_workers=w)
    if args.torch:
        import torch.utils.data as tud
        cases["torch-0"] = lambda: tud.DataLoader(ds, batch_size=args.batch_size)
        for w in args.workers:
            cases[f"torch-{w}"] = lambda w=w: tud.DataLoader(ds, batch_size=args.batch_size, num_workers=w)
    times = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    load_before = os.getloadavg()[0]
    for k, make in cases.items():  # warm-up: imports, page faults, the first fork
        epoch_seconds(make)
    for _ in range(args.rounds):
        for k, make in cases.items():
            t, c, n = epoch_seconds(make)
            assert n == args.samples
            times[k].append(t)
            cpu[k].append(c)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.samples} samples, batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"{1000 * best[0] / args.samples:.2f} ms per sample in the main process; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    result = {}
    for k, t in best.items():
        base = best["torch-0"] if str(k).startswith("torch") else best[0]
        base_med = med["torch-0"] if str(k).startswith("torch") else med[0]
        c = statistics.median(cpu[k])
        print(f"  num_workers={k!s:>8}: best {t:.3f} s/epoch, speed-up x{base / t:.2f}   "
              f"(median {med[k]:.3f} s, x{base_med / med[k]:.2f}; CPU {c:.3f} s/epoch)")
        result[str(k)] = {"best_seconds": t, "median_seconds": med[k], "speedup": base / t,
                          "median_speedup": base_med / med[k], "cpu_seconds": c}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
