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

from ..backend import xp_of
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


def _array_backward(node, arrays):
    """An op's array-level backward in place of its traced Tensor-op backward: ``arrays`` are
    the output gradients, then the forward inputs; ``op.saved`` is what its forward kept."""
    op = node.op
    k = len(arrays) - len(node.grad_of.inputs)
    grads = arrays[0] if k == 1 else tuple(arrays[:k])
    op.needs_input_grad = node.grad_of.needs_input_grad
    try:
        res = op.backward_arrays(grads, *arrays[k:])
    finally:
        op.needs_input_grad = None
        op.saved = None
        op.outputs = None
    res = res if isinstance(res, (tuple, list)) else (res,)
    return [np.asarray(res[i]) if isinstance(res[i], np.generic) else res[i] for i in node.op_results]


def run_node(node, arrays):
    """Run one node's forward; return the arrays of its outputs (saved arrays included)."""
    if node.array_backward:
        return _array_backward(node, arrays)
    op = node.op
    saved_outs = node.keeps_saved or any(v.index.__class__ is tuple for v in node.outputs)
    if saved_outs:
        op.needs_input_grad = node.needs_input_grad
    try:
        out = op.forward(*arrays)
    finally:
        op.needs_input_grad = None
    if node.keeps_saved and op.save_output:  # the array backward reads it through op.output()
        op.outputs = out
        op._out_versions = tuple([[0] for _ in range(op.n_outputs)])
    outs = out if op.n_outputs > 1 else (out,)
    res = []
    for v in node.outputs:
        i = v.index
        a = saved_at(op.saved, i[1]) if i.__class__ is tuple else outs[i]
        if isinstance(a, np.generic):
            a = np.asarray(a)
        res.append(a)
    if not node.keeps_saved:
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
            a = get(v)
            target.tensor.grad = _wrap(xp_of(a).array(a, copy=True))
    for (what, target), v in graph.updates:
        if what == "data":
            t = target.tensor
            xp_of(t.data).copyto(t.data, get(v))
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


class Executor:
    """Runs a graph on a fixed schedule of steps: single nodes, and fused elementwise chains as
    one generated kernel (``node.group`` marks them, see ``passes.fuse_elementwise``).

    Fused chains write into buffers of the memory plan (values with disjoint lifetimes share
    one), allocated once and reused by every call; other values are freed after their last
    reader. Values that outlive a call (outputs, updates) never live in a shared buffer.
    """

    def __init__(self, graph, fuse: bool = True, plan: bool = True):
        from . import costs, fusion, passes
        self.graph = graph
        nodes = graph.nodes
        steps, i = [], 0
        self.fused_chains = 0
        while i < len(nodes):
            n = nodes[i]
            if fuse and n.group is not None:
                j = i
                while j < len(nodes) and nodes[j].group == n.group:
                    j += 1
                k = fusion.kernel_for(nodes[i:j])
                if k is not None:
                    steps.append((k, k.inputs, nodes[j - 1].outputs, j - 1))
                    self.fused_chains += 1
                    i = j
                    continue
            steps.append((None, n.inputs, n.outputs, i))
            i += 1
        self.steps = steps
        self.plan = passes.plan_memory(graph) if plan else None
        span = costs.liveness(graph)
        end = len(nodes)
        self.slot = {}
        if self.plan is not None:
            for k, _ins, outs, _i in steps:
                if k is not None:
                    v = outs[0]
                    if id(v) in self.plan.slot_of and span[id(v)][1] < end:
                        self.slot[id(v)] = self.plan.slot_of[id(v)]
        self.buffers = [None] * (len(self.plan.slots) if self.plan else 0)
        keep = {id(v) for v in graph.outputs} | {id(v) for _, v in graph.updates}
        last = {}
        for s, (_k, ins, _outs, _i) in enumerate(steps):
            for v in ins:
                last[id(v)] = s
        self.drop = [[] for _ in steps]
        for vid, s in last.items():
            if vid not in keep:
                self.drop[s].append(vid)

    def _buffer(self, v):
        s = self.slot[id(v)]
        buf = self.buffers[s]
        if buf is None:
            buf = self.buffers[s] = np.empty(self.plan.slots[s], dtype=np.uint8)
        return buf[:v.nbytes].view(v.dtype).reshape(v.shape)

    def __call__(self, *args):
        env = bind_inputs(self.graph, args)
        state = {}

        def get(v):
            a = env.get(id(v))
            if a is None:
                a = state.get(id(v))
                if a is None:
                    a = state[id(v)] = fetch_state(v)
            return a
        for s, (k, ins, outs, _i) in enumerate(self.steps):
            arrays = [get(v) for v in ins]
            if k is None:
                res = run_node(self.graph.nodes[_i], arrays)
                for v, a in zip(outs, res):
                    env[id(v)] = a
            else:
                v = outs[0]
                out = self._buffer(v) if id(v) in self.slot else np.empty(v.shape, v.dtype)
                env[id(v)] = k.run(arrays, out)
            for vid in self.drop[s]:
                env.pop(vid, None)
        return finish(self.graph, env, get)
