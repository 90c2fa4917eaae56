"""Run on 2+ ranks: collectives against NumPy references, the mismatch errors, SyncBatchNorm
against BatchNorm on the whole batch, and DDP's unused-parameter and no_sync paths.

Prints ``OK <check>`` per passed check (rank 0); any failure raises, which aborts the job.
"""
import numpy as np

import lamina
import lamina.distributed as dist
from lamina import nn

g = dist.init()
rank, size = dist.get_rank(), dist.get_world_size()
assert dist.is_initialized() and size >= 2, size
assert 0 <= dist.get_local_rank() < dist.get_local_world_size() <= size


def ok(name):
    dist.barrier()
    if rank == 0:
        print("OK", name, flush=True)


def data(r, shape=(3, 4), dtype=np.float64):
    """Rank ``r``'s values: distinct per rank and element, exact in every dtype tested."""
    return (np.arange(np.prod(shape)).reshape(shape) * (r + 1) - 3 * r).astype(dtype)


everyone = [data(r) for r in range(size)]

# ---------------------------------------------------------------- all_reduce
refs = {"sum": np.sum(everyone, 0), "avg": np.mean(everyone, 0), "max": np.max(everyone, 0),
        "min": np.min(everyone, 0), "product": np.prod(everyone, 0)}
for op, ref in refs.items():
    for dtype in (np.float64, np.float32, np.int64, lamina.float16, lamina.bfloat16):
        if op == "avg" and dtype is np.int64:
            continue
        if op == "product" and dtype in (lamina.float16, lamina.bfloat16):
            continue  # products overflow their range
        t = lamina.tensor(data(rank, dtype=dtype))
        dist.all_reduce(t, op=op)
        want = ref.astype(dtype)
        assert t.dtype == np.dtype(dtype), (op, t.dtype)
        np.testing.assert_allclose(t.numpy().astype(np.float64), want.astype(np.float64), rtol=1e-2 if dtype in (
            lamina.float16, lamina.bfloat16) else 1e-12, err_msg=f"{op} {dtype}")
t = lamina.tensor(data(rank))
work = dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True)
work.wait()
assert work.is_completed()
np.testing.assert_array_equal(t.numpy(), refs["sum"])
# a non-contiguous view is reduced in place too
base = lamina.tensor(np.stack([data(rank), np.zeros((3, 4))], axis=-1))
view = base[..., 0]
dist.all_reduce(view)
np.testing.assert_array_equal(base.numpy()[..., 0], refs["sum"])
ok("all_reduce")

# ---------------------------------------------------------------- broadcast, all_gather, reduce_scatter
for src in range(size):
    t = lamina.tensor(data(rank))
    dist.broadcast(t, src=src)
    np.testing.assert_array_equal(t.numpy(), data(src))
t = lamina.tensor(data(rank, dtype=lamina.bfloat16))
dist.broadcast(t, src=size - 1)
np.testing.assert_array_equal(t.numpy().astype(np.float64), data(size - 1).astype(lamina.bfloat16).astype(np.float64))
ok("broadcast")

out = [lamina.zeros(3, 4, dtype=lamina.float64) for _ in range(size)]
dist.all_gather(out, lamina.tensor(data(rank)))
for r in range(size):
    np.testing.assert_array_equal(out[r].numpy(), data(r))
ok("all_gather")

# rank r contributes data(r) + 10 * k to slot k; slot `rank` is the sum over ranks of theirs
inputs = [lamina.tensor(data(rank) + 10.0 * k) for k in range(size)]
res = lamina.zeros(3, 4, dtype=lamina.float64)
dist.reduce_scatter(res, inputs)
np.testing.assert_array_equal(res.numpy(), sum(data(r) + 10.0 * rank for r in range(size)))
dist.reduce_scatter(res, inputs, op=dist.ReduceOp.MAX)
np.testing.assert_array_equal(res.numpy(), np.max([data(r) + 10.0 * rank for r in range(size)], 0))
# the concatenating forms
big = lamina.zeros(3 * size, 4, dtype=lamina.float64)
dist.all_gather_into_tensor(big, lamina.tensor(data(rank)))
np.testing.assert_array_equal(big.numpy(), np.concatenate(everyone))
res = lamina.zeros(3, 4, dtype=lamina.float64)
dist.reduce_scatter_tensor(res, lamina.tensor(np.concatenate([data(rank) + 10.0 * k for k in range(size)])))
np.testing.assert_array_equal(res.numpy(), sum(data(r) + 10.0 * rank for r in range(size)))
try:
    dist.all_gather_into_tensor(lamina.zeros(3, 4, dtype=lamina.float64), lamina.tensor(data(rank)))
except ValueError as e:
    assert f"({size} ranks x [3, 4])" in str(e), e
else:
    raise AssertionError("a wrong output size was accepted")
ok("reduce_scatter")

