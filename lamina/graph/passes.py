"""Graph passes: plain functions ``Graph -> Graph`` that leave what the graph computes unchanged.

- ``dce``: drop nodes nothing reads.
- ``cse``: one node for repeated calls of the same op on the same inputs; equal constants merged.
- ``fold_constants``: nodes whose inputs are all constants run once, at compile time.
- ``simplify``: algebraic identities (x*1, x+0, x-0, x/1, reshape to the same shape, reshape of
  reshape, permute of permute).
- ``fuse_elementwise``: group chains of elementwise nodes (each read only by the next) that a
  kernel can be generated for (``fusion.build_source``), so an executor runs a chain as one kernel.
- ``plan_memory``: liveness-based buffer reuse; returns a ``MemoryPlan`` (not a graph) with the
  planned and unplanned peak bytes.

Random ops (dropout, sampling) are never merged, folded or removed by CSE/folding.
"""
from __future__ import annotations

import numpy as np

from . import costs
from .executor import run_node
from .fusion import build_source
from .ir import Node

RANDOM = frozenset(("Dropout", "Multinomial"))
ELEMENTWISE = frozenset((
    "Neg", "Abs", "Sign", "Exp", "Log", "Log1p", "Sqrt", "Rsqrt", "Sin", "Cos", "Tanh", "Sigmoid", "Relu",
    "LeakyRelu", "Erf", "Gelu", "Silu", "Clamp", "Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum",
    "Where", "Eq", "Ne", "Lt", "Le", "Gt", "Ge",
))


def _has_saved(node) -> bool:
    return node.keeps_saved or node.array_backward or any(v.index.__class__ is tuple for v in node.outputs)


def array_backward(graph):
    """Run the backward of ops that have an array-level one (``Op.backward_arrays``, e.g. the
    compiled kernels of gelu and layer_norm) as one node, in place of the Tensor ops their traced
    backward made. The forward node then keeps its ``saved`` values for it. Only on a graph as
    traced (before other passes), for ops whose traced backward starts from the gradient of their
    first output alone (other outputs unused) and whose values nothing else reads."""
    g = graph.copy()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    users = graph.users()
    final = {id(v) for v in graph.outputs} | {id(v) for _, v in graph.updates}
    cut = []
    for fwd, first, end, gvals, ivals, rvals in getattr(graph, "backward_regions", ()):
        if fwd.op_cls.backward_arrays is None or id(fwd) not in index or gvals[0] is None \
                or any(v is not None for v in gvals[1:]) \
                or end <= first or any(graph.nodes[j].phase != "backward" for j in range(first, end)):
            continue
        region = graph.nodes[first:end]
        inside = {id(n) for n in region}
        made = {id(v) for n in region for v in n.outputs}
        results = {id(r) for r in rvals if r is not None}
        if not results or not results <= made:
            continue
        if any(id(v) not in results and (id(v) in final or any(id(u) not in inside for u in users.get(id(v), ())))
               for n in region for v in n.outputs):
            continue
        cut.append((first, end, fwd, gvals, ivals, rvals))
    if not cut:
        return g
    cut.sort(key=lambda c: c[0])
    nodes, at = [], 0
    for first, end, fwd, gvals, ivals, rvals in cut:
        if first < at:
            continue
        nodes.extend(g.nodes[at:first])
        g.nodes[index[id(fwd)]].keeps_saved = True
        macro = Node(fwd.op_cls, fwd.op, [gvals[0]] + list(ivals), [r for r in rvals if r is not None],
                     fwd.module, fwd.needs_input_grad, "backward")
        macro.array_backward = True
        macro.grad_of = fwd
        macro.op_results = [i for i, r in enumerate(rvals) if r is not None]
        nodes.append(macro)
        at = end
    nodes.extend(g.nodes[at:])
    g.nodes = nodes
    return g


def replace_uses(graph, mapping: dict):
    """Point every reader of a value in ``mapping`` (``id(old) -> new``) at its replacement."""
    if not mapping:
        return graph

    def sub(v):
        while id(v) in mapping:
            v = mapping[id(v)]
        return v
    for n in graph.nodes:
        n.inputs = [sub(v) for v in n.inputs]
    graph.outputs = [sub(v) for v in graph.outputs]
    graph.updates = [((what, t), sub(v)) for (what, t), v in graph.updates]
    return graph


