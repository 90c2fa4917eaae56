"""``lamina.utils.data``: the PyTorch path (``torch.utils.data``) to Lamina's data loading.

Everything here is defined in ``lamina.data`` (datasets, samplers, collation, ``DataLoader``
and its worker processes); this package only gathers the names where PyTorch programs import
them, so ``from torch.utils.data import DataLoader, TensorDataset`` becomes
``from lamina.utils.data import DataLoader, TensorDataset`` and nothing else changes.
``DistributedSampler`` comes from ``lamina.distributed`` when that is first asked for.
"""
from ...data.collate import default_collate, default_convert  # noqa: F401
from ...data.dataset import (  # noqa: F401
    ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split,
)
from ...data.loader import DataLoader  # noqa: F401
from ...data.sampler import (  # noqa: F401
    BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler,
)
from ...data.worker import WorkerInfo, get_worker_info  # noqa: F401
from . import dataloader, dataset, distributed, sampler  # noqa: F401,E402

__all__ = [
    "BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler",
    "IterableDataset", "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
    "TensorDataset", "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert",
    "get_worker_info", "random_split",
]


def __getattr__(name):
    if name == "DistributedSampler":
        return distributed.DistributedSampler
    raise AttributeError(f"module 'lamina.utils.data' has no attribute {name!r}")