# ---------------------------------------------------------------- mismatches: the same clear error everywhere
for make, needle in ((lambda: lamina.zeros(3 + rank, dtype=lamina.float64), "rank 0 has float64[3], rank 1 has float64[4]"),
                     (lambda: lamina.zeros(3, dtype=lamina.float32 if rank else lamina.float64),
                      "rank 0 has float64[3], rank 1 has float32[3]")):
    for call in (lambda t: dist.all_reduce(t), lambda t: dist.broadcast(t, 0),
                 lambda t: dist.all_gather([lamina.zeros_like(t) for _ in range(size)], t)):
        try:
            call(make())
        except ValueError as e:
            msg = str(e)
            assert needle in msg and "\n" not in msg, msg
        else:
            raise AssertionError("a mismatch across ranks was not reported")
try:
    dist.all_reduce(lamina.zeros(2), op="median")
except ValueError as e:
    assert "ReduceOp" in str(e), e
else:
    raise AssertionError("a bad op was accepted")
ok("mismatch errors")

# ---------------------------------------------------------------- SyncBatchNorm == BatchNorm on the whole batch
for shape, bn_cls in (((4, 3, 5, 5), nn.BatchNorm2d), ((6, 3), nn.BatchNorm1d)):
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((size,) + shape)
    gy_all = rng.standard_normal((size,) + shape)
    lamina.manual_seed(0)
    ref = bn_cls(3).double()
    with lamina.no_grad():
        ref.weight.copy_(lamina.tensor(rng.standard_normal(3)))
        ref.bias.copy_(lamina.tensor(rng.standard_normal(3)))
    sync = dist.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(bn_cls(3).double()))[0]
    assert isinstance(sync, dist.SyncBatchNorm)
    sync.load_state_dict(ref.state_dict())
    x = lamina.tensor(x_all[rank], requires_grad=True)
    y = sync(x)
    y.backward(lamina.tensor(gy_all[rank]))
    xr = lamina.tensor(np.concatenate(list(x_all)), requires_grad=True)
    yr = ref(xr)
    yr.backward(lamina.tensor(np.concatenate(list(gy_all))))
    n = shape[0]
    np.testing.assert_allclose(y.detach().numpy(), yr.detach().numpy()[rank * n:(rank + 1) * n], rtol=0, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy()[rank * n:(rank + 1) * n], rtol=0, atol=1e-12)
    # parameter gradients: each rank holds its shard's part; their sum is the whole batch's
    for p, q in ((sync.weight, ref.weight), (sync.bias, ref.bias)):
        total = p.grad.clone()
        dist.all_reduce(total)
        np.testing.assert_allclose(total.numpy(), q.grad.numpy(), rtol=0, atol=1e-12)
    for b in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(sync, b).numpy(), getattr(ref, b).numpy(), rtol=0, atol=1e-14)
    sync.eval()
    ref.eval()
    np.testing.assert_allclose(sync(lamina.tensor(x_all[rank])).detach().numpy(), ref(lamina.tensor(x_all[rank])).detach().numpy(),
                               rtol=0, atol=1e-14)
ok("SyncBatchNorm")

# all_reduce_sum is differentiable: d/dx_r of sum_r' w_r' * (sum_r x_r) = sum_r' w_r'
x = lamina.tensor(data(rank), requires_grad=True)
(dist.all_reduce_sum(x) * float(rank + 1)).sum().backward()
np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), sum(r + 1.0 for r in range(size))))
ok("all_reduce_sum backward")


# ---------------------------------------------------------------- DDP: unused parameters, no_sync, misuse
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)
        self.never = nn.Linear(4, 1)

    def forward(self, x, head):
        return (self.a if head == "a" else self.b)(self.body(x))


lamina.manual_seed(1)
model = TwoHeads().double()
try:
    dist.DistributedDataParallel(model)(lamina.ones(2, 4, dtype=lamina.float64), "a")
except RuntimeError as e:
    assert "find_unused_parameters=True" in str(e) and "never.weight" in str(e), e
else:
    raise AssertionError("unused parameters were not reported")
ddp = dist.DistributedDataParallel(model, find_unused_parameters=True, bucket_mb=1e-4)
assert len(ddp.bucket_sizes()) > 2
x = lamina.tensor(data(rank, (2, 4)))
# rank 0 trains head a, the others head b: a and b each get the gradient of one rank / size
ddp(x, "a" if rank == 0 else "b").sum().backward()
ref = TwoHeads().double()
ref.load_state_dict(model.state_dict())
for r in range(size):
    ref(lamina.tensor(data(r, (2, 4))), "a" if r == 0 else "b").sum().backward()
for (name, p), q in zip(model.named_parameters(), ref.parameters()):
    if name.startswith("never"):
        assert p.grad is None, name  # no rank used it
    else:
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy() / size, rtol=0, atol=1e-12, err_msg=name)
ok("DDP find_unused_parameters")

# no_sync: two local micro-batches, then a synchronised one == the mean over everything
model.zero_grad()
ref.zero_grad()
with ddp.no_sync():
    ddp(x, "a").sum().backward()
    ddp(x * 2.0, "a").sum().backward()
local = model.body.weight.grad.numpy().copy()
ddp(x * 3.0, "a").sum().backward()
for r in range(size):
    for k in (1.0, 2.0, 3.0):
        ref(lamina.tensor(data(r, (2, 4))) * k, "a").sum().backward()
