"""``lamina.onnx.load``: an ONNX model as a runnable Lamina ``nn.Module``.

The module keeps the graph's nodes in a checked topological order and runs them one by one with
the mappings of ``lamina.onnx.ops``. Float initializers become ``Parameter``s (the module can be
fine-tuned where the ops are differentiable); other initializers, and the running statistics of
BatchNormalization, become buffers. ONNX names are kept: ``onnx_names`` maps each parameter or
buffer name (the ONNX name with characters an attribute name cannot hold replaced) to it.
Everything that can be wrong with a file is found before the first node runs: unsupported
operators (all of them, in one error), unreadable tensors, missing inputs, cycles.
"""
from __future__ import annotations

import os
import re

import numpy as np

import lamina
from lamina import nn

from . import proto
from .errors import OnnxImportError, UnsupportedOperatorError
from .ops import OPS, Node

# inputs that are statistics, not weights: never trained, kept as buffers
_BUFFER_INPUTS = {"BatchNormalization": (3, 4)}


def load(path) -> "OnnxModule":
    """Load the ONNX file at ``path`` as an ``OnnxModule`` (in eval mode, like a loaded model).

    External data is read only from files inside the model's folder. A corrupt, truncated or
    hostile file, or one using operators Lamina does not map, raises ``OnnxImportError``.
    """
    model = proto.read_model(path)
    return from_model(model, base_dir=os.path.dirname(os.path.abspath(os.fspath(path))), where=os.fspath(path))


def from_model(model, base_dir=None, where="model") -> "OnnxModule":
    """An ``OnnxModule`` from an ``onnx.ModelProto`` (external data resolved under ``base_dir``)."""
    return OnnxModule(model, base_dir=base_dir, where=where)


def _attr_value(a, node_where, base_dir, scope=None):
    from onnx import AttributeProto as A
    t = a.type
    if t == A.GRAPH and scope is not None:
        return Subgraph(a.g, scope, f"{node_where} attribute {a.name!r}", base_dir)
    if t == A.FLOAT:
        return float(a.f)
    if t == A.INT:
        return int(a.i)
    if t == A.STRING:
        return a.s.decode("utf-8", "replace")
    if t == A.FLOATS:
        return [float(v) for v in a.floats]
    if t == A.INTS:
        return [int(v) for v in a.ints]
    if t == A.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if t == A.TENSOR:
        return proto.to_array(a.t, base_dir, f"attribute {a.name!r} of {node_where}")
    raise OnnxImportError(f"lamina.onnx: attribute {a.name!r} of {node_where} has type "
                          f"{A.AttributeType.Name(t)}, which Lamina does not support (subgraphs, sparse tensors)")


def _safe_name(name: str, taken: set) -> str:
    s = re.sub(r"\W", "_", name) or "_"
    if s[0].isdigit():
        s = "_" + s
    base, k = s, 1
    while s in taken:
        s = f"{base}_{k}"
        k += 1
    taken.add(s)
    return s


