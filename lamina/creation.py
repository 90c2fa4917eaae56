"""Tensor factories: from data, filled, ranges, identity, random, ``*_like`` and DLPack."""
from __future__ import annotations

import numpy as np

from . import backend
from .tensor import Tensor, _wrap


def size_args(shape: tuple, size, fname: str) -> tuple:
    """The positional sizes of ``fname(*shape)``, or PyTorch's keyword form ``fname(size=(2, 3))``,
    as the ``shape`` tuple that the creation functions take."""
    if size is None:
        return shape
    if shape:
        raise TypeError(f"{fname}: give the shape as sizes or as size=, not both (got sizes {shape} and "
                        f"size={size!r})")
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"{fname}: size must be a tuple of ints, got {type(size).__name__}")
    return (size,)  # the creation functions unpack a single tuple or list


def _shape(shape, fname: str) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{fname}: shape must be integers, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{fname}: negative dimension in shape {shape}")
    return shape


def _device(device) -> backend.Device:
    return backend.cpu if device is None else backend.Device(device)


def _finish(arr, requires_grad: bool) -> Tensor:
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _preview(data, limit=80) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "..."


def _array_from(data, dtype=None, device=None):
    """A new array holding ``data`` (Tensor, array, nested sequence or number)."""
    if isinstance(data, Tensor):
        arr = data.array
        if dtype is not None:
            arr = arr.astype(backend.as_dtype(dtype))
        if device is not None:
            arr = backend.to_device(arr, backend.Device(device))
        return arr.copy() if arr is data.array else arr
    if device is None and hasattr(data, "__cuda_array_interface__"):
        device = backend.device_of(data)  # a CuPy array stays on its GPU
    dev = _device(device)
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        arr = data if type(data) is not np.ndarray and not isinstance(data, np.ndarray) else np.asarray(data)
        if dtype is not None:
            arr = arr.astype(backend.as_dtype(dtype), copy=False)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat_head(data)):
            data = _tensors_to_lists(data)
        try:
            arr = np.asarray(data)
        except ValueError:
            raise ValueError(f"tensor: the nested sequences have different lengths (a tensor needs a "
                             f"rectangular shape), got {_preview(data)}") from None
        if dtype is not None:
            arr = arr.astype(backend.as_dtype(dtype), copy=False)
        elif isinstance(data, np.generic):
            pass  # a NumPy scalar keeps its dtype, like a NumPy array
        elif arr.dtype.kind == "f" and arr.dtype == np.float64:
            arr = arr.astype(backend.get_default_dtype())  # Python floats -> default dtype
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64, copy=False)
        elif arr.dtype.kind not in "bf":
            raise TypeError(f"tensor: cannot make a tensor from data of type {arr.dtype}")
    out = backend.to_device(arr, dev)
    if out is data or (isinstance(data, np.ndarray) and np.may_share_memory(out, data)):
        out = out.copy()
    return out


def _flat_head(seq):
    while isinstance(seq, (list, tuple)) and seq:
        yield seq[0]
        seq = seq[0]


def _tensors_to_lists(data):
    if isinstance(data, Tensor):
        return data.detach().cpu().array
    if isinstance(data, (list, tuple)):
        return [_tensors_to_lists(x) for x in data]
    return data


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor holding a copy of ``data``; Python floats become the default dtype (float32)."""
    return _finish(_array_from(data, dtype, device), requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with ``data`` when dtype and device already match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (dtype or device) else data
    if isinstance(data, np.ndarray) and (dtype is None or backend.as_dtype(dtype) == data.dtype) \
            and _device(device).type == "cpu":
        return _wrap(data)
    return tensor(data, dtype, device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return _wrap(array if type(array) is np.ndarray else array.view(np.ndarray))  # memmap & co.


def from_dlpack(obj) -> Tensor:
    """A tensor sharing memory with any DLPack producer (NumPy, CuPy, PyTorch, JAX, ...)."""
    dev_type, _ = obj.__dlpack_device__()
    if dev_type == 1:  # kDLCPU
        return _wrap(np.from_dlpack(obj))
    if dev_type == 2:  # kDLCUDA
        return _wrap(backend._import_cupy().from_dlpack(obj))
    raise ValueError(f"from_dlpack: unsupported DLPack device type {dev_type}")


def _filled(fname, shape, fill, dtype, device, requires_grad):
    shape = _shape(shape, fname)
    dev = _device(device)
    dtype = backend.as_dtype(dtype)
    xp = dev.xp
    with backend.device_context(dev):
        if fill is None:
            arr = xp.empty(shape, dtype=dtype)
        elif fill == 0:
            arr = xp.zeros(shape, dtype=dtype)
        else:
            arr = xp.full(shape, fill, dtype=dtype)
    return _finish(arr, requires_grad)


def zeros(*shape, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled("zeros", size_args(shape, size, "zeros"), 0, dtype, device, requires_grad)


def ones(*shape, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled("ones", size_args(shape, size, "ones"), 1, dtype, device, requires_grad)


def empty(*shape, size=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled("empty", size_args(shape, size, "empty"), None, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = (backend.bool_ if isinstance(fill_value, bool) else
                 backend.int64 if isinstance(fill_value, int) else backend.get_default_dtype())
    return _filled("full", (shape,) if isinstance(shape, int) else tuple(shape), fill_value, dtype,
                   device, requires_grad)


def _like(t: Tensor, dtype, device):
    return (t.dtype if dtype is None else dtype), (t.device if device is None else device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return zeros(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return ones(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return empty(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = backend.int64 if ints else backend.get_default_dtype()
    dev = _device(device)
    with backend.device_context(dev):
        arr = dev.xp.arange(start, end, step, dtype=backend.as_dtype(dtype))
    return _finish(arr, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    if steps < 0:
        raise ValueError(f"linspace: steps must be >= 0, got {steps}")
    dev = _device(device)
    with backend.device_context(dev):
        arr = dev.xp.linspace(start, end, steps, dtype=np.float64).astype(backend.as_dtype(dtype))
    return _finish(arr, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _device(device)
    with backend.device_context(dev):
        arr = dev.xp.eye(n, m, dtype=backend.as_dtype(dtype))
    return _finish(arr, requires_grad)


def _gen(generator, device):
    dev = _device(device)
    if generator is None:
        return backend.default_generator(dev), dev
    if generator.device != dev:
        raise ValueError(f"generator on {generator.device} cannot fill a tensor on {dev}")
    return generator, dev


def rand(*shape, size=None, dtype=None, device=None, generator=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    gen, dev = _gen(generator, device)
    dtype = backend.as_dtype(dtype)
    if not backend.is_floating(dtype):
        raise TypeError(f"rand: expected a floating dtype, got {dtype}")
    with backend.device_context(dev):
        arr = gen.uniform(_shape(size_args(shape, size, "rand"), "rand"), dtype)
    return _finish(arr, requires_grad)


def randn(*shape, size=None, dtype=None, device=None, generator=None, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    gen, dev = _gen(generator, device)
    dtype = backend.as_dtype(dtype)
    if not backend.is_floating(dtype):
        raise TypeError(f"randn: expected a floating dtype, got {dtype}")
    with backend.device_context(dev):
        arr = gen.normal(_shape(size_args(shape, size, "randn"), "randn"), dtype)
    return _finish(arr, requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None, generator=None, requires_grad=False) -> Tensor:
    """Integers uniform in [low, high), as PyTorch's two forms: ``randint(high, size)`` and
    ``randint(low, high, size)`` (``low`` defaults to 0; ``size`` may also be a keyword)."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if size is None:
        raise TypeError(f"randint: size is required, as randint(high, size) or randint(low, high, size); "
                        f"got low={low}, high={high}")
    if requires_grad:
        raise RuntimeError("randint: only floating-point tensors can require gradients")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    gen, dev = _gen(generator, device)
    with backend.device_context(dev):
        arr = gen.integers(low, high, _shape((size,), "randint"), backend.as_dtype(dtype or backend.int64))
    return _wrap(arr)


