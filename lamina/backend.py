"""Devices, dtypes, the array module of a device (NumPy on CPU, CuPy on CUDA) and random generators.

Everything above this module speaks of devices and dtypes through the names defined here;
nothing above it imports NumPy's or CuPy's device machinery directly.
"""
from __future__ import annotations

import os
import sys

import numpy as np

try:  # bfloat16 for NumPy comes from ml_dtypes (the same package JAX uses)
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is a declared dependency
    _ml_dtypes = None

# ---------------------------------------------------------------- the C allocator

def tune_allocator() -> bool:
    """Keep freed array memory in the process instead of handing it back to the OS.

    A training step allocates and frees the same large temporaries every time (NumPy takes
    array memory from the C allocator). glibc returns blocks above its thresholds to the kernel
    (munmap, heap trimming) and the next step page-faults them back in, 4 KiB at a time: a
    quarter of LeNet-5's step, a fifth of the baby GPT's and a third of LeNet's inference at
    batch 1000. Raising the mmap threshold to 32 MiB, the trim threshold to 256 MiB and the top
    pad to 64 MiB keeps them on the heap; the cost is up to ~0.3 GiB of freed memory the process
    keeps for reuse. ``import lamina`` calls this once; ``LAMINA_MALLOC=default`` (set before the
    import) leaves the allocator alone. Returns whether the settings were changed.
    """
    if os.environ.get("LAMINA_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 256 << 20)
                    and libc.mallopt(m_top_pad, 64 << 20))
    except (OSError, AttributeError):  # not glibc
        return False


