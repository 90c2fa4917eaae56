"""The data-flow graph as an object: ``Value`` (an edge: one tensor), ``Node`` (one op call) and
``Graph`` (values, nodes in a valid schedule, inputs, outputs and the state a run writes back).

A graph is made by ``lamina.graph.trace``. Nodes keep the registry op class and a template
instance of the op (its constructor attributes), so a node can be run again on new arrays with
``template.forward``. Values of kind ``parameter`` and ``buffer`` keep the live tensor they stand
for, so a graph always reads a model's current weights; ``constant`` values keep their array.
"""
from __future__ import annotations

import numpy as np

KINDS = ("input", "parameter", "buffer", "constant", "activation")
# what an op instance carries per call rather than as an attribute of the operator
_CALL_STATE = frozenset(("inputs", "in_nodes", "in_idx", "needs_input_grad", "saved", "outputs",
                         "_versions", "_out_versions", "_retained", "_trace", "_recorded",
                         "backward_arrays", "n_outputs"))


class Value:
    """One tensor in the graph: its shape, dtype, device and kind, and who makes it.

    ``producer`` is the node that computes it (None for inputs, parameters, buffers and
    constants) and ``index`` which of that node's outputs it is; an int for ordinary outputs, a
    ``("saved", path)`` tuple for an array the op keeps in ``saved`` that a later node reads
    (a forward result only its traced backward uses).
    """

    __slots__ = ("id", "shape", "dtype", "device", "kind", "name", "producer", "index", "data",
                 "tensor", "source", "view_of")

    def __init__(self, id, shape, dtype, device, kind, name=None, producer=None, index=0, data=None,
                 tensor=None, source=None):
        if kind not in KINDS:
            raise ValueError(f"Value: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.id, self.shape, self.dtype, self.device, self.kind = id, tuple(shape), np.dtype(dtype), device, kind
        self.name, self.producer, self.index = name, producer, index
        self.data = data          # constants: the array
        self.tensor = tensor      # parameters and buffers: the live tensor read at run time
        self.source = source      # buffers that are not module state: ("grad", parameter tensor)
        self.view_of = None       # the value whose memory this one shares (an op returned a view)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def type_str(self) -> str:
        return f"{self.dtype}[{', '.join(str(s) for s in self.shape)}]"

    def __repr__(self):
        return f"%{self.id}:{self.type_str()}"


class Node:
    """One op call: the registry op class, a template instance holding its attributes, its input
    values and its output values (several for multi-output ops), and the module that called it."""

    __slots__ = ("op_cls", "op", "inputs", "outputs", "module", "needs_input_grad", "phase", "group", "grad_of",
                 "array_backward", "keeps_saved", "op_results")

    def __init__(self, op_cls, op, inputs, outputs, module="", needs_input_grad=None, phase="forward"):
        self.op_cls, self.op, self.inputs, self.outputs = op_cls, op, list(inputs), list(outputs)
        self.module = module
        self.needs_input_grad = needs_input_grad  # what forward saw when traced (it decides what is saved)
        self.phase = phase  # "forward", "backward" or "update"
        self.group = None   # elementwise fusion: the id of the chain this node belongs to
        self.grad_of = None  # backward nodes: the forward node whose gradient they compute
        self.array_backward = False  # runs op.backward_arrays of the forward node sharing ``op``
        self.keeps_saved = False     # a forward node whose op keeps ``saved`` for an array backward
        self.op_results = None       # array backward: which of its results are this node's outputs

    @property
    def name(self) -> str:
        return self.op_cls.name

    @property
    def attrs(self) -> dict:
        """The operator's attributes (what its constructor set), not the state of one call."""
        return {k: v for k, v in vars(self.op).items() if k not in _CALL_STATE and not k.startswith("_")}

    def __repr__(self):
        return f"<Node {self.name}>"


class Graph:
    """Values and nodes of one traced computation.

    ``nodes`` is a schedule (every node after the producers of its inputs). ``inputs`` are the
    values fed per call, ``outputs`` the values returned (``out_spec`` rebuilds the Python
    structure of the traced function's result), and ``updates`` the writes a run makes to state
    outside the graph: ``(target, value)`` with target ``("grad", param_value)`` to set a
    parameter's ``.grad`` or ``("data", param_value)`` to write a parameter's new value in place.
    """

    def __init__(self):
        self.values: list[Value] = []
        self.nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.out_spec = None
        self.updates: list[tuple] = []
        self.module_types: dict = {}  # module path -> class name, of the modules the trace reached
        # (forward node, first, end, grad values, input values, result values): the nodes
        # [first, end) a traced backward of the forward node made
        self.backward_regions: list = []
        self._next = 0

    # ---------------------------------------------------------------- building
    def new_value(self, shape, dtype, device, kind, **kw) -> Value:
        v = Value(self._next, shape, dtype, device, kind, **kw)
        self._next += 1
        self.values.append(v)
        return v

    def add_node(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    # ---------------------------------------------------------------- queries
    def parameters(self) -> list[Value]:
        return [v for v in self.values if v.kind == "parameter"]

    def live_values(self) -> list[Value]:
        """Values something still reads: node inputs, outputs and updates (after passes, the
        value list may still hold values no node makes or reads)."""
        seen, out = set(), []
        for v in self.inputs + [x for n in self.nodes for x in n.inputs + n.outputs] + self.outputs + \
                [u[1] for u in self.updates] + [u[0][1] for u in self.updates]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    def users(self) -> dict:
        """``id(value) -> [nodes that read it]``."""
        use = {}
        for n in self.nodes:
            for v in n.inputs:
                use.setdefault(id(v), []).append(n)
        return use

    def copy(self) -> "Graph":
        """A graph with the same values and new node objects (passes rewrite node lists)."""
        g = Graph()
        g.values = list(self.values)
        g.nodes = []
        for n in self.nodes:
            m = Node(n.op_cls, n.op, n.inputs, n.outputs, n.module, n.needs_input_grad, n.phase)
            m.group, m.grad_of = n.group, n.grad_of
            m.array_backward, m.keeps_saved, m.op_results = n.array_backward, n.keeps_saved, n.op_results
            g.nodes.append(m)
        g.inputs, g.outputs, g.out_spec = list(self.inputs), list(self.outputs), self.out_spec
        g.updates = list(self.updates)
        g.module_types = self.module_types
        g.backward_regions = self.backward_regions
        g.grad_inputs = getattr(self, "grad_inputs", [])
        g._next = self._next
        return g

    def check(self) -> None:
        """Raise if the schedule reads a value before it is made."""
        ready = {id(v) for v in self.live_values() if v.producer is None}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if id(v) not in ready:
                    raise RuntimeError(f"Graph: node {i} ({n.name}) reads %{v.id} before it is made")
            ready.update(id(v) for v in n.outputs)

    # ---------------------------------------------------------------- text
    def __str__(self):
        lines = []
        for v in self.inputs:
            lines.append(f"%{v.id} = input {v.name or ''} {v.type_str()}".replace("  ", " "))
        for v in self.live_values():
            if v.kind in ("parameter", "buffer") :
                lines.append(f"%{v.id} = {v.kind} {v.name} {v.type_str()}")
            elif v.kind == "constant":
                lines.append(f"%{v.id} = constant {v.type_str()}")
        for n in self.nodes:
            args = ", ".join(f"%{v.id}" for v in n.inputs)
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in n.attrs.items())
            lhs = ", ".join(f"%{v.id}" for v in n.outputs)
            rhs = ", ".join(v.type_str() for v in n.outputs)
            where = f"  # {n.module}" if n.module else ""
            tag = "" if n.phase == "forward" else f" [{n.phase}]"
            lines.append(f"{lhs} = {n.name}({args}{', ' + attrs if attrs else ''}) -> {rhs}{tag}{where}")
        lines.append("return " + ", ".join(f"%{v.id}" for v in self.outputs))
        for (what, target), v in self.updates:
            lines.append(f"update {what} of {target.name} <- %{v.id}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<Graph: {len(self.nodes)} nodes, {len(self.inputs)} inputs, {len(self.outputs)} outputs>"


def _short(v):
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
