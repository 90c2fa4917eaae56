"""Reading ONNX files safely: the model proto, tensors (inline and external data) and the checks
that make a corrupt, truncated or hostile file a one-line ``OnnxImportError``.

``onnx.load`` would follow external-data paths wherever they point and trust declared sizes, so
this module parses the protobuf itself (``load_external_data`` never happens), resolves every
external-data path inside the model's folder, checks offsets and lengths against the real file
before reading, and checks every declared tensor size against the bytes actually present before
anything is allocated. The graph is checked too: every node input defined, no value produced
twice, no cycle (nodes are returned in a topological order).
"""
from __future__ import annotations

import heapq
import math
import os

import numpy as np

from .errors import OnnxImportError

# protobuf cannot parse a message of 2 GiB or more; larger models keep weights in external data
MAX_PROTO_BYTES = (2 << 30) - 1
# no single tensor (initializer, constant, or a shape an op is asked to create) may exceed this
MAX_TENSOR_BYTES = 16 << 30

_BITS = {21: 4, 22: 4, 23: 4, 25: 2, 26: 2}  # UINT4, INT4, FLOAT4E2M1, UINT2, INT2: packed
_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is the dependency of the onnx extra
        raise ImportError("lamina.onnx needs the 'onnx' package: pip install onnx") from None
    return onnx


def read_model(path):
    """Parse the ONNX file at ``path`` without following external data; the model proto."""
    _onnx()  # a clear ImportError first when the onnx package is missing
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"lamina.onnx.load: no such file: {path!r}")
    if not os.path.isfile(path):
        raise OnnxImportError(f"lamina.onnx.load: {path!r} is not a regular file")
    size = os.path.getsize(path)
    if size > MAX_PROTO_BYTES:
        raise OnnxImportError(f"lamina.onnx.load: {path!r} is {size} bytes; an ONNX protobuf must be under 2 GiB "
                              f"(larger models keep their weights in external data files)")
    with open(path, "rb") as f:
        data = f.read()
    return parse_model(data, path)


def parse_model(data: bytes, where: str = "<bytes>"):
    onnx = _onnx()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ... on corrupt input
        raise OnnxImportError(f"lamina.onnx.load: {where!r} is not a valid ONNX model "
                              f"(protobuf decoding failed: {_one_line(e)})") from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"lamina.onnx.load: {where!r} holds no ONNX graph (corrupt, truncated or not an "
                              f"ONNX file)")
    return model


def _one_line(e) -> str:
    s = " ".join(str(e).split())
    return (s[:200] + "...") if len(s) > 200 else (s or type(e).__name__)


def np_dtype(data_type: int, what: str):
    """The NumPy dtype of an ONNX element type (ml_dtypes for the narrow float/int types)."""
    onnx = _onnx()
    if data_type == onnx.TensorProto.STRING:
        raise OnnxImportError(f"lamina.onnx: {what} has element type STRING, which Lamina tensors cannot hold")
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(data_type)))
    except Exception:
        raise OnnxImportError(f"lamina.onnx: {what} has unknown element type {data_type}") from None


def tensor_nbytes(dims, data_type, what):
    """(element count, byte size) that a tensor's declared dims and type imply, checked for sanity."""
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"lamina.onnx: {what} declares negative dims {list(dims)}")
    count = math.prod(int(d) for d in dims)
    dtype = np_dtype(data_type, what)
    bits = _BITS.get(int(data_type))
    nbytes = (count * bits + 7) // 8 if bits else count * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"lamina.onnx: {what} declares shape {list(dims)} ({nbytes} bytes), over the "
                              f"{MAX_TENSOR_BYTES} byte limit for one tensor")
    return count, nbytes


