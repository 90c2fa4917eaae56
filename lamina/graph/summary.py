"""``summary(model, input_shape_or_example)``: a per-layer table (layer, output shape, parameters,
FLOPs) and totals, read off traced graphs.

The layers are the modules the trace saw calling ops, in call order, indented by depth. The
byte totals come from the graphs by liveness (``costs.peak_bytes``): peak activation bytes of
the inference graph (traced under ``no_grad``) and of a training step (forward, and backward of
the sum of the first floating-point output).
"""
from __future__ import annotations

from .. import creation
from ..autograd import no_grad
from ..tensor import Tensor
from . import costs
from .trace import trace


class Summary:
    """The numbers ``summary`` prints, as attributes."""

    def __init__(self, rows, total_params, trainable_params, param_bytes, flops, inference_peak, training_peak,
                 graph_training_peak, graph, training_graph):
        self.rows = rows  # (layer name, depth, type name, output shape, own parameters, FLOPs)
        self.total_params, self.trainable_params = total_params, trainable_params
        self.param_bytes, self.flops = param_bytes, flops
        self.inference_peak_bytes, self.training_peak_bytes = inference_peak, training_peak
        self.graph_training_peak_bytes = graph_training_peak  # running the traced step by liveness
        self.graph, self.training_graph = graph, training_graph

    def __str__(self):
        head = ("Layer (type)", "Output shape", "Param #", "FLOPs")
        body = [("  " * d + f"{name} ({typ})", str(list(shape)) if shape is not None else "--",
                 f"{p:,}" if p else "--", costs.format_count(f) if f else "--")
                for name, d, typ, shape, p, f in self.rows]
        w = [max(len(r[i]) for r in [head] + body) for i in range(4)]
        line = "=" * (sum(w) + 6)
        fmt = lambda r: f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}"  # noqa: E731
        out = [line, fmt(head), line] + [fmt(r) for r in body] + [line]
        out += [f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Total FLOPs (forward): {costs.format_count(self.flops)}",
                f"Parameter bytes: {costs.format_bytes(self.param_bytes)}",
                f"Peak activation bytes, inference: {costs.format_bytes(self.inference_peak_bytes)}",
                f"Peak activation bytes, training step: {costs.format_bytes(self.training_peak_bytes)} eager, "
                f"{costs.format_bytes(self.graph_training_peak_bytes)} as a graph",
                line]
        return "\n".join(out)

    __repr__ = __str__


def _examples(spec):
    if isinstance(spec, Tensor):
        return (spec,)
    if isinstance(spec, (tuple, list)) and spec and all(isinstance(s, int) for s in spec):
        return (creation.randn(*spec),)
    if isinstance(spec, (tuple, list)) and all(isinstance(s, (Tensor, tuple, list)) for s in spec):
        return tuple(_examples(s)[0] for s in spec)
    raise TypeError(f"summary: expected an input shape (tuple of ints), an example Tensor or a tuple of "
                    f"them, got {type(spec).__name__}")


def _first_float(obj):
    if isinstance(obj, Tensor):
        return obj if obj.is_floating_point() else None
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        for x in obj:
            t = _first_float(x)
            if t is not None:
                return t
    return None


def summary(model, input_shape_or_example) -> Summary:
    """Trace ``model`` on an example (or random normal input of the given shape) and tabulate it."""
    args = _examples(input_shape_or_example)
    with no_grad():
        g = trace(model, *args)

    def step(*xs):
        out = model(*xs)
        t = _first_float(out)
        if t is None or not t.requires_grad:
            raise TypeError(f"summary: {type(model).__name__} returns no floating-point tensor that "
                            "requires grad, so it has no training step")
        t.sum().backward()
        return out
    tg = trace(step, *args)

    modules = dict(model.named_modules())
    order, last = [], {}
    for n in g.nodes:
        if n.module and n.module not in last:
            order.append(n.module)
        if n.module:
            last[n.module] = n
    fl = {}
    for n in g.nodes:
        fl[n.module] = fl.get(n.module, 0) + costs.flops(n)
    rows, shown = [], set()
    for name in order:
        parts = name.split(".")
        for d in range(1, len(parts)):  # parents first, once
            parent = ".".join(parts[:d])
            if parent in modules and parent not in shown:
                shown.add(parent)
                pf = sum(f for k, f in fl.items() if k.startswith(parent + "."))
                pn = last.get(parent) or next((last[k] for k in reversed(order) if k.startswith(parent + ".")), None)
                rows.append((parent, d - 1, type(modules[parent]).__name__,
                             pn.outputs[0].shape if pn else None,
                             sum(p.numel() for p in modules[parent].parameters(recurse=False)), pf))
        if name in shown:
            continue
        shown.add(name)
        mod = modules.get(name)
        rows.append((name, len(parts) - 1, type(mod).__name__ if mod is not None else "?",
                     last[name].outputs[0].shape,
                     sum(p.numel() for p in mod.parameters(recurse=False)) if mod is not None else 0,
                     fl.get(name, 0)))
    params = list(model.parameters())
    return Summary(rows, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
                   sum(p.nbytes for p in params), costs.total_flops(g), costs.peak_bytes(g),
                   costs.peak_bytes(tg, eager=True), costs.peak_bytes(tg), g, tg)
