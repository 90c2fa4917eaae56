"""``Tensor``: an n-d array on a device, with an optional record of the op that made it.

The class is a thin wrapper. This module holds what needs no op: the fields, properties,
conversions, autograd hooks, the version counter (shared by views, bumped by in-place writes,
checked by ops at backward time) and the history of views. The operators and the methods that
call ``lamina.ops`` are in ``lamina.tensor_methods`` (the ops build on this class, so they are
installed on it after both are imported).
"""
from __future__ import annotations

import weakref

import numpy as np

from . import backend
from .grad_mode import _mode, no_grad as _no_grad

_ndarray = np.ndarray


class Tensor:
    """An n-d array (``.array``: a NumPy or CuPy array) plus autograd state.

    ``Tensor(data, dtype=None, device=None, requires_grad=False)`` copies ``data`` like
    ``lamina.tensor``. Tensors made by ops carry ``grad_fn``, the op node that made them.
    """

    # ``_base`` (a view's (root tensor, replay)) and ``_views`` (a root's weak references to its
    # views) are set only on tensors that take part in views under grad mode; read with getattr.
    __slots__ = ("array", "requires_grad", "grad", "_node", "_out_idx", "_version", "_hooks",
                 "_post_hooks", "_base", "_views", "__weakref__")
    __array_priority__ = 1000  # NumPy defers to Tensor's reflected operators

    # __init__ (the PyTorch-style constructor) is in lamina.tensor_methods with the op methods

    def _init(self, array, requires_grad=False):
        """Set every field of a new leaf tensor around ``array`` (no copy). ``_wrap`` sets the same
        fields in the same one statement for tensors made by ops (the hot path)."""
        self.array, self.requires_grad, self.grad, self._node, self._out_idx, self._version, self._hooks, \
            self._post_hooks = array, False, None, None, 0, [0], None, None
        if requires_grad:
            self.requires_grad_(True)

    @property
    def data(self) -> "Tensor":
        """This tensor's memory as a new tensor outside autograd, as PyTorch's ``.data``: no history,
        no grad, and writes through it are not seen by the version checks of backward (``detach()``
        is the checked form). ``.array`` is the NumPy/CuPy array itself."""
        return _wrap(self.array)

    @data.setter
    def data(self, value: "Tensor") -> None:
        """``p.data = t``: this tensor takes ``t``'s memory (shape and dtype included)."""
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data: assigned value must be a Tensor, got {type(value).__name__}; "
                            "to set the array itself assign to .array")
        self.array = value.array

    # ------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple:
        return self.array.shape


    @property
    def ndim(self) -> int:
        return self.array.ndim

    def dim(self) -> int:
        return self.array.ndim

    def numel(self) -> int:
        return self.array.size

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self) -> backend.Device:
        return backend.device_of(self.array)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    @property
    def is_xpu(self) -> bool:  # Lamina's devices are the CPU and CUDA GPUs only
        return False

    @property
    def is_mps(self) -> bool:
        return False

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def element_size(self) -> int:
        return self.array.itemsize

    def is_contiguous(self) -> bool:
        return self.array.flags.c_contiguous

    def is_floating_point(self) -> bool:
        return backend.is_floating(self.array.dtype)

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shared memory on CPU)."""
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; call .detach().numpy() instead")
        if type(self.array) is not _ndarray:
            raise TypeError(f"numpy(): the tensor is on {self.device}; call .cpu() first")
        return self.array

    def __array__(self, dtype=None, copy=None):
        if type(self.array) is not _ndarray:
            raise TypeError(f"cannot convert a tensor on {self.device} to a NumPy array; call .cpu() first")
        a = self.array
        if dtype is not None and a.dtype != dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item(): only a tensor with one element can be converted to a "
                             f"Python number, got shape {self.shape}")
        return self.array.item()

    def tolist(self):
        return self.array.tolist()


    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=None):
        return self.to(backend.Device("cuda", index))

    def float(self):
        return self.to(backend.float32)

    def double(self):
        return self.to(backend.float64)

    def half(self):
        return self.to(backend.float16)

    def bfloat16(self):
        return self.to(backend.bfloat16)

    def long(self):
        return self.to(backend.int64)

    def int(self):
        return self.to(backend.int32)

    def bool(self):
        return self.to(backend.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    # ------------------------------------------------------------ autograd
    def detach(self) -> "Tensor":
        """The same data, cut off from the graph (shares memory and version counter)."""
        t = _wrap(self.array)
        t._version = self._version
        return t

    def detach_(self) -> "Tensor":
        self._node = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not backend.is_floating(self.array.dtype):
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, got {self.dtype}")
        if not requires_grad and self._node is not None:
            raise RuntimeError("requires_grad_(False): only leaf tensors can stop requiring grad; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self


    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor during backward."""
        if self._node is None:
            return
        if self._node._retained is None:
            self._node._retained = {}
        self._node._retained[self._out_idx] = weakref.ref(self)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when the gradient of this leaf is computed; a returned tensor replaces it."""
        if self._node is not None:
            raise RuntimeError("register_hook: hooks are supported on leaf tensors")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _HookHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` after the gradient has been accumulated into ``tensor.grad``."""
        if self._node is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate grads")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        return _HookHandle(self._post_hooks, hook)

    def __deepcopy__(self, memo):
        if self._node is not None:
            raise RuntimeError("deepcopy: only leaf tensors can be deep-copied (this one was made by "
                               f"{self._node.name}); detach() it first")
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new._init(self.array.copy())
        new.requires_grad = self.requires_grad
        new.grad = None if self.grad is None else self.grad.__deepcopy__(memo)
        new._hooks = list(self._hooks) if self._hooks else None
        new._post_hooks = list(self._post_hooks) if self._post_hooks else None
        return new


    def _alias(self) -> "Tensor":
        t = _wrap(self.array, self._node, self._out_idx)
        t.requires_grad = self.requires_grad
        t._version = self._version
        return t

    def _write(self, name, value):
        a = self.array
        if value.shape != a.shape:
            raise ValueError(f"{name}: result of shape {value.shape} cannot be written into a tensor "
                             f"of shape {a.shape}")
        if value.dtype != a.dtype and not np.can_cast(value.dtype, a.dtype, "same_kind"):
            raise TypeError(f"{name}: result of dtype {value.dtype} cannot be written into a tensor "
                            f"of dtype {a.dtype}")
        if not a.flags.writeable:
            raise RuntimeError(f"{name}: the tensor (shape {a.shape}) is a read-only view, such as the "
                               "result of expand(); clone() it first")
        backend.xp_of(a).copyto(a, value, casting="unsafe")
        self._version[0] += 1


    __hash__ = object.__hash__


    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.array.shape[0]))

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.array.size} elements is "
                               "ambiguous; use .any() or .all()")
        return bool(self.array)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iu" or self.array.size != 1:
            raise TypeError(f"only integer tensors of one element can be used as an index, got "
                            f"{self.dtype} of shape {self.shape}")
        return int(self.item())

    def __repr__(self):
        return _format(self)

    def __format__(self, spec):
        if spec and self.array.size == 1:  # '{:.2f}'.format(loss) as with a Python number
            return format(self.item(), spec)
        return format(repr(self), spec)


    def type(self, dtype=None):
        """The dtype's name ("lamina.float32") without ``dtype``, else a copy converted to ``dtype``."""
        if dtype is None:
            return backend.dtype_name(self.dtype)
        return self.to(dtype)


    @property
    def is_sparse(self) -> bool:  # Lamina has dense tensors only
        return False


