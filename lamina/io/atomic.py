"""``atomic_write``: replace a file all at once or not at all.

Every file Lamina writes (weights, checkpoints, metrics, plots) goes through here, so a crash,
a full disk or an exception mid-write never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager


@contextmanager
def atomic_write(path):
    """Context manager yielding a binary file object whose contents replace ``path`` on success.

    The bytes go to a temporary file in the same directory (so the final rename stays on one
    file system), which is flushed and fsynced, renamed onto ``path`` with ``os.replace``, and
    the directory is fsynced so the rename itself survives a power cut. If anything raises, the
    temporary file is removed and whatever was at ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp, fd = _create_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _create_temp(directory: str, name: str):
    # os.open with mode 0o666 lets the umask decide permissions, as a plain open() would;
    # tempfile.mkstemp would make every checkpoint readable by its owner only.
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue


def _fsync_directory(directory: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory; its rename is already durable
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems (certain network mounts) cannot sync a directory; the file itself
        # is already safely in place, so this is not worth failing the write for.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
