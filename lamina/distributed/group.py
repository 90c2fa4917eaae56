"""The process group and its collectives on Tensors.

``init()`` joins the job that ``mpiexec`` started: rank, world size and local rank come from
MPI (through ``mpi4py``, imported only here and only when the process was started by an MPI
launcher, so ``import lamina`` never loads MPI). Started without ``mpiexec``, the group is one
process and every collective is a copy-free no-op, so the same script runs alone.

Collectives follow ``torch.distributed``: they work in place on Tensors (``all_reduce``,
``broadcast``), or fill a list (``all_gather``) or an output (``reduce_scatter``). CPU tensors
travel as NumPy buffers through MPI; CUDA tensors go through NCCL (``lamina.distributed.nccl``)
when CuPy has it, and through host memory and MPI otherwise. Before the data moves, a small
all-gather of (dtype, shape) checks that every rank passes the same kind of tensor, so a
mismatch is one clear error on every rank instead of a hang or garbage.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap

# Environment variables that MPI launchers (MPICH/Intel hydra, Open MPI, PMIx) set in every rank.
_LAUNCHER_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
                 "HYDI_CONTROL_FD")
_LOCAL_RANK_ENV = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK", "LOCAL_RANK")
_MAX_DIMS = 16  # dims carried by the metadata check
# dtype codes of the metadata check; anything else is sent as -1 plus its itemsize
_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
           "bool")


class ReduceOp:
    """Reductions of ``all_reduce`` and ``reduce_scatter`` (``torch.distributed.ReduceOp``'s names)."""
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


_OP_ALIASES = {"sum": "sum", "avg": "avg", "mean": "avg", "max": "max", "min": "min",
               "product": "product", "prod": "product"}


class Group:
    """One process group: an MPI communicator (``None`` for a single process) and where this
    process sits in it."""

    def __init__(self, comm, rank, size, local_rank, local_size, backend_name):
        self.comm = comm
        self.rank, self.size = rank, size
        self.local_rank, self.local_size = local_rank, local_size
        self.backend = backend_name
        self._nccl = {}  # CUDA device index -> NcclCommunicator, made on first use

    def mpi(self):
        """The ``mpi4py.MPI`` module (only valid when ``comm`` is not None)."""
        from mpi4py import MPI
        return MPI

    def nccl(self, device_index):
        """The NCCL communicator of this group on one CUDA device, or None without NCCL."""
        if device_index not in self._nccl:
            from . import nccl
            self._nccl[device_index] = nccl.communicator(self, device_index)
        return self._nccl[device_index]

    def dup(self):
        """A group over the same processes whose collectives never interleave with this one's
        (its own MPI communicator), for traffic such as gradient buckets."""
        comm = self.comm.Dup() if self.comm is not None else None
        return Group(comm, self.rank, self.size, self.local_rank, self.local_size, self.backend)

    def free(self):
        for c in self._nccl.values():
            if c is not None:
                c.destroy()
        self._nccl.clear()
        if self.comm is not None:
            self.comm.Free()
            self.comm = None


_group: Group | None = None


# ---------------------------------------------------------------- set-up

def is_available() -> bool:
    """Whether multi-process groups can be made here (``mpi4py`` is installed)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (or has MPI loaded already)."""
    return "mpi4py.MPI" in sys.modules or any(k in os.environ for k in _LAUNCHER_ENV)


def init(backend: str | None = None, world_size: int = -1, rank: int = -1) -> Group:
    """Join the job: read rank, world size and local rank from MPI; return the group.

    ``backend`` is ``"mpi"`` (CPU tensors through MPI, CUDA tensors through host memory) or
    ``"nccl"`` (CUDA tensors through NCCL, CPU tensors still through MPI); None picks ``"mpi"``,
    and NCCL is used for CUDA tensors whenever CuPy provides it. ``world_size`` and ``rank``, as
    PyTorch users pass them, are checked against what MPI reports. Without an MPI launcher the
    group is this one process. Calling ``init`` again returns the existing group.
    """
    global _group
    name = "mpi" if backend is None else str(backend).lower()
    if name not in ("mpi", "nccl"):
        raise ValueError(f"lamina.distributed.init: backend must be 'mpi' or 'nccl', got {backend!r}")
    if _group is not None:
        if backend is not None and name != _group.backend:
            raise RuntimeError(f"lamina.distributed.init: the process group already exists with backend "
                               f"{_group.backend!r}; call destroy_process_group() before asking for {name!r}")
        return _group
    if launched_by_mpi():
        if not is_available():
            raise RuntimeError("lamina.distributed.init: this process was started by an MPI launcher but "
                               "mpi4py is not installed; pip install 'lamina[dist]'")
        group = _mpi_group(name)
    else:
        group = Group(None, 0, 1, _env_int(_LOCAL_RANK_ENV, 0), 1, name)
    for what, want, got in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if want not in (-1, None) and want != got:
            if group.comm is not None:
                group.free()
            raise ValueError(f"lamina.distributed.init: {what}={want} was requested but the launcher "
                             f"started this process with {what} {got}")
    _group = group
    if group.size > 1:
        _install_abort_on_exception(group)
        _announce(group)
    return group


def init_process_group(backend: str | None = "mpi", init_method=None, world_size: int = -1,
                       rank: int = -1) -> None:
    """``torch.distributed.init_process_group`` spelling of ``init``; ``init_method`` must be None
    or ``"env://"`` (the launcher, not a URL, tells each process where it is)."""
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: init_method {init_method!r} is not supported; start the "
                         "processes with mpiexec, which tells each one its rank")
    init(backend, world_size=world_size, rank=rank)