def _all_nodes(graph):
    """Every node of ``graph`` and of the subgraphs in its nodes' attributes."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)


def _build_nodes(graph, known, opset, owner, base_dir, where):
    """The graph's nodes, checked and topologically sorted, with decoded attributes; ``known``
    are the names defined before its first node (inputs, initializers, enclosing scopes)."""
    ordered = proto.sorted_nodes(graph, known, where)
    visible = set(known) | {o for n in ordered for o in n.output if o}
    nodes = []
    for i, n in enumerate(ordered):
        nw = f"node {n.op_type}" + (f" {n.name!r}" if n.name else f" #{i}")
        scope = (visible, opset, owner)
        attrs = {a.name: _attr_value(a, nw, base_dir, scope) for a in n.attribute}
        nodes.append(Node(n.op_type, n.name, list(n.input), list(n.output), attrs, opset, OPS[n.op_type], owner))
    return nodes


def _reads(node):
    """The names a node reads: its inputs and whatever its subgraphs read from outside."""
    names = [n for n in node.inputs if n]
    for v in node.attrs.values():
        if isinstance(v, Subgraph):
            for inner in v.nodes:
                names += _reads(inner)
    return names


def run_nodes(nodes, env, free_after=None):
    """Run ``nodes`` in order on the values in ``env`` (name -> tensor), adding their outputs."""
    for k, node in enumerate(nodes):
        ins = [env[n] if n else None for n in node.inputs]
        while ins and ins[-1] is None:
            ins.pop()
        node.scope = env
        try:
            out = node.fn(node, *ins)
        except OnnxImportError:
            raise
        except Exception as e:  # any failure inside an operator: say which node, with what
            shapes = ", ".join(str(tuple(t.shape)) if hasattr(t, "shape") else "-" for t in ins)
            raise RuntimeError(f"lamina.onnx: {node.where()} failed on inputs of shapes ({shapes}): "
                               f"{proto._one_line(e)}") from e
        finally:
            node.scope = None
        outs = out if isinstance(out, tuple) else (out,)
        for name, v in zip(node.outputs, outs):
            if name:
                env[name] = v
        if free_after is not None:
            for name in free_after[k]:
                env.pop(name, None)


class Subgraph:
    """A graph held in a node attribute (If's branches, Loop's body). It reads its own inputs and
    initializers and, by name, any value of the enclosing graphs."""

    def __init__(self, graph, scope, where, base_dir):
        outer, opset, owner = scope
        self.where = where
        self.constants = {t.name: lamina.from_numpy(proto.to_array(t, base_dir, f"initializer {t.name!r} of {where}"))
                          for t in graph.initializer}
        self.input_names = [v.name for v in graph.input]
        self.output_names = [v.name for v in graph.output]
        known = set(outer) | set(self.input_names) | set(self.constants)
        self.nodes = _build_nodes(graph, known, opset, owner, None, where) if graph.node else []
        produced = {o for n in self.nodes for o in n.outputs} | known
        lost = [o for o in self.output_names if o not in produced]
        if lost:
            raise OnnxImportError(f"lamina.onnx: {where}: outputs {lost} are produced by no node")

    def __call__(self, outer_env, *inputs):
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.where} takes {len(self.input_names)} inputs, got {len(inputs)}")
        env = dict(outer_env)
        env.update(self.constants)
        env.update(zip(self.input_names, inputs))
        run_nodes(self.nodes, env)
        return [env[n] for n in self.output_names]


class OnnxModule(nn.Module):
    """A Lamina module running an ONNX graph; call it with the graph's inputs in order (or by
    name as keywords). Returns one tensor, or a tuple for a graph with several outputs.

    ``load`` returns it in eval mode. In training mode (``module.train()``) Dropout drops and
    BatchNormalization normalises with batch statistics and updates its running buffers, as the
    PyTorch layers such graphs come from. Runs on the CPU: constants the graph creates while
    running are NumPy arrays."""

    def __init__(self, model, base_dir=None, where="model"):
        super().__init__()
        graph = model.graph
        opset = proto.opset_of(model)
        domains = {imp.domain: imp.version for imp in model.opset_import}
        if len(model.functions):
            try:
                import onnx.inliner
                model = onnx.inliner.inline_local_functions(model)
                graph = model.graph
            except Exception as e:
                raise OnnxImportError(f"lamina.onnx: {where}: cannot inline the model's local functions: "
                                      f"{proto._one_line(e)}") from None
        # 1. every operator known? (all unsupported ones in one error, before anything else)
        missing = []
        for n in _all_nodes(graph):
            key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
            if (n.domain not in ("", "ai.onnx") or n.op_type not in OPS) and key not in missing:
                missing.append(key)
        if missing:
            raise UnsupportedOperatorError(
                f"lamina.onnx: {where} uses {len(missing)} operator(s) Lamina does not support: "
                f"{', '.join(sorted(missing))}", sorted(missing))
        # 2. initializers, checked and read
        init_names = [t.name for t in graph.initializer]
        if len(set(init_names)) != len(init_names):
            raise OnnxImportError(f"lamina.onnx: {where}: initializer names repeat")
        buffer_only = set()
        for n in graph.node:
            for i in _BUFFER_INPUTS.get(n.op_type, ()):
                if i < len(n.input):
                    buffer_only.add(n.input[i])
        taken = set()
        self.onnx_names = {}
        self._value_of = {}
        for t in graph.initializer:
            arr = proto.to_array(t, base_dir, f"initializer {t.name!r}")
            name = _safe_name(t.name, taken)
            tensor = lamina.from_numpy(arr.copy())
            if arr.dtype.kind == "f" and arr.dtype.name in ("float16", "float32", "float64", "bfloat16") \
                    and t.name not in buffer_only:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
            self.onnx_names[name] = t.name
            self._value_of[t.name] = name
        # 3. graph inputs (those that are not initializers) and outputs
        self.input_names = [v.name for v in graph.input if v.name not in self._value_of]
        self.output_names = [v.name for v in graph.output]
        self.input_info = {v.name: _type_text(v.type) for v in graph.input if v.name not in self._value_of}
        self.output_info = {v.name: _type_text(v.type) for v in graph.output}
        known = set(self.input_names) | set(self._value_of)
        self.nodes = _build_nodes(graph, known, opset, self, base_dir, where)
        produced = {o for n in self.nodes for o in n.outputs} | known
        lost = [o for o in self.output_names if o not in produced]
        if lost:
            raise OnnxImportError(f"lamina.onnx: {where}: graph outputs {lost} are produced by no node")
        # when each value is read for the last time, so forward can drop it early
        last = {}
        for k, n in enumerate(self.nodes):
            for name in _reads(n):
                last[name] = k
        self._free_after = [[] for _ in self.nodes]
        keep = set(self.output_names) | set(self._value_of)
        for name, k in last.items():
            if name not in keep:
                self._free_after[k].append(name)
        self.opset = opset
        self.domains = domains
        self.ir_version = int(model.ir_version)
        self.producer = f"{model.producer_name} {model.producer_version}".strip()
        self.eval()

    # ------------------------------------------------------------ running
    def forward(self, *args, **kwargs):
        if len(args) > len(self.input_names):
            raise TypeError(f"OnnxModule: the graph takes {len(self.input_names)} inputs {self.input_names}, got "
                            f"{len(args)}")
        env = {}
        for name, v in zip(self.input_names, args):
            env[name] = v
        for name, v in kwargs.items():
            if name not in self.input_names:
                raise TypeError(f"OnnxModule: unknown input {name!r}; the graph's inputs are {self.input_names}")
            env[name] = v
        absent = [n for n in self.input_names if n not in env]
        if absent:
            raise TypeError(f"OnnxModule: missing inputs {absent}")
        for name in self.input_names:
            v = env[name]
            if not isinstance(v, lamina.Tensor):
                env[name] = lamina.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) or np.isscalar(v) \
                    else lamina.tensor(v)
        state = dict(self.named_parameters())
        state.update(self.named_buffers())
        for name, onnx_name in self.onnx_names.items():
            env[onnx_name] = state[name]
        run_nodes(self.nodes, env, self._free_after)
        res = tuple(env[n] for n in self.output_names)
        return res[0] if len(res) == 1 else res

    # ------------------------------------------------------------ describing
    def graph_text(self) -> str:
        """The graph as text: inputs, one line per node, outputs."""
        lines = [f"graph (opset {self.opset}, {len(self.nodes)} nodes)"]
        for n in self.input_names:
            lines.append(f"  input  {n}: {self.input_info[n]}")
        for node in self.nodes:
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(node.attrs.items()))
            lines.append(f"  {', '.join(o or '_' for o in node.outputs)} = {node.op_type}("
                         f"{', '.join(i or '_' for i in node.inputs)})" + (f"  [{attrs}]" if attrs else ""))
        for n in self.output_names:
            lines.append(f"  output {n}: {self.output_info[n]}")
        return "\n".join(lines)

    def summary(self) -> str:
        counts = {}
        for node in self.nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        n_params = sum(p.numel() for p in self.parameters())
        n_buf = sum(b.numel() for b in self.buffers())
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return "\n".join([
            f"producer: {self.producer or '-'}   IR version {self.ir_version}   opset {self.opset}",
            f"inputs: {', '.join(f'{n} {self.input_info[n]}' for n in self.input_names) or '-'}",
            f"outputs: {', '.join(f'{n} {self.output_info[n]}' for n in self.output_names)}",
            f"nodes: {len(self.nodes)}   operators: {ops or '-'}",
            f"parameters: {n_params:,} in {len(list(self.parameters()))} tensors   buffers: {n_buf:,} values",
        ])

    def extra_repr(self):
        return f"opset={self.opset}, nodes={len(self.nodes)}, inputs={self.input_names}, outputs={self.output_names}"


def _short(v):
    if isinstance(v, np.ndarray):
        return f"tensor{list(v.shape)}" if v.size > 4 else repr(v.tolist())
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _type_text(tp) -> str:
    if not tp.HasField("tensor_type"):
        return "?"
    tt = tp.tensor_type
    try:
        from onnx.helper import tensor_dtype_to_string
        dt = tensor_dtype_to_string(tt.elem_type).replace("TensorProto.", "").lower()
    except Exception:
        dt = str(tt.elem_type)
    if not tt.HasField("shape"):
        return dt
    dims = [d.dim_param if d.HasField("dim_param") else (str(d.dim_value) if d.HasField("dim_value") else "?")
            for d in tt.shape.dim]
    return f"{dt}[{', '.join(dims)}]"

