"""``lamina.nn.parallel.DistributedDataParallel``: PyTorch's import path for the data-parallel
wrapper, which lives in ``lamina.distributed`` (loaded on first use: ``lamina.distributed``
builds on ``lamina.nn``)."""


def __getattr__(name):
    if name == "DistributedDataParallel":
        from ..distributed.ddp import DistributedDataParallel
        return DistributedDataParallel
    raise AttributeError(f"module 'lamina.nn.parallel' has no attribute {name!r}")
