"""Shared-memory segments: named files on a RAM-backed file system that several processes map.

A segment is a file under ``/dev/shm`` (``$TMPDIR`` where that does not exist), mapped with
``mmap``. NumPy arrays are views of the mapping, so a process that maps the same file sees the
same bytes, and sending an array to another process costs only the file's name and the array's
offset, shape and dtype.

Plain files are used rather than ``multiprocessing.shared_memory`` because the lifetime rules
differ from that module's (its resource tracker would warn about, or unlink, segments that a
DataLoader batch or a shared model still uses in another process). Here:

- ``create_segment`` makes a file owned by this process; ``Segment`` objects unlink their file
  when the owning process collects them or exits (never from a forked child, which inherits the
  object but not the ownership).
- ``open_segment`` maps an existing file by name; one mapping per file per process, so arrays that
  were adjacent in the sender stay adjacent in the receiver (an optimiser can then treat a
  module's parameters as one flat buffer).
- ``write_arrays`` / ``read_arrays`` pack several arrays into one file for a single hand-over
  (DataLoader batches): the reader unlinks the file as soon as it has mapped it.
"""
from __future__ import annotations

import glob
import itertools
import mmap
import os
import tempfile
import threading
import weakref

import numpy as np

ALIGN = 64  # bytes; each packed array starts on a cache line (and any dtype's alignment)

_counter = itertools.count()
_lock = threading.Lock()
_open = weakref.WeakValueDictionary()  # path -> Segment mapped in this process


def shm_dir() -> str:
    """Where segments live: ``/dev/shm`` (RAM) on Linux, the temp directory elsewhere."""
    d = "/dev/shm"
    if os.path.isdir(d) and os.access(d, os.W_OK):
        return d
    return tempfile.gettempdir()


def unique_name(prefix: str) -> str:
    """A file name no other process uses: ``prefix``, this process's pid and a counter."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


class Segment(mmap.mmap):
    """A mapping of one segment file; ``path`` names it, ``owner_pid`` (or None) unlinks it."""

    path: str
    owner_pid: int | None

    def __del__(self):
        if getattr(self, "owner_pid", None) == os.getpid():
            _unlink(self.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_at_exit(path: str, pid: int) -> None:
    if os.getpid() == pid:
        _unlink(path)


def create_segment(nbytes: int, prefix: str = "lamina-shm") -> Segment:
    """A new zero-filled segment of ``nbytes`` bytes (at least 1) owned by this process."""
    path = os.path.join(shm_dir(), unique_name(prefix))
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, max(int(nbytes), 1))
        seg = Segment(fd, max(int(nbytes), 1))
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)
    seg.path = path
    seg.owner_pid = os.getpid()
    # __del__ does not run for objects still alive at interpreter exit; this does.
    weakref.finalize(seg, _unlink_at_exit, path, os.getpid())
    with _lock:
        _open[path] = seg
    return seg


def open_segment(path: str) -> Segment:
    """This process's mapping of an existing segment (mapped once, then reused)."""
    with _lock:
        seg = _open.get(path)
        if seg is not None:
            return seg
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RuntimeError(f"shared memory segment {path} no longer exists: the process that "
                               "shared the tensor has freed it or exited") from None
        try:
            seg = Segment(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        seg.path = path
        seg.owner_pid = None
        _open[path] = seg
        return seg


def segment_of(array):
    """``(segment, byte offset)`` when ``array`` is a view of a segment mapped here, else None."""
    if type(array) is not np.ndarray:
        return None
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, Segment):
        return None
    start = np.frombuffer(base, np.uint8, count=0).__array_interface__["data"][0]
    return base, array.__array_interface__["data"][0] - start


def array_view(seg: Segment, offset: int, shape, dtype, strides=None) -> np.ndarray:
    """A NumPy array over ``seg``'s bytes starting at ``offset``."""
    return np.ndarray(shape, dtype=np.dtype(dtype), buffer=seg, offset=offset, strides=strides)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def write_arrays(arrays, prefix: str) -> tuple[str, list]:
    """Pack ``arrays`` into one new segment file; returns its path and each array's
    ``(offset, shape, dtype string)``. The file is closed here; the reader unlinks it."""
    layout, total = [], 0
    for a in arrays:
        layout.append((total, a.shape, a.dtype.str))
        total += _aligned(a.nbytes)
    path = os.path.join(shm_dir(), unique_name(prefix))
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.ftruncate(fd, max(total, 1))
        for a, (offset, _, _) in zip(arrays, layout):
            if a.nbytes:
                data = memoryview(np.ascontiguousarray(a)).cast("B")
                while len(data):
                    written = os.pwrite(fd, data, offset)
                    data, offset = data[written:], offset + written
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)
    return path, layout


def read_arrays(path: str, layout) -> list:
    """Map a file written by ``write_arrays``, unlink it, and return its arrays (views of the
    mapping, writable, alive as long as any of them is)."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        seg = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        _unlink(path)
    return [np.ndarray(shape, dtype=np.dtype(dt), buffer=seg, offset=offset)
            for offset, shape, dt in layout]


def remove_files(prefix: str) -> int:
    """Unlink every segment file whose name starts with ``prefix`` (those a crashed or stopped
    worker wrote but nobody read); returns how many."""
    paths = glob.glob(os.path.join(shm_dir(), glob.escape(prefix) + "*"))
    for p in paths:
        _unlink(p)
    return len(paths)


def tiled_view(arrays):
    """One flat array over ``arrays`` when they lie back to back, in order, in one segment (a
    module shared by ``module_share_memory``), else None. An optimiser that keeps its parameters
    in one flat buffer adopts this view instead of copying them out of shared memory, so its
    in-place updates reach every process that maps the segment."""
    if not arrays or any(type(a) is not np.ndarray or not a.flags.c_contiguous for a in arrays):
        return None
    found = segment_of(arrays[0])
    if found is None:
        return None
    seg, offset = found
    dtype = arrays[0].dtype
    ptr = arrays[0].__array_interface__["data"][0]
    for a in arrays:
        if a.dtype != dtype or a.__array_interface__["data"][0] != ptr:
            return None
        f = segment_of(a)
        if f is None or f[0] is not seg:
            return None
        ptr += a.nbytes
    return array_view(seg, offset, (sum(a.size for a in arrays),), dtype)
