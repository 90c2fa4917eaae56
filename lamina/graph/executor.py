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
        return g.array
    return v.tensor.array


def _array_backward(node, arrays):
    """An op's array-level backward in place of its traced Tensor-op backward: ``arrays`` are
    the output gradients (the first outputs'; the others had none), then the forward inputs;
    ``op.saved`` is what its forward kept."""
    op = node.op
    k = len(arrays) - len(node.grad_of.inputs)
    grads = arrays[0] if op.n_outputs == 1 else tuple(arrays[:k]) + (None,) * (op.n_outputs - k)
    op.needs_input_grad = node.grad_of.needs_input_grad
    try:
        res = op.backward_on_arrays(grads, *arrays[k:])
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
        env[id(v)] = t.array
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
            xp_of(t.array).copyto(t.array, get(v))
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


# elementwise ops whose forward is exactly one NumPy ufunc call: the executor can give it ``out=``
_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ndarray = np.ndarray
_generic = np.generic


def _out_capable(node) -> bool:
    """Whether the executor can run ``node`` into a buffer it hands over (``out=``): a matrix
    product or a binary ufunc of one float dtype on CPU, keeping nothing for a backward."""
    name = node.op_cls.__name__
    if name not in _UFUNCS and name not in ("MatMul", "Linear"):
        return False
    if node.array_backward or node.keeps_saved or len(node.outputs) != 1 or node.outputs[0].index != 0:
        return False
    v = node.outputs[0]
    if any(x.dtype != v.dtype or x.device.type != "cpu" for x in node.inputs):
        return False
    return name != "MatMul" or (len(node.inputs[0].shape) >= 2 and len(node.inputs[1].shape) >= 2)


def _plain(a):
    """An op's result as an array (NumPy reductions may hand back a scalar)."""
    return np.asarray(a) if isinstance(a, _generic) else a


