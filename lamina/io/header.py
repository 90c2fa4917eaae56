"""The safetensors container: its dtype codes, and a strict check of a file's header.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header, then the
tensor bytes. The header maps each tensor name to its dtype, shape and [begin, end) byte offsets
into the data, plus an optional "__metadata__" dict of strings. ``read_header`` checks all of it
against the file's real size before any byte reaches the safetensors decoder, so a damaged or
foreign file is reported as a one-line ``CheckpointError``, never as a decoder traceback.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from .. import backend
from .errors import cannot_load

# safetensors dtype code -> the NumPy dtype Lamina uses for it: exactly the dtypes Lamina has.
DTYPES = {
    "F64": backend.float64, "F32": backend.float32, "F16": backend.float16, "BF16": backend.bfloat16,
    "I64": backend.int64, "I32": backend.int32, "I16": backend.int16, "I8": backend.int8,
    "U8": backend.uint8, "BOOL": backend.bool_,
}
CODES = {dtype: code for code, dtype in DTYPES.items()}

MAX_HEADER_BYTES = 100_000_000  # the safetensors library refuses larger headers too

# Leading bytes of files people mistake for weight files, so the error can say what it got.
_FOREIGN = (
    (tuple(b"\x80" + bytes([p]) for p in range(2, 6)),
     "a Python pickle (Lamina never unpickles files)"),
    ((b"PK\x03\x04", b"PK\x05\x06"),
     "a zip archive such as a PyTorch .pt file from torch.save (Lamina never unpickles files; "
     "convert it with safetensors.torch.save_file)"),
    ((b"\x93NUMPY",), "a NumPy .npy file"),
    ((b"\x89HDF\r\n\x1a\n",), "an HDF5 file"),
    ((b"\x1f\x8b",), "a gzip file"),
)


@dataclass(frozen=True)
class Entry:
    """Where one tensor lies: offsets count from the first data byte, as in the header."""
    dtype: np.dtype
    shape: tuple
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    tensors: dict  # name -> Entry, in header order
    metadata: dict  # str -> str
    file_size: int


class _Bad(Exception):
    """A header defect; ``read_header`` turns it into a CheckpointError naming the file."""


def read_header(f, path) -> Header:
    """Read and check the header of the open binary file ``f`` (positioned at its start)."""
    file_size = os.fstat(f.fileno()).st_size
    first = f.read(8)
    try:
        if len(first) < 8:
            raise _Bad(f"only {len(first)} bytes long, too short for a safetensors file")
        (n,) = struct.unpack("<Q", first)
        if n > MAX_HEADER_BYTES:
            raise _Bad(f"not a safetensors file, or a corrupt one: its header length field says "
                       f"{n} bytes, more than the {MAX_HEADER_BYTES} the format allows")
        if 8 + n > file_size:
            raise _Bad(f"truncated: the header length field says {n} bytes but only "
                       f"{file_size - 8} bytes follow it")
        return _parse(f.read(n), file_size - 8 - n, file_size)
    except _Bad as e:
        raise cannot_load(path, _foreign(first) or str(e)) from None


def _foreign(first: bytes):
    for magics, what in _FOREIGN:
        if first.startswith(magics):
            return f"not a safetensors file; it looks like {what}"
    return None


def _parse(raw: bytes, data_size: int, file_size: int) -> Header:
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise _Bad("its header is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise _Bad(f"its header is not valid JSON ({e.msg} at byte {8 + e.pos})") from None
    except (ValueError, RecursionError) as e:  # duplicate keys, or nesting too deep to parse
        raise _Bad(f"its header is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise _Bad(f"its header is a JSON {type(doc).__name__}, not an object")
    metadata = doc.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Bad("its __metadata__ is not a mapping of strings to strings")
    tensors = {name: _entry(name, spec, data_size) for name, spec in doc.items()}
    _check_coverage(tensors, data_size)
    return Header(tensors, metadata, file_size)


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _entry(name: str, spec, data_size: int) -> Entry:
    if not isinstance(spec, dict):
        raise _Bad(f"tensor {name!r} has a malformed header entry")
    code, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if code not in DTYPES:
        if not isinstance(code, str):
            raise _Bad(f"tensor {name!r} has no dtype")
        raise _Bad(f"tensor {name!r} has dtype {code!r}, which Lamina does not have "
                   f"(it loads {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _Bad(f"tensor {name!r} has a malformed shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise _Bad(f"tensor {name!r} has malformed data_offsets {offsets!r}")
    dtype, (begin, end) = DTYPES[code], offsets
    nbytes = math.prod(shape) * dtype.itemsize
    if end - begin != nbytes:
        raise _Bad(f"tensor {name!r} ({code}, shape {tuple(shape)}) needs {nbytes} bytes "
                   f"but its data_offsets [{begin}, {end}] span {end - begin}")
    if end > data_size:
        raise _Bad(f"truncated: tensor {name!r} ends at data byte {end} but the file holds "
                   f"only {data_size} bytes of tensor data")
    return Entry(dtype, tuple(shape), begin, end)


def _check_coverage(tensors: dict, data_size: int) -> None:
    # Like the safetensors library: the tensors tile the data exactly, no gaps, no overlaps.
    pos, prev = 0, None
    for name, e in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if e.begin < pos:
            raise _Bad(f"tensors {prev!r} and {name!r} overlap in the file")
        if e.begin > pos:
            raise _Bad(f"data bytes {pos}..{e.begin} belong to no tensor")
        pos, prev = e.end, name
    if pos != data_size:
        raise _Bad(f"{data_size - pos} bytes of data after the last tensor belong to no tensor")
