"""lamina.compile against eager Lamina on this CPU: training-step throughput of LeNet-5 (batch 64)
and the baby GPT, the step's peak activation bytes (from the graphs, and tracemalloc's count of
real runs, a compiled step's buffers kept between calls included), a GPT step under a memory
budget of half the eager step's measured peak, and the cost of one op call (``x * y`` on 4x4
arrays) normally and while another thread traces.

    python bench/graph.py [--repeats 8] [--block 5] [--threads 1] [--separate ROUNDS] [--json out.json]

Eager and compiled steps run in one process on two copies of one model, after warm-up,
interleaved in blocks: ``--block`` eager steps, then as many compiled ones, ``--repeats`` times.
On a machine shared with other work the figure is the median over the blocks of the ratio of
the two blocks' times (wall clock), and the same for the thread's CPU time (which time spent
waiting for a core does not inflate); the minor page faults per step show when the allocator
returned a step's large arrays to the system and took them again (NumPy's allocations above
glibc's adaptive mmap threshold; whether eager steps do so varies from process to process).
``--separate N`` also runs each side alone in its own process, alternating, N times each, as
a training run has it (no allocator state shared with the other side). ``--threads`` sets the
kernels' and BLAS's threads.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _step(model, loss_fn, lr=0.01):
    import lamina
    opt = lamina.optim.SGD(model.parameters(), lr=lr)

    def step(*xs):
        opt.zero_grad()
        loss = loss_fn(model, *xs)
        loss.backward()
        opt.step()
        return loss
    return step


def _blocks(fns, args, repeats, block):
    """Per block and function: (wall seconds per step, thread CPU seconds per step, minor page
    faults per step: memory the allocator handed back to the system and took again)."""
    import resource
    out = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t, c = time.perf_counter(), time.thread_time()
            for _ in range(block):
                f(*args)
            out[k].append(((time.perf_counter() - t) / block, (time.thread_time() - c) / block,
                           (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / block))
    return out


def _kept_bytes(fn):
    """Bytes a compiled function keeps allocated between calls (its executors' buffers)."""
    return sum(ex.buffer_bytes for entries in getattr(fn, "cache", {}).values() for ex, *_ in entries)


def _peak(fn, args):
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def case(name, repeats, block, steps):
    import lamina
    from lamina.graph import compile, costs, trace
    model, loss_fn, args, unit = _setup(name)
    r = np.random.default_rng(1)  # the fresh batches of the loss curve under a budget
    twin = copy.deepcopy(model)
    eager = _step(model, loss_fn)
    compiled = compile(_step(twin, loss_fn))
    t0 = time.perf_counter()
    compiled(*args)
    first = time.perf_counter() - t0
    for _ in range(2):
        eager(*args)
        compiled(*args)
    t = _blocks({"eager": eager, "compiled": compiled}, args, repeats, block)
    med = statistics.median
    wall = {k: med(b[0] for b in v) for k, v in t.items()}
    cpu = {k: med(b[1] for b in v) for k, v in t.items()}
    faults = {k: med(b[2] for b in v) for k, v in t.items()}
    ratio = med(a[0] / b[0] for a, b in zip(t["eager"], t["compiled"]))
    cpu_ratio = med(a[1] / b[1] for a, b in zip(t["eager"], t["compiled"]))
    g_eager = trace(_step(copy.deepcopy(model), loss_fn), *args)
    ex = compiled.cache[next(iter(compiled.cache))][0][0]
    res = {
        "case": name, "eager_s": wall["eager"], "compiled_s": wall["compiled"], "speedup": ratio,
        "eager_cpu_s": cpu["eager"], "compiled_cpu_s": cpu["compiled"], "speedup_cpu": cpu_ratio,
        "eager_per_s": unit / wall["eager"], "compiled_per_s": unit / wall["compiled"], "first_call_s": first,
        "blocks": repeats, "block": block, "eager_faults": faults["eager"], "compiled_faults": faults["compiled"],
        "eager_peak_measured": _peak(eager, args), "compiled_peak_measured": _peak(compiled, args) + _kept_bytes(compiled),
        "compiled_kept_bytes": _kept_bytes(compiled),
        "eager_peak_model": costs.peak_bytes(g_eager, eager=True), "compiled_peak_model": costs.peak_bytes(compiled.graph),
        "fused_chains": ex.fused_chains, "nodes": len(compiled.graph.nodes), "steps": len(ex.steps),
    }
    if name == "gpt":
        budget = res["eager_peak_measured"] // 2
        try:
            start = copy.deepcopy(model)
            cb = compile(_step(copy.deepcopy(start), loss_fn), memory_budget=budget)
            ref = _step(copy.deepcopy(start), loss_fn)
            losses = []
            for i in range(steps):  # the loss curves of both, on fresh batches
                xs = (lamina.tensor(r.integers(0, 65, (16, 64))), lamina.tensor(r.integers(0, 65, (16, 64))))
                losses.append((cb(*xs).item(), ref(*xs).item()))
            res["budget"] = budget
            res["budget_peak_model"] = costs.peak_bytes(cb.graph)
            res["budget_peak_measured"] = _peak(cb, args) + _kept_bytes(cb)
            res["budget_losses"] = losses
            res["budget_max_loss_diff"] = max(abs(a - b) for a, b in losses)
        except MemoryError as e:
            res["budget"] = budget
            res["budget_error"] = str(e)
    return res


def _setup(name):
    """(model, loss_fn, example inputs, items per step) of one case."""
    import lamina
    import lamina.nn.functional as F
    from lamina.models import GPT, GPTConfig, LeNet5
    lamina.manual_seed(0)
    r = np.random.default_rng(0)
    if name == "lenet":
        return (LeNet5(), lambda m, x, t: F.cross_entropy(m(x), t),
                (lamina.tensor(r.standard_normal((64, 1, 28, 28)).astype(np.float32)), lamina.tensor(r.integers(0, 10, 64))),
                64)
    return (GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)), lambda m, x, t: m(x, t)[1],
            (lamina.tensor(r.integers(0, 65, (16, 64))), lamina.tensor(r.integers(0, 65, (16, 64)))), 16 * 64)


