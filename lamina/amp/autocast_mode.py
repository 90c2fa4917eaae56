"""``autocast``: a region in which chosen ops run in lower or full precision, as ``torch.autocast``.

Inside ``autocast(device_type, dtype)``, an op function decorated with ``autocast_op(name)``
casts its floating inputs (float32, float16, bfloat16; float64 is left alone, as in PyTorch)
according to the op's policy on that device type, from the tables below:

* ``LOWER``: matrix products and convolutions take ``dtype`` inputs and give a ``dtype``
  output. On the GPU the op runs on the cast inputs. On the CPU, where NumPy has no fast
  bfloat16 or float16 product, the inputs are rounded to ``dtype``, the product runs in float32
  (BLAS) on those rounded values, and the result is rounded to ``dtype``: the same products
  with float32 accumulation, as mixed-precision hardware computes them.
* ``FP32``: losses (and on the GPU softmax, normalisation, exp/log and sums) take float32.
* ``PROMOTE``: concatenation and stacking cast mixed inputs to their widest float dtype.

Casts are differentiable, so gradients reach float32 parameters in float32. Nested calls inside
a cast op run as they are. The state is per thread, as in PyTorch. ``cache_enabled`` is
accepted and has no effect: each use of a weight casts it again (a cached cast shared between
backward passes would need a graph node that survives being released).
"""
from __future__ import annotations

import functools
import threading
import warnings

from .. import backend

_LOWER_PRECISION = ("matmul", "linear", "bmm", "mm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                    "conv_transpose2d", "conv_transpose3d", "scaled_dot_product_attention")
_LOSSES = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "margin_ranking_loss",
           "soft_margin_loss", "triplet_margin_loss", "cosine_embedding_loss", "hinge_embedding_loss",
           "poisson_nll_loss", "ctc_loss")
_PROMOTE = ("cat", "concat", "stack", "index_put", "scatter_add", "addcmul", "addcdiv")

# op name -> policy, per device type; PyTorch's lists for the ops Lamina has.
POLICIES = {
    "cpu": {**dict.fromkeys(_LOWER_PRECISION, "lower"), **dict.fromkeys(_LOSSES + ("prod", "cdist", "grid_sample"), "fp32"),
            **dict.fromkeys(_PROMOTE, "promote")},
    "cuda": {**dict.fromkeys(_LOWER_PRECISION, "lower"),
             **dict.fromkeys(_LOSSES + ("softmax", "log_softmax", "layer_norm", "group_norm", "exp", "log", "log1p",
                                        "pow", "rsqrt", "reciprocal", "softplus", "logsumexp", "sum", "prod",
                                        "cumsum", "norm", "normalize", "cosine_similarity", "cdist"), "fp32"),
             **dict.fromkeys(_PROMOTE, "promote")},
}

_DEFAULT_DTYPES = {"cpu": backend.bfloat16, "cuda": backend.float16}
_SUPPORTED = (backend.float16, backend.bfloat16)


class _State(threading.local):
    def __init__(self):
        self.settings = {"cpu": (False, _DEFAULT_DTYPES["cpu"]), "cuda": (False, _DEFAULT_DTYPES["cuda"])}
        self.active = False  # any device type enabled: the one check an op pays outside autocast


_state = _State()


def _device_type(device_type, fname: str) -> str:
    if not isinstance(device_type, str):
        raise TypeError(f"{fname}: device_type must be a string such as 'cpu' or 'cuda', got "
                        f"{type(device_type).__name__}")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"{fname}: device_type must be 'cpu' or 'cuda' (Lamina's devices), got {device_type!r}")
    return device_type


def is_autocast_available(device_type: str) -> bool:
    """Whether ``autocast`` works for ``device_type`` here: cpu always, cuda with a GPU."""
    device_type = _device_type(device_type, "is_autocast_available")
    return device_type == "cpu" or backend.cuda_is_available()


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """Whether an enabled ``autocast`` region for ``device_type`` is active in this thread."""
    return _state.settings[_device_type(device_type, "is_autocast_enabled")][0]


def get_autocast_dtype(device_type: str):
    """The dtype ``autocast`` for ``device_type`` casts to now (its default outside a region)."""
    return _state.settings[_device_type(device_type, "get_autocast_dtype")][1]


