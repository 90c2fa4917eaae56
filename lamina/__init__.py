"""Lamina: a small, readable deep learning framework on NumPy (CPU) and CuPy (CUDA)."""
import sys as _sys

from ._version import __version__  # noqa: F401
from .backend import (  # noqa: F401
    Device, Generator, bfloat16, bool_, cuda_is_available, default_generator, float16, float32,
    float64, get_default_dtype, initial_seed, int8, int16, int32, int64, manual_seed,
    set_default_dtype, uint8,
)
from .backend import tune_allocator as _tune_allocator  # noqa: E402
_tune_allocator()  # freed array memory stays in the process (LAMINA_MALLOC=default: it does not)
from .autograd import (  # noqa: F401
    detect_anomaly, enable_grad, format_graph, grad, is_grad_enabled, no_grad, print_graph,
    set_detect_anomaly, set_grad_enabled,
)
from .tensor import Tensor  # noqa: F401
from .creation import (  # noqa: F401
    arange, as_tensor, empty, empty_like, eye, from_dlpack, from_numpy, full, full_like, linspace,
    ones, ones_like, rand, rand_like, randint, randn, randn_like, randperm, sparse_coo_tensor, tensor, zeros,
    zeros_like,
)
from .ops import (  # noqa: F401
    adaptive_avg_pool2d, argsort, avg_pool2d, cumsum, multinomial, sort, topk, conv1d, conv2d, conv_transpose2d, dropout, embedding,
    max_pool2d, abs, add, all, amax, amin, any, argmax, argmin, bmm, broadcast_shapes, broadcast_to, cat, chunk,
    clamp, clone, concat, cos, div, eq, erf, exp, expand, flatten, flip, floor_divide, gather, ge,
    gt, index_add, index_select, isfinite, isnan, le, log, log1p, log_softmax, logical_and, logical_not,
    logical_or, logical_xor, logsumexp, lt, masked_fill, matmul, max, maximum, mean, min, minimum,
    mm, mul, ne, neg, one_hot, pad, permute, pow, prod, relu, remainder, repeat, reshape, rsqrt,
    scatter_add, sigmoid, sign, sin, softmax, split, sqrt, squeeze, stack, std, sub, sum, tanh,
    transpose, tril, triu, unbind, unflatten, unsqueeze, var, where,
)
from . import tensor_methods  # noqa: F401,E402  (Tensor's operators and op methods, installed on import)

from . import data, distributed, distributions, io, models, nn, optim, utils  # noqa: E402,F401  (subpackages, as torch.nn / torch.optim)
from . import accelerator, amp, backends, cuda  # noqa: E402,F401  (torch.accelerator, torch.amp, torch.backends, torch.cuda)
from .amp import autocast  # noqa: E402,F401
from .kernels import get_num_threads, set_num_threads  # noqa: E402,F401  (torch.set_num_threads)
from .io.objects import load, save  # noqa: E402,F401  (torch.save / torch.load, without pickle)
from .legacy import (  # noqa: E402,F401  (PyTorch's legacy typed constructors)
    BFloat16Tensor, BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor, HalfTensor, IntTensor,
    LongTensor, ShortTensor,
)

device = Device  # torch.device's spelling: lamina.device("cuda" if lamina.cuda.is_available() else "cpu")

bool = bool_  # noqa: A001  (lamina.bool, like torch.bool)
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001


from . import ops as _ops, surface as _surface  # noqa: E402
_surface.install(_sys.modules[__name__], _ops, nn.functional, Tensor)


# Loaded on first use (PEP 562), so ``import lamina`` stays quick: ``lamina.onnx``,
# ``lamina.vision`` and the graph functions ``lamina.trace``/``summary``/``compile``.
_LAZY_MODULES = ("graph", "onnx", "vision")
_GRAPH_FUNCTIONS = ("trace", "summary", "compile")


def __getattr__(name):
    import importlib
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _GRAPH_FUNCTIONS:
        return getattr(importlib.import_module(".graph", __name__), name)
    raise AttributeError(f"module 'lamina' has no attribute {name!r}")