def dce(graph):
    """Remove nodes none of whose outputs is read (by a node, the outputs or the updates)."""
    g = graph.copy()
    live = {id(v) for v in g.outputs} | {id(v) for _, v in g.updates}
    keep = []
    for n in reversed(g.nodes):
        if any(id(v) in live for v in n.outputs):
            keep.append(n)
            live.update(id(v) for v in n.inputs)
    keep.reverse()
    g.nodes = keep
    return g


def _key_of_attrs(node):
    items = []
    for k, v in sorted(node.attrs.items()):
        if isinstance(v, np.ndarray):
            v = ("array", v.dtype.str, v.shape, v.tobytes())
        items.append((k, repr(v)))
    return tuple(items)


def cse(graph):
    """Merge nodes that apply the same op, with the same attributes, to the same values; merge
    constants with equal dtype, shape and bytes."""
    g = graph.copy()
    mapping, consts = {}, {}
    for v in g.live_values():
        if v.kind == "constant" and v.data is not None and v.data.size <= 4096:
            key = (v.dtype.str, v.shape, np.ascontiguousarray(v.data).tobytes())
            first = consts.setdefault(key, v)
            if first is not v:
                mapping[id(v)] = first
    replace_uses(g, mapping)
    seen, keep, mapping = {}, [], {}
    for n in g.nodes:
        n.inputs = [mapping.get(id(v), v) for v in n.inputs]
        if n.op_cls.__name__ in RANDOM or _has_saved(n):
            keep.append(n)
            continue
        key = (n.op_cls, _key_of_attrs(n), tuple(id(v) for v in n.inputs), len(n.outputs))
        first = seen.get(key)
        if first is None:
            seen[key] = n
            keep.append(n)
        else:
            for a, b in zip(n.outputs, first.outputs):
                mapping[id(a)] = b
    g.nodes = keep
    replace_uses(g, mapping)
    return g


def fold_constants(graph):
    """Run, at compile time, every node whose inputs are all constants; its outputs become
    constants."""
    g = graph.copy()
    keep = []
    for n in g.nodes:
        if n.inputs and all(v.kind == "constant" for v in n.inputs) and n.op_cls.__name__ not in RANDOM \
                and not _has_saved(n):
            arrays = run_node(n, [v.data for v in n.inputs])
            for v, a in zip(n.outputs, arrays):
                v2 = g.new_value(v.shape, v.dtype, v.device, "constant", data=np.array(a, copy=True))
                replace_uses(g, {id(v): v2})
            continue
        keep.append(n)
    g.nodes = keep
    return g


def _scalar_const(v, value) -> bool:
    return v.kind == "constant" and v.data is not None and v.data.size == 1 and float(v.data.reshape(())) == value


def simplify(graph):
    """Algebraic identities that remove nodes without changing any value's shape or dtype."""
    g = graph.copy()
    keep, mapping = [], {}
    producer = {}
    for n in g.nodes:
        n.inputs = [mapping.get(id(v), v) for v in n.inputs]
        name, out = n.op_cls.__name__, n.outputs[0]
        same = None
        if name in ("Mul", "Add", "Sub", "Div") and len(n.inputs) == 2:
            a, b = n.inputs
            unit = 1.0 if name in ("Mul", "Div") else 0.0
            if _scalar_const(b, unit) and a.shape == out.shape and a.dtype == out.dtype:
                same = a
            elif name in ("Mul", "Add") and _scalar_const(a, unit) and b.shape == out.shape and b.dtype == out.dtype:
                same = b
        elif name == "Reshape":
            x = n.inputs[0]
            p = producer.get(id(x))
            if p is not None and p.op_cls.__name__ == "Reshape":  # reshape of reshape: one reshape
                x = p.inputs[0]
                n.inputs = [x]
            if x.shape == out.shape:
                same = x
        elif name == "Permute":
            x = n.inputs[0]
            dims = tuple(n.op.dims)
            p = producer.get(id(x))
            if dims == tuple(range(len(dims))):
                same = x
            elif p is not None and p.op_cls.__name__ == "Permute":
                inner = tuple(p.op.dims)
                composed = tuple(inner[d] for d in dims)
                if composed == tuple(range(len(composed))):
                    same = p.inputs[0]
                else:
                    op = n.op._new_node()
                    op.dims = composed
                    n.op = op
                    n.inputs = [p.inputs[0]]
        if same is not None and not _has_saved(n):
            mapping[id(out)] = same
            continue
        keep.append(n)
        for v in n.outputs:
            producer[id(v)] = n
    g.nodes = keep
    replace_uses(g, mapping)
    return dce(g)


