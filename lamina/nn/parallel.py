"""``lamina.nn.parallel``: PyTorch's import path for the data-parallel wrappers.

``DataParallel`` is ``lamina.nn.data_parallel``'s; ``DistributedDataParallel`` lives in
``lamina.distributed`` and is loaded on first use (``lamina.distributed`` builds on
``lamina.nn``, so importing it here eagerly would be circular)."""
from .data_parallel import DataParallel  # noqa: F401


def __getattr__(name):
    if name == "DistributedDataParallel":
        from ..distributed.ddp import DistributedDataParallel
        return DistributedDataParallel
    raise AttributeError(f"module 'lamina.nn.parallel' has no attribute {name!r}")
