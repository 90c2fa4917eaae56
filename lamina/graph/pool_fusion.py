"""ReLU followed by 2x2 max pooling with stride 2, forward and backward, as one compiled loop each
(CPU, float32/float64): a fusion of four graph nodes into two steps.

In a traced training step the pattern is ``r = Relu(x)``, ``y, index = MaxPoolNd(r)`` (2x2
windows, stride 2, no padding: the op's block path, which keeps the window offset of each maximum), and in
the backward ``s = BlockScatter(g, index)`` followed by ReLU's array-level backward ``dx(s, x)``.
Run node by node these make and read two full-size arrays (``r`` and ``s``) that nothing else
needs; fused, the forward reads ``x`` once and writes ``y`` and ``index``, and the backward writes
``dx`` once. Each loop computes exactly what the ops do: ReLU's ``0 if v < 0 else v`` (NaN
passes), the first maximum of a window wins and the last NaN wins over any number (PyTorch's
rule), ``BlockScatter`` puts g at the maximum and exact zeros elsewhere, and ReLU's backward is
``0 if relu(x) <= 0 else g``.

``find(graph)`` returns the matches; the executor runs them with ``PoolForward`` and
``PoolBackward`` steps.
"""
from __future__ import annotations

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_kernels = {}


def _compile():
    # written out for 2x2 windows: Numba makes loops over the window's offsets 20x slower
    if not _kernels:
        import numba

        @numba.njit(cache=True, nogil=True)
        def forward(x, y, index, zero):
            # x (planes, H, W); y and index (planes, ho, wo); window offsets 0 1 / 2 3
            planes, ho, wo = y.shape
            for a in range(planes):
                for i in range(ho):
                    r0 = 2 * i
                    for j in range(wo):
                        c0 = 2 * j
                        v = x[a, r0, c0]
                        if v < zero:
                            v = zero  # ReLU's +0 (NaN passes)
                        best = 0
                        u = x[a, r0, c0 + 1]
                        if u < zero:
                            u = zero
                        if u > v or u != u:  # the first maximum, or the last NaN
                            best = 1
                            v = u
                        u = x[a, r0 + 1, c0]
                        if u < zero:
                            u = zero
                        if u > v or u != u:
                            best = 2
                            v = u
                        u = x[a, r0 + 1, c0 + 1]
                        if u < zero:
                            u = zero
                        if u > v or u != u:
                            best = 3
                            v = u
                        y[a, i, j] = v
                        index[a, i, j] = best

        @numba.njit(cache=True, nogil=True)
        def backward(g, index, x, out, zero):
            planes, h, w = out.shape
            ho, wo = g.shape[1], g.shape[2]
            for a in range(planes):
                for p in range(2 * ho, h):  # a row or column no window covers
                    for q in range(w):
                        out[a, p, q] = zero
                for p in range(2 * ho):
                    for q in range(2 * wo, w):
                        out[a, p, q] = zero
                for i in range(ho):
                    r0 = 2 * i
                    for j in range(wo):
                        c0 = 2 * j
                        gv = g[a, i, j]
                        best = index[a, i, j]
                        # ReLU's backward: 0 where relu(x) <= 0, i.e. x <= 0 (NaN is not)
                        v = x[a, r0, c0]
                        out[a, r0, c0] = zero if v <= zero else (gv if best == 0 else zero)
                        v = x[a, r0, c0 + 1]
                        out[a, r0, c0 + 1] = zero if v <= zero else (gv if best == 1 else zero)
                        v = x[a, r0 + 1, c0]
                        out[a, r0 + 1, c0] = zero if v <= zero else (gv if best == 2 else zero)
                        v = x[a, r0 + 1, c0 + 1]
                        out[a, r0 + 1, c0 + 1] = zero if v <= zero else (gv if best == 3 else zero)
        _kernels["forward"], _kernels["backward"] = forward, backward
    return _kernels["forward"], _kernels["backward"]


class Match:
    """One fused ReLU + max-pool: the four nodes and the values the fused steps read and write."""

    def __init__(self, relu, pool, scatter, relu_back):
        self.relu, self.pool, self.scatter, self.relu_back = relu, pool, scatter, relu_back
        self.x = relu.inputs[0]
        self.y, self.index = pool.outputs[0], pool.outputs[1]
        self.g = scatter.inputs[0]
        self.dx = relu_back.outputs[0]
        self.kernel = tuple(pool.op.kernel)


def find(graph) -> list:
    """The ReLU -> max-pool patterns of ``graph`` the fused loops can run."""
    users = graph.users()
    final = {id(v) for v in graph.outputs} | {id(v) for _, v in graph.updates}
    back_of = {}
    for n in graph.nodes:
        if n.array_backward and n.op_cls.__name__ == "Relu":
            back_of[id(n.op)] = n
    found = []
    for relu in graph.nodes:
        if relu.op_cls.__name__ != "Relu" or relu.phase != "forward" or relu.group is not None:
            continue
        x, r = relu.inputs[0], relu.outputs[0]
        if len(x.shape) != 4 or x.dtype not in _FLOATS or x.device.type != "cpu" or id(r) in final:
            continue
        readers = users.get(id(r), [])
        if len(readers) != 1 or readers[0].op_cls.__name__ != "MaxPoolNd":
            continue
        pool = readers[0]
        op = pool.op
        if not getattr(op, "blocks", False) or op.n_outputs != 1 or tuple(op.kernel) != (2, 2) or \
                len(pool.outputs) != 2:
            continue
        y, index = pool.outputs
        if y.index != 0 or index.index != ("saved", ()) or id(index) in final or y.dtype != x.dtype:
            continue
        scatters = users.get(id(index), [])
        if len(scatters) != 1 or scatters[0].op_cls.__name__ != "BlockScatter":
            continue
        scatter = scatters[0]
        s = scatter.outputs[0]
        if tuple(scatter.op.kernel) != tuple(op.kernel) or tuple(scatter.op.spatial) != tuple(x.shape[2:]) \
                or scatter.inputs[1] is not index or id(s) in final or s.dtype != x.dtype:
            continue
        back = back_of.get(id(relu.op))
        if back is None or users.get(id(s), []) != [back] or back.inputs[0] is not s or \
                back.inputs[1] is not x or len(back.outputs) != 1:
            continue
        found.append(Match(relu, pool, scatter, back))
    return found


def _planes(a):
    """A C-contiguous (N*C, H, W) view (or copy) of an NCHW array."""
    return np.ascontiguousarray(a).reshape((-1,) + a.shape[2:])


class PoolForward:
    """The fused forward step: ``x`` -> (``y``, ``index``)."""

    def __init__(self, match):
        self.match = match
        self.kernel = match.kernel

    def run(self, x):
        fwd, _ = _compile()
        m = self.match
        y = np.empty(m.y.shape, m.y.dtype)
        index = np.empty(m.index.shape, np.int8)
        fwd(_planes(x), _planes(y), _planes(index), x.dtype.type(0))
        return y, index


class PoolBackward:
    """The fused backward step: (``g``, ``index``, ``x``) -> ``dx``."""

    def __init__(self, match):
        self.match = match
        self.kernel = match.kernel

    def run(self, g, index, x):
        _, bwd = _compile()
        m = self.match
        dx = np.empty(m.dx.shape, m.dx.dtype)
        bwd(_planes(g), _planes(index), _planes(x), _planes(dx), x.dtype.type(0))
        return dx