def _mpi_group(name):
    from mpi4py import MPI
    if not MPI.Is_initialized():
        MPI.Init()
    comm = MPI.COMM_WORLD.Dup()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = node.Get_rank(), node.Get_size()
    node.Free()
    return Group(comm, comm.Get_rank(), comm.Get_size(), local_rank, local_size, name)


def _env_int(names, default):
    for k in names:
        v = os.environ.get(k)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return default


def _install_abort_on_exception(group):
    """An uncaught exception on one rank aborts every rank, naming the rank that failed.

    Without this, the other ranks would wait forever in their next collective. (``python -m
    mpi4py`` does the same in its own runner, which then never reaches this hook.)
    """
    previous = sys.excepthook
    rank, size = group.rank, group.size

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        # the line naming the rank first: the traceback below it may be cut short by the abort
        sys.stderr.write(f"lamina.distributed: rank {rank} of {size} failed with {exc_type.__name__}: "
                         f"{exc}; aborting all ranks\n")
        sys.stderr.flush()
        previous(exc_type, exc, tb)
        abort(1)

    sys.excepthook = hook


def abort(code: int) -> None:
    """End every rank of the job with exit status ``code`` (``MPI_Abort``), after giving the
    launcher a moment to forward what this rank wrote: it drops unforwarded output when it
    tears the job down."""
    import time
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.25)
    from mpi4py import MPI
    MPI.COMM_WORLD.Abort(code)


def _announce(group):
    """Rank 0 prints which process id is which rank: when a rank is killed, the launcher's
    message names only its process id."""
    pids = np.empty(group.size, dtype=np.int64)
    group.comm.Allgather(np.array([os.getpid()], dtype=np.int64), pids)
    if group.rank == 0:
        ranks = ", ".join(f"rank {r} pid {p}" for r, p in enumerate(pids.tolist()))
        sys.stderr.write(f"lamina.distributed: {group.size} ranks ({group.backend}): {ranks}\n")
        sys.stderr.flush()


def destroy_process_group() -> None:
    """Leave the group (MPI itself stays initialised until the process exits, as mpi4py wants)."""
    global _group
    if _group is not None:
        _group.free()
        _group = None


def is_initialized() -> bool:
    return _group is not None


def current_group() -> Group:
    """The current group; an error naming ``init`` when there is none."""
    if _group is None:
        raise RuntimeError("lamina.distributed: the process group is not initialized; call "
                           "lamina.distributed.init() (or init_process_group('mpi')) first")
    return _group


def get_rank() -> int:
    return current_group().rank


def get_world_size() -> int:
    return current_group().size


def get_local_rank() -> int:
    """This process's index among the ranks on its machine (pick a GPU with it)."""
    return current_group().local_rank


def get_local_world_size() -> int:
    return current_group().local_size


def get_backend() -> str:
    return current_group().backend


def barrier() -> None:
    g = current_group()
    if g.comm is not None:
        g.comm.Barrier()


# ---------------------------------------------------------------- checks

def dtype_str(dtype) -> str:
    """The NumPy name of a dtype ("float32", "bfloat16", "bool")."""
    return str(np.dtype(dtype))


def _dtype_code(dtype):
    name = dtype_str(dtype)
    return _DTYPES.index(name) if name in _DTYPES else -1 - dtype.itemsize


def _describe(code, shape):
    name = _DTYPES[code] if code >= 0 else f"<{-1 - code}-byte dtype>"
    return f"{name}[{', '.join(str(s) for s in shape)}]"


