"""``lamina.save`` / ``lamina.load``: what PyTorch programs pass to ``torch.save``/``torch.load``.

A saved object is a nest of dicts, lists and tuples whose leaves are Tensors, NumPy arrays,
numbers, strings, bools and None: model and optimiser state dicts, and training checkpoints
such as ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": 500}``.
The file is a Lamina checkpoint (``checkpoint``: tensors as safetensors entries, the structure
as JSON metadata, per-tensor SHA-256 checksums), plus one metadata entry recording the device
each tensor was saved from, so ``map_location`` can act as PyTorch's does. Nothing is pickled,
and loading never runs code: a whole Module or Optimizer is refused with a pointer to
``state_dict()``, and a ``torch.save`` file is refused with the way to convert it.

``f`` may be a path or a binary file object (``io.BytesIO`` and open files, as PyTorch allows);
paths are written atomically.
"""
from __future__ import annotations

import errno
import io
import json
import os
import tempfile

import numpy as np

from .. import backend
from .._version import __version__
from ..tensor import Tensor
from .checkpoint import _LAMINA_KEY, _STATE_KEY, _VERSION_KEY, FORMAT_VERSION, load_checkpoint
from .errors import CheckpointError, cannot_load
from .header import CODES
from .serialization import load as load_safetensors
from .serialization import read_metadata, write_safetensors
from .structure import flatten

# Metadata key: JSON {tensor entry name: device string} of the devices tensors were saved from.
DEVICES_KEY = "lamina.devices"

_SCALARS = (bool, int, float, str, type(None))
_NO_CODE = "Lamina never loads anything executable, whatever weights_only says"


def save(obj, f) -> None:
    """Write ``obj`` to ``f`` (a path or a writable binary file object), as ``torch.save``.

    ``obj`` nests dicts, lists and tuples; its leaves are Tensors, NumPy arrays and scalars,
    ints, floats, bools, strings and None; dict keys are strings, numbers, bools, None or
    tuples of them (optimiser state dicts use int keys). Tensors that share memory (tied
    weights) are stored once and load back as one tensor. Anything else, such as a whole
    ``nn.Module`` or an optimiser, raises ``TypeError`` before anything is written; a path is
    replaced atomically, so a failed save leaves any older file in place.
    """
    _check_target(f)
    obj = _share_storage(obj)
    text, arrays = flatten(obj)
    devices = {name: str(t.device) for name, t in zip(_placeholders(json.loads(text)), _tensors_in_order(obj))}
    metadata = {_VERSION_KEY: str(FORMAT_VERSION), _LAMINA_KEY: __version__, _STATE_KEY: text,
                DEVICES_KEY: json.dumps(devices, sort_keys=True)}
    if _is_path(f):
        write_safetensors(f, arrays, metadata, "lamina.save")
        return
    with tempfile.TemporaryDirectory(prefix="lamina-save-") as tmp:
        path = os.path.join(tmp, "object.safetensors")
        write_safetensors(path, arrays, metadata, "lamina.save")
        with open(path, "rb") as src:
            f.write(src.read())


def load(f, map_location=None, weights_only=True, mmap=None, **kwargs):
    """The object ``save`` wrote to ``f`` (a path or a readable binary file object).

    ``map_location`` places the tensors, as in ``torch.load``:

    * ``None``: on the device each was saved from (a CUDA tensor needs CUDA to be available);
    * ``"cpu"``, ``"cuda:1"`` or a ``lamina.device``: all on that device;
    * a dict of saved location to new location, e.g. ``{"cuda:1": "cuda:0"}``; locations not
      in it stay where they were saved;
    * a callable ``fn(tensor, location)`` given each tensor (on the CPU) and the location it was
      saved from, returning the tensor to use (e.g. ``t.to("cuda:0")``) or None for the default.

    ``weights_only`` is accepted for compatibility: True and False both load data only, since
    Lamina files hold no code. ``mmap`` is accepted too and changes nothing: the file is read
    into memory whole, checked against its checksums, and copied into the tensors. A plain
    safetensors file (e.g. from
    ``safetensors.torch.save_file(model.state_dict(), path)``) loads as a ``{name: Tensor}``
    dict. A file from ``torch.save`` (a zip archive or a pickle) raises ``CheckpointError``
    saying how to convert it; nothing in it is ever unpickled.
    """
    if weights_only not in (True, False, None):
        raise TypeError(f"lamina.load: weights_only must be True or False, got {weights_only!r}")
    if mmap not in (True, False, None):
        raise TypeError(f"lamina.load: mmap must be True or False, got {mmap!r}")
    if kwargs:
        raise TypeError(f"lamina.load: unexpected keyword argument(s) {', '.join(sorted(kwargs))}; "
                        f"PyTorch's pickle options (pickle_module, encoding, ...) do not apply, as "
                        f"{_NO_CODE}")
    place = _placement(map_location)
    if _is_path(f):
        if not os.path.exists(f):  # the error torch.load gives, which programs catch
            raise FileNotFoundError(errno.ENOENT, "lamina.load: no such file", os.fspath(f))
        return _load_path(f, place, os.fspath(f), weights_only)
    if not hasattr(f, "read"):
        raise TypeError(f"lamina.load: expected a path or a readable binary file object, got "
                        f"{type(f).__name__}")
    data = f.read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("lamina.load: the file object must be opened in binary mode ('rb'), "
                        f"its read() returned {type(data).__name__}")
    name = getattr(f, "name", None)
    name = name if isinstance(name, str) else f"<{type(f).__name__}>"
    with tempfile.TemporaryDirectory(prefix="lamina-load-") as tmp:
        path = os.path.join(tmp, "object.safetensors")
        with open(path, "wb") as out:
            out.write(data)
        try:
            return _load_path(path, place, name, weights_only)
        except CheckpointError as e:
            # the temporary copy is an implementation detail: name what the caller passed
            raise CheckpointError(str(e).replace(repr(path), repr(name), 1)) from None


