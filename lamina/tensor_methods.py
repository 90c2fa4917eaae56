"""Tensor's operators and every Tensor method that calls an op, installed on the class when
``lamina`` is imported.

They live apart from ``tensor.py`` because the ops build on Tensor (they make and read
Tensors): this module imports both at its top, so neither module imports the other late. The
methods are written in the body of ``_Methods`` as they would be in ``Tensor``'s, and
``install`` copies them onto ``Tensor``; methods of the public surface that are plain op
functions are added by ``lamina.surface``.
"""
from __future__ import annotations

from . import autograd as _autograd, backend, creation as _creation, ops as _ops
from .grad_mode import _mode
from .legacy import constructor_array
from .multiprocessing import reductions as _shared
from .tensor import Tensor, _keep_old_value, _rebase_root, _replay_views, _wrap


class _Methods:
    """The body of ``Tensor``'s op-calling methods (never instantiated)."""

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        # Tensor(2, 3), Tensor(), Tensor([1, 2]) as in PyTorch
        self._init(constructor_array("Tensor", args, dtype, device), requires_grad)

    def to_sparse(self, sparse_dim=None, layout=None, blocksize=None, dense_dim=None):
        """PyTorch's sparse conversion. Lamina stores every tensor densely, so the result is a
        copy with the same values (what PyTorch's ``.to_sparse().to_dense()`` gives); products
        and sums with it give PyTorch's values."""
        if sparse_dim is not None and not 0 <= sparse_dim <= self.ndim:
            raise ValueError(f"to_sparse: sparse_dim must be in [0, {self.ndim}] for a {self.ndim}-D tensor, "
                             f"got {sparse_dim}")
        return _ops.clone(self)

    def to_dense(self, dtype=None, masked_grad=None):
        """The tensor itself (Lamina's tensors are dense), cast to ``dtype`` if given."""
        return self if dtype is None else self.to(dtype)

    def size(self, dim=None):
        if dim is None:
            return self.array.shape
        return self.array.shape[_ops.normalize_dim(dim, self.array.ndim, "size")]

    def to(self, *args, dtype=None, device=None, copy=False):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, backend.Device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")):
                device = a
            elif isinstance(a, str) and a not in backend.dtype_names():
                raise ValueError(f"to: {a!r} is neither a device (cpu, cuda, cuda:N) nor a dtype "
                                 f"({', '.join(backend.dtype_names())})")
            else:
                dtype = a
        out = self
        if device is not None:
            device = backend.Device(device)
            if device != self.device:
                out = _ops.to_device(out, device)
        if dtype is not None:
            dtype = backend.as_dtype(dtype)
            if dtype != out.dtype:
                out = _ops.cast(out, dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf that requires grad."""
        _autograd.backward([self], [gradient], retain_graph=retain_graph, create_graph=create_graph)

    # ------------------------------------------------------------ in-place updates
    def _inplace(self, name, fn, *args, **kwargs):
        """Compute ``fn(self, *args)`` and write it into this tensor's memory.

        Under grad mode the write is recorded as PyTorch does: the op that computed the new value
        becomes this tensor's producer (its history is rebased onto it), a view's root gets a node
        that puts the new values into its region, and the other views of that root are replayed
        from it. A node that reads this tensor's old value in backward keeps a copy of it; every
        other node that saved this tensor sees the version bump and refuses to backward.
        """
        recording = _mode.enabled and (self.requires_grad or any(
            isinstance(a, Tensor) and a.requires_grad for a in args))
        view = getattr(self, "_base", None) if recording else None
        if recording:
            if self._node is None and self.requires_grad:
                raise RuntimeError(
                    f"{name}: a leaf tensor that requires grad (shape {self.shape}) cannot be changed "
                    "in place while grad mode is on; do it inside lamina.no_grad()")
            if view is not None and view[0]._node is None and view[0].requires_grad:
                raise RuntimeError(
                    f"{name}: a view (shape {self.shape}) of a leaf tensor that requires grad (shape "
                    f"{view[0].shape}) cannot be changed in place while grad mode is on; do it inside "
                    "lamina.no_grad() or clone() the leaf first")
            alias = self._alias()
            res = fn(alias, *args, **kwargs)
            if res._node is None:  # a constant was written: keep a (zero-gradient) edge to the history
                res = _ops.where(_wrap(backend.xp_of(res.array).asarray(True)), res, alias)
            _keep_old_value(res._node, alias)
        else:
            prev = _mode.enabled
            _mode.enabled = False
            try:
                res = fn(self, *args, **kwargs)
            finally:
                _mode.enabled = prev
        self._write(name, res.array)
        if recording:
            root = self if view is None else view[0]
            old_root = root._alias() if view is not None else None
            self._node, self._out_idx, self.requires_grad = res._node, res._out_idx, True
            if view is not None:
                _rebase_root(root, old_root, view[1], res)
            _replay_views(root, self)
        return self

    def add_(self, other, alpha=1):
        return self._inplace("add_", lambda s, o: _ops.add(s, o if alpha == 1 else o * alpha), other)

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", lambda s, o: _ops.sub(s, o if alpha == 1 else o * alpha), other)

    def mul_(self, other):
        return self._inplace("mul_", _ops.mul, other)

    def div_(self, other):
        return self._inplace("div_", _ops.div, other)

    def pow_(self, other):
        return self._inplace("pow_", _ops.pow, other)

    def clamp_(self, min=None, max=None):
        return self._inplace("clamp_", _ops.clamp, min, max)

    def neg_(self):
        return self._inplace("neg_", _ops.neg)

    def exp_(self):
        return self._inplace("exp_", _ops.exp)

    def sqrt_(self):
        return self._inplace("sqrt_", _ops.sqrt)

    def relu_(self):
        return self._inplace("relu_", _ops.relu)

    def masked_fill_(self, mask, value):
        return self._inplace("masked_fill_", _ops.masked_fill, mask, value)

    def index_put_(self, indices, values, accumulate=False):
        return self._inplace("index_put_", lambda s, v: _ops.index_put(s, tuple(indices), v, accumulate), values)

    def addcmul_(self, tensor1, tensor2, value=1):
        return self._inplace("addcmul_", lambda s, a, b: _ops.add(s, a * b if value == 1 else a * b * value),
                             tensor1, tensor2)

    def addcdiv_(self, tensor1, tensor2, value=1):
        return self._inplace("addcdiv_", lambda s, a, b: _ops.add(s, a / b if value == 1 else a / b * value),
                             tensor1, tensor2)

    def lerp_(self, end, weight):
        """``self += weight * (end - self)``."""
        return self._inplace("lerp_", lambda s, e: _ops.add(s, _ops.mul(weight, _ops.sub(e, s))), end)

    def sigmoid_(self):
        return self._inplace("sigmoid_", _ops.sigmoid)

    def tanh_(self):
        return self._inplace("tanh_", _ops.tanh)

    def abs_(self):
        return self._inplace("abs_", _ops.abs)

    def copy_(self, src):
        """Copy ``src`` (broadcast to this shape, cast to this dtype) into this tensor."""
        if not isinstance(src, Tensor):
            src = Tensor(src, dtype=self.dtype, device=self.device)
        elif src.device != self.device:
            src = src.to(self.device)

        def copy(dst, s):
            if s.shape != dst.shape:
                return _ops.expand(s, dst.shape)
            return _ops.clone(s) if s.requires_grad and _mode.enabled else s
        return self._inplace("copy_", copy, src)

    def fill_(self, value):
        if isinstance(value, Tensor):
            value = value.item()
        if self._node is not None and _mode.enabled:
            return self._inplace("fill_", lambda s: _creation.full_like(s, value))
        if self._node is None and self.requires_grad and _mode.enabled:
            raise RuntimeError(f"fill_: a leaf tensor that requires grad (shape {self.shape}) "
                               "cannot be changed in place while grad mode is on")
        if not self.array.flags.writeable:
            raise RuntimeError(f"fill_: the tensor (shape {self.shape}) is a read-only view, such as the "
                               "result of expand(); clone() it first")
        self.array.fill(value)
        self._version[0] += 1
        return self

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, low=0.0, high=1.0, generator=None):
        gen = generator or backend.default_generator(self.device)
        return self._fill_random("uniform_", gen.uniform(self.shape, self.dtype, low, high))

    def normal_(self, mean=0.0, std=1.0, generator=None):
        gen = generator or backend.default_generator(self.device)
        return self._fill_random("normal_", gen.normal(self.shape, self.dtype, mean, std))

    def _fill_random(self, name, values):
        if self._node is None and self.requires_grad and _mode.enabled:
            raise RuntimeError(f"{name}: a leaf tensor that requires grad (shape {self.shape}) cannot "
                               "be changed in place while grad mode is on; do it inside lamina.no_grad()")
        self._write(name, values)
        return self

    def __setitem__(self, index, value):
        self._inplace("__setitem__", lambda s, v: _ops.index_put(s, index, v), value)

    # ------------------------------------------------------------ operators
    def __radd__(self, other):
        return _ops.add(other, self)

    def __iadd__(self, other):
        return self.add_(other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __isub__(self, other):
        return self.sub_(other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __imul__(self, other):
        return self.mul_(other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __itruediv__(self, other):
        return self.div_(other)

    def __floordiv__(self, other):
        return _ops.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ops.floor_divide(other, self)

    def __mod__(self, other):
        return _ops.remainder(self, other)

    def __rmod__(self, other):
        return _ops.remainder(other, self)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)

    def __and__(self, other):
        return _ops.logical_and(self, other)

    def __or__(self, other):
        return _ops.logical_or(self, other)

    def __xor__(self, other):
        return _ops.logical_xor(self, other)

    def __invert__(self):
        return _ops.logical_not(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # ------------------------------------------------------------ methods that call ops
    def abs(self): return _ops.abs(self)
    def neg(self): return _ops.neg(self)
    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def rsqrt(self): return _ops.rsqrt(self)
    def sin(self): return _ops.sin(self)
    def cos(self): return _ops.cos(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def erf(self): return _ops.erf(self)
    def sign(self): return _ops.sign(self)
    def square(self): return _ops.mul(self, self)
    def reciprocal(self): return _ops.div(1.0, self)
    def clamp(self, min=None, max=None): return _ops.clamp(self, min, max)
    clip = clamp
    def add(self, other, alpha=1): return _ops.add(self, other, alpha=alpha)
    def sub(self, other, alpha=1): return _ops.sub(self, other, alpha=alpha)
    def addcmul(self, tensor1, tensor2, value=1): return _ops.add(self, tensor1 * tensor2 * value if value != 1 else tensor1 * tensor2)
    def addcdiv(self, tensor1, tensor2, value=1): return _ops.add(self, tensor1 / tensor2 * value if value != 1 else tensor1 / tensor2)
    def lerp(self, end, weight): return _ops.add(self, _ops.mul(weight, _ops.sub(end, self)))
    def dot(self, other):
        if self.ndim != 1 or other.ndim != 1:
            raise ValueError(f"dot: expected two 1-D tensors, got shapes {self.shape} and {other.shape}")
        return _ops.matmul(self, other)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The p-norm over ``dim`` (all elements by default); "fro" is the 2-norm of all elements."""
        if p == "fro" or p == 2:
            return _ops.sqrt(_ops.sum(self * self, dim, keepdim))
        if p == float("inf"):
            return _ops.amax(_ops.abs(self), dim, keepdim)
        if p == 1:
            return _ops.sum(_ops.abs(self), dim, keepdim)
        return _ops.pow(_ops.sum(_ops.pow(_ops.abs(self), p), dim, keepdim), 1.0 / p)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor of at most 2 dims, got shape {self.shape}; use transpose")
        return self if self.ndim < 2 else _ops.transpose(self, 0, 1)

    def narrow(self, dim, start, length):
        d = _ops.normalize_dim(dim, self.ndim, "narrow")
        if not 0 <= start <= start + length <= self.shape[d]:
            raise IndexError(f"narrow: start {start} and length {length} do not fit dim {dim} of size {self.shape[d]}")
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def share_memory_(self):
        """Move the array into shared memory, in place (see ``lamina.multiprocessing``)."""
        return _shared.share_memory_(self)

    def is_shared(self) -> bool:
        return _shared.is_shared(self)

    def sign_(self): return self._inplace("sign_", _ops.sign)
    def mul(self, other): return _ops.mul(self, other)
    def div(self, other): return _ops.div(self, other)
    def pow(self, other): return _ops.pow(self, other)
    def maximum(self, other): return _ops.maximum(self, other)
    def minimum(self, other): return _ops.minimum(self, other)
    def eq(self, other): return _ops.eq(self, other)
    def ne(self, other): return _ops.ne(self, other)
    def lt(self, other): return _ops.lt(self, other)
    def le(self, other): return _ops.le(self, other)
    def gt(self, other): return _ops.gt(self, other)
    def ge(self, other): return _ops.ge(self, other)
    def isnan(self): return _ops.isnan(self)
    def isfinite(self): return _ops.isfinite(self)
    def where(self, condition, other): return _ops.where(condition, self, other)
    def masked_fill(self, mask, value): return _ops.masked_fill(self, mask, value)
    def matmul(self, other): return _ops.matmul(self, other)

    def sum(self, dim=None, keepdim=False, dtype=None): return _ops.sum(self, dim, keepdim, dtype=dtype)
    def mean(self, dim=None, keepdim=False): return _ops.mean(self, dim, keepdim)
    def prod(self, dim=None, keepdim=False): return _ops.prod(self, dim, keepdim)
    def amax(self, dim=None, keepdim=False): return _ops.amax(self, dim, keepdim)
    def amin(self, dim=None, keepdim=False): return _ops.amin(self, dim, keepdim)
    def max(self, dim=None, keepdim=False): return _ops.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return _ops.min(self, dim, keepdim)
    def argmax(self, dim=None, keepdim=False): return _ops.argmax(self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return _ops.argmin(self, dim, keepdim)
    def var(self, dim=None, keepdim=False, correction=1): return _ops.var(self, dim, keepdim, correction=correction)
    def std(self, dim=None, keepdim=False, correction=1): return _ops.std(self, dim, keepdim, correction=correction)
    def logsumexp(self, dim, keepdim=False): return _ops.logsumexp(self, dim, keepdim)
    def all(self, dim=None, keepdim=False): return _ops.all(self, dim, keepdim)
    def any(self, dim=None, keepdim=False): return _ops.any(self, dim, keepdim)
    def softmax(self, dim): return _ops.softmax(self, dim)
    def sort(self, dim=-1, descending=False): return _ops.sort(self, dim, descending)
    def argsort(self, dim=-1, descending=False): return _ops.argsort(self, dim, descending)
    def topk(self, k, dim=-1, largest=True, sorted=True): return _ops.topk(self, k, dim, largest, sorted)
    def cumsum(self, dim): return _ops.cumsum(self, dim)
    def log_softmax(self, dim): return _ops.log_softmax(self, dim)

    def reshape(self, *shape): return _ops.reshape(self, *shape)
    def view(self, *shape): return _ops.reshape(self, *shape)
    def view_as(self, other): return _ops.reshape(self, other.shape)
    def permute(self, *dims): return _ops.permute(self, *dims)
    def transpose(self, dim0, dim1): return _ops.transpose(self, dim0, dim1)
    def expand(self, *shape): return _ops.expand(self, *shape)
    def expand_as(self, other): return _ops.expand(self, other.shape)
    def broadcast_to(self, shape): return _ops.expand(self, shape)
    def squeeze(self, dim=None): return _ops.squeeze(self, dim)
    def unsqueeze(self, dim): return _ops.unsqueeze(self, dim)
    def flatten(self, start_dim=0, end_dim=-1): return _ops.flatten(self, start_dim, end_dim)
    def unflatten(self, dim, sizes): return _ops.unflatten(self, dim, sizes)
    def flip(self, dims): return _ops.flip(self, dims)
    def repeat(self, *repeats): return _ops.repeat(self, *repeats)
    def split(self, split_size_or_sections, dim=0): return _ops.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return _ops.chunk(self, chunks, dim)
    def unbind(self, dim=0): return _ops.unbind(self, dim)
    def gather(self, dim, index): return _ops.gather(self, dim, index)
    def scatter_add(self, dim, index, src): return _ops.scatter_add(self, dim, index, src)
    def index_select(self, dim, index): return _ops.index_select(self, dim, index)
    def index_add(self, dim, index, source): return _ops.index_add(self, dim, index, source)
    def tril(self, diagonal=0): return _ops.tril(self, diagonal)
    def triu(self, diagonal=0): return _ops.triu(self, diagonal)
    def clone(self): return _ops.clone(self)
    def contiguous(self): return self if self.array.flags.c_contiguous else _ops.clone(self)

    @property
    def T(self):
        return _ops.permute(self, *range(self.array.ndim - 1, -1, -1))

    @property
    def mT(self):
        return _ops.transpose(self, -2, -1)

    def new_zeros(self, *shape, dtype=None): return _creation.zeros(*shape, dtype=dtype or self.dtype, device=self.device)
    def new_ones(self, *shape, dtype=None): return _creation.ones(*shape, dtype=dtype or self.dtype, device=self.device)
    def new_full(self, shape, value, dtype=None): return _creation.full(shape, value, dtype=dtype or self.dtype, device=self.device)
    def new_empty(self, *shape, dtype=None): return _creation.empty(*shape, dtype=dtype or self.dtype, device=self.device)
    def new_tensor(self, data, dtype=None): return _creation.tensor(data, dtype=dtype or self.dtype, device=self.device)


def install() -> None:
    """Put every method of ``_Methods`` on ``Tensor``; the forward operators are the op functions
    themselves (one call frame less on the hot path)."""
    # __hash__: defining __eq__ set _Methods' own to None; Tensor keeps object's (identity)
    for name, member in vars(_Methods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__hash__"):
            setattr(Tensor, name, member)
    Tensor.__add__ = _ops.add
    Tensor.__sub__ = _ops.sub
    Tensor.__mul__ = _ops.mul
    Tensor.__truediv__ = _ops.div
    Tensor.__matmul__ = _ops.matmul


install()