def check_same(g, fname, arrays, what="tensor"):
    """Raise the same ``ValueError`` on every rank unless all ranks pass arrays of one dtype and
    shape (one small all-gather of metadata). ``arrays``: this rank's arrays, compared in order."""
    if g.comm is None:
        return
    rows = []
    for a in arrays:
        if a.ndim > _MAX_DIMS:
            raise ValueError(f"{fname}: tensors of more than {_MAX_DIMS} dims are not supported, got shape {a.shape}")
        row = np.full(2 + _MAX_DIMS, -1, dtype=np.int64)
        row[0], row[1] = _dtype_code(a.dtype), a.ndim
        row[2:2 + a.ndim] = a.shape
        rows.append(row)
    mine = np.stack(rows) if rows else np.zeros((0, 2 + _MAX_DIMS), dtype=np.int64)
    counts = np.empty(g.size, dtype=np.int64)
    g.comm.Allgather(np.array([mine.shape[0]], dtype=np.int64), counts)
    if (counts != counts[0]).any():
        per_rank = ", ".join(f"rank {r}: {c}" for r, c in enumerate(counts.tolist()))
        raise ValueError(f"{fname}: ranks pass different numbers of {what}s ({per_rank})")
    everyone = np.empty((g.size,) + mine.shape, dtype=np.int64)
    g.comm.Allgather(mine, everyone)
    for k in range(mine.shape[0]):
        col = everyone[:, k]
        if (col != col[0]).any():
            descs = ", ".join(f"rank {r} has {_describe(int(row[0]), row[2:2 + row[1]].tolist())}"
                              for r, row in enumerate(col))
            which = f" {what} {k}:" if mine.shape[0] > 1 else ""
            raise ValueError(f"{fname}: shape or dtype differs across ranks;{which} {descs}")


def _as_tensor(fname, t, argname="tensor", written=True):
    if not isinstance(t, Tensor):
        raise TypeError(f"{fname}: {argname} must be a lamina.Tensor, got {type(t).__name__}")
    if written and not t.array.flags.writeable:
        raise ValueError(f"{fname}: {argname} (shape {t.shape}) is a read-only view, such as the result of "
                         "expand(), and cannot receive the result; clone() it first")
    return t


def _op_name(fname, op):
    key = op.lower() if isinstance(op, str) else None
    if key not in _OP_ALIASES:
        raise ValueError(f"{fname}: op must be one of ReduceOp.SUM, AVG, MAX, MIN, PRODUCT, got {op!r}")
    return _OP_ALIASES[key]


def _is_cuda(a):
    return type(a) is not np.ndarray and not isinstance(a, np.ndarray)


def _mpi_dtype_ok(dtype):
    """Whether MPI reduces this dtype natively; float16 and bfloat16 are reduced in float32."""
    return dtype_str(dtype) not in ("float16", "bfloat16")


# ---------------------------------------------------------------- collectives

