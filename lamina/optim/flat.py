"""Flat buckets: the multi-tensor memory layout that every optimiser updates.

A bucket holds the parameters of one param group that share a device and a dtype. Their values
live in one contiguous 1-D buffer and each parameter's ``.data`` is rebound to a view of its
slice, so one in-place ufunc over a slice of the buffer updates many parameters at once and
nothing has to be scattered back. The optimiser state (momentum, moments, ...) lives in flat
buffers of the same layout, one per kind.

A step works on runs: consecutive parameters that all have a gradient and the same step count
(the common case is one run covering the whole bucket). Each run is cut into chunks; a chunk's
gradients are gathered with one ``concatenate`` into a work buffer and the update math runs
once on the chunk. On the GPU a chunk is the whole run (fewest kernel launches). On the CPU a
chunk is about ``CPU_CHUNK`` elements: small parameters are batched together, large ones split,
so the dozen passes an update makes over its arrays stay in cache; streaming multi-megabyte
buffers through every pass from main memory was measured slower than a per-parameter loop.

Besides the per-element kinds, a bucket keeps per-parameter scalar state (NAdam's running
product of momentum coefficients) as one Python number per parameter; runs are also cut where
those differ. Parameters in shared memory (``lamina.multiprocessing``, Hogwild training) are not
copied: a run of them tiled back to back in one segment is a bucket over that very memory.

The constraint this layout puts on users (repeated in ``Optimizer``'s docstring): the optimiser
owns the memory of its parameters. Writes into ``p.data`` in place are seen by the optimiser.
Rebinding ``p.data`` to another tensor is noticed at the next step: the new values are copied
into the buffer and ``p.data`` becomes a view again (a new shape, dtype or device is accepted
only while the group holds no state yet). Tensors that shared a parameter's array before the
optimiser adopted it (``detach()``, ``Parameter(t)``) stop sharing it.
"""
from __future__ import annotations

from operator import is_

import numpy as np

from .. import backend

# Elements per CPU chunk: float64 arrays of 512 KiB, so the five or six an update touches stay
# in L2/L3. Measured on 20 parameters of 150K-750K elements: 8K-32K chunks and unchunked runs
# were 10-40% slower than a per-parameter loop; 64K-128K matched it.
CPU_CHUNK = 65536


class FlatBucket:
    """Parameters of one device and dtype, with their state, as flat buffers.

    ``steps[i]`` counts the updates that touched parameter ``i``'s state; 0 means it has none.
    """

    def __init__(self, params, indices, flat=None):
        self.params = params
        self.indices = indices  # position of each parameter in its group's "params" list
        ref = params[0].array
        self.xp = backend.xp_of(ref)
        self.dtype = ref.dtype
        self.device = backend.device_of(ref)
        self.shapes = [p.array.shape for p in params]
        self.offsets = [0]
        for p in params:
            self.offsets.append(self.offsets[-1] + p.array.size)
        self.chunk = CPU_CHUNK if self.xp is np else max(self.offsets[-1], 1)
        self.steps = [0] * len(params)
        self.state = {}  # kind -> flat array, allocated on first use
        self.scalars = {}  # kind -> one number per parameter (NAdam's mu_product), made on first use
        self._work = None  # (grad, tmp): chunk-sized buffers the update math may overwrite
        if flat is None:
            with backend.device_context(self.device):
                flat = self.xp.empty(self.offsets[-1], dtype=self.dtype)
        self.flat = flat  # or, for parameters tiled in shared memory, a view of that memory
        self.views = [None] * len(params)
        for i, p in enumerate(params):
            self._adopt(i, p.array)

    def __len__(self):
        return len(self.params)

    def _adopt(self, i, data):
        lo, hi = self.offsets[i], self.offsets[i + 1]
        self.flat[lo:hi] = data.reshape(-1)
        view = self.flat[lo:hi].reshape(self.shapes[i])
        self.params[i].array = view
        self.views[i] = view

    def fits(self, data) -> bool:
        """Whether an array has this bucket's device and dtype."""
        return backend.device_of(data) == self.device and data.dtype == self.dtype

    def slice(self, i):
        return slice(self.offsets[i], self.offsets[i + 1])

    def state_array(self, kind, fill):
        """The flat buffer of one state kind, allocated (filled with ``fill``) on first use."""
        a = self.state.get(kind)
        if a is None:
            with backend.device_context(self.device):
                a = self.state[kind] = self.xp.full(self.offsets[-1], fill, dtype=self.dtype)
        return a

    def scalar_list(self, kind, fill):
        """The per-parameter values of one scalar state kind, made (filled with ``fill``) on first use."""
        values = self.scalars.get(kind)
        if values is None:
            values = self.scalars[kind] = [fill] * len(self.params)
        return values

    def reset(self):
        """Forget all state: every parameter back to step 0 with no buffers."""
        self.state, self.scalars, self.steps = {}, {}, [0] * len(self.params)

    def bump_versions(self, a=0, b=None):
        """Mark parameters ``a..b-1`` as changed in place, so graphs that saved them refuse to backward."""
        for p in self.params[a:b]:
            p._version[0] += 1

    def work(self, n):
        """Two work buffers of ``n`` elements (gradient, temporary) for one chunk's update."""
        if self._work is None:
            size = min(self.chunk, self.offsets[-1])
            with backend.device_context(self.device):
                self._work = (self.xp.empty(size, dtype=self.dtype),
                              self.xp.empty(size, dtype=self.dtype))
        return self._work[0][:n], self._work[1][:n]

    def sync(self, owner):
        """Re-adopt parameters whose ``.data`` was rebound; ``LayoutChanged`` if one no longer fits."""
        for i, p in enumerate(self.params):
            if p.array is not self.views[i]:
                self._readopt(i, owner)

    def runs(self, owner):
        """The runs of this step as ``(a, b, grads)``: parameters ``a..b-1`` and their flat grads.

        Also re-adopts rebound parameters (like ``sync``, in the same pass). ``owner`` names the
        optimiser in errors.
        """
        params, views, steps, shapes = self.params, self.views, self.steps, self.shapes
        array_type = type(self.flat)
        runs, grads, start = [], [], None
        for i, p in enumerate(params):
            if p.array is not views[i]:
                self._readopt(i, owner)
            g = p.grad
            if g is None or (start is not None and steps[i] != steps[start]):
                if start is not None:
                    runs.append((start, i, grads))
                    start, grads = None, []
                if g is None:
                    continue
            g = g.array
            if g.shape != shapes[i] or type(g) is not array_type:
                raise ValueError(f"{owner}: parameter {self.indices[i]} has shape {shapes[i]} on "
                                 f"{self.device} but its grad has shape {g.shape} on "
                                 f"{backend.device_of(g)}")
            if start is None:
                start = i
            grads.append(g.reshape(-1))
        if start is not None:
            runs.append((start, len(params), grads))
        return runs

    def chunks(self, a, b, grads):
        """Cut run ``a..b-1`` into chunks: ``(slice of the flat buffers, pieces of grads)``."""
        offsets, limit = self.offsets, self.chunk
        start = offsets[a]
        if offsets[b] - start <= limit:
            yield slice(start, offsets[b]), grads
            return
        pieces = []
        for i, g in zip(range(a, b), grads):
            lo, hi = offsets[i], offsets[i + 1]
            while lo < hi:
                take = min(hi, start + limit) - lo
                pieces.append(g[lo - offsets[i]:lo - offsets[i] + take])
                lo += take
                if lo - start == limit:
                    yield slice(start, lo), pieces
                    start, pieces = lo, []
        if pieces:
            yield slice(start, offsets[b]), pieces

    def _readopt(self, i, owner):
        data = self.params[i].array
        if data.shape != self.shapes[i] or not self.fits(data):
            raise LayoutChanged(
                f"{owner}: parameter {self.indices[i]} changed from {self.shapes[i]} {self.dtype} "
                f"on {self.device} to {data.shape} {data.dtype} on {backend.device_of(data)}")
        self._adopt(i, data)


