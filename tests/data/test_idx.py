"""The IDX reader on small files written here: plain, gzipped, truncated, foreign."""
import gzip
import re

import numpy as np
import pytest

from lamina.data import read_idx
from tests.data.helpers import idx_bytes, write_idx


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, dtype, gz):
    array = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / "a.idx", array, gz))
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = tmp_path / "labels.idx"  # gzipped without a .gz suffix
    path.write_bytes(gzip.compress(idx_bytes(np.arange(5, dtype=np.uint8))))
    np.testing.assert_array_equal(read_idx(path), np.arange(5))


def test_empty_dim(tmp_path):
    assert read_idx(write_idx(tmp_path / "e", np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_names_the_file(tmp_path, gz):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is truncated: shape \(10, 28, 28\) of uint8 needs 7840 "
                                         r"bytes of data, found 7740"):
        read_idx(path)


@pytest.mark.parametrize("cut", [2, 9])
def test_truncated_header(tmp_path, cut):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8))[:cut])
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is truncated"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 28, 28), np.uint8)))[:-20])
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is a damaged or truncated gzip file"):
        read_idx(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"junk")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is longer than its header says"):
        read_idx(path)


@pytest.mark.parametrize("header", [b"PK\x03\x04", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x01\x00\x08\x01"])
def test_wrong_magic_names_the_file(tmp_path, header):
    path = tmp_path / "foreign.bin"
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not an IDX file: magic number 0x{header.hex()}"):
        read_idx(path)
