"""Run on 2 ranks: train with DDP, rank 0 writing a checkpoint after every step; at step 3 rank 1
fails (``raise``: an exception; ``kill``: SIGKILL to itself) while rank 0 goes on into the next
all-reduce. The job must end rather than hang. Prints the failure time for the test."""
import os
import signal
import sys
import time

import numpy as np

import lamina
import lamina.distributed as dist
from lamina import optim
from lamina.nn import functional as F

mode, ckpt = sys.argv[1], sys.argv[2]
dist.init()
rank = dist.get_rank()
lamina.manual_seed(0)
model = lamina.models.MLP((8, 32, 4))
ddp = dist.DistributedDataParallel(model)
opt = optim.SGD(ddp.parameters(), lr=0.1)
rng = np.random.default_rng(rank)
for step in range(1000):
    if rank == 1 and step == 3:
        print(f"FAILING {mode} at {time.time():.3f}", flush=True)
        if mode == "raise":
            raise ValueError("rank 1 cannot read its shard")
        os.kill(os.getpid(), signal.SIGKILL)
    opt.zero_grad()
    F.cross_entropy(ddp(lamina.tensor(rng.standard_normal((4, 8)))), lamina.tensor(rng.integers(0, 4, 4))).backward()
    opt.step()
    if rank == 0:
        lamina.io.save(model.state_dict(), ckpt, metadata={"step": str(step)})
