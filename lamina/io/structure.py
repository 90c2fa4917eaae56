"""Nested checkpoint state <-> (JSON text, flat dict of arrays).

``flatten`` walks dicts, lists and tuples. Tensors and NumPy arrays are pulled out under
path-like names ("optimizer/state/0/exp_avg") and replaced by placeholders; everything else
stays in the JSON. Plain JSON cannot tell a tuple from a list, an int key from a str key, or
hold inf, NaN and NumPy scalars, so those become one-key tagged objects:

    {"$dict": [[key, value], ...]}   every dict, so any JSON object is a tag, never user data
    {"$tuple": [...]}                {"$float": "inf" | "-inf" | "nan"}
    {"$tensor": name}                {"$ndarray": name}
    {"$scalar": [dtype name, value]} a NumPy scalar such as np.float32(0.5)

The JSON itself is strict (no NaN/Infinity literals), so any JSON reader can parse it.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .. import backend
from ..tensor import Tensor
from .serialization import as_array, to_tensor

# NumPy scalar dtypes a checkpoint may hold, by name.
_SCALAR_DTYPES = {d.name: d for d in map(np.dtype, (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64))}
_SCALAR_DTYPES["bfloat16"] = backend.bfloat16


class Malformed(Exception):
    """The stored structure does not decode; the caller names the file."""


def flatten(state) -> tuple[str, dict]:
    """(JSON text of ``state`` with placeholders, {name: contiguous NumPy array})."""
    arrays: dict = {}
    names: dict = {}  # id(tensor or array) -> name: a tensor stored twice is written once

    def encode(obj, path: tuple):
        # NumPy scalars first: np.float64 is also a Python float, and would lose its type.
        if isinstance(obj, np.generic) and obj.dtype in _SCALAR_DTYPES.values():
            return {"$scalar": [obj.dtype.name, encode(obj.item(), path)]}
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, (Tensor, np.ndarray)):
            tag = "$tensor" if isinstance(obj, Tensor) else "$ndarray"
            if id(obj) not in names:
                names[id(obj)] = _unique("/".join(map(str, path)) or "tensor", arrays)
                arrays[names[id(obj)]] = as_array(obj, "/".join(map(str, path)), "save_checkpoint")
            return {tag: names[id(obj)]}
        if isinstance(obj, list):
            return [encode(x, path + (i,)) for i, x in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"$tuple": [encode(x, path + (i,)) for i, x in enumerate(obj)]}
        if isinstance(obj, dict):
            return {"$dict": [[encode_key(k, path), encode(v, path + (k,))] for k, v in obj.items()]}
        raise TypeError(f"save_checkpoint: cannot store a {type(obj).__name__} at "
                        f"{'/'.join(map(str, path)) or 'the top level'}; values must be Tensors, "
                        f"numpy arrays, numbers, strings, None, or dicts/lists/tuples of them")

    def encode_key(key, path):
        if isinstance(key, (Tensor, np.ndarray)):
            raise TypeError(f"save_checkpoint: a tensor cannot be a dict key (at {'/'.join(map(str, path))})")
        return encode(key, path)

    doc = encode(state, ())
    return json.dumps(doc, allow_nan=False, separators=(",", ":")), arrays


def _unique(name: str, taken: dict) -> str:
    # Keys containing "/" can make two paths spell the same name; the JSON placeholder holds
    # the exact name, so any unique spelling will do.
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}~{n}", n + 1
    return candidate


def unflatten(text: str, arrays: dict, device):
    """The state ``flatten`` encoded, with placeholders replaced by arrays (Tensors on ``device``)."""
    tensors: dict = {}  # name -> Tensor, so a tensor stored once comes back as one object

    def decode(node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [decode(x) for x in node]
        if not (isinstance(node, dict) and len(node) == 1):
            raise Malformed(f"unexpected JSON value {node!r:.80}")
        (tag, body), = node.items()
        if tag == "$dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
            return {_hashable(decode(k)): decode(v) for k, v in body}
        if tag == "$tuple" and isinstance(body, list):
            return tuple(decode(x) for x in body)
        if tag == "$float" and body in ("inf", "-inf", "nan"):
            return float(body)
        if tag == "$scalar" and isinstance(body, list) and len(body) == 2 and body[0] in _SCALAR_DTYPES:
            value = decode(body[1])
            if isinstance(value, (bool, int, float)):
                try:
                    return _SCALAR_DTYPES[body[0]].type(value)
                except OverflowError:
                    raise Malformed(f"{value!r:.40} does not fit a {body[0]}") from None
        if tag in ("$tensor", "$ndarray") and isinstance(body, str):
            if body not in arrays:
                raise Malformed(f"it refers to a tensor {body!r} that is not in the file")
            if tag == "$ndarray":
                return arrays[body]
            if body not in tensors:
                tensors[body] = to_tensor(arrays[body], device)
            return tensors[body]
        raise Malformed(f"unexpected JSON value {node!r:.80}")

    try:
        return decode(json.loads(text))
    except json.JSONDecodeError as e:
        raise Malformed(f"it is not valid JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise Malformed("it is nested too deeply") from None


def _hashable(key):
    try:
        hash(key)
    except TypeError:
        raise Malformed(f"dict key {key!r:.80} is not hashable") from None
    return key