def side(name, which, steps):
    """One process training one side alone: per step (wall s, thread CPU s, minor page faults)."""
    import resource
    from lamina.graph import compile
    model, loss_fn, args, _ = _setup(name)
    f = _step(model, loss_fn)
    if which == "compiled":
        f = compile(f)
    for _ in range(3):
        f(*args)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t, c = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        f(*args)
    return ((time.perf_counter() - t) / steps, (time.thread_time() - c) / steps,
            (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps)


def separate(name, rounds, steps, threads):
    """Each side in its own process (eager, compiled, eager, ... ``rounds`` times each), as a
    training run has it: the median ratio of consecutive pairs."""
    import subprocess
    res = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for which in res:
            out = subprocess.run([sys.executable, __file__, "--side", f"{name}:{which}", "--steps", str(steps),
                                  "--threads", str(threads)], capture_output=True, text=True, check=True).stdout
            res[which].append(json.loads(out.strip().splitlines()[-1]))
    med = statistics.median
    return {
        "case": name, "rounds": rounds, "steps": steps,
        "eager_s": med(v[0] for v in res["eager"]), "compiled_s": med(v[0] for v in res["compiled"]),
        "eager_cpu_s": med(v[1] for v in res["eager"]), "compiled_cpu_s": med(v[1] for v in res["compiled"]),
        "eager_faults": med(v[2] for v in res["eager"]), "compiled_faults": med(v[2] for v in res["compiled"]),
        "speedup": med(a[0] / b[0] for a, b in zip(res["eager"], res["compiled"])),
        "speedup_cpu": med(a[1] / b[1] for a, b in zip(res["eager"], res["compiled"])),
    }


def dispatch_cost(rounds=300, n=2000):
    """ns per ``x * y`` (4x4): as ops run normally (tracing adds nothing to ``Op.__call__``), and
    while another thread is tracing (``Op.__call__`` is then the tracer's, which looks up the
    calling thread's tracer first)."""
    import lamina
    from lamina.graph.trace import _enter, _leave
    x, y = lamina.randn(4, 4), lamina.randn(4, 4)
    out = {"plain": [], "while_tracing_elsewhere": []}
    for _ in range(rounds):
        for k in out:
            if k != "plain":
                _enter()
            try:
                t = time.perf_counter()
                for _ in range(n):
                    x * y
                out[k].append((time.perf_counter() - t) / n * 1e9)
            finally:
                if k != "plain":
                    _leave()
    res = {k: min(v) for k, v in out.items()}
    res["ratio"] = res["while_tracing_elsewhere"] / res["plain"]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=8, help="blocks of each (default 8)")
    p.add_argument("--block", type=int, default=5, help="steps per block (default 5)")
    p.add_argument("--steps", type=int, default=10, help="steps of the loss curve under a memory budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", default="lenet,gpt")
    p.add_argument("--separate", type=int, default=0, metavar="ROUNDS",
                   help="also time each side alone in its own process, ROUNDS times each (--steps steps)")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--json")
    a = p.parse_args(argv)
    import lamina
    lamina.set_num_threads(a.threads)
    if a.side:  # a child of --separate
        print(json.dumps(side(*a.side.split(":"), a.steps)))
        return
    results = {"dispatch": dispatch_cost()}
    d = results["dispatch"]
    print(f"x * y (4x4): {d['plain']:.0f} ns; while another thread traces {d['while_tracing_elsewhere']:.0f} ns "
          f"({(d['ratio'] - 1) * 100:+.1f} %)")
    for name in a.cases.split(","):
        r = case(name, a.repeats, a.block, a.steps)
        results[name] = r
        print(f"{name}: eager {r['eager_s'] * 1e3:.1f} ms/step, compiled {r['compiled_s'] * 1e3:.1f} ms/step; median "
              f"ratio over {r['blocks']} blocks of {r['block']} steps {r['speedup']:.2f}x wall clock, "
              f"{r['speedup_cpu']:.2f}x CPU time ({r['eager_cpu_s'] * 1e3:.1f} and {r['compiled_cpu_s'] * 1e3:.1f} ms), "
              f"{r['eager_faults']:.0f} and {r['compiled_faults']:.0f} page faults per step; "
              f"first call {r['first_call_s']:.1f} s; {r['nodes']} nodes in {r['steps']} steps, "
              f"{r['fused_chains']} fused chains")
        print(f"  peak activation bytes: eager {r['eager_peak_measured'] / 2**20:.2f} MiB measured "
              f"({r['eager_peak_model'] / 2**20:.2f} modelled), compiled {r['compiled_peak_measured'] / 2**20:.2f} MiB "
              f"measured, {r['compiled_kept_bytes'] / 2**20:.2f} of them buffers kept between calls "
              f"({r['compiled_peak_model'] / 2**20:.2f} modelled)")
        if "budget" in r:
            if "budget_error" in r:
                print(f"  budget {r['budget'] / 2**20:.2f} MiB: {r['budget_error']}")
            else:
                print(f"  budget {r['budget'] / 2**20:.2f} MiB (half the eager measured peak): planned "
                      f"{r['budget_peak_model'] / 2**20:.2f} MiB, measured {r['budget_peak_measured'] / 2**20:.2f} MiB; "
                      f"loss curve over {len(r['budget_losses'])} steps within {r['budget_max_loss_diff']:.2e} of eager's")
    for name in a.cases.split(",") if a.separate else ():
        r = results[f"{name}_separate"] = separate(name, a.separate, a.steps, a.threads)
        print(f"{name}, each side alone in its own process ({r['rounds']} of each, {r['steps']} steps): eager "
              f"{r['eager_s'] * 1e3:.1f} ms/step, compiled {r['compiled_s'] * 1e3:.1f} ms/step; median ratio "
              f"{r['speedup']:.2f}x wall clock, {r['speedup_cpu']:.2f}x CPU time ({r['eager_cpu_s'] * 1e3:.1f} and "
              f"{r['compiled_cpu_s'] * 1e3:.1f} ms), {r['eager_faults']:.0f} and {r['compiled_faults']:.0f} page faults per step")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