def fuse_elementwise(graph, min_length: int = 2):
    """Mark chains of elementwise nodes: each node's (single) output read only by the next node of
    the chain, with the chain's output shape, and a generated kernel able to compute it. Sets
    ``node.group`` to the chain's number (the cost model then counts the chain as one kernel)."""
    g = graph.copy()
    for n in g.nodes:
        n.group = None
    users = g.users()
    final = {id(v) for v in g.outputs} | {id(v) for _, v in g.updates}
    chains, cur = [], []
    for n in g.nodes:
        ok = (n.op_cls.__name__ in ELEMENTWISE and len(n.outputs) == 1 and not _has_saved(n)
              and n.outputs[0].dtype.kind == "f")
        if not ok:
            chains.append(cur)
            cur = []
            continue
        if cur and any(v is cur[-1].outputs[0] for v in n.inputs) and n.outputs[0].shape == cur[-1].outputs[0].shape:
            cur.append(n)
        else:
            chains.append(cur)
            cur = [n]
        last = n.outputs[0]
        # a chain ends at a value anything but the next node of the chain reads
        if id(last) in final or len(users.get(id(last), ())) != 1:
            chains.append(cur)
            cur = []
    chains.append(cur)
    gid = 0
    for c in chains:
        # only chains a kernel can be generated for: the cost model counts a group as one kernel
        if len(c) >= min_length and build_source(c) is not None:
            for n in c:
                n.group = gid
            gid += 1
    return g


class MemoryPlan:
    """Buffers shared by activations with disjoint lifetimes.

    ``slot_of[id(value)]`` is the buffer a value lives in, ``slots`` the byte size of each
    buffer. ``planned_bytes`` (the sum of the buffers) is what the schedule needs with reuse;
    ``unplanned_bytes`` (every activation its own buffer) without; ``peak_bytes`` the liveness
    lower bound.
    """

    def __init__(self, slot_of, slots, unplanned, peak, values):
        self.slot_of, self.slots = slot_of, slots
        self.unplanned_bytes, self.peak_bytes = unplanned, peak
        self.values = values

    @property
    def planned_bytes(self) -> int:
        return sum(self.slots)

    def __repr__(self):
        return (f"MemoryPlan({len(self.slots)} buffers, planned {costs.format_bytes(self.planned_bytes)}, "
                f"unplanned {costs.format_bytes(self.unplanned_bytes)}, liveness peak "
                f"{costs.format_bytes(self.peak_bytes)})")


def plan_memory(graph, only=None) -> MemoryPlan:
    """Assign each activation buffer (views share their base's) to a slot, reusing a slot whose
    last value died before this one is made: best fit by size, largest values first. ``only``
    (a set of value ids) plans just those values (the ones an executor places in buffers)."""
    span = costs.liveness(graph)
    if only is not None:
        span = {k: ab for k, ab in span.items() if k in only}
    by_id = {}
    for n in graph.nodes:
        for v in n.outputs:
            r = v.view_of or v
            by_id[id(r)] = r
    items = sorted(((by_id[k].nbytes, a, b, k) for k, (a, b) in span.items()), key=lambda t: (-t[0], t[1]))
    slots, busy, slot_of = [], [], {}  # busy[s]: list of (start, end) intervals
    for nb, a, b, k in items:
        best = None
        for s, size in enumerate(slots):
            if size >= nb and all(b < x or a > y for x, y in busy[s]):
                if best is None or size < slots[best]:
                    best = s
        if best is None:
            slots.append(nb)
            busy.append([])
            best = len(slots) - 1
        busy[best].append((a, b))
        slot_of[k] = best
    unplanned = sum(by_id[k].nbytes for k in span)
    return MemoryPlan(slot_of, slots, unplanned, costs.peak_bytes(graph), by_id)


def _recomputable(n) -> bool:
    return n.phase in ("forward", "recompute") and n.op_cls.__name__ not in RANDOM and not n.keeps_saved


