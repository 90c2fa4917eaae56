"""``DistributedDataParallel``: one model replica per rank, gradients averaged over ranks.

How a step works
----------------
Construction broadcasts every parameter and buffer from rank 0, so all replicas start equal,
and splits the trainable parameters into buckets: reverse registration order (roughly the order
in which backward produces their gradients), one device and dtype per bucket, at most
``bucket_mb`` MiB each.

``forward`` runs the module and then walks the autograd graph behind its outputs once, counting
for every parameter the graph edges that lead to it. The engine hands a leaf its gradient once
per edge (a weight used twice, such as tied embeddings, gets two deliveries), and calls the
parameter's post-accumulate-grad hook after each, so the count says when a parameter's gradient
is complete. When all parameters of a bucket are complete the bucket is copied into a flat
buffer and a non-blocking all-reduce starts (MPI ``Iallreduce``; NCCL on CUDA), while backward
goes on computing the gradients of earlier layers. Buckets start strictly in index order on
every rank, as MPI requires of collectives on one communicator. The hook call that completes the
last bucket waits for all requests and writes the averaged gradients (sum / world size) back
into ``.grad``, so when ``loss.backward()`` returns every rank holds the same averaged gradients
and any optimiser, ``clip_grad_norm_`` included, sees them.

Unused parameters: a parameter that gets no gradient in a step. The first gradient hook of a
step queues a callback (``lamina.autograd.queue_callback``) that runs once ``backward`` has
finished, so every backward ends with the gradients reduced whatever reached the parameters:
parameters that the graph walk does not reach, and parameters behind an output of ``forward``
that does not feed the loss, are both noticed within that backward. With
``find_unused_parameters=False`` (default) that is an error naming them (raised in ``forward`` for
parameters the walk does not reach, in ``backward`` for the others); with ``True`` they
contribute zeros and a flag per parameter travels in the same all-reduce, so a parameter that
no rank used keeps its ``.grad`` untouched (``None`` stays ``None``), as in PyTorch.

Limits, each a clear error: gradients may reach the parameters only through the outputs of the
latest ``forward`` (a loss term computed on the parameters outside ``forward``, or a second
backward through the same outputs, is refused while or after the buckets are reduced).
``no_sync()`` lifts all of this: gradients just accumulate locally and the first synchronised
backward after it reduces the accumulated sums.
"""
from __future__ import annotations

import contextlib
import zlib

import numpy as np

from .. import backend
from ..autograd import is_grad_enabled, no_grad, queue_callback
from ..nn.module import Module
from ..tensor import Tensor
from . import group as dist


