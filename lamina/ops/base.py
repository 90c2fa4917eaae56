"""The ``Op`` base class, the op registry, and helpers every op family shares.

An op is one class: ``forward`` computes on raw arrays (NumPy or CuPy, through the array
module of its inputs), ``backward`` returns the vector-Jacobian product written with Lamina's
own Tensor functions, so gradients are differentiable again. Calling an op instance on
Tensors runs forward and, when grad mode is on and an input requires grad, records the
instance itself as the graph node of its outputs.
"""
from __future__ import annotations

import copy
import re

import numpy as np

from .. import backend
from ..grad_mode import _mode, creation_trace
from ..creation import tensor as _tensor_from
from ..tensor import Tensor, _wrap

REGISTRY: dict[str, type] = {}
# what a recorded call leaves on its node (the op's own attributes are everything else)
_NODE_STATE = ("inputs", "in_nodes", "in_idx", "needs_input_grad", "saved", "outputs", "_versions",
               "_out_versions", "_retained", "_trace", "_recorded")
_ndarray = np.ndarray


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class Op:
    """A primitive operator ``Y = L(X1..XN)``; an instance is also the graph node of one call.

    Class attributes a subclass may set:
      n_outputs      number of arrays forward returns (a tuple when > 1)
      save_output    backward reads the output (through ``self.output()``)
      needs_inputs   backward reads input values (not just shapes): in-place changes to them
                     after forward are then an error at backward time
      differentiable False for ops with no gradient (comparisons, argmax, ...)
    Per call, forward may keep what backward needs in ``self.saved``; it is released after use.
    ``self.needs_input_grad`` is a tuple of bools while recording, None otherwise, so forward and
    backward can skip work nobody needs.
    """

    n_outputs = 1
    save_output = False
    needs_inputs = True
    differentiable = True
    name = "op"

    # per-node state (class defaults keep unrecorded instances cheap)
    inputs = None
    in_nodes = None
    in_idx = None
    needs_input_grad = None
    saved = None
    outputs = None
    _versions = None
    _out_versions = None
    _retained = None
    _trace = None
    _recorded = False  # this instance is the graph node of an earlier call

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = _snake(cls.__name__)
        if not cls.__name__.startswith("_"):
            REGISTRY[cls.__name__] = cls

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad, *inputs):
        raise RuntimeError(f"{self.name} is not differentiable")

    # Optional first-order backward on raw arrays: ``backward_arrays(grad, *input_arrays)`` with
    # ``grad`` an array (a tuple of arrays or None for several outputs), returning one array or
    # None per input, or ``NotImplemented`` when it does not take these arrays (a kernel's dtypes or
    # layout, another device): the engine then runs ``backward``. The engine calls it instead of
    # ``backward`` whenever it is not building a graph of the backward (no ``create_graph``);
    # compiled kernels plug in here.
    backward_arrays = None

    def backward_on_arrays(self, grad, *arrays):
        """``backward_arrays``, or where it declines (``NotImplemented``) ``backward`` on the arrays
        wrapped as Tensors: first-order gradients as arrays, for callers that hold only arrays."""
        res = self.backward_arrays(grad, *arrays)
        if res is not NotImplemented:
            return res
        g = _wrap(grad) if grad.__class__ is not tuple else tuple(None if a is None else _wrap(a) for a in grad)
        res = self.backward(g, *[_wrap(a) for a in arrays])
        if res.__class__ is tuple or res.__class__ is list:
            return tuple(None if t is None else t.array for t in res)
        return None if res is None else res.array

    # -------------------------------------------------------------- apply
    def __call__(self, *inputs):
        if self._recorded:  # an op may be called again: the new call gets a node of its own
            return self._new_node()(*inputs)
        mode = _mode
        try:
            n = len(inputs)
            if n == 2:  # the common case, spelled out: binary ops dominate every model
                a, b = inputs
                arrays = (a.array, b.array)
                if arrays[0].__class__ is not _ndarray or arrays[1].__class__ is not _ndarray:
                    _check_devices(self, arrays)
                rec = (a.requires_grad or b.requires_grad) and mode.enabled and self.differentiable
                if rec:
                    self.needs_input_grad = (a.requires_grad, b.requires_grad)
            elif n == 1:
                x = inputs[0]
                arrays = (x.array,)
                rec = x.requires_grad and mode.enabled and self.differentiable
                if rec:
                    self.needs_input_grad = (True,)
            else:
                arrays = [t.array for t in inputs]
                c = arrays[0].__class__
                for a in arrays:
                    if a.__class__ is not c or c is not _ndarray:
                        _check_devices(self, arrays)
                        break
                rec = False
                if mode.enabled and self.differentiable:
                    needs = tuple([t.requires_grad for t in inputs])
                    if True in needs:
                        rec = True
                        self.needs_input_grad = needs
        except AttributeError:
            got = ", ".join(type(t).__name__ for t in inputs)
            raise TypeError(f"{self.name}: expected Tensor inputs, got ({got})") from None
        out = self.forward(*arrays)
        if mode.anomaly:
            _check_finite_output(self, out, inputs)
        if not rec:
            if self.n_outputs == 1:
                return _wrap(out)
            return tuple([_wrap(o) for o in out])
        self.inputs = inputs
        self._recorded = True
        # the producers of the inputs as they are now: a later in-place op may give an input tensor
        # a new history, but this node stays on the one it was computed from (spelled out for the
        # common arities: this is the hot path of every recorded op)
        if n == 2:
            self.in_nodes = (a._node, b._node)
            self.in_idx = (a._out_idx, b._out_idx)
            if self.needs_inputs:
                self._versions = (a._version[0], b._version[0])
        elif n == 1:
            self.in_nodes = (x._node,)
            self.in_idx = (x._out_idx,)
            if self.needs_inputs:
                self._versions = (x._version[0],)
        else:
            self.in_nodes = tuple([t._node for t in inputs])
            self.in_idx = tuple([t._out_idx for t in inputs])
            if self.needs_inputs:
                self._versions = tuple([t._version[0] for t in inputs])
        if mode.anomaly:
            self._trace = creation_trace()
        if self.n_outputs == 1:
            res = _wrap(out, self if _is_float(out) else None)
            if self.save_output:
                self.outputs = out
                self._out_versions = (res._version,)
            return res
        res = tuple([_wrap(o, self if _is_float(o) else None, i) for i, o in enumerate(out)])
        if self.save_output:
            self.outputs = out
            self._out_versions = tuple([r._version for r in res])
        return res

    def _new_node(self):
        """A copy of this op's attributes without the state of the call it recorded."""
        node = copy.copy(self)
        for k in _NODE_STATE:
            node.__dict__.pop(k, None)
        return node

    def reads_input(self, i: int) -> bool:
        """Whether this node's backward reads input ``i``'s value (not only its shape). An in-place
        write to that input then makes the input keep a copy of its old value."""
        return self.needs_inputs

    def output(self, i: int = 0) -> Tensor:
        """The forward output ``i`` as a Tensor, connected to this node when building a graph."""
        data = self.outputs if self.n_outputs == 1 else self.outputs[i]
        if self._out_versions[i][0] != 0:
            raise RuntimeError(
                f"{self.name}: its output {i} (shape {data.shape}) was modified by an in-place "
                "operation after it was computed, but backward needs its original value")
        return _wrap(data, self if _mode.enabled else None, i)

    def check_versions(self):
        if self._versions is None:
            return
        for i, (t, v) in enumerate(zip(self.inputs, self._versions)):
            if t._version[0] != v and self.reads_input(i):
                raise RuntimeError(
                    f"{self.name}: input {i} (shape {t.shape}, dtype {t.dtype}) was modified by an "
                    f"in-place operation after {self.name} used it (version {t._version[0]}, expected "
                    f"{v}); backward needs its original value. Use an out-of-place op or .clone() first.")

    def release(self):
        """Drop everything the node holds for backward, so activation memory can be freed."""
        self.inputs = None
        self.in_nodes = None
        self.saved = None
        self.outputs = None

    def __repr__(self):
        return f"<{type(self).__name__} node>"