def randperm(n, dtype=None, device=None, generator=None) -> Tensor:
    gen, dev = _gen(generator, device)
    with backend.device_context(dev):
        arr = gen.permutation(n).astype(backend.as_dtype(dtype or backend.int64))
    return _wrap(arr)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return rand(t.shape, dtype=dtype, device=device)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    dtype, device = _like(t, dtype, device)
    return randn(t.shape, dtype=dtype, device=device)


def sparse_coo_tensor(indices, values, size=None, dtype=None, device=None, requires_grad=False,
                      check_invariants=None, is_coalesced=None) -> Tensor:
    """PyTorch's COO constructor, built dense: Lamina stores every tensor densely, so this returns
    the strided tensor that PyTorch's ``sparse_coo_tensor(...).to_dense()`` would, with duplicate
    indices summed (as ``coalesce`` sums them). ``indices`` is (sparse_dims, nnz), ``values`` is
    (nnz, *dense_dims); ``size`` defaults to one past the largest index in each sparse dim.
    Gradients flow to ``values`` when it requires them."""
    from . import ops
    idx = indices if isinstance(indices, Tensor) else tensor(np.asarray(indices))
    if idx.ndim != 2 or backend.is_floating(idx.dtype):
        raise ValueError(f"sparse_coo_tensor: indices must be an integer array of shape (sparse_dims, nnz), "
                         f"got shape {idx.shape} dtype {idx.dtype}")
    vals = values if isinstance(values, Tensor) else tensor(values)
    if vals.ndim < 1 or vals.shape[0] != idx.shape[1]:
        raise ValueError(f"sparse_coo_tensor: values must have one row per index column (nnz={idx.shape[1]}), "
                         f"got values of shape {vals.shape}")
    idx_np = np.asarray(backend.to_device(idx.array, backend.cpu), dtype=np.int64)
    if idx_np.size and idx_np.min() < 0:
        raise ValueError(f"sparse_coo_tensor: indices must be non-negative, found {int(idx_np.min())}")
    sparse_shape = tuple(int(m) + 1 for m in idx_np.max(axis=1)) if idx_np.size else (0,) * idx_np.shape[0]
    shape = sparse_shape + tuple(vals.shape[1:]) if size is None else _shape(tuple(size), "sparse_coo_tensor")
    if len(shape) != idx_np.shape[0] + vals.ndim - 1:
        raise ValueError(f"sparse_coo_tensor: size {shape} must have {idx_np.shape[0]} sparse dims (indices rows) "
                         f"plus {vals.ndim - 1} dense dims (values' trailing dims {vals.shape[1:]})")
    too_big = [d for d in range(idx_np.shape[0]) if idx_np.size and idx_np[d].max() >= shape[d]]
    if too_big or tuple(shape[idx_np.shape[0]:]) != tuple(vals.shape[1:]):
        raise ValueError(f"sparse_coo_tensor: size {shape} is too small for indices up to {sparse_shape} "
                         f"and values of shape {vals.shape}")
    dtype = backend.as_dtype(dtype) if dtype is not None else vals.dtype
    dev = backend.Device(device) if device is not None else vals.device
    vals = vals.to(dev).to(dtype)
    out = zeros(shape, dtype=dtype, device=dev)
    index = tuple(tensor(row, device=dev) for row in idx_np)
    out = ops.index_put(out, index, vals, accumulate=True)
    if requires_grad and not out.requires_grad:
        out = out.detach().requires_grad_(True)
    return out
