"""``lamina.onnx.export``: a Lamina model or function as an ONNX file, from its traced graph.

The exporter traces the model (in eval mode, without gradients), asks every graph node's op for
its ONNX nodes through ``Builder`` (each op class has an ``onnx(self, g, *inputs)`` method next to
its forward and backward in ``lamina/ops``), and writes a ``ModelProto`` built with the ``onnx``
package's helpers, checked with ``onnx.checker`` (full check: strict shape inference) before the
file is written all at once.

Symbolic axes. A traced graph holds concrete sizes (a Reshape to ``(2, 400)`` for a batch of 2).
To export a graph that runs at any batch size, the model is traced a second time with every
dynamic axis at another size; an integer an op holds that differs between the two traces is
rebuilt at run time from the ONNX graph inputs' ``Shape`` (a constant times a product of dynamic
sizes), and a constant whose shape differs is rebuilt with ``ConstantOfShape`` when it holds one
value. Anything else that differs is an error naming the op.
"""
from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile

import numpy as np

from .. import backend

# A ModelProto is one protobuf message, which cannot exceed 2 GiB; bigger weights go to a side file.
PROTOBUF_LIMIT = 2 ** 31 - 1
_GRAPH_ROOM = 2 ** 24  # what the nodes and value infos of a model may take next to its weights
INT64_MAX = 2 ** 63 - 1


class ExportError(ValueError):
    """A model or graph that Lamina cannot write as ONNX; the message names the op or argument."""


class UnsupportedExportError(ExportError):
    """The graph uses ops that have no ONNX mapping; ``ops`` lists every one of them."""

    def __init__(self, message: str, ops: list):
        super().__init__(message)
        self.ops = list(ops)


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the onnx extra is installed wherever tests run
        raise ImportError("lamina.onnx.export needs the onnx package: pip install onnx") from None
    return onnx


def _host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()  # a CuPy array: copied to the host


def _contiguous(a) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return a if a.flags.c_contiguous else a.copy(order="C")


def tensor_type(dtype) -> int:
    """The ONNX ``TensorProto`` element type of a NumPy dtype."""
    from onnx import helper
    dtype = np.dtype(dtype)
    if backend.bfloat16 is not None and dtype == backend.bfloat16:
        from onnx import TensorProto
        return TensorProto.BFLOAT16
    try:
        return helper.np_dtype_to_tensor_dtype(dtype)
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"lamina.onnx.export: dtype {dtype} has no ONNX tensor type") from None