class autocast:  # noqa: N801  (PyTorch's spelling)
    """``with autocast("cpu", dtype=lamina.bfloat16):`` or ``@autocast("cuda")``.

    ``dtype`` defaults to bfloat16 on cpu and float16 on cuda. ``enabled=False`` makes a region
    with autocast off (also inside an enabled one). As in PyTorch, a dtype other than float16 or
    bfloat16, or ``"cuda"`` on a machine without a GPU, warns and disables the region.
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled=None):
        self.device_type = _device_type(device_type, "autocast")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be True or False, got {enabled!r}")
        self.fast_dtype = _DEFAULT_DTYPES[self.device_type] if dtype is None else backend.as_dtype(dtype)
        self._enabled = enabled
        if enabled and self.device_type == "cuda" and not backend.cuda_is_available():
            warnings.warn("autocast: device_type 'cuda' but CUDA is not available; disabling autocast", stacklevel=2)
            self._enabled = False
        elif enabled and self.fast_dtype not in _SUPPORTED:
            warnings.warn(f"autocast: dtype {self.fast_dtype} is not supported (autocast runs float16 or bfloat16); "
                          f"disabling autocast", stacklevel=2)
            self._enabled = False
        self._saved = []

    def __enter__(self):
        self._saved.append(_state.settings[self.device_type])
        _state.settings = {**_state.settings, self.device_type: (self._enabled, self.fast_dtype)}
        _state.active = any(on for on, _ in _state.settings.values())
        return self

    def __exit__(self, *exc):
        _state.settings = {**_state.settings, self.device_type: self._saved.pop()}
        _state.active = any(on for on, _ in _state.settings.values())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with autocast(self.device_type, self.fast_dtype, self._enabled):
                return fn(*args, **kwargs)
        return run


def autocast_op(name: str):
    """Decorator for an op function: inside ``autocast`` its inputs follow the policy of ``name``
    in ``POLICIES``; outside, it costs one attribute check."""
    def decorate(fn):
        @functools.wraps(fn)
        def op(*args, **kwargs):
            if not _state.active:
                return fn(*args, **kwargs)
            return _dispatch(name, fn, args, kwargs)
        op.autocast_name = name
        return op
    return decorate


def _dispatch(name, fn, args, kwargs):
    from ..tensor import Tensor
    first = next((t for t in _tensors(args, kwargs, Tensor)), None)
    if first is None:
        return fn(*args, **kwargs)
    device_type = first.device.type
    enabled, dtype = _state.settings.get(device_type, (False, None))
    policy = POLICIES[device_type].get(name) if enabled else None
    if policy is None:
        return fn(*args, **kwargs)
    if policy == "lower":
        emulate = device_type == "cpu"  # NumPy's float16/bfloat16 products are slow or widen
        def cast(t):
            if not _eligible(t):
                return t
            t = t.to(dtype)
            return t.to(backend.float32) if emulate else t
    elif policy == "fp32":
        def cast(t):
            return t.to(backend.float32) if _eligible(t) and t.dtype != backend.float32 else t
    else:
        widest = None
        for t in _tensors(args, kwargs, Tensor):
            if backend.is_floating(t.dtype):
                widest = t.dtype if widest is None else backend.result_type(widest, t.dtype)
        def cast(t):
            return t.to(widest) if backend.is_floating(t.dtype) and t.dtype != widest else t
    args = tuple(_map(a, cast, Tensor) for a in args)
    kwargs = {k: _map(v, cast, Tensor) for k, v in kwargs.items()}
    _state.active = False  # what the op calls inside runs as it is
    try:
        out = fn(*args, **kwargs)
    finally:
        _state.active = True
    if policy == "lower" and emulate:
        out = _map(out, lambda t: t.to(dtype) if t.dtype == backend.float32 else t, Tensor)
    return out


def _eligible(t) -> bool:
    return t.dtype in (backend.float32, backend.float16, backend.bfloat16)


def _tensors(args, kwargs, Tensor):
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if isinstance(x, Tensor))


def _map(obj, fn, Tensor):
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)) and any(isinstance(x, Tensor) for x in obj):
        return type(obj)(fn(x) if isinstance(x, Tensor) else x for x in obj)
    return obj