def _wrap(data, node=None, idx=0) -> Tensor:
    """A Tensor around ``data`` (no copy), recorded as output ``idx`` of ``node`` if given."""
    if data.__class__ is not _ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # NumPy ufuncs turn 0-d arrays into scalars
    t = Tensor.__new__(Tensor)
    t.array, t.requires_grad, t.grad, t._node, t._out_idx, t._version, t._hooks, t._post_hooks = (
        data, node is not None, None, node, idx, [0], None, None)
    return t


# ---------------------------------------------------------------- views and in-place history

def _register_view(out: Tensor, x: Tensor, replay) -> Tensor:
    """Note that ``out`` is a view of ``x`` made by ``replay(x)`` (a function of Tensors), so an
    in-place change of either can rebase the other's history. Only under grad mode."""
    base = getattr(x, "_base", None)
    if base is None:
        root, fn = x, replay
    else:
        root, outer = base
        fn = lambda b: replay(outer(b))  # noqa: E731
    out._base = (root, fn)
    views = getattr(root, "_views", None)
    if views is None:
        views = root._views = []
    elif len(views) > 64:
        views[:] = [r for r in views if r() is not None]
    views.append(weakref.ref(out))
    return out


def _keep_old_value(node, alias) -> None:
    """``node`` was recorded on ``alias``, whose memory is about to be overwritten: where the
    node's backward reads that value it gets a copy; elsewhere it stops watching the version."""
    if node is None or node.inputs is None or node._versions is None:
        return
    inputs, versions = list(node.inputs), list(node._versions)
    for i, t in enumerate(inputs):
        if t is not alias:
            continue
        data = t.array.copy() if node.reads_input(i) else t.array
        kept = _wrap(data, t._node, t._out_idx)
        kept.requires_grad = t.requires_grad
        inputs[i], versions[i] = kept, 0
    node.inputs, node._versions = tuple(inputs), tuple(versions)