# ---------------------------------------------------------------- saving


def _is_path(f) -> bool:
    return isinstance(f, (str, os.PathLike))


def _check_target(f) -> None:
    if not _is_path(f) and not hasattr(f, "write"):
        raise TypeError(f"lamina.save: expected a path or a writable binary file object as f, got "
                        f"{type(f).__name__}")
    if isinstance(f, io.TextIOBase):
        raise TypeError("lamina.save: the file object must be opened in binary mode ('wb')")


def _share_storage(obj):
    """``obj`` checked, with tensors that are views of the same memory replaced by one tensor,
    so ``flatten`` (which stores an object once) writes them as one entry."""
    canonical: dict = {}

    def walk(x, path):
        if isinstance(x, Tensor):
            return canonical.setdefault(_storage_key(x), x)
        if isinstance(x, np.ndarray):
            if x.dtype.newbyteorder("=") not in CODES:
                raise TypeError(f"lamina.save: the numpy array at {_where(path)} has dtype {x.dtype}, "
                                f"which Lamina files cannot hold; expected one of "
                                f"{', '.join(map(str, CODES))}")
            return x
        if isinstance(x, np.generic):
            if x.dtype.newbyteorder("=") not in CODES:
                raise TypeError(f"lamina.save: the numpy scalar at {_where(path)} has dtype {x.dtype}, "
                                f"which Lamina files cannot hold")
            return x
        if isinstance(x, _SCALARS):
            return x
        if isinstance(x, dict):
            for k in x:
                _check_key(k, path)
            return {k: walk(v, path + (k,)) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v, path + (i,)) for i, v in enumerate(x)]
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return tuple(walk(v, path + (i,)) for i, v in enumerate(x))
        raise TypeError(_refusal(x, path))

    return walk(obj, ())


def _storage_key(t: Tensor):
    # Two tensors are one entry when they are the same elements of the same memory: the same
    # array (state_dict()'s detach() shares it) or a view with identical geometry.
    t = t.detach()
    if t.device.type == "cpu":
        a = np.asarray(t)  # the tensor's own array, not a copy
        ptr = a.__array_interface__["data"][0]
    else:
        a = t.array
        ptr = a.data.ptr
    return (str(t.device), ptr, a.shape, a.strides, a.dtype.str)


def _check_key(k, path) -> None:
    if isinstance(k, tuple):
        for part in k:
            _check_key(part, path)
    elif not isinstance(k, _SCALARS):
        raise TypeError(f"lamina.save: dict key {k!r:.60} at {_where(path)} is a {type(k).__name__}; "
                        f"keys must be strings, numbers, bools, None or tuples of them")


def _refusal(x, path) -> str:
    kind = type(x).__name__
    from ..nn import Module
    from ..optim import Optimizer
    if isinstance(x, Module):
        return (f"lamina.save: cannot save a whole {kind} module (at {_where(path)}): Lamina files hold "
                f"data, never pickled objects; save model.state_dict() and restore it into a new "
                f"{kind} with load_state_dict(lamina.load(f))")
    if isinstance(x, Optimizer):
        return (f"lamina.save: cannot save the optimizer object itself ({kind}, at {_where(path)}): save "
                f"optimizer.state_dict() and restore it with optimizer.load_state_dict(lamina.load(f))")
    if callable(getattr(x, "state_dict", None)):
        return (f"lamina.save: cannot save a {kind} object (at {_where(path)}): save its state_dict() "
                f"instead and restore it with load_state_dict")
    return (f"lamina.save: cannot save a {kind} (at {_where(path)}); values must be Tensors, numpy "
            f"arrays, numbers, strings, bools, None, or dicts/lists/tuples of them")