def _external(tensor, base_dir, what, expected):
    """The bytes of an external-data tensor, read only from a regular file inside ``base_dir``."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location")
    if not location:
        raise OnnxImportError(f"lamina.onnx: {what} is stored externally but names no location")
    if base_dir is None:
        raise OnnxImportError(f"lamina.onnx: {what} is stored in external file {location!r}, but the model was "
                              f"not loaded from a folder")
    if os.path.isabs(location) or "\x00" in location or os.path.splitdrive(location)[0]:
        raise OnnxImportError(f"lamina.onnx: {what}: external data path {location!r} must be relative to the "
                              f"model's folder")
    root = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, full]) != root or full == root:
        raise OnnxImportError(f"lamina.onnx: {what}: external data path {location!r} points outside the model's "
                              f"folder {base_dir!r}")
    if not os.path.isfile(full):
        raise OnnxImportError(f"lamina.onnx: {what}: external data file {location!r} does not exist in "
                              f"{base_dir!r} or is not a regular file")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise OnnxImportError(f"lamina.onnx: {what}: external data offset/length are not integers: "
                              f"{info.get('offset')!r}, {info.get('length')!r}") from None
    size = os.path.getsize(full)
    if length is None:
        length = size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise OnnxImportError(f"lamina.onnx: {what}: external data range offset={offset} length={length} lies "
                              f"outside {location!r} ({size} bytes)")
    if length != expected:
        raise OnnxImportError(f"lamina.onnx: {what}: external data holds {length} bytes, but its declared shape "
                              f"and type need {expected}")
    with open(full, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise OnnxImportError(f"lamina.onnx: {what}: external data file {location!r} ended early")
    return data


def to_array(tensor, base_dir=None, what=None) -> np.ndarray:
    """A ``TensorProto`` as a NumPy array, after checking its declared size against its data."""
    onnx = _onnx()
    what = what or f"tensor {tensor.name!r}"
    count, nbytes = tensor_nbytes(tensor.dims, tensor.data_type, what)
    if tensor.HasField("segment"):
        raise OnnxImportError(f"lamina.onnx: {what} is a segmented tensor, which Lamina does not read")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        data = _external(tensor, base_dir, what, nbytes)
        t = onnx.TensorProto()
        t.CopyFrom(tensor)
        t.ClearField("external_data")
        t.data_location = onnx.TensorProto.DEFAULT
        t.raw_data = data
        tensor = t
    elif tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise OnnxImportError(f"lamina.onnx: {what} declares shape {list(tensor.dims)} ({nbytes} bytes) but "
                                  f"holds {len(tensor.raw_data)} bytes of data")
    else:
        held = sum(len(getattr(tensor, f)) for f in _TYPED_FIELDS)
        bits = _BITS.get(int(tensor.data_type))
        need = -(-count * bits // 8) if bits else 2 * count if tensor.data_type in (14, 15) else count
        if held != need:
            raise OnnxImportError(f"lamina.onnx: {what} declares shape {list(tensor.dims)} ({count} elements) but "
                                  f"holds {held} values")
    try:
        arr = onnx.numpy_helper.to_array(tensor)
    except Exception as e:
        raise OnnxImportError(f"lamina.onnx: cannot read {what}: {_one_line(e)}") from None
    if arr.shape != tuple(tensor.dims):
        raise OnnxImportError(f"lamina.onnx: {what} decoded to shape {arr.shape}, declared {list(tensor.dims)}")
    # not ascontiguousarray: that turns a 0-d array into a 1-d one
    return arr if arr.flags.c_contiguous else arr.copy()


def opset_of(model) -> int:
    """The version of the default (ai.onnx) operator set the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    if not model.opset_import:
        return 1
    raise OnnxImportError("lamina.onnx: the model imports no version of the default ai.onnx operator set")


def sorted_nodes(graph, known, where="graph"):
    """The graph's nodes in an order where every input is made before it is read.

    ``known`` holds the names defined before any node runs (graph inputs and initializers).
    A missing input, a value produced twice or a cycle raises ``OnnxImportError``.
    """
    producer = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in known:
                raise OnnxImportError(f"lamina.onnx: {where}: value {out!r} is produced twice (by node "
                                      f"{_node_name(node, i)} and earlier)")
            producer[out] = i
    waiting = []
    users = {}
    for i, node in enumerate(graph.node):
        deps = set()
        for name in node.input:
            if not name or name in known:
                continue
            if name not in producer:
                raise OnnxImportError(f"lamina.onnx: {where}: node {_node_name(node, i)} reads {name!r}, which no "
                                      f"node, graph input or initializer defines")
            deps.add(producer[name])
        waiting.append(len(deps))
        for d in deps:
            users.setdefault(d, []).append(i)
    # a heap of positions: a graph already in order comes out in the file's order
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(graph.node):
        stuck = [_node_name(graph.node[i], i) for i, n in enumerate(waiting) if n > 0]
        raise OnnxImportError(f"lamina.onnx: {where} has a cycle through nodes {', '.join(stuck[:6])}"
                              f"{' ...' if len(stuck) > 6 else ''}")
    return [graph.node[i] for i in order]


def _node_name(node, i):
    return f"#{i} {node.op_type}" + (f" {node.name!r}" if node.name else "")
