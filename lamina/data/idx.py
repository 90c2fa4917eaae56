"""Reader for IDX files, the format of MNIST and Fashion-MNIST (optionally gzipped).

Layout: two zero bytes, a type code, the number of dims; then each dim as a big-endian uint32;
then the values, big-endian, row-major. Anything else is reported as a ``ValueError`` naming
the file, never as a traceback from inside NumPy or gzip.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file at ``path`` (native byte order, writable).

    A gzipped file is recognised by its content, not its name.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_idx: {path} is a damaged or truncated gzip file ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"read_idx: {path} is truncated: {len(raw)} bytes, shorter than the 4-byte IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _TYPES or ndim == 0:
        raise ValueError(f"read_idx: {path} is not an IDX file: magic number 0x{raw[:4].hex()} (expected "
                         "0x0000 then a type code in 08 09 0b 0c 0d 0e, then a dim count >= 1)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated: the header announces {ndim} dims "
                         f"({header} bytes) but the file has {len(raw)} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "longer than its header says"
        raise ValueError(f"read_idx: {path} is {problem}: shape {shape} of {dtype.name} needs "
                         f"{expected} bytes of data, found {found}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
