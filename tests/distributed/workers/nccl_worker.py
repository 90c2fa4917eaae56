"""Run on 1 or more ranks with one GPU each: collectives on CUDA tensors go through NCCL and
match NumPy; DDP on CUDA averages gradients like one process on the global batch."""
import cupy
import numpy as np

import lamina
import lamina.distributed as dist
from lamina.nn import functional as F

dist.init("nccl")
rank, size = dist.get_rank(), dist.get_world_size()

dev = f"cuda:{dist.get_local_rank() % cupy.cuda.runtime.getDeviceCount()}"


def data(r):
    return np.arange(6, dtype=np.float64).reshape(2, 3) * (r + 1) - r


everyone = [data(r) for r in range(size)]
for op, ref in (("sum", np.sum(everyone, 0)), ("avg", np.mean(everyone, 0)), ("max", np.max(everyone, 0))):
    for dtype in (lamina.float64, lamina.float32):
        t = lamina.tensor(data(rank), dtype=dtype, device=dev)
        dist.all_reduce(t, op=op)
        np.testing.assert_allclose(t.cpu().numpy(), ref, rtol=1e-6, err_msg=op)
assert dist.current_group().nccl(t.device.index) is not None, "CUDA tensors did not go through NCCL"
t = lamina.tensor(data(rank), device=dev)
dist.broadcast(t, src=size - 1)
np.testing.assert_array_equal(t.cpu().numpy(), data(size - 1))
out = [lamina.zeros(2, 3, dtype=lamina.float64, device=dev) for _ in range(size)]
dist.all_gather(out, lamina.tensor(data(rank), device=dev))
for r in range(size):
    np.testing.assert_array_equal(out[r].cpu().numpy(), data(r))
res = lamina.zeros(2, 3, dtype=lamina.float64, device=dev)
dist.reduce_scatter(res, [lamina.tensor(data(rank) + k, device=dev) for k in range(size)])
np.testing.assert_array_equal(res.cpu().numpy(), sum(data(r) + rank for r in range(size)))
if rank == 0:
    print("OK nccl collectives", flush=True)

lamina.manual_seed(rank)
model = lamina.models.MLP((6, 8, 3)).to(dev, lamina.float64)
ddp = dist.DistributedDataParallel(model, bucket_mb=1e-4)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((2 * size, 6)), rng.integers(0, 3, 2 * size)
F.cross_entropy(ddp(lamina.tensor(x[2 * rank:2 * rank + 2], device=dev)),
                lamina.tensor(y[2 * rank:2 * rank + 2], device=dev)).backward()
ref = lamina.models.MLP((6, 8, 3)).double()
ref.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
F.cross_entropy(ref(lamina.tensor(x)), lamina.tensor(y)).backward()
for p, q in zip(model.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.cpu().numpy(), q.grad.numpy(), rtol=0, atol=1e-12)
if rank == 0:
    print("OK nccl ddp", flush=True)
