"""Run ``lamina <argv>`` on every rank, with rank 1 raising at its ``FAIL_AT``-th cross-entropy
(inside training) while rank 0 goes on into the next all-reduce. Prints the failure time."""
import sys
import time

import lamina.distributed as dist
from lamina.cli import main
from lamina.nn import functional as F

FAIL_AT = 30
rank = dist.init().rank
if rank == 1:
    real = F.cross_entropy
    calls = [0]

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == FAIL_AT:
            print(f"FAILING raise at {time.time():.3f}", flush=True, file=sys.stderr)
            raise ValueError("rank 1 cannot read its batch")
        return real(*args, **kwargs)

    F.cross_entropy = failing
sys.exit(main(sys.argv[1:]))
