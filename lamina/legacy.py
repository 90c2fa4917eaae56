"""PyTorch's legacy tensor constructors: ``FloatTensor(2, 3)``, ``LongTensor([1, 2])``, ...

Old programs make tensors through typed classes: ``torch.FloatTensor(2, 3)`` is an
uninitialised float32 tensor of shape (2, 3), ``torch.LongTensor([1, 2])`` copies the data as
int64, ``torch.FloatTensor()`` is empty, and ``isinstance(x, torch.FloatTensor)`` asks whether
``x`` is a float32 CPU tensor. The classes here behave so and return ordinary ``lamina.Tensor``
objects; ``lamina.cuda.FloatTensor`` and friends do the same on the GPU.

``size_args`` gives the creation functions PyTorch's ``size=`` keyword
(``lamina.empty(size=(2, 3))``). ``constructor_array`` gives ``lamina.Tensor(...)`` itself the same rules: ``Tensor(2, 3)`` is
uninitialised float (the default dtype), ``Tensor()`` is empty, ``Tensor([1, 2])`` copies
Python data as floats, while a NumPy array or Tensor keeps its dtype (Lamina's own code builds
tensors that way).
"""
from __future__ import annotations

import numpy as np

from . import backend
from .creation import _array_from
from .tensor import Tensor, _wrap

_DTYPES = {
    "FloatTensor": backend.float32, "DoubleTensor": backend.float64, "HalfTensor": backend.float16,
    "BFloat16Tensor": backend.bfloat16, "LongTensor": backend.int64, "IntTensor": backend.int32,
    "ShortTensor": backend.int16, "CharTensor": backend.int8, "ByteTensor": backend.uint8,
    "BoolTensor": backend.bool_,
}


def _is_size(a) -> bool:
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))


def constructor_array(fname: str, args: tuple, dtype=None, device=None, typed=False):
    """The array a legacy constructor call ``fname(*args)`` makes.

    No arguments: an empty 1-d array. Only integer arguments: an uninitialised array of that
    shape. One other argument: a copy of it as data. For ``lamina.Tensor`` (``typed`` False) the
    integers are sizes only without ``dtype`` (``Tensor(1, dtype=...)`` is the number 1), Python
    data becomes ``dtype`` or the default float dtype, and arrays and Tensors keep their dtype
    unless ``dtype`` is given. A typed class (``typed`` True) always makes ``dtype``.
    """
    dev = backend.Device(device) if device is not None else backend.cpu
    if not args or ((typed or dtype is None) and all(_is_size(a) for a in args)):
        shape = tuple(int(a) for a in args) or (0,)
        if min(shape) < 0:
            raise ValueError(f"{fname}: sizes must be non-negative, got {shape}")
        with backend.device_context(dev):
            return dev.xp.empty(shape, dtype=backend.as_dtype(dtype))
    if len(args) != 1:
        got = ", ".join(type(a).__name__ for a in args)
        raise TypeError(f"{fname}: expected sizes (ints) or one sequence of data, got ({got})")
    data = args[0]
    python_data = not (isinstance(data, (Tensor, np.ndarray, np.generic))
                       or hasattr(data, "__cuda_array_interface__"))
    if dtype is None and python_data:
        dtype = backend.get_default_dtype()
    return _array_from(data, dtype, device)


class _TensorType(type):
    """The metaclass of the legacy classes: calling one makes a Tensor; isinstance checks dtype
    and device type."""

    def __call__(cls, *args):
        if len(args) == 1 and isinstance(args[0], Tensor) and args[0] in cls:
            return args[0].detach()  # as PyTorch: a tensor of the same type is shared, not copied
        return _wrap(constructor_array(cls.__name__, args, cls.dtype, cls.device_type, typed=True))

    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype and obj.device.type == cls.device_type

    def __contains__(cls, obj):
        return cls.__instancecheck__(obj)

    def __repr__(cls):
        return f"<class '{cls.__module__}.{cls.__name__}'>"


def tensor_type(name: str, device_type: str = "cpu") -> type:
    """The legacy class ``name`` ('FloatTensor', 'LongTensor', ...) for ``device_type``."""
    if name not in _DTYPES:
        raise ValueError(f"tensor_type: unknown legacy tensor type {name!r}; expected one of {', '.join(_DTYPES)}")
    module = "lamina" if device_type == "cpu" else f"lamina.{device_type}"
    doc = (f"``{module}.{name}(*sizes)`` (uninitialised) or ``{module}.{name}(data)``: a "
           f"{backend.dtype_name(_DTYPES[name])} tensor on {device_type}.")
    return _TensorType(name, (), {"dtype": _DTYPES[name], "device_type": device_type, "__module__": module,
                                  "__doc__": doc})


FloatTensor = tensor_type("FloatTensor")
DoubleTensor = tensor_type("DoubleTensor")
HalfTensor = tensor_type("HalfTensor")
BFloat16Tensor = tensor_type("BFloat16Tensor")
LongTensor = tensor_type("LongTensor")
IntTensor = tensor_type("IntTensor")
ShortTensor = tensor_type("ShortTensor")
CharTensor = tensor_type("CharTensor")
ByteTensor = tensor_type("ByteTensor")
BoolTensor = tensor_type("BoolTensor")