class DistributedDataParallel(Module):
    """Data-parallel wrapper of ``module`` (PyTorch's ``nn.parallel.DistributedDataParallel``).

    Call ``lamina.distributed.init()`` first, build the same model on every rank, wrap it, and
    train as usual: each rank feeds its own shard of the global batch (``DistributedSampler``)
    and the averaged gradients make every replica take the same step. ``state_dict()`` keys
    carry the ``module.`` prefix, as PyTorch's do; save ``ddp.module.state_dict()`` for files
    that load into an unwrapped model.

    ``bucket_mb`` (alias ``bucket_cap_mb``) bounds the all-reduce buckets; ``broadcast_buffers``
    re-broadcasts the buffers from rank 0 at every ``forward`` (keeps BatchNorm running
    statistics equal across ranks); ``find_unused_parameters`` allows parameters that take no
    part in a step (see the module docstring).
    """

    def __init__(self, module, bucket_mb: float = 25, find_unused_parameters: bool = False,
                 broadcast_buffers: bool = True, bucket_cap_mb: float | None = None, process_group=None):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a lamina.nn.Module, got {type(module).__name__}")
        if bucket_cap_mb is not None:
            bucket_mb = bucket_cap_mb
        if not bucket_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_mb must be > 0, got {bucket_mb!r}")
        g = process_group or dist.current_group()
        self.module = module
        object.__setattr__(self, "find_unused_parameters", bool(find_unused_parameters))
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        object.__setattr__(self, "bucket_mb", float(bucket_mb))
        object.__setattr__(self, "_group", g)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        object.__setattr__(self, "_names", [n for n, _ in named])
        object.__setattr__(self, "_params", [p for _, p in named])
        object.__setattr__(self, "_index", {id(p): i for i, (_, p) in enumerate(named)})
        _check_same_model(g, module)
        self._broadcast_state(module)
        object.__setattr__(self, "_buckets", _make_buckets(self._params, self.bucket_mb, self.find_unused_parameters))
        object.__setattr__(self, "_bucket_of", {j: b for b, bk in enumerate(self._buckets) for j in bk.members})
        # gradient traffic gets its own communicator: its non-blocking collectives then never
        # interleave with collectives the model itself runs in backward (SyncBatchNorm)
        object.__setattr__(self, "_comm_group", g.dup() if g.size > 1 else g)
        object.__setattr__(self, "_sync", True)
        object.__setattr__(self, "_step", None)  # _Reduction of the latest forward, or None
        object.__setattr__(self, "_handles", [p.register_post_accumulate_grad_hook(self._grad_ready)
                                              for p in self._params] if g.size > 1 else [])

    # ------------------------------------------------------------ set-up
    def _broadcast_state(self, module):
        g = self._group
        if g.size == 1:
            return
        with no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast_array(g, t.array, 0)
                t._version[0] += 1

    # ------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        g = self._group
        if g.size > 1 and self.broadcast_buffers and self.training:
            with no_grad():
                for b in self.module.buffers():
                    dist.broadcast_array(g, b.array, 0)
                    b._version[0] += 1
        self._step = None
        out = self.module(*args, **kwargs)
        if g.size > 1 and self._sync and is_grad_enabled():
            counts = _count_edges(out, self._index, len(self._params))
            if any(counts):  # else nothing of this forward can send gradients to the parameters
                unused = [self._names[j] for j, c in enumerate(counts) if c == 0]
                if unused and not self.find_unused_parameters:
                    raise RuntimeError(
                        "DistributedDataParallel: parameters took no part in this forward: "
                        f"{_names(unused)}; pass find_unused_parameters=True to allow parameters "
                        "without gradients")
                self._step = _Reduction(self, counts)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, forward/backward pairs accumulate gradients locally without communication;
        the first synchronised backward after it all-reduces the accumulated gradients."""
        prev = self._sync
        object.__setattr__(self, "_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync", prev)

    # ------------------------------------------------------------ backward side
    def _grad_ready(self, p):
        step = self._step
        if step is None:
            return
        if not step.started:
            queue_callback(step.backward_done)
        step.deliver(self._index[id(p)])

    def extra_repr(self):
        return (f"world_size={self._group.size}, buckets={len(self._buckets)}, bucket_mb={self.bucket_mb:g}, "
                f"find_unused_parameters={self.find_unused_parameters}")

    def __deepcopy__(self, memo):
        raise RuntimeError("DistributedDataParallel cannot be deep-copied (it holds communicators and "
                           "gradient hooks); deep-copy .module instead")

    def bucket_sizes(self) -> list[int]:
        """Bytes all-reduced per bucket each step, in launch order (for cost models)."""
        return [bk.nbytes for bk in self._buckets]


class _Bucket:
    """Parameter indices (into the DDP's list) reduced together in one flat buffer."""

    def __init__(self, members, params, flags):
        self.members = members
        self.sizes = [params[j].array.size for j in members]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64).tolist()
        ref = params[members[0]].array
        self.device = backend.device_of(ref)
        self.dtype = ref.dtype
        # MPI reduces float16/bfloat16 in float32; NCCL reduces them natively
        self.wire_dtype = ref.dtype if (self.device.type == "cuda" or dist._mpi_dtype_ok(ref.dtype)) else np.dtype(np.float32)
        self.flags = flags  # one "used here" slot per member after the gradients
        self.length = self.offsets[-1] + (len(members) if flags else 0)
        self.nbytes = self.length * self.wire_dtype.itemsize
        self.buffer = None  # the flat buffer, allocated on first use and reused every step