class Work:
    """A started collective (``async_op=True``): ``wait()`` finishes it and fills the tensor."""

    def __init__(self, request=None, finish=None):
        self._request = request
        self._finish = finish
        self._done = request is None and finish is None

    def is_completed(self) -> bool:
        if self._done:
            return True
        if self._request is not None and not self._request.Test():
            return False
        self.wait()
        return True

    def wait(self) -> bool:
        if not self._done:
            if self._request is not None:
                self._request.Wait()
            if self._finish is not None:
                self._finish()
            self._done = True
        return True


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over all ranks and leave the result, in place, on every rank.

    ``op``: ``ReduceOp.SUM`` (default), ``AVG`` (the mean over ranks; floating tensors only),
    ``MAX``, ``MIN``, ``PRODUCT``. With ``async_op=True`` returns a ``Work`` whose ``wait()`` must
    be called before the tensor is read (CPU tensors: a non-blocking MPI ``Iallreduce``).
    """
    fname = "all_reduce"
    t = _as_tensor(fname, tensor)
    op = _op_name(fname, op)
    g = group or current_group()
    a = t.array
    if op == "avg" and a.dtype.kind != "f" and dtype_str(a.dtype) != "bfloat16":
        raise TypeError(f"{fname}: ReduceOp.AVG needs a floating tensor, got {t.dtype}")
    check_same(g, fname, [a])
    work = start_all_reduce(g, a, op, on_done=lambda res: _write_back(t, res))
    if async_op:
        return work
    work.wait()
    return None


def start_all_reduce(g, a, op, on_done, inplace=False):
    """Start reducing array ``a`` (not checked across ranks); ``on_done(result)`` gets the
    reduced array when the returned ``Work`` finishes. With ``inplace`` the caller hands over
    ``a`` (contiguous, of a dtype MPI/NCCL reduce natively) and the result is ``a`` itself."""
    if g.comm is None:
        return Work(finish=lambda: on_done(a))
    if _is_cuda(a):
        comm = g.nccl(a.device.id)
        if comm is not None:
            buf = a if inplace else a.copy()
            comm.all_reduce(buf, op)
            return Work(finish=lambda: on_done(buf))
        host = backend.to_device(a, backend.cpu)
        return start_all_reduce(g, host, op, lambda res: on_done(backend.to_device(res, backend.device_of(a))))
    MPI = g.mpi()
    native = _mpi_dtype_ok(a.dtype)
    buf = a if inplace and native else np.array(a, dtype=a.dtype if native else np.float32, order="C", copy=True)
    mpi_op = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "product": MPI.PROD}[op]
    request = g.comm.Iallreduce(MPI.IN_PLACE, buf, op=mpi_op)

    def finish():
        res = buf
        if op == "avg":
            res = res * (1.0 / g.size)
        on_done(res if native else res.astype(a.dtype))
    return Work(request, finish)


def _write_back(t, res):
    a = t.array
    if res is a:
        return
    backend.xp_of(a).copyto(a, res.astype(a.dtype, copy=False) if res.dtype != a.dtype else res)
    t._version[0] += 1


def broadcast(tensor, src=0, group=None, async_op=False):
    """Overwrite ``tensor`` on every rank with its value on rank ``src``."""
    fname = "broadcast"
    t = _as_tensor(fname, tensor)
    g = group or current_group()
    if not 0 <= int(src) < g.size:
        raise ValueError(f"{fname}: src must be a rank in [0, {g.size}), got {src}")
    check_same(g, fname, [t.array])
    if g.comm is not None:
        broadcast_array(g, t.array, int(src))
        t._version[0] += 1
    return Work() if async_op else None


def broadcast_array(g, a, src):
    """Broadcast array ``a`` in place from rank ``src`` (not checked across ranks)."""
    if g.comm is None:
        return
    if _is_cuda(a):
        comm = g.nccl(a.device.id)
        if comm is not None and a.flags.c_contiguous:
            comm.broadcast(a, src)
            return
        host = backend.to_device(a, backend.cpu)
        broadcast_array(g, host, src)
        backend.xp_of(a).copyto(a, backend.to_device(host, backend.device_of(a)))
        return
    buf = a if a.flags.c_contiguous and a.flags.writeable else np.ascontiguousarray(a)
    g.comm.Bcast(_mpi_view(buf), root=src)
    if buf is not a:
        np.copyto(a, buf)


def _mpi_view(a):
    """``a`` as a buffer MPI can move bit for bit (bfloat16 and other odd dtypes as bytes)."""
    if a.dtype.kind in "biuf" and _mpi_dtype_ok(a.dtype):
        return a
    return a.view(np.uint8)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list[r]`` with rank ``r``'s ``tensor`` on every rank (``tensor_list``: one
    tensor per rank, each of ``tensor``'s shape and dtype)."""
    fname = "all_gather"
    t = _as_tensor(fname, tensor, written=False)
    g = group or current_group()
    _check_list(fname, "tensor_list", tensor_list, g.size, t)
    check_same(g, fname, [t.array])
    a = t.array
    if g.comm is None:
        _write_back(tensor_list[0], a.copy())
        return Work() if async_op else None
    xp = backend.xp_of(a)
    if _is_cuda(a) and g.nccl(a.device.id) is not None:
        src = xp.ascontiguousarray(a)
        out = xp.empty((g.size,) + a.shape, dtype=a.dtype)
        g.nccl(a.device.id).all_gather(src, out)
    else:
        src = np.ascontiguousarray(backend.to_device(a, backend.cpu))
        out = np.empty((g.size,) + a.shape, dtype=a.dtype)
        g.comm.Allgather(_mpi_view(src), _mpi_view(out))
        if _is_cuda(a):
            out = backend.to_device(out, backend.device_of(a))
    for r, dst in enumerate(tensor_list):
        _write_back(dst, out[r])
    return Work() if async_op else None


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """``output`` on rank ``r`` becomes the reduction over ranks of their ``input_list[r]``."""
    fname = "reduce_scatter"
    t = _as_tensor(fname, output, "output")
    op = _op_name(fname, op)
    g = group or current_group()
    _check_list(fname, "input_list", input_list, g.size, t)
    a = t.array
    if op == "avg" and a.dtype.kind != "f" and dtype_str(a.dtype) != "bfloat16":
        raise TypeError(f"{fname}: ReduceOp.AVG needs a floating tensor, got {t.dtype}")
    check_same(g, fname, [a])
    xp = backend.xp_of(a)
    stacked = xp.stack([x.array for x in input_list])
    if g.comm is None:
        _write_back(t, stacked[0].copy())
        return Work() if async_op else None
    if _is_cuda(a) and g.nccl(a.device.id) is not None:
        out = xp.empty(a.shape, dtype=a.dtype)
        g.nccl(a.device.id).reduce_scatter(stacked, out, op)
        _write_back(t, out)
        return Work() if async_op else None
    MPI = g.mpi()
    native = _mpi_dtype_ok(a.dtype)
    host = np.ascontiguousarray(backend.to_device(stacked, backend.cpu), dtype=a.dtype if native else np.float32)
    out = np.empty(a.shape, dtype=host.dtype)
    mpi_op = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "product": MPI.PROD}[op]
    g.comm.Reduce_scatter_block(host, out, op=mpi_op)
    if op == "avg":
        out *= 1.0 / g.size
    res = out if native else out.astype(a.dtype)
    _write_back(t, backend.to_device(res, backend.device_of(a)) if _is_cuda(a) else res)
    return Work() if async_op else None


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Fill ``output_tensor`` (``world_size * n`` rows) with every rank's ``input_tensor`` (``n``
    rows), rank 0's first: the concatenating form of ``all_gather``."""
    fname = "all_gather_into_tensor"
    out = _as_tensor(fname, output_tensor, "output_tensor")
    t = _as_tensor(fname, input_tensor, "input_tensor", written=False)
    g = group or current_group()
    _check_rows(fname, out, t, g.size)
    n = t.shape[0] if t.ndim else 1
    flat = out.array.reshape((g.size * n,) + t.shape[1:]) if t.ndim else out.array
    all_gather([_wrap(flat[r * n:(r + 1) * n].reshape(t.shape)) for r in range(g.size)], t, group)
    out._version[0] += 1
    return Work() if async_op else None


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """``output`` (``n`` rows) on rank ``r`` becomes the reduction over ranks of rows
    ``r * n`` to ``(r + 1) * n`` of their ``input``: the concatenated form of ``reduce_scatter``."""
    fname = "reduce_scatter_tensor"
    out = _as_tensor(fname, output, "output")
    t = _as_tensor(fname, input, "input", written=False)
    g = group or current_group()
    _check_rows(fname, t, out, g.size)
    n = out.shape[0] if out.ndim else 1
    flat = t.array.reshape((g.size * n,) + out.shape[1:]) if out.ndim else t.array
    return reduce_scatter(out, [_wrap(flat[r * n:(r + 1) * n].reshape(out.shape)) for r in range(g.size)], op,
                          group, async_op)


