"""Compiled kernels alone, forward+backward, side by side with PyTorch's CPU ops at 1 and 2
threads: ``python -m bench.kernels [--quick] [--threads 1 2] [--json FILE]``.

Each case calls the ``lamina.kernels`` functions directly on NumPy arrays (what an op does once
it is wired to them) against the same work in PyTorch (forward, then backward through autograd,
or PyTorch's fused Adam). Times are medians of interleaved rounds (``bench.harness.measure``);
the ratio is PyTorch's time / Lamina's, so above 1 means the kernel is faster. Convolutions also
report their rate as a share of this machine's float32 GEMM peak at the same thread count.
Kernels compile (or load from the cache) during the warm-up calls, outside the timing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as TF

from lamina import kernels as K

from .harness import measure


def _t(a, grad=False):
    return torch.from_numpy(a).requires_grad_(grad)


def gelu(rng, quick):
    n = 1 << (7 if quick else 22)
    x, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    tx, tg = _t(x, True), _t(g)

    def lam():
        y, cdf = K.gelu_forward(x, keep_cdf=True)
        K.gelu_backward(g, x, cdf=cdf)

    def tor():
        tx.grad = None
        TF.gelu(tx).backward(tg)
    return lam, tor, f"{n}", None


def layer_norm(rng, quick):
    r, f = (16, 64) if quick else (4096, 768)
    x, g = rng.standard_normal((r, f), dtype=np.float32), rng.standard_normal((r, f), dtype=np.float32)
    w, b = rng.standard_normal(f, dtype=np.float32), rng.standard_normal(f, dtype=np.float32)
    tx, tw, tb, tg = _t(x, True), _t(w, True), _t(b, True), _t(g)

    def lam():
        y, mean, rstd = K.layer_norm_forward(x, f, w, b)
        K.layer_norm_backward(g, x, mean, rstd, f, w)

    def tor():
        tx.grad = tw.grad = tb.grad = None
        TF.layer_norm(tx, (f,), tw, tb).backward(tg)
    return lam, tor, f"{r}x{f}", None


def softmax(rng, quick, log):
    r, c = (4, 257) if quick else (32, 50257)
    x, g = rng.standard_normal((r, c), dtype=np.float32), rng.standard_normal((r, c), dtype=np.float32)
    tx, tg = _t(x, True), _t(g)
    fwd, bwd = (K.log_softmax_forward, K.log_softmax_backward) if log else (K.softmax_forward, K.softmax_backward)
    tf = TF.log_softmax if log else TF.softmax

    def lam():
        bwd(g, fwd(x))

    def tor():
        tx.grad = None
        tf(tx, -1).backward(tg)
    return lam, tor, f"{r}x{c}", None


def cross_entropy(rng, quick, rows, classes):
    if quick:
        rows, classes = min(rows, 8), min(classes, 257)
    x, t = rng.standard_normal((rows, classes), dtype=np.float32), rng.integers(0, classes, rows)
    tx, tt = _t(x, True), _t(t)

    def lam():
        K.cross_entropy(x, t)

    def tor():
        tx.grad = None
        TF.cross_entropy(tx, tt).backward()
    return lam, tor, f"{rows}x{classes}", None


def conv(rng, quick, batch, cin, cout, hw, k, pad, input_grad=True):
    if quick:
        batch, cin, cout, hw = min(batch, 4), min(cin, 8), min(cout, 8), min(hw, 14)
    x, w = rng.standard_normal((batch, cin, hw, hw), dtype=np.float32), rng.standard_normal((cout, cin, k, k), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32)
    out = hw + 2 * pad - k + 1
    g = rng.standard_normal((batch, cout, out, out), dtype=np.float32)
    tx, tw, tb, tg = _t(x, input_grad), _t(w, True), _t(b, True), _t(g)
    flops = 2.0 * batch * cout * cin * k * k * out * out * (3 if input_grad else 2)

    def lam():
        y, cols = K.conv2d_forward(x, w, b, padding=pad, keep_columns=True)
        K.conv2d_backward(g, x, w, padding=pad, need_input=input_grad, columns=cols)

    def tor():
        tx.grad = tw.grad = tb.grad = None
        TF.conv2d(tx, tw, tb, padding=pad).backward(tg)
    return lam, tor, f"{batch}x{cin}x{hw}x{hw} * {cout}x{cin}x{k}x{k}", flops


def adam(rng, quick, n):
    n = min(n, 4096) if quick else n
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    tp = torch.from_numpy(p.copy()).requires_grad_()
    tp.grad = torch.from_numpy(g)
    opt = torch.optim.Adam([tp], lr=1e-3, fused=True)
    step = [0]

    def lam():
        step[0] += 1
        K.adam_update(p, g, m, v, None, step[0], 1e-3)

    def tor():
        opt.step()
    return lam, tor, f"{n}", None


LENET_C1 = dict(batch=64, cin=1, cout=6, hw=28, k=5, pad=2, input_grad=False)
LENET_C2 = dict(batch=64, cin=6, cout=16, hw=14, k=5, pad=0)
RESNET_S1 = dict(batch=32, cin=64, cout=64, hw=56, k=3, pad=1)

CASES = [
    ("gelu 4M fwd+bwd", gelu, {}),
    ("layer_norm 4096x768 fwd+bwd", layer_norm, {}),
    ("softmax 32x50257 fwd+bwd", softmax, dict(log=False)),
    ("log_softmax 32x50257 fwd+bwd", softmax, dict(log=True)),
    ("cross_entropy 64x10 fwd+bwd", cross_entropy, dict(rows=64, classes=10)),
    ("cross_entropy 512x50257 fwd+bwd", cross_entropy, dict(rows=512, classes=50257)),
    ("conv2d lenet-c1 fwd+bwd", conv, LENET_C1),
    ("conv2d lenet-c2 fwd+bwd", conv, LENET_C2),
    ("conv2d resnet18-s1 fwd+bwd", conv, RESNET_S1),
    ("adam 61706 (LeNet-5)", adam, dict(n=61706)),
    ("adam 10M", adam, dict(n=10_000_000)),
]


def _peak(threads, quick):
    n = 512 if quick else 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(3):
        import time
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times)


def run(threads_list=(1, 2), quick=False, rounds=5, target_s=0.2, only=None):
    records = []
    for threads in threads_list:
        K.set_num_threads(threads)
        torch.set_num_threads(threads)
        peak = _peak(threads, quick)
        print(f"\n{threads} thread(s); float32 sgemm peak {peak / 1e9:.1f} GFLOP/s", flush=True)
        print(f"{'case':34s} {'shape':28s} {'lamina':>10s} {'pytorch':>10s} {'ratio':>6s} {'%peak':>6s}")
        for name, build, kw in CASES:
            if only and not any(o in name for o in only):
                continue
            rng = np.random.default_rng(0)
            lam, tor, shape, flops = build(rng, quick, **kw)
            timing = measure({"lamina": lam, "pytorch": tor}, {"lamina": _none, "pytorch": _none},
                             rounds=rounds if not quick else 1, target_s=target_s if not quick else 0.01,
                             warmup=2, settle_s=0.0 if quick else 0.05)
            ls = statistics.median(timing["samples_s"]["lamina"])
            ts = statistics.median(timing["samples_s"]["pytorch"])
            pct = 100 * flops / ls / peak if flops else None
            rec = dict(name=name, threads=threads, shape=shape, lamina_s=ls, pytorch_s=ts, ratio=ts / ls,
                       lamina_pct_peak=pct, pytorch_pct_peak=100 * flops / ts / peak if flops else None)
            records.append(rec)
            print(f"{name:34s} {shape:28s} {_ms(ls):>10s} {_ms(ts):>10s} {ts / ls:6.2f} "
                  f"{'' if pct is None else f'{pct:5.0f}%':>6s}", flush=True)
    return records


def _ms(s):
    return f"{s * 1e6:.1f}us" if s < 1e-3 else f"{s * 1e3:.2f}ms"


def _none():
    return None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round (a smoke test)")
    p.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    p.add_argument("--json", help="write the records to this file")
    args = p.parse_args(argv)
    if not K.enabled():
        sys.exit("bench.kernels: kernels are off (LAMINA_KERNELS=0 or Numba missing)")
    records = run(args.threads, args.quick, only=args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
