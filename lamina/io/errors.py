"""``CheckpointError``: the one error raised for a file that cannot be loaded."""
from __future__ import annotations

import os


class CheckpointError(ValueError):
    """A file is missing, unreadable, damaged, foreign or of an unknown format version.

    The message is one line naming the file and what is wrong with it.
    """


def cannot_load(path, reason: str) -> CheckpointError:
    """The error for ``path``; ``repr`` keeps a file name with odd characters on one line."""
    return CheckpointError(f"cannot load {os.fspath(path)!r}: {' '.join(reason.splitlines())}")