def _where(path) -> str:
    return "/".join(map(str, path)) or "the top level"


def _tensors_in_order(obj):
    """Tensors of ``obj`` in ``flatten``'s depth-first order (keys hold no tensors)."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in_order(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors_in_order(v)


def _placeholders(node):
    if isinstance(node, list):
        for x in node:
            yield from _placeholders(x)
    elif isinstance(node, dict) and len(node) == 1:
        (tag, body), = node.items()
        if tag == "$tensor":
            yield body
        elif tag == "$dict":
            for _, v in body:  # dict keys are never tensors
                yield from _placeholders(v)
        elif tag == "$tuple":
            yield from _placeholders(body)


# ---------------------------------------------------------------- loading


def _placement(map_location):
    """A function (cpu tensor, saved location) -> device or tensor, checked before any read."""
    if map_location is None:
        return lambda t, loc: loc
    if isinstance(map_location, (str, backend.Device)):
        try:
            device = backend.Device(map_location)
        except (TypeError, ValueError) as e:
            raise ValueError(f"lamina.load: map_location {map_location!r} is not a device: {e}") from None
        return lambda t, loc: device
    if isinstance(map_location, dict):
        table = {}
        for k, v in map_location.items():
            try:
                table[str(backend.Device(k))] = backend.Device(v)
            except (TypeError, ValueError):
                raise ValueError(f"lamina.load: map_location entry {k!r}: {v!r} is not a pair of devices "
                                 f"such as 'cuda:1': 'cpu'") from None
        return lambda t, loc: table.get(loc, loc)
    if callable(map_location):
        def call(t, loc):
            out = map_location(t, loc)
            if out is None:
                return loc
            if not isinstance(out, Tensor):
                raise TypeError(f"lamina.load: map_location returned a {type(out).__name__} for a tensor "
                                f"saved on {loc}; expected a Tensor or None")
            return out
        return call
    raise TypeError(f"lamina.load: map_location must be None, a device or its name, a dict of "
                    f"locations, or a callable(tensor, location); got {type(map_location).__name__}")


def _load_path(path, place, name, weights_only):
    try:
        metadata = read_metadata(path)
    except CheckpointError as e:
        raise _foreign(path, name, weights_only) or e from None
    if _VERSION_KEY not in metadata:  # a plain safetensors file: its tensors by name
        flat = load_safetensors(path)
        return {k: _move(t, place(t, "cpu"), k, "cpu") for k, t in flat.items()}
    state = load_checkpoint(path, "cpu")
    try:
        devices = json.loads(metadata.get(DEVICES_KEY, "{}"))
        names = list(_placeholders(json.loads(metadata[_STATE_KEY])))
    except ValueError:
        raise cannot_load(path, f"its {DEVICES_KEY!r} record is damaged") from None
    if not isinstance(devices, dict):
        raise cannot_load(path, f"its {DEVICES_KEY!r} record is damaged")
    moved: dict = {}  # id(cpu tensor) -> placed tensor, so shared tensors stay shared
    for entry, t in zip(names, _tensors_in_order(state)):
        if id(t) not in moved:
            loc = devices.get(entry, "cpu")
            moved[id(t)] = _move(t, place(t, loc), entry, loc)
    return _rebuild(state, moved)


def _move(t: Tensor, target, entry: str, saved_on: str) -> Tensor:
    if isinstance(target, Tensor):
        return target
    device = backend.Device(target)
    if device.type == "cuda" and not backend.cuda_is_available():
        raise RuntimeError(f"lamina.load: tensor {entry!r} (saved on {saved_on}) would go to {device} but CUDA "
                           f"is not available; pass map_location='cpu' to load it on the CPU")
    return t if device == t.device else t.to(device)


def _rebuild(obj, moved: dict):
    if isinstance(obj, Tensor):
        return moved.get(id(obj), obj)
    if isinstance(obj, dict):
        return {k: _rebuild(v, moved) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebuild(v, moved) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_rebuild(v, moved) for v in obj)
    return obj


def _foreign(path, name, weights_only):
    """The error for a file from ``torch.save``, or None for other unreadable files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = "a zip archive with a pickle inside, as torch.save writes"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        what = "a Python pickle, as torch.save's legacy format writes"
    else:
        return None
    note = f" ({_NO_CODE})" if weights_only is False else ""
    return CheckpointError(
        f"cannot load {name!r}: it is {what}, and Lamina never unpickles files{note}; convert it once "
        f"with PyTorch (from safetensors.torch import save_file; save_file(state_dict, "
        f"'model.safetensors') on the state dict it holds) and lamina.load the .safetensors file")