def _is_float(a) -> bool:
    k = a.dtype.kind
    return k == "f" or (k == "V" and a.dtype == backend.bfloat16)



def _check_devices(op, arrays):
    devs = [backend.device_of(a) for a in arrays]
    for d in devs:
        if d != devs[0]:
            devs = ", ".join(str(x) for x in devs)
            raise ValueError(f"{op.name}: expected all tensors on one device, got inputs on {devs}")


def _check_finite_output(op, out, inputs):
    outs = out if op.n_outputs > 1 else (out,)
    for i, o in enumerate(outs):
        if o.dtype.kind == "f" and not bool(backend.xp_of(o).isfinite(o).all()):
            shapes = ", ".join(str(t.shape) for t in inputs)
            raise RuntimeError(f"anomaly: {op.name} produced NaN/Inf in output {i} "
                               f"(output shape {o.shape}, input shapes {shapes})")


# ---------------------------------------------------------------- shared helpers

def xp_of(a):
    return np if type(a) is np.ndarray else backend.xp_of(a)


def _broadcastable(s1, s2) -> bool:
    for x, y in zip(reversed(s1), reversed(s2)):
        if x != y and x != 1 and y != 1:
            return False
    return True


def check_broadcast(opname: str, *tensors) -> None:
    """A clear error when operand shapes do not broadcast (only called when shapes differ)."""
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        shapes = " and ".join(str(t.shape) for t in tensors)
        raise ValueError(f"{opname}: shapes {shapes} do not broadcast") from None