def _check_rows(fname, big, small, size):
    """``big`` must hold ``size`` copies of ``small`` stacked along dim 0 (1-d of ``size`` for 0-d)."""
    want = (size * small.shape[0],) + small.shape[1:] if small.ndim else (size,)
    if big.shape != want or big.dtype != small.dtype or big.device != small.device:
        raise ValueError(f"{fname}: expected the larger tensor to be {small.dtype}{list(want)} on {small.device} "
                         f"({size} ranks x {list(small.shape)}), got {big.dtype}{list(big.shape)} on {big.device}")
    if not big.array.flags.c_contiguous:
        raise ValueError(f"{fname}: the tensor of shape {big.shape} must be contiguous")


def _check_list(fname, argname, tensors, size, like):
    if not isinstance(tensors, (list, tuple)) or len(tensors) != size:
        n = len(tensors) if isinstance(tensors, (list, tuple)) else type(tensors).__name__
        raise ValueError(f"{fname}: {argname} must be a list of one tensor per rank ({size}), got {n}")
    for i, x in enumerate(tensors):
        _as_tensor(fname, x, f"{argname}[{i}]", written=argname == "tensor_list")
        if x.shape != like.shape or x.dtype != like.dtype or x.device != like.device:
            raise ValueError(f"{fname}: {argname}[{i}] is {x.dtype}{list(x.shape)} on {x.device}, expected "
                             f"{like.dtype}{list(like.shape)} on {like.device} like the other argument")
