"""``lamina.multiprocessing``: the standard library's ``multiprocessing`` (``Process``, ``Queue``,
``Pool``, ``get_context``, ``set_start_method``, ...) with Tensors passed through shared memory,
as ``torch.multiprocessing``.

Importing it registers reducers so that a Tensor or Parameter sent to another process (as a
``Process`` argument under ``spawn``/``forkserver``, or through a ``Queue`` or ``Pipe``) arrives
as a view of the same memory when its array is in shared memory (``share_memory_(t)``,
``module_share_memory(m)``), and as a copy otherwise. Under ``fork`` the children inherit the
shared mappings directly. See ``lamina.multiprocessing.reductions`` for the lifetime rules.
"""
import multiprocessing as _mp
from multiprocessing import *  # noqa: F401,F403

from .reductions import init_reductions, is_shared, module_share_memory, reduce_tensor, share_memory_  # noqa: F401

__all__ = list(_mp.__all__) + ["share_memory_", "module_share_memory", "is_shared",
                               "get_sharing_strategy", "get_all_sharing_strategies",
                               "set_sharing_strategy"]

init_reductions()

_STRATEGY = "file_system"


def get_all_sharing_strategies():
    """The ways tensors can be shared: only ``"file_system"`` (named files in shared memory)."""
    return {_STRATEGY}


def get_sharing_strategy():
    return _STRATEGY


def set_sharing_strategy(new_strategy):
    """Accepts ``"file_system"``, the only strategy (PyTorch's ``file_descriptor`` passes open
    files instead; Lamina names them, so both behave the same to a program)."""
    if new_strategy not in ("file_system", "file_descriptor"):
        raise ValueError(f"set_sharing_strategy: unknown strategy {new_strategy!r}; choose 'file_system'")
