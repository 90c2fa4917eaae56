"""``lamina.accelerator``: ``torch.accelerator``, the device-neutral way programs pick a GPU.

Lamina's one accelerator is CUDA through CuPy, so this module answers from ``lamina.cuda``:
``current_accelerator()`` is ``device('cuda:0')`` where CuPy sees a GPU and None on a CPU-only
machine, which lets ``lamina.accelerator.current_accelerator() or lamina.device("cpu")`` pick
the right device. Calls that need an accelerator raise ``RuntimeError`` without one, as
PyTorch's do.
"""
from __future__ import annotations

from . import backend, cuda


def is_available() -> bool:
    """Whether an accelerator (a GPU that CuPy sees) is present."""
    return cuda.is_available()


def current_accelerator(check_available: bool = False):
    """The accelerator's device (``device('cuda:0')``), or None when there is none.

    Lamina counts an accelerator only where it can be used, so ``check_available`` changes
    nothing; it is accepted for PyTorch's signature.
    """
    return backend.Device("cuda") if cuda.is_available() else None


def device_count() -> int:
    """The number of accelerator devices (0 on a CPU-only machine)."""
    return cuda.device_count()


def _require(fname: str) -> None:
    if not cuda.is_available():
        raise RuntimeError(f"lamina.accelerator.{fname}: no accelerator is available (CuPy is not "
                           f"installed or sees no GPU); check lamina.accelerator.is_available() first")


def current_device_index() -> int:
    """The index of the current accelerator device."""
    _require("current_device_index")
    return cuda.current_device()


def set_device_index(device) -> None:
    """Make ``device`` (an index, 'cuda:N' or a device) the current accelerator device."""
    _require("set_device_index")
    cuda.set_device(device)


def synchronize(device=None) -> None:
    """Wait for the work queued on ``device`` (default: the current one) to finish."""
    _require("synchronize")
    cuda.synchronize(device)


current_device_idx = current_device_index  # PyTorch's earlier names for the same functions
set_device_idx = set_device_index
