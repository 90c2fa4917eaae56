"""Data-parallel training over processes and machines: MPI (``mpi4py``) for the process group
and CPU tensors, NCCL (CuPy) for CUDA tensors.

Start ``N`` processes with ``mpiexec -n N python -m mpi4py train.py``; in the script::

    import lamina.distributed as dist
    dist.init()                                   # rank, world size, local rank from MPI
    sampler = dist.DistributedSampler(dataset)    # this rank's shard, reshuffled per epoch
    model = dist.DistributedDataParallel(model)   # same start everywhere, averaged gradients
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        ...                                       # the usual loop; only rank 0 writes files

Without ``mpiexec`` the group is the one process and everything still runs. ``mpi4py`` is
imported on ``init()`` only, so importing this package costs nothing.
"""
from .ddp import DistributedDataParallel  # noqa: F401
from .group import (  # noqa: F401
    Group,
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_reduce,
    barrier,
    broadcast,
    current_group,
    destroy_process_group,
    get_backend,
    get_local_rank,
    get_local_world_size,
    get_rank,
    get_world_size,
    init,
    init_process_group,
    is_available,
    is_initialized,
    launched_by_mpi,
    reduce_scatter,
    reduce_scatter_tensor,
)
from .sampler import DistributedSampler  # noqa: F401
from .sync_batchnorm import SyncBatchNorm, all_reduce_sum  # noqa: F401
from .training import DataParallelRun  # noqa: F401
