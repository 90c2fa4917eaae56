"""``save`` / ``load``: a flat dict of tensors as a safetensors file, and ``read_metadata``.

Writing goes through the safetensors library (``safetensors.numpy``) into ``atomic_write``;
reading checks the header (``header.read_header``) before handing the bytes to the library's
decoder. Files interoperate with ``safetensors.torch``, bfloat16 included.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import safetensors
import safetensors.numpy

from .. import backend
from ..creation import from_numpy
from ..tensor import Tensor
from .atomic import atomic_write
from .errors import cannot_load
from .header import CODES, read_header


def save(state_dict, path, metadata=None) -> None:
    """Write ``state_dict`` ({name: Tensor or numpy array}) to ``path`` as a safetensors file.

    ``metadata`` is an optional dict of strings stored in the header. The write is atomic: on
    any error the file previously at ``path``, if any, is left as it was.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save: expected a dict of tensors, got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save: tensor names must be strings, got {name!r}")
        arrays[name] = as_array(value, name, "save")
    write_safetensors(path, arrays, metadata, "save")


def load(path, device=None) -> dict:
    """The tensors of the safetensors file ``path`` as {name: Tensor} on ``device`` (default cpu).

    A missing, damaged or foreign file raises ``CheckpointError``; nothing is ever unpickled.
    """
    device = as_device(device)
    arrays, _ = read_safetensors(path)
    return {name: to_tensor(a, device) for name, a in arrays.items()}


def read_metadata(path) -> dict:
    """The string metadata stored in the header of the safetensors file ``path`` (without the
    checksums Lamina keeps there)."""
    try:
        with open(path, "rb") as f:
            return {k: v for k, v in read_header(f, path).metadata.items() if k != CHECKSUM_KEY}
    except OSError as e:
        raise cannot_load(path, _os_reason(e)) from None


def as_array(value, name: str, fname: str) -> np.ndarray:
    """``value`` as a C-contiguous NumPy array in native byte order, of a dtype files can hold."""
    if isinstance(value, Tensor):
        arr = backend.to_device(value.detach().array, backend.cpu)
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise TypeError(f"{fname}: {name!r} is a {type(value).__name__}; expected a Tensor or numpy array")
    dtype = arr.dtype.newbyteorder("=")
    if dtype not in CODES:
        raise TypeError(f"{fname}: {name!r} has dtype {arr.dtype}, which safetensors files of "
                        f"Lamina cannot hold; expected one of {', '.join(map(str, CODES))}")
    # safetensors.numpy copies data_ptr..data_ptr+nbytes as is, so a strided view would be
    # written as the wrong elements; asarray(order="C") also keeps 0-d arrays 0-d.
    return np.asarray(arr, dtype=dtype, order="C")


def as_device(device) -> backend.Device:
    """The device to load onto, checked before any file is read."""
    return backend.cpu if device is None else backend.Device(device)


def to_tensor(arr: np.ndarray, device: backend.Device) -> Tensor:
    return from_numpy(arr).to(device)


def write_safetensors(path, arrays: dict, metadata, fname: str) -> None:
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError(f"{fname}: metadata must be a dict of str to str, got {metadata!r:.200}")
    if "__metadata__" in arrays:
        raise ValueError(f"{fname}: '__metadata__' is reserved by the safetensors format; rename the tensor")
    if metadata is not None and CHECKSUM_KEY in metadata:
        raise ValueError(f"{fname}: metadata key {CHECKSUM_KEY!r} is reserved for Lamina's checksums")
    metadata = dict(metadata or {})
    metadata[CHECKSUM_KEY] = json.dumps(_checksums(arrays, metadata), sort_keys=True)
    data = safetensors.numpy.save(arrays, metadata=metadata)
    with atomic_write(path) as f:
        f.write(data)


def read_safetensors(path) -> tuple[dict, dict]:
    """({name: writable NumPy array}, metadata) of the file ``path``, checked before decoding."""
    try:
        with open(path, "rb") as f:
            header = read_header(f, path)
            f.seek(0)
            data = f.read()
    except OSError as e:
        raise cannot_load(path, _os_reason(e)) from None
    if len(data) != header.file_size:
        raise cannot_load(path, "the file changed while it was being read")
    try:
        views = dict(safetensors.deserialize(data))
    except safetensors.SafetensorError as e:
        raise cannot_load(path, f"the safetensors decoder rejected it: {e}") from None
    arrays = {}
    for name, entry in header.tensors.items():
        # deserialize hands back a bytearray per tensor, so the arrays are writable.
        a = np.frombuffer(views[name]["data"], dtype=entry.dtype).reshape(entry.shape)
        if entry.dtype == backend.bool_ and (a.view(np.uint8) > 1).any():
            raise cannot_load(path, f"tensor {name!r} is bool but holds bytes other than 0 and 1")
        arrays[name] = a
    _verify_checksums(path, arrays, header.metadata)
    return arrays, header.metadata


# Header metadata key of the per-tensor checksums: JSON {tensor name: SHA-256 hex of its bytes,
# "__metadata__": SHA-256 of the other metadata entries}. Files written by other tools have none
# and load unchecked.
CHECKSUM_KEY = "lamina.sha256"
_META_ENTRY = "__metadata__"


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


def _metadata_digest(metadata: dict) -> str:
    items = sorted((k, v) for k, v in metadata.items() if k != CHECKSUM_KEY)
    return hashlib.sha256(json.dumps(items).encode("utf-8")).hexdigest()


def _checksums(arrays: dict, metadata: dict) -> dict:
    sums = {name: _sha256(a) for name, a in arrays.items()}
    sums[_META_ENTRY] = _metadata_digest(metadata)
    return sums


def _verify_checksums(path, arrays: dict, metadata: dict) -> None:
    text = metadata.get(CHECKSUM_KEY)
    if text is None:
        return
    try:
        sums = json.loads(text)
    except ValueError:
        sums = None
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise cannot_load(path, f"its checksum record {CHECKSUM_KEY!r} is damaged")
    if sums.get(_META_ENTRY) != _metadata_digest(metadata):
        raise cannot_load(path, "its metadata does not match the checksum recorded when it was written "
                                "(the header is damaged)")
    if set(sums) - {_META_ENTRY} != set(arrays):
        raise cannot_load(path, "its tensors are not the ones whose checksums were recorded when it was written")
    for name, a in arrays.items():
        if _sha256(a) != sums[name]:
            raise cannot_load(path, f"tensor {name!r} (shape {tuple(a.shape)}, {a.dtype}) is corrupt: its "
                                    "bytes do not match the SHA-256 recorded when the file was written")


def _os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "it is a directory"
    return e.strerror or str(e)
