"""``lamina.compile(fn_or_module)``: trace + passes + executor, specialised per input signature.

The first call traces the function on its arguments, optimises the graph (``passes.optimize``)
and builds an ``Executor``; later calls whose guard matches run the executor. The guard holds
the arguments' shapes, dtypes and devices (non-tensor arguments by value), the optimisers'
hyper-parameters, the modules' training flags, and which parameters have a gradient (those
the function can read: not cleared by ``zero_grad()`` before its backward). A call that fails
the guard traces again; ``LAMINA_LOG=recompiles`` (a comma-separated list) prints a line to
stderr for every such re-trace, naming what changed.

Compiled calls return tensors without autograd history: compile a whole training step
(forward, ``loss.backward()``, ``opt.step()``) to train.
"""
from __future__ import annotations

import os
import sys

from . import passes
from .executor import Executor
from .optim_rules import NeedsState
from .trace import _roots, signature, trace


def _log_enabled(what: str) -> bool:
    return what in [s.strip() for s in os.environ.get("LAMINA_LOG", "").split(",")]


class Compiled:
    """A compiled function; call it like the original."""

    def __init__(self, fn, fuse=True, memory_budget=None):
        self.fn = fn
        self.fuse = fuse
        self.memory_budget = _parse_bytes(memory_budget)
        self.cache = {}
        self.graphs = []
        self.recompiles = 0
        self._modules, self._optimizers = _roots(fn)

    def _guard(self, args):
        hyper = tuple((type(o).__name__, tuple(tuple(sorted((k, repr(v)) for k, v in g.items() if k != "params"))
                                                for g in o.param_groups)) for o in self._optimizers)
        mods = self.__dict__.get("_all_modules")
        if mods is None:  # walking the module tree costs more than the rest of the guard
            mods = self._all_modules = [m for root in self._modules for m in root.modules()]
        return (signature(args), tuple([m.training for m in mods]), hyper)

    def _lookup(self, key):
        """The executor for ``key`` whose graph agrees with which parameters have a gradient now
        (only parameters whose gradient the traced function may read count)."""
        for ex, params, pattern in self.cache.get(key, ()):
            if tuple(p.grad is not None for p in params) == pattern:
                return ex
        return None

    def __call__(self, *args):
        key = self._guard(args)
        ex = self._lookup(key)
        if ex is None:
            if self.cache and _log_enabled("recompiles"):
                print(f"lamina.compile: re-tracing {getattr(self.fn, '__name__', type(self.fn).__name__)}: "
                      f"{_what_changed(self.last_key, key)}", file=sys.stderr)
            if self.cache:
                self.recompiles += 1
            try:
                g = trace(self.fn, *args)
            except NeedsState as e:
                # the optimiser makes its state on its first step: take that one eagerly
                if _log_enabled("recompiles"):
                    print(f"lamina.compile: {e}; running this step eagerly", file=sys.stderr)
                return self.fn(*args)
            grad_inputs = g.grad_inputs
            pattern = tuple(p.grad is not None for p in grad_inputs)
            # an array-level backward keeps its forward's saved values out of the plan's reach,
            # so a memory budget takes the Tensor-op backwards, which can be recomputed
            g = passes.optimize(g, fuse=self.fuse, array_backwards=self.memory_budget is None)
            if self.memory_budget is not None:
                g = passes.rematerialize(g, self.memory_budget)
            # under a budget no buffer outlives its values: the real peak is the planned one
            ex = Executor(g, fuse=self.fuse, plan=self.memory_budget is None)
            self.cache.setdefault(key, []).append((ex, grad_inputs, pattern))
            self.graphs.append(g)
        self.last_key = key
        return ex(*args)

    @property
    def graph(self):
        """The graph of the most recent trace."""
        return self.graphs[-1] if self.graphs else None


def _what_changed(old, new) -> str:
    labels = ("input signature", "training flags", "optimiser settings")
    parts = []
    for label, a, b in zip(labels, old, new):
        if a != b:
            if label == "input signature":
                diffs = [f"argument {i}: {x[1:] if x[0] == 'T' else x[1]} -> {y[1:] if y[0] == 'T' else y[1]}"
                         for i, (x, y) in enumerate(zip(a, b)) if x != y]
                if len(a) != len(b):
                    diffs.append(f"{len(a)} -> {len(b)} arguments")
                parts.append("; ".join(diffs))
            else:
                parts.append(f"{label} changed")
    return "; ".join(parts) or "which parameters have a gradient changed"


def _parse_bytes(v):
    if v is None or isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    s = str(v).strip().upper().replace(" ", "")
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "B": 1}
    for u in ("KB", "MB", "GB", "K", "M", "G", "B"):
        if s.endswith(u):
            try:
                return int(float(s[:-len(u)]) * units[u])
            except ValueError:
                break
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"compile: memory_budget must be a byte count or a size such as '200MB', got {v!r}") from None


def compile(fn, *, fuse: bool = True, memory_budget=None) -> Compiled:
    """Compile ``fn`` (a function or Module): trace on first call, optimise, run the schedule.

    ``memory_budget`` (bytes or a size such as ``"200MB"``) recomputes forward activations
    during the backward (rematerialisation) until the planned peak fits, or raises a
    ``MemoryError`` saying how close it got; the executor then keeps no preallocated buffers
    between calls, so the activation memory a call really uses is that planned peak.
    """
    return Compiled(fn, fuse=fuse, memory_budget=memory_budget)
