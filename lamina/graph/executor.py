"""Running a ``Graph``: the reference interpreter ``run`` and the planned ``Executor``.

Both call each node's op ``forward`` on raw arrays in the graph's schedule. ``run`` keeps every
value in a dict (the oracle the passes are tested against). ``Executor`` follows a memory plan
(``passes.plan_memory``): values that die are dropped as soon as their last reader ran, and
nodes whose output buffer the plan assigned write into a preallocated array that values with
disjoint lifetimes share. Fused elementwise groups run as one generated kernel when one could be
compiled (``lamina.graph.fusion``). After the outputs, a run applies the graph's updates: new
``.grad`` tensors and in-place parameter writes.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, _wrap
from .trace import TraceError, saved_at, unflatten


def fetch_state(v):
    """The current array of a parameter, buffer or constant value."""
    if v.kind == "constant":
        return v.data
    if v.source is not None:  # a gradient that existed when the graph was traced
        g = v.source[1].tensor.grad
        if g is None:
            raise TraceError(f"graph: the gradient of {v.source[1].name} existed when the step was traced "
                             "but is None now")
        return g.data
    return v.tensor.data


def run_node(node, arrays):
    """Run one node's forward; return the arrays of its outputs (saved arrays included)."""
    op = node.op
    saved_outs = any(v.index.__class__ is tuple for v in node.outputs)
    if saved_outs:
        op.needs_input_grad = node.needs_input_grad
    try:
        out = op.forward(*arrays)
    finally:
        op.needs_input_grad = None
    outs = out if op.n_outputs > 1 else (out,)
    res = []
    for v in node.outputs:
        i = v.index
        a = saved_at(op.saved, i[1]) if i.__class__ is tuple else outs[i]
        if a.__class__ is not np.ndarray and isinstance(a, np.generic):
            a = np.asarray(a)
        res.append(a)
    op.saved = None
    return res


def bind_inputs(graph, args):
    tensors = [a for a in args if isinstance(a, Tensor)]
    if len(tensors) != len(graph.inputs):
        raise TypeError(f"graph: expected {len(graph.inputs)} tensor inputs, got {len(tensors)}")
    env = {}
    for v, t in zip(graph.inputs, tensors):
        if t.shape != v.shape or t.dtype != v.dtype:
            raise ValueError(f"graph: input {v.name} expects {v.type_str()}, got {t.dtype}{list(t.shape)}")
        env[id(v)] = t.data
    return env


def finish(graph, env, get):
    """Build the traced function's result and apply the graph's updates."""
    outs = [_wrap(get(v)) for v in graph.outputs]
    for (what, target), v in graph.updates:
        if what == "grad":
            target.tensor.grad = _wrap(np.array(get(v), copy=True))
    for (what, target), v in graph.updates:
        if what == "data":
            t = target.tensor
            np.copyto(t.data, get(v))
            t._version[0] += 1
    return unflatten(graph.out_spec, outs)


def run(graph, *args):
    """Evaluate ``graph`` on ``args`` node by node (every value kept until the end)."""
    env = bind_inputs(graph, args)

    def get(v):
        a = env.get(id(v))
        if a is None:
            a = env[id(v)] = fetch_state(v)
        return a
    for node in graph.nodes:
        res = run_node(node, [get(v) for v in node.inputs])
        for v, a in zip(node.outputs, res):
            env[id(v)] = a
    return finish(graph, env, get)
