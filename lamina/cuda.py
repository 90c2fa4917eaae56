"""``lamina.cuda``: the ``torch.cuda`` functions programs call, answered by CuPy.

Lamina runs on NVIDIA GPUs through CuPy (``lamina[gpu]``). Every function here is safe to call
without CuPy or without a GPU, as PyTorch's are on a CPU-only build: the queries answer
``False``/``0``, ``manual_seed``/``manual_seed_all`` are ignored, ``empty_cache`` does nothing;
the calls that act on a GPU (``current_device``, ``set_device``, ``synchronize``,
``get_device_name``, ``get_device_capability``, ``get_device_properties``) raise one
``RuntimeError`` saying CUDA is not available.

Not to be confused with ``Tensor.cuda()`` (a method) or ``lamina.backends.cuda`` (flags).
Devices are numbered as CuPy numbers them; ``lamina.device("cuda")`` is ``cuda:0``.
"""
from __future__ import annotations

from types import SimpleNamespace

from . import backend


def is_available() -> bool:
    """Whether CuPy is installed and sees at least one GPU."""
    return backend.cuda_is_available()


def device_count() -> int:
    """The number of GPUs CuPy sees (0 without CuPy)."""
    return backend.cuda_device_count()


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """Whether the current GPU computes in bfloat16 natively (compute capability 8.0 or newer)."""
    return is_available() and get_device_capability() >= (8, 0)


def _cupy(fname: str):
    if not is_available():
        raise RuntimeError(f"lamina.cuda.{fname}: CUDA is not available (CuPy is not installed or sees "
                           f"no GPU); check lamina.cuda.is_available() first")
    return backend._import_cupy()


def _index(device, fname: str) -> int:
    """The GPU number ``device`` names: None (the current one), an int, 'cuda:N' or a device."""
    cp = _cupy(fname)
    if device is None:
        return cp.cuda.runtime.getDevice()
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        try:
            dev = backend.Device(device)
        except (TypeError, ValueError) as e:
            raise ValueError(f"lamina.cuda.{fname}: {device!r} is not a device: {e}") from None
        if dev.type != "cuda":
            raise ValueError(f"lamina.cuda.{fname}: expected a CUDA device, got {dev}")
        index = dev.index
    count = device_count()
    if not 0 <= index < count:
        raise ValueError(f"lamina.cuda.{fname}: no GPU {index}; CuPy sees {count} "
                         f"(valid indices 0..{count - 1})")
    return index


def current_device() -> int:
    """The index of the GPU that CuPy allocates on now."""
    return _cupy("current_device").cuda.runtime.getDevice()


def set_device(device) -> None:
    """Make ``device`` (an index, 'cuda:N' or a device) CuPy's current GPU."""
    index = _index(device, "set_device")
    backend._import_cupy().cuda.runtime.setDevice(index)


def synchronize(device=None) -> None:
    """Wait until every kernel queued on ``device`` (default: the current GPU) has finished."""
    index = _index(device, "synchronize")
    backend._import_cupy().cuda.Device(index).synchronize()


def _properties(device, fname):
    index = _index(device, fname)
    return backend._import_cupy().cuda.runtime.getDeviceProperties(index)


def get_device_name(device=None) -> str:
    """The GPU's product name, e.g. 'NVIDIA H100 80GB HBM3'."""
    name = _properties(device, "get_device_name")["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def get_device_capability(device=None) -> tuple:
    """The GPU's compute capability as (major, minor)."""
    props = _properties(device, "get_device_capability")
    return int(props["major"]), int(props["minor"])


def get_device_properties(device=None):
    """Name, total memory (bytes), compute capability and multiprocessor count of the GPU."""
    props = _properties(device, "get_device_properties")
    name = props["name"]
    return SimpleNamespace(name=name.decode() if isinstance(name, bytes) else str(name),
                           total_memory=int(props["totalGlobalMem"]), major=int(props["major"]),
                           minor=int(props["minor"]),
                           multi_processor_count=int(props["multiProcessorCount"]))


def manual_seed(seed: int) -> None:
    """Seed the random stream of the current GPU; ignored without CUDA, as in PyTorch."""
    seed = int(seed)
    if is_available():
        backend.default_generator(backend.Device("cuda", current_device())).manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Seed the random streams of every GPU; ignored without CUDA, as in PyTorch."""
    seed = int(seed)
    for index in range(device_count()):
        backend.default_generator(backend.Device("cuda", index)).manual_seed(seed)


def memory_allocated(device=None) -> int:
    """Bytes held by live arrays in CuPy's memory pool on ``device``; 0 without CUDA."""
    if not is_available():
        return 0
    cp, index = backend._import_cupy(), _index(device, "memory_allocated")
    with cp.cuda.Device(index):
        return int(cp.get_default_memory_pool().used_bytes())


def memory_reserved(device=None) -> int:
    """Bytes CuPy's memory pool holds on ``device``, in use or cached; 0 without CUDA."""
    if not is_available():
        return 0
    cp, index = backend._import_cupy(), _index(device, "memory_reserved")
    with cp.cuda.Device(index):
        return int(cp.get_default_memory_pool().total_bytes())


def empty_cache() -> None:
    """Give the blocks cached by CuPy's memory pools back to the driver; nothing without CUDA."""
    if not is_available():
        return
    cp = backend._import_cupy()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()


def _amp_namespace():
    # torch.cuda.amp.autocast / GradScaler: the older spellings of torch.amp's, fixed to "cuda".
    from . import amp

    def autocast(enabled: bool = True, dtype=None, cache_enabled: bool = True):
        return amp.autocast("cuda", dtype=backend.float16 if dtype is None else dtype, enabled=enabled,
                            cache_enabled=cache_enabled)

    def GradScaler(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,  # noqa: N802
                   enabled=True):
        return amp.GradScaler("cuda", init_scale=init_scale, growth_factor=growth_factor,
                              backoff_factor=backoff_factor, growth_interval=growth_interval, enabled=enabled)

    return SimpleNamespace(autocast=autocast, GradScaler=GradScaler)


def __getattr__(name):
    # built on first use: lamina.amp imports the tensor machinery, which lamina.cuda itself need not
    if name == "amp":
        globals()["amp"] = ns = _amp_namespace()
        return ns
    if name in _LEGACY_TYPES:
        from . import legacy
        globals()[name] = cls = legacy.tensor_type(name, "cuda")
        return cls
    raise AttributeError(f"module 'lamina.cuda' has no attribute {name!r}")


_LEGACY_TYPES = ("FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "LongTensor", "IntTensor",
                 "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor")
