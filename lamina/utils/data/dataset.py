"""``torch.utils.data.dataset``'s names: the dataset classes and ``random_split``."""
from ...data.dataset import (  # noqa: F401
    ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split,
)
