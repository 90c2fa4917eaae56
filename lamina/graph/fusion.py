"""Fused elementwise chains as one generated Numba kernel each (CPU).

``kernel_for(chain)`` writes the Python source of one loop over the output's elements that
computes the whole chain per element, into ``$LAMINA_HOME/graph-kernels/<hash>.py``, and
compiles it with ``numba.njit(cache=True)``, so the next process loads the machine code from
Numba's cache instead of compiling again. An external input may have the output's shape, be a
single element, or match the output's trailing dims (a bias); anything else, an op without a
per-element formula here, or a compile failure gives None and the executor runs the chain's
nodes one by one.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import sys

import numpy as np

from ..kernels._runtime import lamina_home

# per-element formulas: {0}, {1}, {2} are the operands, attributes are read by the lambdas
_SQRT1_2 = 1.0 / math.sqrt(2.0)
FORMULAS = {
    "Add": lambda n: "({0} + {1})", "Sub": lambda n: "({0} - {1})", "Mul": lambda n: "({0} * {1})",
    "Div": lambda n: "({0} / {1})", "Neg": lambda n: "(-{0})", "Exp": lambda n: "math.exp({0})",
    "Log": lambda n: "math.log({0})", "Log1p": lambda n: "math.log1p({0})", "Sqrt": lambda n: "math.sqrt({0})",
    "Rsqrt": lambda n: "(1.0 / math.sqrt({0}))", "Sin": lambda n: "math.sin({0})", "Cos": lambda n: "math.cos({0})",
    "Tanh": lambda n: "math.tanh({0})", "Abs": lambda n: "abs({0})", "Erf": lambda n: "math.erf({0})",
    "Sigmoid": lambda n: "(1.0 / (1.0 + math.exp(-{0})))",
    "Relu": lambda n: "({0} if not {0} <= 0.0 else 0.0)",  # NaN stays NaN, as np.maximum
    "Silu": lambda n: "({0} / (1.0 + math.exp(-{0})))",
    "Maximum": lambda n: "max({0}, {1})", "Minimum": lambda n: "min({0}, {1})",
    "LeakyRelu": lambda n: f"({{0}} if {{0}} > 0.0 else {{0}} * {float(n.op.negative_slope)!r})",
    "Gelu": lambda n: None if n.op.approximate != "none" else
    f"({{0}} * (0.5 * (1.0 + math.erf({{0}} * {_SQRT1_2!r}))))",
}
_compiled: dict = {}


def _operand(v, out_shape):
    """How input ``v`` is indexed inside the flat loop: 'full', 'scalar', ('suffix', n) or None."""
    if v.shape == out_shape:
        return "full"
    if v.numel == 1:
        return "scalar"
    k = len(v.shape)
    if k <= len(out_shape) and tuple(out_shape[len(out_shape) - k:]) == v.shape:
        return "suffix"
    return None


class FusedKernel:
    """One compiled chain: ``run(arrays, out)`` with ``arrays`` the external inputs' arrays."""

    def __init__(self, fn, inputs, modes, source):
        self.fn, self.inputs, self.modes, self.source = fn, inputs, modes, source

    def run(self, arrays, out):
        # ravel: a view of a C-contiguous array, else a C-ordered copy (a 0-d scalar gives shape (1,))
        self.fn(out.reshape(-1), *[a.ravel() for a in arrays])
        return out


def build_source(chain):
    """``(source, external input values, modes)`` of the kernel of ``chain``, or None."""
    out = chain[-1].outputs[0]
    dtype = out.dtype
    if dtype not in (np.float32, np.float64) or out.device.type != "cpu":  # Numba: CPU arrays only
        return None
    names, inputs, modes, lines = {}, [], [], []
    made = {id(n.outputs[0]) for n in chain}
    for n in chain:
        for v in n.inputs:
            if id(v) in names or id(v) in made:
                continue
            if v.dtype != dtype:
                return None
            m = _operand(v, out.shape)
            if m is None:
                return None
            names[id(v)] = f"a{len(inputs)}"
            inputs.append(v)
            modes.append(m)
    args = ", ".join(f"a{i}" for i in range(len(inputs)))
    lines.append(f"def kernel(out, {args}):")
    lines.append("    n = out.size")
    for i, m in enumerate(modes):
        if m == "suffix":
            lines.append(f"    m{i} = a{i}.size")
    lines.append("    for i in range(n):")
    for i, m in enumerate(modes):
        idx = "i" if m == "full" else "0" if m == "scalar" else f"i % m{i}"
        lines.append(f"        x{i} = a{i}[{idx}]")
    local = {id(v): f"x{i}" for i, v in enumerate(inputs)}
    for k, n in enumerate(chain):
        f = FORMULAS.get(n.op_cls.__name__)
        expr = f(n) if f is not None else None
        if expr is None:
            return None
        operands = [local[id(v)] for v in n.inputs]
        lines.append(f"        t{k} = " + expr.format(*operands))
        local[id(n.outputs[0])] = f"t{k}"
    lines.append(f"        out[i] = t{len(chain) - 1}")
    return "import math\n\n\n" + "\n".join(lines) + "\n", inputs, modes


def kernel_for(chain):
    """A compiled ``FusedKernel`` for ``chain``, or None when it cannot be fused."""
    built = build_source(chain)
    if built is None:
        return None
    source, inputs, modes = built
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    fn = _compiled.get(key)
    if fn is None:
        try:
            fn = _load(key, source)
        except Exception:  # noqa: BLE001  (Numba can fail on many things; the nodes still run)
            return None
        _compiled[key] = fn
    return FusedKernel(fn, inputs, modes, source)


def _load(key, source):
    import numba
    folder = lamina_home() / "graph-kernels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"fused_{key}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(source)
        tmp.replace(path)
    name = f"lamina_graph_fused_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return numba.njit(cache=True, fastmath=False)(mod.kernel)
