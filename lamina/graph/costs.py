"""What a graph costs, from shapes alone: FLOPs per node and bytes alive over a schedule.

``flops(node)`` looks up the formula of the node's op class in ``FLOPS`` (one entry per op
family; a multiply-add counts as 2 FLOPs). Ops without an entry count one FLOP per output
element if they compute (elementwise, reductions count their input elements), zero if they
only move data (``MOVES``). ``liveness`` and ``peak_bytes`` charge each activation from the
node that makes it to the last node that reads it (or a view of it); a view shares its base's
bytes, graph outputs live to the end.
"""
from __future__ import annotations

import math

import numpy as np


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _linear(node):
    x, w = node.inputs[0], node.inputs[1]
    rows = _numel(x.shape[:-1])
    f = 2 * rows * w.shape[1] * w.shape[0]
    if len(node.inputs) > 2:
        f += rows * w.shape[0]
    return f


def _matmul(node):
    k = node.inputs[0].shape[-1]
    return 2 * _numel(node.outputs[0].shape) * k


def _conv(node):
    w, out = node.inputs[1], node.outputs[0]
    per_out = _numel(w.shape[1:])  # (C_in / groups) * kernel elements feed each output element
    f = 2 * _numel(out.shape) * per_out
    if len(node.inputs) > 2:
        f += _numel(out.shape)
    return f


def _conv_weight(node):
    # each weight element sums x*h over the batch and the output positions
    x, h = node.inputs[0], node.inputs[1]
    w = node.outputs[0]
    return 2 * _numel(w.shape) * x.shape[0] * _numel(h.shape[2:])


def _conv_transpose(node):
    x, w = node.inputs[0], node.inputs[1]
    f = 2 * _numel(x.shape) * _numel(w.shape[1:])
    if len(node.inputs) > 2:
        f += _numel(node.outputs[0].shape)
    return f


def _reduce(node):
    return _numel(node.inputs[0].shape)


def _softmax(node):
    return 5 * _numel(node.inputs[0].shape)  # max, subtract, exp, sum, divide


def _layer_norm(node):
    return 8 * _numel(node.inputs[0].shape)


def _attention(node):
    # q k^T and p v (the causal mask's skipped half counted: the GEMMs compute it), the softmax
    q, k, v = node.inputs
    scores = _numel(q.shape[:-1]) * k.shape[-2]
    return 2 * scores * (q.shape[-1] + v.shape[-1]) + 5 * scores


def _cross_entropy(node):
    return 6 * _numel(node.inputs[0].shape)


FLOPS = {
    "Linear": _linear, "MatMul": _matmul, "ConvNd": _conv, "ConvNdWeight": _conv_weight,
    "ConvTransposeNd": _conv_transpose,
    "Sum": _reduce, "Mean": _reduce, "Amax": _reduce, "Amin": _reduce, "MaxDim": _reduce, "MinDim": _reduce,
    "Prod": _reduce, "Var": lambda n: 3 * _reduce(n), "Logsumexp": lambda n: 4 * _reduce(n),
    "Softmax": _softmax, "LogSoftmax": _softmax, "LayerNorm": _layer_norm, "CrossEntropy": _cross_entropy,
    "ScaledDotProductAttention": _attention,
}
def _positions(node, x):
    """Column count of Lamina's im2col: the output rows times the padded input row length (the
    flat layout computes a few garbage columns per row and drops them afterwards)."""
    out = node.outputs[0].shape[2:] if node.op_cls.__name__ == "ConvNd" else node.inputs[1].shape[2:]
    pad = node.op.padding
    rest = [s + 2 * p for s, p in zip(x.shape[3:], pad[1:])]
    return out[0] * _numel(rest) if rest else out[0]


def _kernel_input(x):
    """Whether the compiled CPU kernels can take x as a 2-D convolution's or pool's input (they
    may still decline other arguments)."""
    from .. import kernels
    return (str(x.device) == "cpu" and x.dtype in (np.float32, np.float64) and len(x.shape) == 4
            and kernels.enabled())


def _kernel_scratch(node):
    """The compiled CPU convolution's scratch bytes, or None where the column engine runs."""
    x, w = node.inputs[0], node.inputs[1]
    if not _kernel_input(x):
        return None
    from ..kernels import conv as kernel_conv
    op = node.op
    n = kernel_conv.forward_scratch_elements(x.shape, w.shape, op.stride, op.padding, op.dilation, op.groups)
    return None if n is None else n * x.dtype.itemsize


def _conv_cols(node):
    # the compiled kernels' padded copy (and blocks of columns), or the column engine's im2col:
    # a column of (C_in / groups) * kernel input values per position, then the GEMM result
    scratch = _kernel_scratch(node)
    if scratch is not None:
        return scratch
    x, w = node.inputs[0], node.inputs[1]
    p = _positions(node, x)
    return x.shape[0] * (_numel(w.shape[1:]) + w.shape[0]) * p * x.dtype.itemsize


def _conv_weight_cols(node):
    x, w = node.inputs[0], node.outputs[0]
    return x.shape[0] * _numel(w.shape[1:]) * _positions(node, x) * x.dtype.itemsize