class LayoutChanged(Exception):
    """A parameter's shape, dtype or device changed: its group's buckets must be rebuilt."""


class Buckets(list):
    """A group's buckets, remembering which parameters (in order) they were built for."""

    def __init__(self, buckets, params):
        super().__init__(buckets)
        self.members = list(params)

    def stale(self, params) -> bool:
        """Whether the group's ``params`` list was edited since (identity only: ``==`` on tensors
        compares values; ~40 ns a parameter)."""
        return len(params) != len(self.members) or not all(map(is_, params, self.members))


def build_buckets(params):
    """Split a group's parameters into buckets by (device, dtype), keeping their order.

    Parameters in shared memory (``lamina.multiprocessing``: Hogwild-style training) are never
    copied out: each run of them that lies back to back in one segment becomes a bucket whose flat
    buffer is that memory, so every update reaches the other processes.
    """
    by_key = {}
    for i, p in enumerate(params):
        members, indices = by_key.setdefault((backend.device_of(p.array), p.array.dtype), ([], []))
        members.append(p)
        indices.append(i)
    buckets = []
    for members, indices in by_key.values():
        buckets += _split_shared(members, indices)
    return Buckets(buckets, params)


def _split_shared(members, indices):
    """Buckets for parameters of one device and dtype: one copied bucket for those in private
    memory, one in-place bucket per tiled run of those in shared memory."""
    if type(members[0].array) is not np.ndarray:
        return [FlatBucket(members, indices)]
    from ..multiprocessing import shared_memory  # only CPU arrays can live in a segment
    in_segment = [shared_memory.segment_of(p.array) is not None for p in members]
    if not any(in_segment):
        return [FlatBucket(members, indices)]
    private = [(p, i) for p, i, shared in zip(members, indices, in_segment) if not shared]
    out = [FlatBucket([p for p, _ in private], [i for _, i in private])] if private else []
    run = []

    def close(run):
        if not run:
            return
        tiled = shared_memory.tiled_view([p.array for p, _ in run])
        if tiled is None:  # each on its own, in place (copied only if it is not contiguous)
            out.extend(FlatBucket([p], [i], shared_memory.tiled_view([p.array])) for p, i in run)
        else:
            out.append(FlatBucket([p for p, _ in run], [i for _, i in run], tiled))

    for p, i, shared in zip(members, indices, in_segment):
        if not shared:
            continue
        if run and shared_memory.tiled_view([run[-1][0].array, p.array]) is None:
            close(run)
            run = []
        run.append((p, i))
    close(run)
    return out