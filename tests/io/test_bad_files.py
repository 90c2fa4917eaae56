"""Missing, truncated, corrupt and foreign files give a one-line CheckpointError; nothing is
ever unpickled."""
from __future__ import annotations

import ast
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import lamina
import lamina.io as lio

GOOD = safetensors.numpy.save({"a": np.arange(12, dtype=np.float32).reshape(3, 4),
                                "b": np.ones(5, dtype=np.int64)}, metadata={"k": "v"})


def assert_refused(path, match=None):
    """Every loader refuses ``path`` with a one-line CheckpointError naming it."""
    for loader in (lio.load, lio.load_checkpoint, lio.read_metadata):
        with pytest.raises(lio.CheckpointError) as info:
            loader(path)
        message = str(info.value)
        assert Path(path).name in message and "\n" not in message, message
        if match is not None:
            assert match in message, message
    assert isinstance(info.value, ValueError)


def forge(header: dict, data: bytes = b"", length=None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def test_missing_file(tmp_path):
    assert_refused(tmp_path / "missing.safetensors", "no such file")


def test_directory(tmp_path):
    (tmp_path / "adir.safetensors").mkdir()
    assert_refused(tmp_path / "adir.safetensors", "directory")


@pytest.mark.parametrize("cut", [0, 3, 8, 20, -30, -1], ids=lambda c: f"cut{c}")
def test_truncated_file(tmp_path, cut):
    p = tmp_path / "truncated.safetensors"
    p.write_bytes(GOOD[:cut])
    assert_refused(p)


def test_truncated_lamina_checkpoint(tmp_path):
    p = tmp_path / "ckpt.safetensors"
    lio.save_checkpoint(p, {"w": lamina.randn(100), "epoch": 1})
    p.write_bytes(p.read_bytes()[:-17])
    assert_refused(p, "truncated")


def test_corrupted_header_json(tmp_path):
    data = bytearray(GOOD)
    data[8] = ord("x")  # the opening brace of the header
    p = tmp_path / "corrupt.safetensors"
    p.write_bytes(bytes(data))
    assert_refused(p, "not valid JSON")


def _data():
    return np.arange(4, dtype=np.float32).tobytes()


@pytest.mark.parametrize("content, match", [
    (forge({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, _data()[:8]), "truncated"),
    (forge({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, _data()), "truncated"),
    (forge({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, _data()), "needs 16 bytes"),
    (forge({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, _data()), "after the last tensor"),
    (forge({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, _data()), "belong to no tensor"),
    (forge({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, _data()), "overlap"),
    (forge({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}, _data()), "malformed data_offsets"),
    (forge({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, _data()), "malformed shape"),
    (forge({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, _data()[:4]), "malformed shape"),
    (forge({"a": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62], "data_offsets": [0, 16]}}, _data()), "needs"),
    (forge({"a": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, _data()), "dtype 'C64'"),
    (forge({"a": {"shape": [4], "data_offsets": [0, 16]}}, _data()), "no dtype"),
    (forge({"a": [1, 2]}, _data()), "malformed header entry"),
    (forge(["not", "an", "object"]), "not an object"),
    (forge({"__metadata__": {"k": 1}}), "__metadata__"),
    (forge({}, length=1000), "truncated"),
    (forge({}, length=2 ** 63), "more than"),
    (struct.pack("<Q", 2) + b"\xff\xfe", "not UTF-8"),
    (struct.pack("<Q", 6) + b"[[[]]]", "not an object"),
    (struct.pack("<Q", 20000) + b"[" * 20000, "not valid JSON"),
    (struct.pack("<Q", 13) + b'{"a":1,"a":2}', "duplicate key"),
], ids=["short-data", "offset-past-end", "size-mismatch", "trailing", "gap", "overlap", "reversed",
        "negative-dim", "bool-dim", "huge-shape", "unsupported-dtype", "no-dtype", "entry-not-dict",
        "not-object", "metadata-not-str", "length-past-end", "length-absurd", "not-utf8", "array",
        "deep-json", "duplicate-key"])
def test_corrupt_header(tmp_path, content, match):
    p = tmp_path / "corrupt.safetensors"
    p.write_bytes(content)
    assert_refused(p, match)


def test_bool_tensor_with_bytes_other_than_0_and_1(tmp_path):
    p = tmp_path / "bools.safetensors"
    p.write_bytes(forge({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07"))
    for loader in (lio.load, lio.load_checkpoint):
        with pytest.raises(lio.CheckpointError, match=r"bools\.safetensors.*'a' is bool but holds bytes"):
            loader(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "random.bin"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_refused(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    assert_refused(p, "too short")


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_file(tmp_path, protocol):
    p = tmp_path / "weights.pkl"
    p.write_bytes(pickle.dumps({"w": np.ones(3)}, protocol=protocol))
    assert_refused(p, "pickle")


def test_zip_file(tmp_path):
    p = tmp_path / "archive.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("data.txt", "hello")
    assert_refused(p, "zip archive")


def test_pytorch_pt_file(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, p)
    assert_refused(p, "torch.save")


def test_numpy_npy_file(tmp_path):
    p = tmp_path / "array.npy"
    np.save(p, np.ones(3))
    assert_refused(p, "NumPy .npy")


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_never_runs(tmp_path, protocol):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control), protocol=protocol))
    assert control.exists(), "the payload must be live for this test to mean anything"

    marker = tmp_path / "pwned"
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    assert_refused(p)
    assert not marker.exists()


def test_no_pickle_anywhere_in_lamina_io():
    banned = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "torch"}
    package = Path(lio.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & banned, f"{source.name} imports {names}"


# ---------------------------------------------------------------- checksums

def _flip(path, offset, count=1):
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _data_start(path):
    import struct
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + n


def test_flipped_bytes_in_a_tensor_are_detected_and_named(tmp_path):
    path = tmp_path / "w.safetensors"
    lio.save({"a.weight": lamina.randn(50, 20), "b.bias": lamina.randn(7)}, path)
    _flip(path, _data_start(path) + 100, 40)  # inside a.weight (stored first: names sort)
    with pytest.raises(lio.CheckpointError, match=r"tensor 'a.weight' \(shape \(50, 20\), float32\) is corrupt"):
        lio.load(path)


def test_flipped_bytes_in_checkpoint_optimizer_state_are_detected(tmp_path):
    path = tmp_path / "c.safetensors"
    lio.save_checkpoint(path, {"model": {"w": lamina.ones(4)}, "optimizer": {"state": {0: {"exp_avg": lamina.zeros(64)}}}})
    size = path.stat().st_size
    _flip(path, size - 64, 64)  # the last tensor's bytes
    with pytest.raises(lio.CheckpointError, match="is corrupt"):
        lio.load_checkpoint(path)


def test_edited_metadata_is_detected(tmp_path):
    path = tmp_path / "c.safetensors"
    lio.save_checkpoint(path, {"epoch": 3, "w": lamina.ones(2)})
    raw = path.read_bytes()
    assert b"epoch" in raw
    path.write_bytes(raw.replace(b"epoch", b"epocj", 1))
    with pytest.raises(lio.CheckpointError, match="metadata does not match the checksum"):
        lio.load_checkpoint(path)


def test_files_of_other_tools_without_checksums_still_load(tmp_path):
    import safetensors.numpy
    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"x": np.arange(6, dtype=np.float32)}, str(path))
    np.testing.assert_array_equal(lio.load(path)["x"].numpy(), np.arange(6, dtype=np.float32))


def test_checksum_key_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved for Lamina's checksums"):
        lio.save({"x": lamina.ones(1)}, tmp_path / "x.safetensors", metadata={"lamina.sha256": "{}"})