def _make_buckets(params, bucket_mb, flags):
    limit = bucket_mb * 2**20
    buckets, open_ = [], {}
    for j in reversed(range(len(params))):
        p = params[j]
        key = (backend.device_of(p.array), p.array.dtype)
        cur = open_.get(key)
        nbytes = p.array.size * p.array.dtype.itemsize
        if cur is not None and cur[1] + nbytes > limit:
            buckets.append(cur[0])
            cur = None
        if cur is None:
            cur = open_[key] = [[], 0]
        cur[0].append(j)
        cur[1] += nbytes
    buckets.extend(v[0] for v in open_.values() if v[0])
    # launch order: the bucket holding the last-registered parameter first
    buckets.sort(key=lambda m: -m[0])
    return [_Bucket(m, params, flags) for m in buckets]


def _count_edges(out, index, n):
    """For each parameter, how many graph edges from the nodes behind ``out`` lead to it."""
    counts = [0] * n
    stack, seen = [], set()
    for t in _tensors_in(out):
        if t._node is None:
            j = index.get(id(t))
            if j is not None and t.requires_grad:
                counts[j] += 1
        elif t._node not in seen:
            seen.add(t._node)
            stack.append(t._node)
    while stack:
        for t in stack.pop().inputs or ():
            node = t._node
            if node is None:
                j = index.get(id(t))
                if j is not None:
                    counts[j] += 1
            elif node not in seen:
                seen.add(node)
                stack.append(node)
    return counts