def rematerialize(graph, budget: int, max_depth: int = 6):
    """Recompute forward activations just before the backward reads them, instead of keeping
    them alive across the peak, until ``costs.peak_bytes`` fits ``budget`` (bytes).

    A candidate is a forward value alive across the current peak and unread there. Its
    producer is recomputed right before the value's first later reader, from inputs that are
    alive at that point or are themselves recomputed the same way (up to ``max_depth`` ops
    deep); the largest candidate goes first. Raises ``MemoryError`` when no candidate is left
    and the peak is still above the budget.
    """
    g = graph.copy()
    start = costs.peak_bytes(g)
    done = set()
    while True:
        peak = costs.peak_bytes(g)
        if peak <= budget:
            return g
        span = costs.liveness(g)
        over = costs.bytes_over_time(g)
        at = max(range(len(over)), key=lambda k: over[k] + costs.workspace(g.nodes[k]))
        users = {}
        for i, n in enumerate(g.nodes):
            for v in n.inputs:
                users.setdefault(id(v), []).append(i)
        maker = {id(v): n for n in g.nodes for v in n.outputs}

        def plan(v, first, depth):
            """Nodes to recompute so ``v`` exists at step ``first`` (producers first), or None."""
            if v.kind != "activation" or span.get(id(v.view_of or v), (0, -1))[1] >= first:
                return []  # alive there anyway
            n = maker.get(id(v))  # this graph's node (a value's producer is the traced one)
            if depth > max_depth or n is None or not _recomputable(n):
                return None
            out = []
            for x in n.inputs:
                sub = plan(x, first, depth + 1)
                if sub is None:
                    return None
                out.extend(sub)
            out.append(n)
            return out

        # values with a view made before the peak stay alive through it (the view holds them)
        has_views = {id(v.view_of) for m in g.nodes[:at + 1] for v in m.outputs if v.view_of is not None}
        best = None
        for i, n in enumerate(g.nodes):
            if n.phase != "forward" or id(n) in done or not _recomputable(n) or id(n.outputs[0]) in has_views:
                continue
            if len(n.outputs) != 1 + sum(1 for v in n.outputs if v.index.__class__ is tuple):
                continue  # several real outputs
            v = n.outputs[0]
            if v.view_of is not None or id(v) not in span:
                continue
            reads = users.get(id(v), ())
            later = [j for j in reads if j > at]
            before = [j for j in reads if j <= at]
            if not later or (before and max(before) >= at) or i >= at:
                continue
            first = min(later)
            chain = None
            ins = []
            for x in n.inputs:
                sub = plan(x, first, 1)
                if sub is None:
                    break
                ins.extend(sub)
            else:
                chain = ins + [n]
            if chain is None:
                continue
            gain = v.nbytes  # the recomputed inputs live only around the recompute point
            if best is None or gain > best[0]:
                best = (gain, chain, first)
        if best is None:
            raise MemoryError(
                f"compile: memory_budget of {costs.format_bytes(budget)} cannot be met: recomputing "
                f"activations brings the peak from {costs.format_bytes(start)} to {costs.format_bytes(peak)}")
        _, chain, first = best
        made, new_nodes = {}, []
        for n in chain:
            if id(n) in made:
                continue
            twin = Node(n.op_cls, n.op._new_node(), [made.get(id(x), x) for x in n.inputs], [], n.module,
                        n.needs_input_grad, "recompute")
            for v in n.outputs:  # saved arrays too: the backward's readers move to the twin's
                v2 = g.new_value(v.shape, v.dtype, v.device, "activation", producer=twin, index=v.index)
                if v.view_of is not None:
                    v2.view_of = made.get(id(v.view_of), v.view_of)
                twin.outputs.append(v2)
                made[id(v)] = v2
            made[id(n)] = twin
            new_nodes.append(twin)
        done.add(id(chain[-1]))
        old_root = chain[-1].outputs[0]
        for j in range(first, len(g.nodes)):
            m = g.nodes[j]
            m.inputs = [made.get(id(x), x) for x in m.inputs]
            if any(v.view_of is old_root for v in m.outputs):
                # a view the backward makes of the recomputed value: a new value, a view of the twin
                outs = []
                for v in m.outputs:
                    if v.view_of is old_root:
                        w = g.new_value(v.shape, v.dtype, v.device, v.kind, producer=m, index=v.index)
                        w.view_of = made[id(old_root)].view_of or made[id(old_root)]
                        made[id(v)] = w
                        v = w
                    outs.append(v)
                m.outputs = outs
        g.outputs = [made.get(id(v), v) for v in g.outputs]
        g.updates = [(t, made.get(id(v), v)) for t, v in g.updates]
        g.nodes[first:first] = new_nodes


def optimize(graph, fuse: bool = True, array_backwards: bool = True):
    """The default pipeline: array-level backwards, fold constants, simplify, CSE, dead-code
    elimination and fusion."""
    g = array_backward(graph) if array_backwards else graph
    g = fold_constants(g)
    g = simplify(g)
    g = cse(g)
    g = dce(g)
    if fuse:
        g = fuse_elementwise(g)
    return g
