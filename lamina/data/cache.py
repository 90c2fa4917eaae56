"""Where downloaded and converted data live (``$LAMINA_HOME``), and crash-safe ``.npz`` writes."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np


def lamina_home() -> Path:
    """``$LAMINA_HOME``, by default ``~/.cache/lamina``."""
    return Path(os.environ.get("LAMINA_HOME") or "~/.cache/lamina").expanduser()


def save_npz_atomic(path, **arrays) -> None:
    """Write ``arrays`` to ``path`` so that it holds either its old content or all the new one.

    The data goes to a temporary file in the same directory (so the final rename stays on one
    file system), is flushed and fsynced, then renamed over ``path``.
    """
    for name, a in arrays.items():
        if a.dtype.hasobject:  # would be pickled, and np.load(allow_pickle=False) refuses pickles
            raise TypeError(f"save_npz_atomic: array {name!r} has dtype {a.dtype}; only plain "
                            "numeric arrays can be saved")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600); "xb" gives the usual umask-based mode.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
