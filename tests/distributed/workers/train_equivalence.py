"""Run on 2+ ranks: N steps of data-parallel training equal N steps of one process on the same
global batch (float64), for an MLP, LeNet-5 and a tiny GPT, with several optimisers, gradient
clipping, and buckets from one per model to one per parameter.

Rank 0 also trains the single-process reference and compares parameters and buffers (BatchNorm
running statistics included); prints ``OK <case> <max diff>``.
Every rank builds its replica from a different seed: DDP's broadcast from rank 0 must make them
equal before the first step.
"""
import numpy as np

import lamina
import lamina.distributed as dist
from lamina import nn, optim
from lamina.nn import functional as F

STEPS = 3
TOL = 1e-10

dist.init()
rank, size = dist.get_rank(), dist.get_world_size()
lamina.set_default_dtype(lamina.float64)


def mlp():
    return lamina.models.MLP((12, 16, 16, 5))


def lenet():
    return lamina.models.LeNet5()


def gpt():
    return lamina.models.GPT(lamina.models.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))


def convbn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def batches(kind, global_batch, seed):
    rng = np.random.default_rng(seed)
    for _ in range(STEPS):
        if kind == "gpt":
            x = rng.integers(0, 11, (global_batch, 8))
            yield x, np.roll(x, -1, axis=1)
        else:
            shape = {"mlp": (global_batch, 12), "lenet": (global_batch, 1, 28, 28), "convbn": (global_batch, 1, 8, 8)}[kind]
            yield rng.standard_normal(shape), rng.integers(0, 5 if kind == "mlp" else 10, global_batch)


def loss_of(kind, model, x, y):
    if kind == "gpt":
        return model(lamina.tensor(x), lamina.tensor(y))[1]
    return F.cross_entropy(model(lamina.tensor(x)), lamina.tensor(y))


def make_opt(name, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    if name == "adam":
        return optim.Adam(params, lr=1e-2)
    return optim.AdamW(params, lr=1e-2, weight_decay=0.1)


def train(kind, build, opt_name, model, batch_slice, clip):
    opt = make_opt(opt_name, model.parameters())
    for x, y in batches(kind, 4 * size, seed=7):
        opt.zero_grad()
        loss_of(kind, model, x[batch_slice], y[batch_slice]).backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()


CASES = [
    # name, build, optimiser, clip, bucket_mb
    ("mlp", mlp, "sgd", None, 25),
    ("mlp", mlp, "adam", 0.05, 1e-4),  # one bucket per parameter
    ("lenet", lenet, "adam", 0.5, 0.02),
    ("gpt", gpt, "adamw", 0.1, 0.005),  # tied embedding: two gradient deliveries per step
    # SyncBatchNorm on the ranks against BatchNorm on the whole batch: its all-reduces in forward
    # and backward run between the gradient buckets' non-blocking ones
    ("convbn", convbn, "sgd", None, 1e-3),
]

for kind, build, opt_name, clip, bucket_mb in CASES:
    lamina.manual_seed(100 + rank)
    model = build()
    if kind == "convbn":
        model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model, bucket_mb=bucket_mb)
    per_rank = 4
    train(kind, build, opt_name, ddp, slice(rank * per_rank, (rank + 1) * per_rank), clip)
    # gather the replicas' parameters: they must be identical, and equal the reference
    flat = np.concatenate([t.detach().numpy().ravel().astype(np.float64) for t in model.state_dict().values()])
    gathered = [lamina.zeros(flat.size, dtype=lamina.float64) for _ in range(size)]
    dist.all_gather(gathered, lamina.tensor(flat))
    if rank == 0:
        for r in range(1, size):
            assert np.array_equal(gathered[r].numpy(), flat), f"{kind}: rank {r}'s replica differs from rank 0's"
        lamina.manual_seed(100)
        ref = build()
        train(kind, build, opt_name, ref, slice(None), clip)
        want = np.concatenate([t.detach().numpy().ravel().astype(np.float64) for t in ref.state_dict().values()])
        lamina.manual_seed(100)
        start = np.concatenate([t.detach().numpy().ravel().astype(np.float64) for t in build().state_dict().values()])
        moved = np.abs(want - start).max()
        diff = np.abs(flat - want).max()
        assert moved > 1e-3, f"{kind}: training did not move the parameters ({moved})"
        assert diff <= TOL, f"{kind} {opt_name}: {size} ranks differ from one process by {diff:.3g}"
        print(f"OK {kind} {opt_name} buckets={len(ddp.bucket_sizes())} max_abs_diff={diff:.2e}", flush=True)
    dist.barrier()