class _ViewWrite:
    """Graph node of an in-place write through a view: the root's new value is its old value
    with the view's region replaced. It is recorded after the fact (the write already happened)."""

    n_outputs = 1
    name = "view_write"
    differentiable = True
    backward_arrays = None
    _versions = None
    _retained = None
    _trace = None

    def __init__(self, old_root, new_view, replay):
        self.inputs = (old_root, new_view)
        self.in_nodes = (old_root._node, new_view._node)
        self.in_idx = (old_root._out_idx, new_view._out_idx)
        self.needs_input_grad = (old_root.requires_grad, True)
        self.replay = replay

    def backward(self, g, old_root, new_view):
        g_root = None
        if self.needs_input_grad[0]:
            xp = backend.xp_of(g.array)
            mask = xp.ones(g.shape, dtype=g.dtype)
            with _no_grad():
                region = self.replay(_wrap(mask)).array
            if not xp.may_share_memory(region, mask):
                raise RuntimeError("view_write: cannot locate the written region of the view in its base")
            region[...] = 0
            g_root = g * _wrap(mask)
        return g_root, self.replay(g)

    def release(self):
        self.inputs = self.in_nodes = None

    def __repr__(self):
        return "<ViewWrite node>"


def _rebase_root(root: Tensor, old_root: Tensor, replay, new_view: Tensor) -> None:
    node = _ViewWrite(old_root, new_view, replay)
    root._node, root._out_idx, root.requires_grad = node, 0, True


def _replay_views(root: Tensor, written: Tensor) -> None:
    """Give every live view of ``root`` (but the one just written) a history from root's new one."""
    for ref in getattr(root, "_views", None) or ():
        v = ref()
        if v is None or v is written:
            continue
        base = getattr(v, "_base", None)
        if base is None or base[0] is not root:
            continue
        fresh = base[1](root)
        v._node, v._out_idx, v.requires_grad = fresh._node, fresh._out_idx, fresh.requires_grad


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _format(t: Tensor) -> str:
    a = t.array if type(t.array) is _ndarray else t.array.get()
    if a.dtype == backend.bfloat16:
        a = a.astype(np.float32)
    body = np.array2string(a, separator=", ", prefix="tensor(", precision=4,
                           threshold=1000, edgeitems=3, floatmode="maxprec_equal")
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if t.dtype not in (backend.get_default_dtype(), backend.int64, backend.bool_) or a.size == 0:
        extras.append(f"dtype={backend.dtype_name(t.dtype)}")
    if t._node is not None:
        extras.append(f"grad_fn=<{type(t._node).__name__}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