def _tensors_in(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors_in(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors_in(x)


class _Reduction:
    """The gradient reduction of one forward/backward pair."""

    def __init__(self, ddp, counts):
        self.ddp = ddp
        self.counts = list(counts)
        self.remaining = list(counts)
        self.used = [c > 0 for c in counts]
        self.bucket_left = [sum(1 for j in bk.members if counts[j] > 0) for bk in ddp._buckets]
        self.next = 0  # next bucket to launch
        self.started = False
        self.finished = False
        self.works = []  # (bucket, {'res': reduced buffer once done}, Work) per launched bucket

    def deliver(self, j):
        ddp = self.ddp
        if self.finished or self.remaining[j] == 0:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {ddp._names[j]} received a gradient after its "
                "bucket was all-reduced; gradients may reach the parameters only through the outputs "
                "of the latest forward, once (compute extra loss terms inside forward)")
        self.started = True
        self.remaining[j] -= 1
        if self.remaining[j] == 0:
            b = ddp._bucket_of[j]
            self.bucket_left[b] -= 1
            if self.bucket_left[b] == 0:
                self._launch_ready()
                return
        if self.works:
            _progress(ddp._comm_group, self.works)

    def backward_done(self):
        """Runs when the backward that started this reduction has finished: parameters still
        waiting for gradients got none in it (an output of forward did not feed the loss)."""
        if self.finished:
            return
        ddp = self.ddp
        missing = [j for j, c in enumerate(self.remaining) if c > 0]
        if not ddp.find_unused_parameters:
            for _, _, work in self.works:  # launched on every rank: complete them, keep the ranks in step
                work.wait()
            self.works = []
            self.finished = True
            ddp._step = None
            raise RuntimeError(
                "DistributedDataParallel: this backward produced no gradients for "
                f"{_names([ddp._names[j] for j in missing])}, so the gradients were not averaged across "
                "ranks; every output of forward that depends on parameters must take part in the loss, "
                "or pass find_unused_parameters=True")
        for j in missing:
            # a weight used twice whose one use fed the loss keeps the gradient that arrived
            self.used[j] = self.remaining[j] < self.counts[j]
            self.remaining[j] = 0
            self.bucket_left[ddp._bucket_of[j]] -= 1
        self._launch_ready()

    def _launch_ready(self):
        buckets = self.ddp._buckets
        while self.next < len(buckets) and self.bucket_left[self.next] == 0:
            self._launch(self.next)
            self.next += 1
        if self.next == len(buckets):
            self._finish()
        else:
            _progress(self.ddp._comm_group, self.works)

    def _launch(self, b):
        ddp, bk = self.ddp, self.ddp._buckets[b]
        params = ddp._params
        n = bk.offsets[-1]
        if bk.buffer is None:
            xp = backend.xp_of(params[bk.members[0]].array)
            with backend.device_context(bk.device):
                bk.buffer = xp.empty(bk.length, dtype=bk.wire_dtype)
        buf = bk.buffer
        for k, j in enumerate(bk.members):
            g = params[j].grad
            lo, hi = bk.offsets[k], bk.offsets[k + 1]
            if g is not None and (g.array.dtype != bk.dtype or backend.device_of(g.array) != bk.device):
                raise RuntimeError(
                    f"DistributedDataParallel: the gradient of {ddp._names[j]} is {dist.dtype_str(g.array.dtype)} on "
                    f"{backend.device_of(g.array)} but the parameter was {dist.dtype_str(bk.dtype)} on {bk.device} "
                    "when wrapped; move or cast the model before wrapping it")
            if g is None or not self.used[j]:
                buf[lo:hi] = 0
            else:
                buf[lo:hi] = g.array.reshape(-1)
            if bk.flags:
                buf[n + k] = 1 if self.used[j] else 0
        holder = {}
        work = dist.start_all_reduce(ddp._comm_group, buf, "sum", on_done=lambda res: holder.setdefault("res", res),
                                     inplace=True)
        self.works.append((bk, holder, work))

    def _finish(self):
        ddp = self.ddp
        size = ddp._group.size
        for _, _, work in self.works:
            work.wait()
        with no_grad():
            for bk, holder, _ in self.works:
                res = holder["res"]
                n = bk.offsets[-1]
                for k, j in enumerate(bk.members):
                    if bk.flags and not res[n + k] > 0:
                        continue  # no rank used it: its .grad stays as it was
                    _set_grad(ddp._params[j], res[bk.offsets[k]:bk.offsets[k + 1]], 1.0 / size)
        self.finished = True
        self.works = []


def _names(names):
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def _progress(g, works):
    """Let MPI move pending non-blocking reductions along (MPICH progresses them only inside MPI
    calls), so they overlap the rest of backward."""
    requests = [w._request for _, _, w in works if w._request is not None and not w._done]
    if requests:
        g.mpi().Request.Testall(requests)


def _set_grad(p, flat, scale):
    a = p.array
    xp = backend.xp_of(a)
    g = p.grad
    if (g is not None and g.array.shape == a.shape and g.array.dtype == a.dtype and g.array.flags.c_contiguous
            and g.array.flags.writeable and g._node is None):
        xp.multiply(flat.reshape(a.shape), scale, out=g.array, casting="unsafe")
        g._version[0] += 1
    else:
        p.grad = Tensor((flat * scale).astype(a.dtype, copy=False).reshape(a.shape))


def _check_same_model(g, module):
    """One error on every rank when the replicas differ in parameter/buffer names, shapes or dtypes."""
    if g.size == 1:
        return
    desc = ";".join(f"{n}:{dist.dtype_str(t.dtype)}{tuple(t.shape)}"
                    for n, t in list(module.named_parameters()) + list(module.named_buffers()))
    mine = np.array([zlib.crc32(desc.encode()), len(desc)], dtype=np.int64)
    everyone = np.empty((g.size, 2), dtype=np.int64)
    g.comm.Allgather(mine, everyone)
    if (everyone != everyone[0]).any():
        n_params = sum(1 for _ in module.parameters())
        raise ValueError(
            f"DistributedDataParallel: the model differs across ranks (parameter and buffer names, shapes "
            f"or dtypes; rank {g.rank} has {n_params} parameters, signature {int(mine[0]):08x}, rank 0 has "
            f"signature {int(everyone[0, 0]):08x}); build the same model on every rank")