class Executor:
    """Runs a graph on a fixed schedule of steps: single nodes, and fused elementwise chains as
    one generated kernel (``node.group`` marks them, see ``passes.fuse_elementwise``).

    The schedule is turned once into a list of small functions over a list of registers (one
    per value), so a call does no lookups by value and no per-node checks: each step reads its
    input registers, runs, writes its outputs and clears the registers of values that died.
    A ReLU followed by a max-pool over non-overlapping windows runs as one compiled loop forward
    and one backward (``lamina.graph.pool_fusion``). Fused chains, matrix products (``MatMul``,
    ``Linear``) and single add/sub/mul/div nodes
    write into preallocated buffers of the memory plan (values with disjoint lifetimes share
    one), allocated once and reused by every call; other values are freed after their last
    reader. Values that outlive a call (outputs, updates) never live in a shared buffer. An
    optimiser update computed by a fused chain from the parameter's own value is written
    straight into the parameter when nothing later reads the old value.
    """

    def __init__(self, graph, fuse: bool = True, plan: bool = True):
        from . import costs, fusion, passes, pool_fusion
        self.graph = graph
        nodes = graph.nodes
        # ReLU + max-pool forward and backward patterns: two fused steps in place of four nodes
        self.fused_pools = pool_fusion.find(graph) if fuse else []
        special = {}
        for m in self.fused_pools:
            special[id(m.relu)] = special[id(m.scatter)] = None
            special[id(m.pool)] = (pool_fusion.PoolForward(m), [m.x], [m.y, m.index])
            special[id(m.relu_back)] = (pool_fusion.PoolBackward(m), [m.g, m.index, m.x], [m.dx])
        steps, i = [], 0
        self.fused_chains = 0
        while i < len(nodes):
            n = nodes[i]
            if id(n) in special:
                if special[id(n)] is not None:
                    k, ins, outs = special[id(n)]
                    steps.append((k, ins, outs, i))
                i += 1
                continue
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
        span = costs.liveness(graph)
        end = len(nodes)
        keep = {id(v) for v in graph.outputs} | {id(v) for _, v in graph.updates}
        # optimiser updates a fused chain can write straight into their target
        in_place = self._in_place_updates(steps)
        self.written_in_place = set()

        # the values the steps write into preallocated buffers, and the plan that shares those
        # buffers among them (planning only these: the values ops allocate themselves come and go)
        def fits(v):
            return (v.view_of is None and id(v) not in keep and id(v) in span and span[id(v)][1] < end
                    and v.device.type == "cpu" and v.dtype in _FLOATS)
        wanted = set()
        if plan:
            for k, ins, outs, i in steps:
                v = outs[0]
                fused = isinstance(k, fusion.FusedKernel)
                if ((fused and id(v) not in in_place) or (k is None and _out_capable(nodes[i]))) and fits(v):
                    wanted.add(id(v))
        self.plan = passes.plan_memory(graph, only=wanted) if plan else None

        # registers: one per value the schedule touches
        reg = {}

        def r(v):
            k = reg.get(id(v))
            if k is None:
                k = reg[id(v)] = len(reg)
            return k
        self.input_regs = [(r(v), v) for v in graph.inputs]
        state = []
        for v in graph.live_values():
            if v.producer is None and v.kind != "input" and id(v) not in reg:
                state.append((r(v), v))
        for _k, ins, outs, _i in steps:
            for v in list(ins) + list(outs):
                r(v)
        for v in graph.outputs:
            r(v)
        for _, v in graph.updates:
            r(v)
        self.n_regs = len(reg)
        self.template = [None] * self.n_regs
        self.live_state = []  # (register, value) read afresh every call (parameters, buffers, gradients)
        for k, v in state:
            if v.kind == "constant":
                self.template[k] = v.data
            else:
                self.live_state.append((k, v))
        self.reg = reg

        # buffers: the plan's slots, for the values the steps below write into
        self.buffers = [None] * (len(self.plan.slots) if self.plan else 0)
        self.in_buffer = set()

        def buffer_for(v):
            if self.plan is None or id(v) not in self.plan.slot_of:
                return None
            s = self.plan.slot_of[id(v)]
            if self.buffers[s] is None:
                self.buffers[s] = np.empty(self.plan.slots[s], dtype=np.uint8)
            self.in_buffer.add(id(v))
            return self.buffers[s][:v.nbytes].view(v.dtype).reshape(v.shape)

        last = {}
        for s, (_k, ins, _outs, _i) in enumerate(steps):
            for v in ins:
                last[id(v)] = s
        dead = [[] for _ in steps]
        for vid, s in last.items():
            if vid not in keep:
                dead[s].append(reg[vid])
        for s, (_k, _ins, outs, _i) in enumerate(steps):  # made but never read: gone at once
            for v in outs:
                if id(v) not in last and id(v) not in keep:
                    dead[s].append(reg[id(v)])
        self.program = []
        for s, (k, ins, outs, i) in enumerate(steps):
            if isinstance(k, fusion.FusedKernel):
                fn = self._fused_step(k, ins, outs[0], buffer_for, in_place.get(id(outs[0])))
            elif k is not None:
                fn = self._pool_step(k, ins, outs)
            else:
                fn = self._node_step(nodes[i], buffer_for)
            self.program.append((fn, tuple(dead[s])))
        self.buffer_bytes = sum(b.nbytes for b in self.buffers if b is not None)

    # ---------------------------------------------------------------- building steps
    def _in_place_updates(self, steps):
        """``{id(value): target value}`` for ``("data", target)`` updates whose value is the output
        of a fused chain that reads the target itself (elementwise, at the same index) and after
        which nothing reads the target or a view of it."""
        targets = {id(v): t for (what, t), v in self.graph.updates if what == "data"}
        if not targets:
            return {}
        where = {}
        from .fusion import FusedKernel
        for s, (k, ins, outs, _i) in enumerate(steps):
            if isinstance(k, FusedKernel) and id(outs[0]) in targets:
                where[id(outs[0])] = s
        found = {}
        outs_ids = {id(v) for v in self.graph.outputs}
        for vid, s in where.items():
            t = targets[vid]
            k, ins, outs, _i = steps[s]
            v = outs[0]
            if v.shape != t.shape or v.dtype != t.dtype or t.tensor is None or t.source is not None:
                continue
            if not any(x is t for x in ins) or any(x.view_of is t for x in ins):
                continue
            if any(m != "full" for x, m in zip(k.inputs, k.modes) if x is t):
                continue
            later = False
            for k2, ins2, _o2, _i2 in steps[s + 1:]:
                if any(x is t or x.view_of is t for x in ins2):
                    later = True
                    break
            if later or id(t) in outs_ids or any(x.view_of is t for x in self.graph.outputs):
                continue
            found[vid] = t
        return found

    def _fused_step(self, k, ins, v, buffer_for, target):
        run = k.run
        regs = tuple(self.reg[id(x)] for x in ins)
        o = self.reg[id(v)]
        if target is not None:
            t = target.tensor
            self.written_in_place.add(id(v))

            def step(env):
                out = t.array
                if out.__class__ is not _ndarray or not out.flags.c_contiguous:
                    out = np.empty(v.shape, v.dtype)
                env[o] = run([env[i] for i in regs], out)
            return step
        buf = buffer_for(v)
        if buf is not None:
            def step(env):
                env[o] = run([env[i] for i in regs], buf)
        else:
            shape, dtype = v.shape, v.dtype

            def step(env):
                env[o] = run([env[i] for i in regs], np.empty(shape, dtype))
        return step

    def _pool_step(self, k, ins, outs):
        run = k.run
        regs = tuple(self.reg[id(x)] for x in ins)
        out_regs = tuple(self.reg[id(x)] for x in outs)
        if len(out_regs) == 2:
            o0, o1 = out_regs

            def step(env):
                env[o0], env[o1] = run(*[env[i] for i in regs])
        else:
            o0, = out_regs

            def step(env):
                env[o0] = run(*[env[i] for i in regs])
        return step

    def _node_step(self, node, buffer_for):
        reg = self.reg
        ins = tuple(reg[id(x)] for x in node.inputs)
        outs = node.outputs
        simple = not (node.array_backward or node.keeps_saved or any(x.index.__class__ is tuple for x in outs))
        if not simple:
            regs = tuple(reg[id(x)] for x in outs)

            def step(env):
                for k, a in zip(regs, run_node(node, [env[i] for i in ins])):
                    env[k] = a
            return step
        name = node.op_cls.__name__
        if len(outs) == 1 and outs[0].index == 0 and node.op.n_outputs == 1:
            v = outs[0]
            o = reg[id(v)]
            fast = self._out_step(node, name, ins, o, v, buffer_for)
            if fast is not None:
                return fast
            op, fwd = node.op, node.op.forward
            if len(ins) == 1:
                i0, = ins

                def step(env):
                    a = fwd(env[i0])
                    env[o] = a if a.__class__ is _ndarray else _plain(a)
                    op.saved = None
            elif len(ins) == 2:
                i0, i1 = ins

                def step(env):
                    a = fwd(env[i0], env[i1])
                    env[o] = a if a.__class__ is _ndarray else _plain(a)
                    op.saved = None
            else:
                def step(env):
                    a = fwd(*[env[i] for i in ins])
                    env[o] = a if a.__class__ is _ndarray else _plain(a)
                    op.saved = None
            return step
        op, fwd = node.op, node.op.forward
        pairs = tuple((reg[id(x)], x.index) for x in outs)
        several = op.n_outputs > 1

        def step(env):
            res = fwd(*[env[i] for i in ins])
            op.saved = None
            if not several:
                res = (res,)
            for k, j in pairs:
                env[k] = _plain(res[j])
        return step

    def _out_step(self, node, name, ins, o, v, buffer_for):
        """A step computing ``node`` straight into a preallocated buffer, or None."""
        xs = node.inputs
        buf = buffer_for(v) if _out_capable(node) else None
        if buf is None:
            return None
        if name in _UFUNCS:
            uf = _UFUNCS[name]
            i0, i1 = ins

            def step(env):
                env[o] = uf(env[i0], env[i1], out=buf)
            return step
        matmul = np.matmul
        a_shape, b_shape = xs[0].shape, xs[1].shape
        if name == "MatMul":
            i0, i1 = ins
            if len(b_shape) == 2 and len(a_shape) > 2:  # one 2-D GEMM over the leading dims, as the op does
                rows, k = int(np.prod(a_shape[:-1])), a_shape[-1]
                flat = buf.reshape(rows, b_shape[1])

                def step(env):
                    matmul(env[i0].reshape(rows, k), env[i1], out=flat)
                    env[o] = buf
            else:
                def step(env):
                    env[o] = matmul(env[i0], env[i1], out=buf)
            return step
        rows, k = int(np.prod(a_shape[:-1])), a_shape[-1]
        flat = buf.reshape(rows, b_shape[0])
        add = np.add
        if len(ins) == 3:
            i0, i1, i2 = ins

            def step(env):
                matmul(env[i0].reshape(rows, k), env[i1].T, out=flat)
                add(flat, env[i2], out=flat)
                env[o] = buf
        else:
            i0, i1 = ins

            def step(env):
                matmul(env[i0].reshape(rows, k), env[i1].T, out=flat)
                env[o] = buf
        return step

    # ---------------------------------------------------------------- running
    def __call__(self, *args):
        graph = self.graph
        env = self.template.copy()
        tensors = [a for a in args if isinstance(a, Tensor)]
        if len(tensors) != len(self.input_regs):
            raise TypeError(f"graph: expected {len(self.input_regs)} tensor inputs, got {len(tensors)}")
        for (k, v), t in zip(self.input_regs, tensors):
            a = t.array
            if a.shape != v.shape or a.dtype != v.dtype:
                raise ValueError(f"graph: input {v.name} expects {v.type_str()}, got {t.dtype}{list(t.shape)}")
            env[k] = a
        for k, v in self.live_state:
            env[k] = fetch_state(v)
        for fn, dead in self.program:
            fn(env)
            for k in dead:
                env[k] = None
        reg = self.reg
        outs = [_wrap(env[reg[id(v)]]) for v in graph.outputs]
        owned = self._owned()
        for (what, target), v in graph.updates:
            if what == "grad":
                a = env[reg[id(v)]]
                target.tensor.grad = _wrap(a if id(v) in owned else xp_of(a).array(a, copy=True))
        for (what, target), v in graph.updates:
            if what == "data":
                t = target.tensor
                a = env[reg[id(v)]]
                if a is not t.array:
                    xp_of(t.array).copyto(t.array, a)
                t._version[0] += 1
        return unflatten(graph.out_spec, outs)

    def _owned(self):
        """Values whose array no one else holds after a call: a gradient update can keep it
        as is instead of copying it."""
        owned = getattr(self, "_owned_ids", None)
        if owned is None:
            count = {}
            for v in list(self.graph.outputs) + [v for _, v in self.graph.updates]:
                count[id(v)] = count.get(id(v), 0) + 1
            views = {id(x.view_of) for n in self.graph.nodes for x in n.outputs if x.view_of is not None}
            owned = self._owned_ids = {
                id(v) for _, v in self.graph.updates
                if v.kind == "activation" and v.producer is not None and v.index.__class__ is int
                and v.view_of is None and count[id(v)] == 1 and id(v) not in self.in_buffer
                and id(v) not in self.written_in_place and id(v) not in views}
        return owned
