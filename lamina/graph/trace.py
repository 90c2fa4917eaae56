"""Tracing: run a function or module once on example inputs and record every op call as a
``Graph``.

While a trace runs, ``Op.__call__`` hands each call to the tracer of the calling thread
(``_mode.tracer``), which runs the op as usual and records a node; other threads' calls run
as usual. Tensors the tracer has not seen become values of kind
``parameter``/``buffer`` (a module's own state), ``buffer`` (a parameter's existing ``.grad``) or
``constant`` (arrays the function made without an op, such as ``arange``). A backward run while
tracing goes through every op's Tensor-op ``backward`` (the raw-array fast path is switched off
for traced nodes), so a traced training step holds its backward nodes; arrays an op keeps in
``saved`` for its backward become extra outputs of its forward node. An optimiser's ``step`` is
traced through the Tensor-op form of its rule (``lamina.graph.optim_rules``) and becomes graph
updates. Python control flow on tensor values raises ``TraceError`` naming the user's line.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from .. import backend
from ..autograd import _mode
from ..ops.base import Op
from ..tensor import Tensor, _wrap as _wrap_array
from .ir import Graph, Node

# How many traces run in any thread. While any does, Op.__call__ is replaced by _traced_call,
# which hands a call to the calling thread's tracer (``_mode.tracer``) if it has one: ops cost
# nothing extra when nothing is traced.
_ACTIVE = [0]
_op_call = Op.__call__
# every in-place Tensor method (mul_, add_, copy_, ...) writes its result through Tensor._write
_tensor_write = Tensor.__dict__.get("_write")
_lock = threading.Lock()
_LAMINA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# Tensor methods that turn a tensor's value into a Python value (data-dependent control flow)
_CONCRETE = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")
_originals: dict = {}


class TraceError(RuntimeError):
    """The traced code did something a static graph cannot hold (branching on a tensor's value)."""


def user_frame() -> str:
    """``file:line`` of the innermost stack frame outside the lamina package."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_LAMINA_DIR):
        f = f.f_back
    if f is None:
        return "<unknown>"
    return f"{f.f_code.co_filename}:{f.f_lineno}"


def check_concrete(tensor, what: str) -> None:
    """Raise ``TraceError`` if this thread is tracing and code outside Lamina asks for a tensor's
    value: ``what`` (e.g. ``"bool(tensor)"``) would fix a branch into the graph. Call it first thing
    in the Tensor methods that convert (its caller's caller is the code asking)."""
    if _ACTIVE[0] and _mode.__dict__.get("tracer") is not None:
        # Lamina's own reads (argument checks such as a target's class range) only validate;
        # the value read by the user's code would decide what the graph computes.
        caller = sys._getframe(2).f_code.co_filename
        if os.path.abspath(caller).startswith(_LAMINA_DIR):
            return
        raise TraceError(
            f"trace: {what} on a tensor of shape {tuple(tensor.shape)} needs its value at {user_frame()}; "
            "Python control flow on tensor values cannot be traced (use lamina.where, or pass the "
            "value as a Python number)")


def _guarded(name):
    orig = getattr(Tensor, name)
    label = {"__bool__": "bool(tensor)", "__float__": "float(tensor)", "__int__": "int(tensor)",
             "__index__": "using a tensor as an index"}.get(name, f"tensor.{name}()")

    def method(self, *a, **k):
        check_concrete(self, label)
        return orig(self, *a, **k)
    method.__name__ = name
    method.__doc__ = orig.__doc__
    return orig, method


def _traced_call(self, *inputs):
    tracer = _mode.__dict__.get("tracer")
    if tracer is None:
        return _op_call(self, *inputs)
    return tracer.call(self, inputs)


def _traced_write(self, name, value):
    """``Tensor._write`` while a trace runs: an in-place op's result becomes the tensor's value
    in the calling thread's graph (see ``Tracer.rebind``)."""
    _tensor_write(self, name, value)
    tracer = _mode.__dict__.get("tracer")
    if tracer is not None:
        tracer.rebind(self, value)


def _enter():
    with _lock:
        if _ACTIVE[0] == 0:
            Op.__call__ = _traced_call
            if _tensor_write is not None:
                Tensor._write = _traced_write
        if _ACTIVE[0] == 0 and not _originals:
            # Until Tensor's own conversion methods call check_concrete, the guard is put around
            # them while any trace runs (it raises only in the tracing thread).
            for name in _CONCRETE:
                orig, guarded = _guarded(name)
                _originals[name] = orig
                setattr(Tensor, name, guarded)
        _ACTIVE[0] += 1


def _leave():
    with _lock:
        _ACTIVE[0] -= 1
        if _ACTIVE[0] == 0:
            Op.__call__ = _op_call
            if _tensor_write is not None:
                Tensor._write = _tensor_write
            for name, orig in _originals.items():
                setattr(Tensor, name, orig)
            _originals.clear()


def _walk_arrays(obj, path=()):
    """``(path, array)`` for every array in ``obj`` (an array, or tuples/lists/dicts of them)."""
    if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("cupy"):
        yield path, obj
    elif isinstance(obj, (tuple, list)):
        for i, x in enumerate(obj):
            yield from _walk_arrays(x, path + (i,))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from _walk_arrays(x, path + (k,))


def saved_at(saved, path):
    for k in path:
        saved = saved[k]
    return saved


class Tracer:
    """Records the op calls of one thread into ``graph``."""

    def __init__(self, state: dict, grads: dict):
        self.graph = Graph()
        self.by_tensor = {}   # id(tensor) -> (value, version list, version)
        self.by_array = {}    # id(array) -> the same, for tensors sharing an array (detach, views of saved)
        self.saved = {}       # id(array) -> (node, path) of arrays ops keep for backward
        self.keep = []        # keeps every registered object alive so its id stays unique
        self.state = state    # id(tensor) -> (name, kind) of module parameters and buffers
        self.grads = grads    # id(grad tensor) -> parameter, for gradients that exist before the trace
        self.modules = []     # the stack of module names being called
        self.params = {}      # id(parameter tensor) -> value
        self.backward_of = None  # the forward node whose backward is running
        self.zeroed = set()      # ids of parameters whose .grad zero_grad() cleared before any backward
        self.found = []          # (tensor, its .grad, its version) of parameters found only while tracing
        self.prints = {}         # id(value) -> (array, a sample of it when made): writes past the ops show
        self.overwritten = set()  # ids of base values an in-place op wrote over (see rebind)

    # ---------------------------------------------------------------- values
    def _register(self, t, v):
        entry = (v, t._version, t._version[0])
        self.by_tensor[id(t)] = entry
        self.by_array.setdefault(id(t.array), entry)
        self.keep.append(t)

    def value_of(self, t):
        """The graph value of tensor ``t``, creating it for tensors the trace has not seen."""
        e = self.by_tensor.get(id(t))
        if e is None:
            e = self.by_array.get(id(t.array))
        if e is not None:
            v, ver, n = e
            if ver[0] != n:
                # written in place after it was registered: the value an in-place op rebound its
                # array to (another tensor over the same array and version counter) is current
                e2 = self.by_array.get(id(t.array))
                if e2 is not None and e2[1] is ver and e2[2] == ver[0] and e2[0].shape == tuple(t.shape):
                    return e2[0]
                raise TraceError(
                    f"trace: a tensor of shape {tuple(t.shape)} was changed in place after it was made "
                    f"(at {user_frame()}); in-place updates cannot be traced yet, use the out-of-place op")
            if self.overwritten and id(v.view_of or v) in self.overwritten:
                raise TraceError(
                    f"trace: a tensor of shape {tuple(t.shape)} shares memory with one an in-place op changed "
                    f"in place after it was made (at {user_frame()}); a graph cannot follow writes through "
                    "views, use the out-of-place op")
            return v
        g = self.graph
        dev = backend.device_of(t.array)
        s = self.saved.get(id(t.array))
        if s is not None:
            node, path = s
            v = g.new_value(t.shape, t.dtype, dev, "activation", producer=node, index=("saved", path))
            node.outputs.append(v)
        elif id(t) in self.state:
            name, kind = self.state[id(t)]
            v = g.new_value(t.shape, t.dtype, dev, kind, name=name, tensor=t)
            if kind == "parameter":
                self.params[id(t)] = v
        elif id(t) in self.grads:
            p = self.grads[id(t)]
            pv = self.value_of(p)
            v = g.new_value(t.shape, t.dtype, dev, "buffer", name=f"{pv.name}.grad", tensor=t,
                            source=("grad", pv))
        elif t.requires_grad and t._node is None:
            # a leaf that requires grad the trace did not find on a module or optimiser: a
            # parameter all the same (read live, never copied into the graph)
            v = g.new_value(t.shape, t.dtype, dev, "parameter", name=f"param{len(self.found)}", tensor=t)
            self.params[id(t)] = v
            self.found.append((t, t.grad, t._version[0]))
            if t.grad is not None:
                self.grads[id(t.grad)] = t
        else:
            v = g.new_value(t.shape, t.dtype, dev, "constant", data=t.array.copy())
        self._register(t, v)
        return v

    def rebind(self, t, array):
        """After an in-place op wrote ``array`` (its result) into ``t``: ``t`` now stands for the
        value that result has in the graph, so later ops read the new value. Only activations
        (tensors made while tracing, gradients included) are rebound; their other aliases share
        ``t``'s version counter, so reading one of them afterwards is the usual in-place
        ``TraceError``. Writes into parameters and buffers are left to the end-of-trace checks."""
        e = self.by_tensor.get(id(t)) or self.by_array.get(id(t.array))
        if e is None or e[0].kind != "activation":
            return
        new = self.by_array.get(id(array))
        if new is None or new[0].shape != tuple(t.shape) or new[0].dtype != t.dtype:
            # a result no traced op made (a constant), or one cast or broadcast on the way in
            src = self.value_of(_wrap_array(array)) if new is None else new[0]
            if src.shape != tuple(t.shape) or src.dtype != t.dtype:
                raise TraceError(f"trace: an in-place write into a tensor of shape {tuple(t.shape)} and dtype "
                                 f"{t.dtype} from a result of shape {src.shape} and dtype {src.dtype} (a broadcast "
                                 f"or cast on the way in) cannot be traced yet (at {user_frame()}); use the "
                                 "out-of-place op")
            v = src
        else:
            v = new[0]
        old = e[0].view_of or e[0]
        if (v.view_of or v) is old:
            raise TraceError(f"trace: an in-place write of a view of a tensor (shape {tuple(t.shape)}) into that "
                             f"tensor cannot be traced (at {user_frame()}); clone() the source first")
        # the old memory is gone: reading it, or any view of it, later is an error
        self.overwritten.add(id(old))
        entry = (v, t._version, t._version[0])
        self.by_tensor[id(t)] = entry
        self.by_array[id(t.array)] = entry
        self.keep.append(t)
        p = self.prints.get(id(v))
        if p is not None:  # check_unchanged now compares the tensor's own memory
            d = t.array
            self.prints[id(v)] = (d, d.reshape(-1)[::max(1, d.size // 16)].copy())

    def _backward_of(self, node, backward):
        """``backward`` noting that the ops it calls compute the gradient of ``node`` (memory
        accounting keeps ``node``'s inputs alive until then, as eager autograd does)."""
        def run(grads, *inputs):
            prev, self.backward_of = self.backward_of, node
            first = len(self.graph.nodes)
            try:
                res = backward(grads, *inputs)
            finally:
                self.backward_of = prev
            # where the op's array-level backward could stand in for the traced ops (passes.array_backward)
            many = res if isinstance(res, (tuple, list)) else (res,)
            gs = grads if isinstance(grads, tuple) else (grads,)
            self.graph.backward_regions.append(
                (node, first, len(self.graph.nodes), [None if g is None else self.value_of(g) for g in gs],
                 [self.value_of(t) for t in inputs], [None if r is None else self.value_of(r) for r in many]))
            return res
        return run

    def check_unchanged(self, t, what):
        """Raise if ``t``'s memory changed since an op made it without any op seeing the write (code
        that writes ``t.data`` directly, such as ``clip_grad_norm_`` scaling gradients)."""
        v = self.value_of(t)
        p = self.prints.get(id(v))
        if p is not None and p[0] is t.array and not np.array_equal(
                t.array.reshape(-1)[::max(1, t.array.size // 16)], p[1], equal_nan=True):
            raise TraceError(
                f"trace: {what} (shape {tuple(t.shape)}) was changed by writing its memory directly (through .data or .array), "
                f"which a graph cannot see (at {user_frame()}); use Tensor ops (for gradient clipping, scale "
                "the gradients with ops inside lamina.no_grad())")

    # ---------------------------------------------------------------- op calls
    def call(self, op, inputs):
        mode = _mode
        ins = [self.value_of(t) for t in inputs]
        mode.tracer = None
        try:
            out = op(*inputs)
        finally:
            mode.tracer = self
        outs = out if isinstance(out, tuple) else (out,)
        inst = op
        for o in outs:
            if o._node is not None:
                inst = o._node
                break
        phase = "backward" if mode.callbacks is not None else "forward"
        node = Node(type(op), op._new_node(), ins, [], self.modules[-1] if self.modules else "", inst.needs_input_grad, phase)
        node.op.__dict__.pop("backward_arrays", None)
        node.op.__dict__.pop("backward", None)
        node.grad_of = self.backward_of
        if inst._recorded:
            # the traced backward must be made of ops the trace records, not raw-array code
            inst.backward_arrays = None
            inst.backward = self._backward_of(node, type(inst).backward.__get__(inst))
        g = self.graph
        for i, o in enumerate(outs):
            v = g.new_value(o.shape, o.dtype, backend.device_of(o.array), "activation", producer=node, index=i)
            node.outputs.append(v)
            d = o.array
            if d.__class__ is np.ndarray:  # a view, or an input handed back: accounting charges its base
                for t, iv in zip(inputs, ins):
                    td = t.array
                    if td is d or (d.base is not None and td.__class__ is np.ndarray and np.may_share_memory(d, td)):
                        v.view_of = iv.view_of or iv
                        break
            self._register(o, v)
            d = o.array
            if d.__class__ is np.ndarray and d.size:
                self.prints[id(v)] = (d, d.reshape(-1)[::max(1, d.size // 16)].copy())
        if inst.saved is not None:
            for path, a in _walk_arrays(inst.saved):
                if id(a) not in self.by_array and id(a) not in self.saved:
                    self.saved[id(a)] = (node, path)
                    self.keep.append(a)
        g.add_node(node)
        return out


# ---------------------------------------------------------------- finding what a function uses

def _roots(fn):
    """Modules and optimisers ``fn`` can reach: itself, a bound method's object, its closure
    cells and the globals it names."""
    from ..nn import Module
    from ..optim import Optimizer
    found = []

    def take(obj):
        if isinstance(obj, (Module, Optimizer)) and all(obj is not f for f in found):
            found.append(obj)
    take(fn)
    take(getattr(fn, "__self__", None))
    code = getattr(fn, "__code__", None)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            take(cell.cell_contents)
        except ValueError:
            pass
    if code is not None:
        gl = getattr(fn, "__globals__", {})
        for name in code.co_names:
            take(gl.get(name))
    return [m for m in found if isinstance(m, Module)], [o for o in found if isinstance(o, Optimizer)]


def _flatten(obj, tensors):
    """The structure of ``obj`` with every Tensor replaced by its position in ``tensors``."""
    if isinstance(obj, Tensor):
        tensors.append(obj)
        return ("tensor", len(tensors) - 1)
    if isinstance(obj, (tuple, list)):
        kind = "list" if isinstance(obj, list) else ("namedtuple", type(obj)) if hasattr(obj, "_fields") else "tuple"
        return (kind, [_flatten(x, tensors) for x in obj])
    if isinstance(obj, dict):
        return ("dict", [(k, _flatten(x, tensors)) for k, x in obj.items()])
    return ("const", obj)


def unflatten(spec, values):
    """Rebuild a traced function's result from ``spec`` and the output tensors."""
    kind, body = spec
    if kind == "tensor":
        return values[body]
    if kind == "const":
        return body
    if kind == "dict":
        return {k: unflatten(s, values) for k, s in body}
    items = [unflatten(s, values) for s in body]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    return kind[1](*items)


def trace(fn, *example_inputs) -> Graph:
    """Run ``fn(*example_inputs)`` once and return its data-flow ``Graph``.

    ``fn`` is a Module or a function. Tensor arguments become graph inputs; other arguments are
    fixed into the graph. Parameters and buffers of the modules ``fn`` reaches (itself, its
    closure, the globals it names) become values of those kinds, named by their module path. A
    ``loss.backward()`` inside ``fn`` adds the backward nodes, and the step of an optimiser ``fn``
    reaches adds its update; the real parameters, gradients and optimiser state are left as
    they were before the trace.
    """
    from .optim_rules import traced_step
    modules, optimizers = _roots(fn)
    state, named, buffers = {}, {}, []
    for m in modules:
        for name, p in m.named_parameters():
            state.setdefault(id(p), (name, "parameter"))
            named.setdefault(id(p), p)
        for name, b in m.named_buffers():
            if b is not None:
                state.setdefault(id(b), (name, "buffer"))
                buffers.append((name, b, b._version[0]))
    for o in optimizers:
        for gi, group in enumerate(o.param_groups):
            for j, p in enumerate(group["params"]):
                if id(p) not in state:
                    state[id(p)] = (f"param_groups.{gi}.{j}", "parameter")
                named.setdefault(id(p), p)
    params = list(named.values())
    old_grads = [p.grad for p in params]
    old_versions = [p._version[0] for p in params]
    grads = {id(p.grad): p for p in params if p.grad is not None}

    tracer = Tracer(state, grads)
    for p in params:
        tracer.keep.append(p)
    g = tracer.graph
    handles = []
    for m in modules:
        for name, sub in m.named_modules():
            if not name:
                continue
            handles.append(sub.register_forward_pre_hook(_enter_module(tracer, name)))
            handles.append(sub.register_forward_hook(_leave_module(tracer)))
    for o in optimizers:
        o.step = (lambda closure=None, _o=o: traced_step(tracer, _o, closure))
        o.zero_grad = _zero_grad_of(tracer, o)
    for i, x in enumerate(example_inputs):
        if isinstance(x, Tensor):
            v = g.new_value(x.shape, x.dtype, backend.device_of(x.array), "input", name=f"input{i}")
            tracer._register(x, v)
            g.inputs.append(v)
    _enter()
    prev = _mode.__dict__.get("tracer")
    _mode.tracer = tracer
    try:
        result = fn(*example_inputs)
        outs = []
        g.out_spec = _flatten(result, outs)
        g.outputs = [tracer.value_of(t) for t in outs]
        params += [t for t, _, _ in tracer.found]
        old_grads += [gr for _, gr, _ in tracer.found]
        old_versions += [ver for _, _, ver in tracer.found]
        for p, ver in zip(params, old_versions):
            if p._version[0] != ver:
                name = tracer.params[id(p)].name if id(p) in tracer.params else tuple(p.shape)
                raise TraceError(
                    f"trace: parameter {name} was changed in place while tracing (an optimiser or in-place "
                    "update the trace cannot see); let trace reach the optimiser (a closure or global of the "
                    "traced function) and update parameters only through its step()")
        for name, b, ver in buffers:
            if b._version[0] != ver:
                raise TraceError(f"trace: buffer {name} was updated in place while tracing (such as batch-norm "
                                 "running statistics in training mode), which a graph cannot hold yet; trace the "
                                 "module in eval() mode")
        for p, old in zip(params, old_grads):
            if p.grad is not old and p.grad is not None:
                tracer.check_unchanged(p.grad, "a gradient")
                g.updates.insert(0, (("grad", tracer.value_of(p)), tracer.value_of(p.grad)))
    finally:
        _mode.tracer = prev
        _leave()
        for h in handles:
            h.remove()
        for o in optimizers:
            o.__dict__.pop("step", None)
            o.__dict__.pop("zero_grad", None)
        for p, old in zip(params, old_grads):
            p.grad = old
    g.module_types = {name: type(sub).__name__ for m in modules for name, sub in m.named_modules() if name}
    g.example_signature = signature(example_inputs)
    # the parameters whose gradient before the call can change what the graph computes: all
    # but those an optimiser's zero_grad() cleared before the first backward node
    g.grad_inputs = [p for p in params if id(p) not in tracer.zeroed]
    return g


def _zero_grad_of(tracer, opt):
    real = opt.zero_grad

    def zero_grad(set_to_none: bool = True):
        if set_to_none and not any(n.phase == "backward" for n in tracer.graph.nodes):
            for group in opt.param_groups:
                tracer.zeroed.update(id(p) for p in group["params"])
        return real(set_to_none)
    return zero_grad


def _enter_module(tracer, name):
    def hook(module, args):
        tracer.modules.append(name)
    return hook


def _leave_module(tracer):
    def hook(module, args, out):
        if tracer.modules:
            tracer.modules.pop()
    return hook


def signature(args) -> tuple:
    """What a graph is specialised on: tensor shapes, dtypes and devices, and other arguments."""
    sig = []
    for a in args:
        if isinstance(a, Tensor):
            sig.append(("T", a.shape, str(a.dtype), str(a.device)))
        else:
            sig.append(("V", repr(a)))
    return tuple(sig)