class Builder:
    """What an op's ``onnx(self, g, *inputs)`` method writes through: ONNX nodes and constants.

    ``inputs`` are the ONNX names of the node's inputs; the method returns the ONNX name of its
    output (a list of names for several outputs). ``g.node`` is the traced graph node being
    written (shapes and dtypes of its inputs and outputs: ``g.in_shape(i)``, ``g.out_dtype(i)``).
    """

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.node = None      # the traced graph node being exported
        self.twin = None      # the same node in the trace at other dynamic sizes (or None)
        self.dims = []        # (dim name, ONNX input name, axis, size in trace 1, size in trace 2)
        self._taken = set()
        self._cache = {}
        self._count = 0

    # ---------------------------------------------------------------- names
    def reserve(self, name: str) -> str:
        self._taken.add(name)
        return name

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._taken:
                return self.reserve(name)

    def _prefix(self) -> str:
        if self.node is None:
            return "lamina"
        return f"{self.node.module}/{self.node.name}" if self.node.module else self.node.name

    # ---------------------------------------------------------------- nodes and constants
    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        """Add one ONNX node; its output name, or a list of ``n_out`` names. An input of None is
        an omitted optional input (written as "")."""
        from onnx import helper
        outs = [self.fresh(f"{self._prefix()}/{op_type}") for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, ["" if i is None else i for i in inputs], outs,
                                           name=self.fresh(f"{self._prefix()}/{op_type}_node"), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, array, hint: str = "const") -> str:
        """An initializer holding ``array`` (kept once per distinct small value)."""
        from onnx import numpy_helper
        a = np.asarray(_host(array))
        key = None
        if a.size <= 16:
            key = (a.dtype.str, a.shape, a.tobytes())
            if key in self._cache:
                return self._cache[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(_contiguous(a), name))
        if key is not None:
            self._cache[key] = name
        return name

    def scalar(self, value, dtype) -> str:
        """A 0-d constant of ``dtype``."""
        return self.const(np.array(value, dtype=dtype), "scalar")

    def ints(self, values) -> str:
        """A constant 1-D int64 tensor (axes, sizes, pads)."""
        return self.const(np.array(list(values), dtype=np.int64), "ints")

    @staticmethod
    def tensor_type(dtype) -> int:
        """The ONNX element type of a NumPy dtype (for ``Cast``'s ``to``)."""
        return tensor_type(dtype)

    def cast(self, name: str, have, want) -> str:
        """``name`` cast to ``want`` unless it already has that dtype."""
        if np.dtype(have) == np.dtype(want):
            return name
        return self.op("Cast", [name], to=tensor_type(want))

    def cast_inputs(self, inputs, dtype=None):
        """The node's inputs cast to ``dtype`` (default: its first output's dtype) where they differ:
        NumPy mixes dtypes (a bool mask times a float) where ONNX wants one type."""
        dtype = self.out_dtype(0) if dtype is None else dtype
        return [self.cast(n, self.in_dtype(i), dtype) for i, n in enumerate(inputs)]

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> str:
        """A Reduce* node over ``axes``: from opset 18 (ReduceSum from 13) axes are an input."""
        axes = list(axes)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))

    # ---------------------------------------------------------------- what was traced
    def in_shape(self, i: int) -> tuple:
        return tuple(self.node.inputs[i].shape)

    def in_dtype(self, i: int):
        return self.node.inputs[i].dtype

    def out_shape(self, i: int = 0) -> tuple:
        return tuple(self.node.outputs[i].shape)

    def out_dtype(self, i: int = 0):
        return self.node.outputs[i].dtype

    def twin_attr(self, name: str):
        """The op attribute ``name`` as the trace at other dynamic sizes saw it (the same value
        when there is no second trace)."""
        op = self.twin.op if self.twin is not None else self.node.op
        return getattr(op, name)

    # ---------------------------------------------------------------- sizes that depend on dynamic axes
    def vector(self, values, twin_values=None) -> str:
        """A 1-D int64 tensor of ``values``; entries that differ from ``twin_values`` (the same
        list in the second trace) are computed at run time from the dynamic input sizes."""
        values = [int(v) for v in values]
        twin = values if twin_values is None else [int(v) for v in twin_values]
        if len(twin) != len(values):
            raise ExportError(f"lamina.onnx.export: {self.node.name} has {len(values)} sizes at one batch "
                              f"size and {len(twin)} at another ({values} vs {twin}); its structure depends "
                              "on a dynamic axis")
        if values == twin:
            return self.ints(values)
        parts, run = [], []
        for v, w in zip(values, twin):
            if v == w:
                run.append(v)
                continue
            if run:
                parts.append(self.ints(run))
                run = []
            parts.append(self.size_expr(v, w))
        if run:
            parts.append(self.ints(run))
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)

    def size_expr(self, v: int, w: int) -> str:
        """A [1] int64 tensor that is ``v`` at the traced sizes and ``w`` at the second trace's: a
        constant times a product of dynamic input sizes."""
        names = []
        for d in self.dims:  # one source per distinct dynamic name
            if d[0] not in [n[0] for n in names]:
                names.append(d)
        for r in range(1, len(names) + 1):
            for combo in itertools.combinations(names, r):
                p1 = math.prod(d[3] for d in combo)
                p2 = math.prod(d[4] for d in combo)
                if p1 and v % p1 == 0 and (v // p1) * p2 == w:
                    return self._product(combo, v // p1)
        what = f"{self.node.name}" + (f" (in {self.node.module})" if self.node.module else "")
        raise ExportError(f"lamina.onnx.export: {what} holds a size that is {v} at the traced input sizes and "
                          f"{w} at other sizes of the dynamic axes ({', '.join(d[0] for d in names)}), which is "
                          "not a multiple of them; export with fixed sizes (dynamic_axes={}) or change the model")

    def _dim_scalar(self, d) -> str:
        """The 0-d size of dynamic dim ``d``: Shape then Gather of a scalar index, the form
        onnxruntime's graph fusions expect (they add their own Unsqueeze after it)."""
        key = ("dim0", d[1], d[2])
        if key not in self._cache:
            node, self.node = self.node, None
            shape = self._cache.get(("shape", d[1]))
            if shape is None:
                shape = self._cache[("shape", d[1])] = self.op("Shape", [d[1]])
            self._cache[key] = self.op("Gather", [shape, self.scalar(d[2], np.int64)], axis=0)
            self.node = node
        return self._cache[key]

    def _dim(self, d) -> str:
        key = ("dim", d[1], d[2])
        if key not in self._cache:
            node, self.node = self.node, None
            self._cache[key] = self.op("Unsqueeze", [self._dim_scalar(d), self.ints([0])])
            self.node = node
        return self._cache[key]

    def size_scalar(self, v: int, w: int) -> str:
        """A 0-d int64 tensor that is ``v`` at the traced sizes and ``w`` at the second trace's."""
        e = self.size_expr(v, w)
        for d in self.dims:
            if self._cache.get(("dim", d[1], d[2])) == e:
                return self._dim_scalar(d)
        return self.op("Squeeze", [e, self.ints([0])])

    def _product(self, combo, c: int) -> str:
        key = ("prod", tuple(d[0] for d in combo), c)
        if key not in self._cache:
            node, self.node = self.node, None
            out = self._dim(combo[0])
            for d in combo[1:]:
                out = self.op("Mul", [out, self._dim(d)])
            if c != 1:
                out = self.op("Mul", [out, self.ints([c])])
            self._cache[key] = out
            self.node = node
        return self._cache[key]

    def dim_of(self, x: str, i: int, axis: int) -> str:
        """Input ``i``'s size along ``axis`` as a [1] int64 tensor (a constant when static)."""
        v = self.in_shape(i)[axis]
        w = self.twin.inputs[i].shape[axis] if self.twin is not None else v
        return self.vector([v], [w])

    def full(self, shape, value, dtype) -> str:
        """A constant of ``shape`` filled with ``value``."""
        return self.const(np.full(tuple(shape), value, dtype=dtype), "full")

    def unsupported(self, why: str):
        """Raise the error for a call of a mapped op that ONNX cannot express (``why`` says which)."""
        where = f" (in {self.node.module})" if self.node is not None and self.node.module else ""
        raise UnsupportedExportError(f"lamina.onnx.export: {self.node.name}{where}: {why}", [self.node.op_cls.__name__])

    # ---------------------------------------------------------------- shared by several ops
    def getitem(self, spec, twin_spec, x: str, index) -> str:
        """``x[spec]`` (ints, slices with steps, None, Ellipsis and one integer index tensor) as
        Slice, Gather, Squeeze and Unsqueeze; slice bounds follow the dynamic axes."""
        from ..ops.indexing import _TENSOR
        ndim = len(self.in_shape(0))

        def expand(s):
            s = list(s)
            if Ellipsis in s:
                k = s.index(Ellipsis)
                used = sum(1 for p in s if p is not None and p is not Ellipsis)
                s[k:k + 1] = [slice(None)] * (ndim - used)
            return s + [slice(None)] * (ndim - sum(1 for p in s if p is not None))
        parts, twin = expand(spec), expand(twin_spec)
        if len(parts) != len(twin):
            self.unsupported("its index has another form at other sizes of the dynamic axes")
        tensors = [k for k, p in enumerate(parts) if p is _TENSOR]
        if len(tensors) > 1 or any(self.in_dtype(1 + j).kind == "b" for j in range(len(index))):
            self.unsupported("indexing with several index tensors or a boolean mask has no ONNX mapping here "
                             "(use one integer index tensor, or index_select/gather)")
        starts, ends, axes, steps, twin_se = [], [], [], [], []
        squeeze, unsqueeze, gather_axis = [], [], None
        ax, out_pos = 0, 0
        for p, q in zip(parts, twin):
            if p is None:
                unsqueeze.append(out_pos)
                out_pos += 1
                continue
            if p is _TENSOR:
                gather_axis = ax
                out_pos += len(self.in_shape(1))
            elif isinstance(p, int):
                stop = p + 1 if p != -1 else INT64_MAX
                qstop = q + 1 if q != -1 else INT64_MAX
                starts.append(p), ends.append(stop), axes.append(ax), steps.append(1)
                twin_se.append((q, qstop))
                squeeze.append(ax)
            else:
                step = 1 if p.step is None else p.step
                if step <= 0:
                    self.unsupported(f"slice step {step} (PyTorch allows only positive steps)")
                if p != slice(None) and p != slice(None, None, 1):
                    s0 = 0 if p.start is None else p.start
                    s1 = INT64_MAX if p.stop is None else p.stop
                    t0 = 0 if q.start is None else q.start
                    t1 = INT64_MAX if q.stop is None else q.stop
                    starts.append(s0), ends.append(s1), axes.append(ax), steps.append(step)
                    twin_se.append((t0, t1))
                out_pos += 1
            ax += 1
        y = x
        if axes:
            y = self.op("Slice", [y, self.vector(starts, [t[0] for t in twin_se]),
                                  self.vector(ends, [t[1] for t in twin_se]), self.ints(axes), self.ints(steps)])
        if gather_axis is not None:
            y = self.op("Gather", [y, index[0]], axis=gather_axis)
            shift = len(self.in_shape(1)) - 1
            squeeze = [a + shift if a > gather_axis else a for a in squeeze]
        if squeeze:
            y = self.op("Squeeze", [y, self.ints(squeeze)])
        if unsqueeze:
            y = self.op("Unsqueeze", [y, self.ints(unsqueeze)])
        return y if y is not x else self.op("Identity", [x])

    def recurrent(self, kind: str, order, xg: str, w_hh: str, states, lengths, reverse: bool, b_hh=None,
                  activation=None):
        """An ONNX LSTM/GRU/RNN over gate pre-activations ``xg`` (T, B, gates*H) that already hold the
        input projection: ONNX's input weight W is the permutation taking PyTorch's gate order to
        ONNX's (``order[k]`` is the PyTorch gate at ONNX position k), R is W_hh reordered."""
        T, B, G = self.in_shape(0)
        n = len(order)
        H = G // n
        perm = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
        dt = self.in_dtype(0)
        W = self.const(np.eye(G, dtype=dt)[perm][None], f"{kind.lower()}_W")
        if n > 1:
            pieces = self.op("Split", [w_hh, self.ints([H] * n)], n_out=n, axis=0)
            R = self.op("Concat", [pieces[k] for k in order], axis=0)
        else:
            R = w_hh
        R = self.op("Unsqueeze", [R, self.ints([0])])
        bias = None
        if b_hh is not None:  # GRU: the recurrent bias stays inside r * (.), so it goes to Rb
            bs = self.op("Split", [b_hh, self.ints([H] * n)], n_out=n, axis=0)
            rb = self.op("Concat", [bs[k] for k in order], axis=0)
            bias = self.op("Unsqueeze", [self.op("Concat", [self.full([G], 0, dt), rb], axis=0), self.ints([0])])
        seq = None
        if lengths:
            seq = self.op("Cast", [lengths[0]], to=tensor_type(np.int32))
        init = [self.op("Unsqueeze", [s, self.ints([0])]) for s in states]
        attrs = dict(hidden_size=H, direction="reverse" if reverse else "forward")
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        if activation is not None:
            attrs["activations"] = [activation]
        outs = self.op(kind, [xg, W, R, bias, seq] + init, n_out=1 + len(states), **attrs)
        y = self.op("Squeeze", [outs[0], self.ints([1])])
        return [y] + [self.op("Squeeze", [s, self.ints([0])]) for s in outs[1:]]


# ---------------------------------------------------------------- export


def export(model_or_fn, example_inputs, path, opset: int = 17, dynamic_axes=None, input_names=None,
           output_names=None, external_data_threshold: int = PROTOBUF_LIMIT - _GRAPH_ROOM, metadata=None):
    """Write ``model_or_fn`` (an ``nn.Module`` or a function of tensors) as the ONNX file ``path``.

    The model is traced on ``example_inputs`` (a tensor or a tuple of them; other arguments are
    fixed into the graph) in eval mode without gradients. ``dynamic_axes`` takes
    ``torch.onnx.export``'s form, ``{input or output name: {axis: dim name}}`` (or a list of axes);
    by default axis 0 of every input is the symbolic ``"batch"``, and output axes follow the inputs'
    dims they are computed from. ``dynamic_axes={}`` exports fixed shapes. Parameter and buffer
    names (``conv1.weight``) are kept as initializer names. When the weights take more than
    ``external_data_threshold`` bytes they go to ``<path>.data`` next to the model (ONNX external
    data). ``metadata`` (str -> str) goes to the model's ``metadata_props``. Returns the written
    ``onnx.ModelProto`` (with its weights, in memory).
    """
    onnx = _onnx()
    from ..graph.trace import _roots, trace
    from ..grad_mode import no_grad
    from ..tensor import Tensor

    if not isinstance(opset, int) or opset < 17 or opset > onnx.defs.onnx_opset_version():
        raise ExportError(f"lamina.onnx.export: opset must be an int from 17 (LayerNormalization) to "
                          f"{onnx.defs.onnx_opset_version()} (the installed onnx package), got {opset!r}")
    if isinstance(example_inputs, Tensor) or not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    tensor_pos = [i for i, x in enumerate(example_inputs) if isinstance(x, Tensor)]
    if not tensor_pos:
        raise ExportError("lamina.onnx.export: example_inputs holds no Tensor; the graph would have no inputs")
    in_names = _names(input_names, [f"input{i}" for i in range(len(tensor_pos))], "input_names", len(tensor_pos))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"lamina.onnx.export: the folder of {path!r} does not exist")

    modules, _ = _roots(model_or_fn)
    modes = [[(m, m.training) for m in mod.modules()] for mod in modules]
    try:
        for mod in modules:
            mod.eval()
        with no_grad():
            g1 = trace(model_or_fn, *example_inputs)
        missing = sorted({n.op_cls.__name__ for n in g1.nodes if getattr(n.op_cls, "onnx", None) is None})
        if missing:
            raise UnsupportedExportError(
                f"lamina.onnx.export: no ONNX mapping for the op(s) {', '.join(missing)} in this graph", missing)
        n_out = len(g1.outputs)
        out_names = _names(output_names, [f"output{i}" for i in range(n_out)], "output_names", n_out)
        axes = _dynamic_axes(dynamic_axes, in_names, out_names, [example_inputs[i] for i in tensor_pos])
        dims = []  # (name, input name, axis, size 1, size 2)
        sizes2 = {}
        for k, (name, x) in enumerate(zip(in_names, [example_inputs[i] for i in tensor_pos])):
            for ax, dname in axes.get(name, {}).items():
                s1 = x.shape[ax]
                if dname not in sizes2:
                    # every dynamic size grows (so every product of them changes), each by another step
                    # (so products of different dims stay distinguishable)
                    sizes2[dname] = (s1, s1 + len(sizes2) + 1)
                elif sizes2[dname][0] != s1:
                    raise ExportError(f"lamina.onnx.export: dynamic axis {dname!r} is {sizes2[dname][0]} in one "
                                      f"input and {s1} in input {name!r} (axis {ax})")
                dims.append((dname, name, ax, s1, sizes2[dname][1]))
        g2 = None
        if dims:
            second = list(example_inputs)
            for k, i in enumerate(tensor_pos):
                second[i] = _resized(example_inputs[i], axes.get(in_names[k], {}), sizes2)
            with no_grad():
                try:
                    g2 = trace(model_or_fn, *second)
                except Exception as e:
                    raise ExportError(
                        f"lamina.onnx.export: the model fails at other sizes of its dynamic axes "
                        f"({', '.join(f'{n}={s[1]}' for n, s in sizes2.items())}): {type(e).__name__}: {e}; "
                        "pass dynamic_axes to say which axes may vary, or {} for fixed shapes") from e
            _check_twin(g1, g2)
    finally:
        for pairs in modes:
            for m, was in pairs:
                m.training = was

    model = _build(onnx, g1, g2, opset, in_names, out_names, axes, dims)
    if metadata:
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    _write(onnx, model, path, external_data_threshold)
    return model


def _names(given, default, what, n):
    if given is None:
        return default
    given = list(given)
    if len(given) != n or len(set(given)) != n or not all(isinstance(s, str) and s for s in given):
        raise ExportError(f"lamina.onnx.export: {what} must be {n} distinct non-empty strings, got {given}")
    return given


def _dynamic_axes(spec, in_names, out_names, inputs):
    """``{name: {axis: dim name}}`` from torch.onnx.export's format (dicts or lists of axes)."""
    if spec is None:
        return {n: {0: "batch"} for n, x in zip(in_names, inputs) if x.ndim >= 1}
    if not isinstance(spec, dict):
        raise ExportError(f"lamina.onnx.export: dynamic_axes must be a dict of name -> axes, got {type(spec).__name__}")
    ndims = {n: x.ndim for n, x in zip(in_names, inputs)}
    out = {}
    for name, ax in spec.items():
        if name not in ndims and name not in out_names:
            raise ExportError(f"lamina.onnx.export: dynamic_axes names {name!r}, which is neither an input "
                              f"({', '.join(in_names)}) nor an output ({', '.join(out_names)})")
        if isinstance(ax, dict):
            items = list(ax.items())
        elif isinstance(ax, (list, tuple)):
            items = [(a, "batch" if a == 0 else f"{name}_dim{a}") for a in ax]
        else:
            raise ExportError(f"lamina.onnx.export: dynamic_axes[{name!r}] must be a dict or list of axes, got {ax!r}")
        d = {}
        for a, dname in items:
            n = ndims.get(name)
            if not isinstance(a, int) or (n is not None and not -n <= a < n):
                raise ExportError(f"lamina.onnx.export: dynamic_axes[{name!r}] has axis {a!r}, out of range for "
                                  f"{'a tensor of ' + str(n) + ' dims' if n is not None else 'it'}")
            d[a % n if n is not None else a] = str(dname)
        out[name] = d
    return out


def _resized(x, axes, sizes2):
    """``x`` with each dynamic axis at its second-trace size (cycling its entries, so ids and
    masks stay valid values)."""
    from ..tensor import Tensor
    a = _host(x.array)
    for ax, dname in axes.items():
        a = np.take(a, np.arange(sizes2[dname][1]) % a.shape[ax], axis=ax)
    return Tensor(a, device=x.device, requires_grad=x.requires_grad)


def _check_twin(g1, g2):
    if len(g1.nodes) != len(g2.nodes) or any(a.op_cls is not b.op_cls for a, b in zip(g1.nodes, g2.nodes)) \
            or len(g1.outputs) != len(g2.outputs):
        raise ExportError(f"lamina.onnx.export: the model runs different ops at different sizes of its dynamic axes "
                          f"({len(g1.nodes)} vs {len(g2.nodes)} ops; Python branches on shapes); export with fixed "
                          "shapes (dynamic_axes={}) or for one size")


def _build(onnx, g1, g2, opset, in_names, out_names, axes, dims):
    from onnx import helper, numpy_helper
    b = Builder(opset)
    b.dims = dims
    names = {}  # id(value) -> ONNX name
    for v, name in zip(g1.inputs, in_names):
        names[id(v)] = b.reserve(name)
    for name in out_names:
        b.reserve(name)
    twin_values = {}
    if g2 is not None:
        for n1, n2 in zip(g1.nodes, g2.nodes):
            for a, c in zip(n1.inputs, n2.inputs):
                twin_values[id(a)] = c
    param_names = {}
    inits = []

    def name_of(v):
        n = names.get(id(v))
        if n is not None:
            return n
        if v.kind in ("parameter", "buffer"):
            n = v.name if v.name not in b._taken else b.fresh(v.name)
            b.reserve(n)
            param_names[id(v)] = n
            inits.append(numpy_helper.from_array(_contiguous(_host(v.tensor.array)), n))
        elif v.kind == "constant":
            n = _constant(b, v, twin_values.get(id(v)))
        else:
            raise ExportError(f"lamina.onnx.export: value %{v.id} ({v.kind}) is read before any op makes it")
        names[id(v)] = n
        return n

    for i, node in enumerate(g1.nodes):
        ins = [name_of(v) for v in node.inputs]
        b.node, b.twin = node, (g2.nodes[i] if g2 is not None else None)
        outs = node.op.onnx(b, *ins)
        outs = [outs] if isinstance(outs, str) else list(outs)
        real = [v for v in node.outputs if isinstance(v.index, int)]
        if len(outs) < len(real):
            raise ExportError(f"lamina.onnx.export: {node.name}'s ONNX mapping gave {len(outs)} outputs for "
                              f"{len(real)}")
        for v in real:
            names[id(v)] = outs[v.index]
    b.node = b.twin = None

    inputs, outputs = [], []
    for v, name in zip(g1.inputs, in_names):
        shape = [axes.get(name, {}).get(k, s) for k, s in enumerate(v.shape)]
        inputs.append(helper.make_tensor_value_info(name, tensor_type(v.dtype), shape))
    for k, (v, name) in enumerate(zip(g1.outputs, out_names)):
        src = name_of(v)
        b.nodes.append(helper.make_node("Identity", [src], [name], name=b.fresh(f"{name}/Identity")))
        shape = list(v.shape)
        given = axes.get(name, {})
        w = g2.outputs[k].shape if g2 is not None else v.shape
        for ax, s in enumerate(v.shape):
            if ax in given:
                shape[ax] = given[ax]
            elif len(w) == len(v.shape) and w[ax] != s:
                match = [d[0] for d in dims if d[3] == s and d[4] == w[ax]]
                shape[ax] = match[0] if match else f"{name}_dim{ax}"
        outputs.append(helper.make_tensor_value_info(name, tensor_type(v.dtype), shape))
    graph = helper.make_graph(b.nodes, "lamina", inputs, outputs, initializer=inits + b.initializers)
    from .._version import __version__
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lamina", producer_version=str(__version__))
    model.ir_version = min(model.ir_version, _max_ir(onnx, opset))
    return model


def _max_ir(onnx, opset):
    """The IR version that goes with ``opset`` (runtimes reject a newer IR than they know)."""
    for ir, ver in ((8, 17), (9, 19), (10, 21)):
        if opset <= ver:
            return ir
    return onnx.IR_VERSION


def _constant(b, v, twin):
    """A constant value as an initializer; when its shape follows the dynamic axes, ``ConstantOfShape``
    (one value: a zero state made for each batch) or ``Range`` (positions 0..n-1)."""
    data = _host(v.data)
    if twin is None or tuple(twin.shape) == tuple(v.shape):
        return b.const(data, "const")
    flat = data.reshape(-1)
    tw = _host(twin.data)
    if data.ndim == 1 and tw.ndim == 1 and np.array_equal(data, np.arange(data.size)) and \
            np.array_equal(tw, np.arange(tw.size)):
        # positions 0..n-1 along a dynamic axis (GPT's arange(T)): a Range up to that size
        n = b.size_scalar(v.shape[0], twin.shape[0])
        return b.op("Range", [b.scalar(0, data.dtype), b.cast(n, np.int64, data.dtype), b.scalar(1, data.dtype)])
    if flat.size and not (flat == flat[0]).all() or tw.size and not (tw == flat[:1]).all():
        raise ExportError(f"lamina.onnx.export: a constant of shape {tuple(v.shape)} (shape {tuple(twin.shape)} at "
                          "other dynamic sizes) holds different values; it depends on a dynamic axis in a way "
                          "ONNX cannot rebuild (make it with ops from the inputs, or export with dynamic_axes={})")
    shape = b.vector(v.shape, twin.shape)
    from onnx import numpy_helper
    value = numpy_helper.from_array(np.array([flat[0] if flat.size else 0], dtype=data.dtype), "value")
    return b.op("ConstantOfShape", [shape], value=value)


def _write(onnx, model, path, threshold):
    """Check ``model`` and write it to ``path`` all at once (a temporary file renamed into place);
    weights over ``threshold`` bytes go to the external data file ``<name>.data`` beside it."""
    from ..io.atomic import atomic_write
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    if weight_bytes <= threshold:
        _check(onnx, model)
        data = model.SerializeToString()
        with atomic_write(path) as f:
            f.write(data)
        return
    location = base + ".data"
    tmpdir = tempfile.mkdtemp(prefix=f".{base}.", dir=folder)
    try:
        tmp_model = os.path.join(tmpdir, base)
        onnx.save_model(model, tmp_model, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
        _check(onnx, tmp_model)
        for name in (location, base):  # the weights first: a model file never points at missing data
            with open(os.path.join(tmpdir, name), "rb") as f:
                os.fsync(f.fileno())
            os.replace(os.path.join(tmpdir, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    # save_model moved the weights out of the in-memory model; put them back for the caller
    from onnx.external_data_helper import load_external_data_for_model
    load_external_data_for_model(model, folder)


def _check(onnx, model_or_path):
    try:
        onnx.checker.check_model(model_or_path, full_check=True)
        if not isinstance(model_or_path, str):
            onnx.shape_inference.infer_shapes(model_or_path, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"lamina.onnx.export: the ONNX model failed its check: {first}") from e