def as_tensor(value, like: Tensor) -> Tensor:
    """``value`` as a Tensor on ``like``'s device; Python numbers take a dtype per PyTorch's rules."""
    if isinstance(value, Tensor):
        return value
    arr = like.array
    if isinstance(value, (int, float, bool, np.generic)):
        dtype = backend.scalar_dtype(value, arr.dtype)
        xp = xp_of(arr)
        if xp is np:
            return _wrap(np.array(value, dtype=dtype))
        with backend.device_context(backend.device_of(arr)):
            return _wrap(xp.array(value, dtype=dtype))
    return _tensor_from(value, device=like.device)


def promote(a, b, opname: str, broadcast: bool = True):
    """Two operands (Tensors or numbers) as Tensors of one dtype, following PyTorch's promotion.

    With ``broadcast`` (elementwise ops) their shapes must broadcast against each other.
    """
    if a.__class__ is Tensor and b.__class__ is Tensor:
        ad, bd = a.array, b.array
        if ad.dtype is bd.dtype and ad.shape == bd.shape:  # nothing to convert or check
            return a, b
    else:
        if not isinstance(a, Tensor):
            if not isinstance(b, Tensor):
                raise TypeError(f"{opname}: expected at least one Tensor, got {type(a).__name__} and "
                                f"{type(b).__name__}")
            a = as_tensor(a, b)
        elif not isinstance(b, Tensor):
            b = as_tensor(b, a)
    ad, bd = a.array, b.array
    if broadcast and ad.shape != bd.shape and not _broadcastable(ad.shape, bd.shape):
        check_broadcast(opname, a, b)
    da, db = ad.dtype, bd.dtype
    if da is not db and da != db:
        dt = backend.result_type(da, db)
        # bool operands combine with anything without changing its dtype, so they need no cast
        if da != dt and da.kind != "b":
            a = a.to(dt)
        if db != dt and db.kind != "b":
            b = b.to(dt)
    return a, b


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` down to ``shape`` (the reverse of broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(dim=axes, keepdim=True)
    return g.reshape(shape)


def normalize_dim(dim: int, ndim: int, opname: str) -> int:
    """A possibly negative dimension index as a non-negative one, with a clear error."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{opname}: dim {dim} is out of range for a tensor of {ndim} dims "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n


def normalize_dims(dim, ndim: int, opname: str) -> tuple:
    """``dim`` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    if ndim == 0:  # a 0-d tensor accepts dim 0 or -1 and has nothing to reduce
        for d in ((dim,) if isinstance(dim, int) else dim):
            normalize_dim(d, 0, opname)
        return ()
    if isinstance(dim, int):
        return (normalize_dim(dim, ndim, opname),)
    dims = tuple(normalize_dim(d, ndim, opname) for d in dim)
    if len(set(dims)) != len(dims):
        raise ValueError(f"{opname}: dim {tuple(dim)} repeats an axis")
    return tuple(sorted(dims))


def check_float(t: Tensor, opname: str) -> None:
    if not _is_float(t.array):
        raise TypeError(f"{opname}: expected a floating-point tensor, got dtype {t.dtype}")