# ---------------------------------------------------------------- dtypes
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
int16 = np.dtype(np.int16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
bfloat16 = np.dtype(_ml_dtypes.bfloat16) if _ml_dtypes is not None else None

_DTYPE_NAMES = {
    "float16": float16, "half": float16, "float32": float32, "float": float32,
    "float64": float64, "double": float64, "int8": int8, "uint8": uint8, "int16": int16,
    "int32": int32, "int": int32, "int64": int64, "long": int64, "bool": bool_,
}
if bfloat16 is not None:
    _DTYPE_NAMES["bfloat16"] = bfloat16

_default_float = float32


def get_default_dtype() -> np.dtype:
    return _default_float


def set_default_dtype(dtype) -> None:
    """Set the dtype of float tensors made from Python floats (float32 unless changed)."""
    global _default_float
    d = as_dtype(dtype)
    if not is_floating(d):
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {d}")
    _default_float = d


def as_dtype(dtype) -> np.dtype:
    """Turn a dtype, its name or a Python type into the NumPy dtype Lamina uses."""
    if dtype is None:
        return _default_float
    if isinstance(dtype, np.dtype):
        return dtype
    if isinstance(dtype, str):
        d = _DTYPE_NAMES.get(dtype.removeprefix("lamina."))
        if d is None:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
        return d
    if dtype is float:
        return _default_float
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None


def dtype_names() -> list:
    """The dtype names ``as_dtype`` accepts."""
    return sorted(_DTYPE_NAMES)


def is_floating(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype == bfloat16


def dtype_name(dtype: np.dtype) -> str:
    return "lamina." + ("bool" if dtype == bool_ else str(dtype))


def result_type(a: np.dtype, b: np.dtype) -> np.dtype:
    """Dtype of a binary op's result, following PyTorch's category rule.

    Within a category (bool < integer < floating) the wider type wins; across categories the
    operand of the higher category keeps its dtype (int64 + float32 -> float32, not float64).
    """
    if a == b:
        return a
    ca, cb = _category(a), _category(b)
    if ca == cb:
        if a == bfloat16 or b == bfloat16:  # bfloat16 with float16 has no exact common type
            return float32 if float64 not in (a, b) else float64
        return np.promote_types(a, b)
    return a if ca > cb else b


def _category(d: np.dtype) -> int:
    if d.kind == "b":
        return 0
    if d.kind in "iu":
        return 1
    return 2


def scalar_dtype(value, like: np.dtype) -> np.dtype:
    """Dtype a Python scalar takes when combined with a tensor of dtype ``like``."""
    if isinstance(value, bool):
        cat = 0
    elif isinstance(value, int):
        cat = 1
    elif isinstance(value, float):
        cat = 2
    elif isinstance(value, np.generic):
        return result_type(value.dtype, like) if _category(value.dtype) > _category(like) else like
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if cat <= _category(like):
        return like
    return int64 if cat == 1 else _default_float


# ---------------------------------------------------------------- devices
_cupy = None


def _import_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError(
                "CUDA device requested but CuPy is not installed; install lamina[gpu]"
            ) from e
        _cupy = cupy
    return _cupy


def cuda_is_available() -> bool:
    try:
        cp = _import_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cuda_device_count() -> int:
    return _import_cupy().cuda.runtime.getDeviceCount() if cuda_is_available() else 0


class Device:
    """Where a tensor lives: ``Device("cpu")`` (NumPy) or ``Device("cuda:N")`` (CuPy)."""

    __slots__ = ("type", "index")
    _cache: dict = {}

    def __new__(cls, spec="cpu", index=None):
        if isinstance(spec, Device):
            return spec
        key = (spec, index)
        dev = cls._cache.get(key)
        if dev is not None:
            return dev
        if isinstance(spec, int) and not isinstance(spec, bool):  # torch.device(0) is cuda:0
            spec, index = "cuda", spec
        if not isinstance(spec, str):
            raise TypeError(f"Device: expected a string such as 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"Device: unknown device type {kind!r} in {spec!r}; expected 'cpu' or 'cuda[:N]'")
        if idx:
            if index is not None or not idx.isdigit():
                raise ValueError(f"Device: bad device index in {spec!r}")
            index = int(idx)
        if kind == "cpu":
            if index not in (None, 0):
                raise ValueError(f"Device: cpu has no index {index}")
            index = None
        elif index is None:
            index = 0
        dev = object.__new__(cls)
        object.__setattr__(dev, "type", kind)
        object.__setattr__(dev, "index", index)
        cls._cache[key] = dev
        return dev

    def __setattr__(self, name, value):
        raise AttributeError("Device is immutable")

    @property
    def xp(self):
        """The array module of this device: numpy or cupy."""
        return np if self.type == "cpu" else _import_cupy()

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):
        return f"device({str(self)!r})"

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (Device, (str(self),))


cpu = Device("cpu")


def device_of(array) -> Device:
    if type(array) is np.ndarray or isinstance(array, (np.ndarray, np.generic)):
        return cpu
    return Device("cuda", array.device.id)


def xp_of(array):
    """The array module that owns ``array``."""
    if type(array) is np.ndarray or isinstance(array, (np.ndarray, np.generic)):
        return np
    return _import_cupy()


def to_device(array, device: Device):
    """Copy ``array`` to ``device`` (no copy if it is already there)."""
    if device.type == "cpu":
        return array if type(array) is np.ndarray else array.get()
    cp = _import_cupy()
    with cp.cuda.Device(device.index):
        return cp.asarray(array)


def device_context(device: Device):
    """Context in which new arrays of ``device`` are allocated."""
    if device.type == "cpu":
        return _NullContext()
    return _import_cupy().cuda.Device(device.index)


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------- random generators
_DEFAULT_SEED = 67280421310721


class Generator:
    """A seeded random stream on one device.

    CPU streams use NumPy's PCG64 and can save and restore their state exactly. CUDA streams use
    CuPy's generator; their state is (seed, number of draws), replayed on restore.
    """

    def __init__(self, device="cpu", seed=None):
        self.device = Device(device)
        self.manual_seed(_DEFAULT_SEED if seed is None else seed)

    def manual_seed(self, seed: int) -> "Generator":
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"Generator.manual_seed: seed must be >= 0, got {seed}")
        self._seed = seed
        self._draws = 0
        if self.device.type == "cpu":
            self._impl = np.random.Generator(np.random.PCG64(seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def _cuda_stream(self):
        """The CuPy generator for the next draw. Each draw gets its own seed derived from (seed,
        draw number), so a CUDA stream's state is just those two numbers and restores exactly."""
        cp = _import_cupy()
        self._draws += 1
        sub = np.random.SeedSequence([self._seed, self._draws]).generate_state(1, np.uint64)[0]
        with cp.cuda.Device(self.device.index):
            return cp.random.RandomState(int(sub) & (2**63 - 1))

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of the stream."""
        if self.device.type == "cpu":
            st = self._impl.bit_generator.state
            return {"device": "cpu", "seed": self._seed, "pcg64": {
                "state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
                "has_uint32": st["has_uint32"], "uinteger": st["uinteger"]}}
        return {"device": str(self.device), "seed": self._seed, "draws": self._draws}

    def set_state(self, state: dict) -> None:
        if state.get("device", "cpu").split(":")[0] != self.device.type:
            raise ValueError(f"Generator.set_state: state of a {state.get('device')} generator "
                             f"cannot be loaded into a {self.device} generator")
        self.manual_seed(state["seed"])
        if self.device.type == "cpu":
            p = state["pcg64"]
            self._impl.bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {"state": int(p["state"]), "inc": int(p["inc"])},
                "has_uint32": p["has_uint32"], "uinteger": p["uinteger"]}
        else:
            self._draws = int(state["draws"])

    # Sampling. Each returns an array of this generator's device.
    def uniform(self, shape, dtype, low=0.0, high=1.0):
        d = dtype if dtype in (float32, float64) else float32
        if self.device.type == "cpu":
            out = self._impl.random(shape, dtype=d)
        else:
            out = self._cuda_stream().random_sample(shape, dtype=d)
        if low != 0.0 or high != 1.0:
            out = out * (high - low) + low
        return out.astype(dtype, copy=False)

    def normal(self, shape, dtype, mean=0.0, std=1.0):
        d = dtype if dtype in (float32, float64) else float32
        impl = self._impl if self.device.type == "cpu" else self._cuda_stream()
        out = impl.standard_normal(shape, dtype=d)
        if std != 1.0 or mean != 0.0:
            out = out * std + mean
        return out.astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype):
        if self.device.type == "cpu":
            return self._impl.integers(low, high, shape, dtype=np.int64).astype(dtype, copy=False)
        return self._cuda_stream().randint(low, high, shape, dtype=np.int64).astype(dtype, copy=False)

    def permutation(self, n):
        if self.device.type == "cpu":
            return self._impl.permutation(n)
        return self._cuda_stream().permutation(n)


_generators: dict = {}
_global_seed = _DEFAULT_SEED


def default_generator(device="cpu") -> Generator:
    """The process-wide generator of ``device``, created on first use from the global seed."""
    device = Device(device)
    gen = _generators.get(device)
    if gen is None:
        gen = _generators[device] = Generator(device, _global_seed)
    return gen


def manual_seed(seed: int) -> None:
    """Seed the generators of every device, so a run can be repeated exactly."""
    global _global_seed
    _global_seed = int(seed)
    for gen in _generators.values():
        gen.manual_seed(seed)


def initial_seed() -> int:
    return _global_seed