def _conv_transpose_cols(node):
    x, w = node.inputs[0], node.inputs[1]
    return x.shape[0] * _numel(w.shape[1:]) * _numel(x.shape[2:]) * x.dtype.itemsize


def _copies(k):
    """``k`` input-sized temporaries (composite elementwise forward code)."""
    return lambda node: k * node.inputs[0].nbytes


def _max_pool(node):
    """The NumPy path regroups the input into windows (one copy); the compiled 2-D kernels read it
    in place."""
    x = node.inputs[0]
    return 0 if _kernel_input(x) else x.nbytes


# scratch memory an op allocates and frees inside one call (bytes, from shapes)
WORKSPACE = {"ConvNd": _conv_cols, "ConvNdWeight": _conv_weight_cols, "ConvTransposeNd": _conv_transpose_cols,
             "LayerNorm": _copies(1), "Gelu": _copies(1), "MaxPoolNd": _max_pool}

# ops that only move or view data
MOVES = frozenset((
    "Reshape", "Permute", "Expand", "Split", "Cat", "GetItem", "Pad", "Flip", "Repeat", "Clone", "Cast",
    "ToDevice", "Gather", "IndexSelect", "Embedding", "OneHot", "Diagonal", "DiagEmbed", "Tril", "Triu",
    "BlockGather", "BlockScatter",
))


def flops(node) -> int:
    """FLOPs of one node (a multiply-add is 2)."""
    f = FLOPS.get(node.op_cls.__name__)
    if f is not None:
        return int(f(node))
    if node.op_cls.__name__ in MOVES:
        return 0
    return sum(_numel(v.shape) for v in node.outputs if isinstance(v.index, int))


def total_flops(graph, phase=None) -> int:
    return sum(flops(n) for n in graph.nodes if phase is None or n.phase == phase)


def _root(v):
    return v.view_of or v


def liveness(graph, eager=False):
    """``{id(base value): (first step, last step)}`` for every activation buffer; a step is a
    node's position in the schedule, graph outputs and updates live to the end.

    With ``eager``, a forward node's inputs and outputs also live until the last node of its
    backward, as eager autograd keeps them on the recorded node whether or not its backward
    reads them.
    """
    end = len(graph.nodes)
    span = {}
    nodes = graph.nodes
    # inside a fused elementwise chain only the last node's value is ever made, and the chain's
    # inputs are all read by its one kernel: alive until the chain's last node
    internal = {id(n.outputs[0]) for i, n in enumerate(nodes[:-1])
                if n.group is not None and nodes[i + 1].group == n.group}
    read_at = list(range(end))
    for i in range(end - 2, -1, -1):
        if nodes[i].group is not None and nodes[i + 1].group == nodes[i].group:
            read_at[i] = read_at[i + 1]
    for i, n in enumerate(nodes):
        if n.array_backward:  # the forward op's saved arrays (and output) are read here, through the op
            keep_out = n.op_cls.save_output
            for v in n.grad_of.outputs:
                if (keep_out or v.index.__class__ is tuple) and id(_root(v)) in span:
                    span[id(_root(v))][1] = max(span[id(_root(v))][1], i)
        f = n.grad_of if eager else None
        if f is not None:
            for v in f.inputs + f.outputs:
                r = _root(v)
                if id(r) in span:
                    span[id(r)][1] = max(span[id(r)][1], i)
        for v in n.outputs:
            r = _root(v)
            if r.kind == "activation" and id(r) not in span and id(r) not in internal:
                span[id(r)] = [i, i]
        for v in n.inputs:
            r = _root(v)
            if id(r) in span:
                span[id(r)][1] = max(span[id(r)][1], read_at[i])
    for v in list(graph.outputs) + [u[1] for u in graph.updates]:
        r = _root(v)
        if id(r) in span:
            span[id(r)][1] = end
    return span


def bytes_over_time(graph, eager=False) -> list:
    """Activation bytes alive while each node runs (its inputs and outputs included)."""
    by_id = {id(_root(v)): _root(v) for n in graph.nodes for v in n.outputs}
    delta = [0] * (len(graph.nodes) + 2)
    for vid, (a, b) in liveness(graph, eager).items():
        nb = by_id[vid].nbytes
        delta[a] += nb
        delta[b + 1] -= nb
    alive, out = 0, []
    for i in range(len(graph.nodes)):
        alive += delta[i]
        out.append(alive)
    return out


def workspace(node) -> int:
    if node.array_backward:  # an op's array-level backward packs about what its forward did
        node = node.grad_of
    f = WORKSPACE.get(node.op_cls.__name__)
    return int(f(node)) if f is not None else 0


def peak_bytes(graph, eager=False) -> int:
    """The most activation bytes alive at once (plus the running op's scratch memory) when the
    schedule runs with every buffer freed after its last reader (``eager``: as eager autograd
    frees them, see ``liveness``)."""
    t = bytes_over_time(graph, eager)
    return max((b + workspace(n) for b, n in zip(t, graph.nodes)), default=0)


def parameter_bytes(graph) -> int:
    return sum(v.nbytes for v in graph.live_values() if v.kind == "parameter")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"


def format_count(n: int) -> str:
    if n < 1000:
        return str(n)
    e = min(int(math.log10(n) // 3), 4)
    return f"{n / 10 ** (3 * e):.2f}{' KMGT'[e]}"
