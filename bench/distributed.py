"""Data-parallel training throughput: 2 MPI ranks against 1 process, one thread per rank.

    python bench/distributed.py                      # LeNet-5 and an MLP, 2 ranks vs 1 process
    python bench/distributed.py --ranks 4 --steps 40 --bandwidth-gbs 25 --latency-us 2

Each configuration runs ``--repeats`` times, alternating, and per model the run with the median
step time is reported: on a shared machine the load changes between runs.

The driver starts the same worker twice, alone (a group of one: DDP adds nothing) and under
``mpiexec -n R python -m mpi4py``, with one BLAS/Numba thread per process, and prints a
Markdown table. Per model, with the global batch fixed (strong scaling), the worker measures:

- the median training step (zero_grad, forward, loss, backward, optimiser step) and its
  forward / backward / optimiser parts, and the throughput in samples/s;
- the all-reduce on its own: the same buckets (``DistributedDataParallel.bucket_sizes()``),
  reduced blocking, back to back, outside any step: the cost of the communication;
- the same step without overlap (backward under ``no_sync``, then one blocking all-reduce of all
  gradients), interleaved with the overlapped steps: what the overlapped step saves against it,
  as a share of the all-reduce on its own, is the part of the all-reduce hidden by backward;
- the wait at the end of backward for the bucket requests (it includes waiting for the slower
  rank, so on a shared machine it is larger than the communication itself).

Weak-scaling estimate for larger jobs (per-rank batch fixed): a ring all-reduce of ``n`` bytes
on ``p`` ranks costs ``2(p-1)/p * n / B + 2(p-1) * a`` per bucket (bandwidth ``B``, per-message
latency ``a``, both stated on the command line); the step is the measured compute per rank plus
the part of that cost the measured overlap does not hide, so the estimate assumes the network,
not the machine measured here, is the limit.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (global batch, what it trains)
    "lenet": (64, "LeNet-5, 1x28x28, Adam"),
    "mlp": (64, "MLP 784-1024-1024-10, Adam"),
}


# ---------------------------------------------------------------- worker (one per rank)

def _build(name):
    import lamina
    if name == "lenet":
        return lamina.models.LeNet5(), (1, 28, 28)
    return lamina.models.MLP((784, 1024, 1024, 10)), (784,)


def _worker(args):
    import lamina
    import lamina.distributed as dist
    from lamina import optim
    from lamina.distributed import group as group_mod
    from lamina.nn import functional as F

    dist.init()
    rank, size = dist.get_rank(), dist.get_world_size()
    g = dist.current_group()
    waited = [0.0]
    wait = group_mod.Work.wait

    def timed_wait(self):  # time spent blocked on requests: the exposed communication
        t0 = time.perf_counter()
        try:
            return wait(self)
        finally:
            waited[0] += time.perf_counter() - t0

    group_mod.Work.wait = timed_wait
    results = {}
    for name in args.cases:
        global_batch = CASES[name][0]
        if global_batch % size:
            raise SystemExit(f"bench/distributed.py: global batch {global_batch} does not split over {size} ranks")
        per_rank = global_batch // size
        lamina.manual_seed(0)
        model, shape = _build(name)
        ddp = dist.DistributedDataParallel(model, bucket_mb=args.bucket_mb)
        opt = optim.Adam(ddp.parameters(), lr=1e-3)
        rng = np.random.default_rng(rank)
        x = lamina.tensor(rng.standard_normal((per_rank,) + shape).astype(np.float32))
        y = lamina.tensor(rng.integers(0, 10, per_rank))
        params = [p for p in model.parameters()]

        def sequential_step(opt, ddp, x, y, params):
            """The same step without overlap: backward, then one blocking all-reduce of all grads."""
            opt.zero_grad()
            with ddp.no_sync():
                F.cross_entropy(ddp(x), y).backward()
            flat = np.concatenate([p.grad.array.ravel() for p in params])
            g.comm.Allreduce(g.mpi().IN_PLACE, flat, op=g.mpi().SUM)
            flat *= 1.0 / size
            off = 0
            for p in params:
                p.grad.array[...] = flat[off:off + p.numel()].reshape(p.shape)
                off += p.numel()
            opt.step()

        rows, seq = [], []
        for step in range(args.warmup + args.steps):
            dist.barrier()
            waited[0] = 0.0
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(ddp(x), y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            if size > 1:  # interleaved with the overlapped step, so both see the same machine
                dist.barrier()
                t4 = time.perf_counter()
                sequential_step(opt, ddp, x, y, params)
                t5 = time.perf_counter()
            if step >= args.warmup:
                rows.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2, waited[0]))
                if size > 1:
                    seq.append(t5 - t4)
        sizes = ddp.bucket_sizes()
        alone = []
        if size > 1:
            MPI = g.mpi()
            bufs = [np.ones(n // 4, dtype=np.float32) for n in sizes]
            for _ in range(args.warmup + args.steps):
                g.comm.Barrier()
                t0 = time.perf_counter()
                for b in bufs:
                    g.comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)
                alone.append(time.perf_counter() - t0)
            alone = alone[args.warmup:]
        med = [statistics.median(c) for c in zip(*rows)]
        # every rank's step ends with the same reduction; the slowest rank sets the pace
        if size > 1:
            med.append(statistics.median(seq))
        slowest = np.array(med, dtype=np.float64)
        if g.comm is not None:
            g.comm.Allreduce(g.mpi().IN_PLACE, slowest, op=g.mpi().MAX)
        step_s, fwd_s, bwd_s, opt_s, wait_s = slowest.tolist()[:5]
        seq_s = slowest[5] if size > 1 else step_s
        results[name] = {
            "world_size": size, "global_batch": global_batch, "per_rank_batch": per_rank,
            "step_ms": step_s * 1e3, "forward_ms": fwd_s * 1e3, "backward_ms": bwd_s * 1e3,
            "optimizer_ms": opt_s * 1e3, "exposed_allreduce_ms": wait_s * 1e3 if size > 1 else 0.0,
            "allreduce_alone_ms": statistics.median(alone) * 1e3 if alone else 0.0,
            "sequential_step_ms": seq_s * 1e3, "samples_per_s": global_batch / step_s, "bucket_bytes": sizes,
            "params": sum(p.numel() for p in model.parameters()),
        }
    group_mod.Work.wait = wait
    if rank == 0:
        Path(args.out).write_text(json.dumps(results, indent=1))


# ---------------------------------------------------------------- driver

def _run(args, ranks, out):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD"):
        env.pop(k, None)
    worker = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", out, "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--bucket-mb", str(args.bucket_mb), "--cases", *args.cases]
    cmd = worker if ranks == 1 else ["mpiexec", "-n", str(ranks), sys.executable, "-m", "mpi4py", *worker[1:]]
    subprocess.run(cmd, check=True, env=env, timeout=args.timeout)
    return json.loads(Path(out).read_text())


def ring_allreduce_s(nbytes, p, bandwidth, latency):
    """Seconds for a ring all-reduce of ``nbytes`` on ``p`` ranks: reduce-scatter then all-gather,
    2(p-1) messages of nbytes/p each."""
    if p == 1:
        return 0.0
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def report(one, many, args):
    bw, lat = args.bandwidth_gbs * 1e9, args.latency_us * 1e-6
    p_meas = many[args.cases[0]]["world_size"]
    lines = [("| model | ranks | global batch | step ms | fwd / bwd / opt ms | samples/s | vs 1 process | "
              "all-reduce alone ms (share of step) | step without overlap ms | all-reduce hidden by backward | "
              "wait at end of backward ms |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    est = ["", (f"Weak-scaling estimate (per-rank batch fixed; ring all-reduce at {args.bandwidth_gbs:g} GB/s and "
                f"{args.latency_us:g} us per message; compute per rank and hidden share as measured on {p_meas} ranks):"),
           "", "| model | bytes per step | buckets | ranks | all-reduce ms | exposed ms | step ms | efficiency | samples/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name in args.cases:
        a, b = one[name], many[name]
        alone = b["allreduce_alone_ms"]
        saved = max(0.0, b["sequential_step_ms"] - b["step_ms"])
        hidden = min(1.0, saved / alone) if alone > 0 else 0.0
        for r in (a, b):
            multi = r["world_size"] > 1
            lines.append(
                f"| {name} | {r['world_size']} | {r['global_batch']} | {r['step_ms']:.2f} | "
                f"{r['forward_ms']:.2f} / {r['backward_ms']:.2f} / {r['optimizer_ms']:.2f} | "
                f"{r['samples_per_s']:.0f} | {r['samples_per_s'] / a['samples_per_s']:.2f}x | "
                + ((f"{alone:.2f} ({100 * alone / r['step_ms']:.0f}%) | {r['sequential_step_ms']:.2f} | "
                    f"{100 * hidden:.0f}% | {r['exposed_allreduce_ms']:.2f} |") if multi else "- | - | - | - |"))
        compute = (b["step_ms"] - alone * (1 - hidden)) * 1e-3
        for p in (p_meas, 8, 64):
            comm = sum(ring_allreduce_s(n, p, bw, lat) for n in b["bucket_bytes"])
            # the hidden part cannot exceed the backward it runs behind
            exposed = max(comm * (1 - hidden), comm - b["backward_ms"] * 1e-3)
            step = compute + exposed
            est.append(f"| {name} | {sum(b['bucket_bytes']):,} | {len(b['bucket_bytes'])} | {p} | {comm * 1e3:.2f} | "
                       f"{exposed * 1e3:.2f} | {step * 1e3:.2f} | {100 * compute / step:.0f}% | "
                       f"{p * b['per_rank_batch'] / step:,.0f} |")
    return "\n".join(lines + est)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each configuration (median kept)")
    ap.add_argument("--bucket-mb", type=float, default=0.1,
                    help="DDP bucket bound; small enough that these small models get several buckets")
    ap.add_argument("--bandwidth-gbs", type=float, default=10.0, help="network bandwidth of the estimate, GB/s")
    ap.add_argument("--latency-us", type=float, default=5.0, help="per-message latency of the estimate, us")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args)
        return
    load = os.getloadavg()[0]
    ones, manys = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):  # alternated, so a change in the machine's load hits both alike
            ones.append(_run(args, 1, str(Path(tmp) / f"one{k}.json")))
            manys.append(_run(args, args.ranks, str(Path(tmp) / f"many{k}.json")))
    print(f"Machine: {os.cpu_count()} cores, load average {load:.2f} before the runs, {os.getloadavg()[0]:.2f} after "
          f"(other processes on the cores slow the multi-rank runs most); one thread per rank; float32; "
          f"buckets of at most {args.bucket_mb:g} MB; {args.steps} timed steps, median of {args.repeats} runs.\n")
    print(report(_median_run(ones, args.cases), _median_run(manys, args.cases), args))


def _median_run(runs, cases):
    """Per model, the run whose step time is the median of the repeats."""
    out = {}
    for name in cases:
        ordered = sorted((r[name] for r in runs), key=lambda r: r["step_ms"])
        out[name] = ordered[(len(ordered) - 1) // 2]
    return out


if __name__ == "__main__":
    main()