np.testing.assert_allclose(model.body.weight.grad.numpy(), ref.body.weight.grad.numpy() / size, rtol=0, atol=1e-12)
assert not np.allclose(local * size, ref.body.weight.grad.numpy())  # the no_sync part really stayed local
ok("DDP no_sync")

# outputs of forward that do not feed the loss: settled inside that same backward
class Fork(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)

    def forward(self, x):
        h = self.body(x)
        return self.a(h), self.b(h)


lamina.manual_seed(3)
fork = Fork().double()
fork_ref = Fork().double()
fork_ref.load_state_dict(fork.state_dict())
strict = dist.DistributedDataParallel(fork, bucket_mb=1e-4)
oa, ob = strict(x)
try:
    oa.sum().backward()
except RuntimeError as e:
    assert "this backward produced no gradients for b.weight, b.bias" in str(e), e
    assert "find_unused_parameters=True" in str(e), e
else:
    raise AssertionError("an output left out of the loss was not reported by backward")
fork.zero_grad()
oa, ob = strict(x)  # the wrapper is usable again after the error
(oa.sum() + 2.0 * ob.sum()).backward()
for r in range(size):
    ra, rb = fork_ref(lamina.tensor(data(r, (2, 4))))
    (ra.sum() + 2.0 * rb.sum()).backward()
for (name, p), q in zip(fork.named_parameters(), fork_ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy() / size, rtol=0, atol=1e-12, err_msg=name)

fork = Fork().double()  # a model of its own: the hooks of the first wrapper stay on the old one
fork.load_state_dict(fork_ref.state_dict())
fork_ref.zero_grad()
loose = dist.DistributedDataParallel(fork, find_unused_parameters=True, bucket_mb=1e-4)
# rank 0's loss uses head a, the others' head b; both heads are computed everywhere
oa, ob = loose(x)
(oa if rank == 0 else ob).sum().backward()
# averaged as soon as backward returns, with no later forward needed
for r in range(size):
    ra, rb = fork_ref(lamina.tensor(data(r, (2, 4))))
    (ra if r == 0 else rb).sum().backward()
for (name, p), q in zip(fork.named_parameters(), fork_ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy() / size, rtol=0, atol=1e-12, err_msg=name)
fork.zero_grad()
oa, ob = loose(x)
oa.sum().backward()  # no rank used head b: its gradients stay None
assert fork.b.weight.grad is None and fork.b.bias.grad is None and fork.a.weight.grad is not None
ok("DDP outputs outside the loss")

# a loss term on the parameters outside forward is refused, not silently left unsynchronised
model.zero_grad()
try:
    out = ddp(x, "a")
    (out.sum() + (model.a.weight * model.a.weight).sum()).backward()
except RuntimeError as e:
    assert "after its bucket was all-reduced" in str(e), e
else:
    raise AssertionError("a gradient arriving after the reduction was not reported")
# a model cast after wrapping is refused with the reason, not reduced into the old buffers
lamina.manual_seed(2)
late = nn.Linear(3, 2).double()
ddp_late = dist.DistributedDataParallel(late)
late.float()
try:
    ddp_late(lamina.ones(2, 3)).sum().backward()
except RuntimeError as e:
    assert "is float32 on cpu but the parameter was float64 on cpu when wrapped" in str(e), e
else:
    raise AssertionError("a model cast after wrapping was not reported")
ok("DDP misuse errors")

# DistributedSampler on the real group: together the ranks cover every index once
for n, drop in ((10, False), (11, False), (11, True)):
    sampler = dist.DistributedSampler(range(n), drop_last=drop, seed=3)
    sampler.set_epoch(2)
    mine = np.array(list(sampler), dtype=np.int64)
    assert len(mine) == len(sampler)
    gathered = [lamina.zeros(len(mine), dtype=lamina.int64) for _ in range(size)]
    dist.all_gather(gathered, lamina.tensor(mine))
    allidx = np.concatenate([t.numpy() for t in gathered])
    if drop:
        assert len(set(allidx.tolist())) == len(allidx) == n // size * size
    else:
        assert set(allidx.tolist()) == set(range(n)) and len(allidx) == -(-n // size) * size
ok("DistributedSampler on the group")

# the training commands' helper
dp = dist.DataParallelRun.setup(4 * size)
assert dp.per_rank_batch == 4 and dp.is_main == (rank == 0) and dp.distributed
assert dp.mean(float(rank)) == (size - 1) / 2
assert isinstance(dp.wrap(nn.Linear(2, 2)), dist.DistributedDataParallel)
assert dp.sampler(range(10)).rank == rank
xs, ys = dp.shard((lamina.arange(4 * size), np.arange(4 * size)))
assert xs.tolist() == list(range(4 * rank, 4 * rank + 4)) and ys.tolist() == xs.tolist()
try:
    dist.DataParallelRun.setup(2 * size + 1)
except ValueError as e:
    assert "does not split evenly" in str(e), e
else:
    raise AssertionError("an uneven global batch was accepted")
ok("DataParallelRun")

dist.destroy_process_group()
assert not dist.is_initialized()
