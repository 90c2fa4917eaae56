"""Data loading: datasets, batching with ``DataLoader``, and dataset sources (MNIST, ...)."""
from .collate import default_collate  # noqa: F401
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split  # noqa: F401
from .idx import read_idx  # noqa: F401
from .loader import DataLoader  # noqa: F401
from .mnist import MNIST, FashionMNIST  # noqa: F401
from .shakespeare import shakespeare_text  # noqa: F401
from .synthetic import Seq2SeqVocab, SyntheticSeq2Seq  # noqa: F401
from .text import BlockDataset, CharTokenizer, load_text, random_blocks, split_tokens  # noqa: F401
