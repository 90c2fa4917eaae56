"""Grad mode and anomaly mode: thread-local switches every op reads when it is called.

``no_grad``/``enable_grad``/``set_grad_enabled`` decide whether ops record graph nodes;
``detect_anomaly`` makes them check for NaN/Inf and remember where each node was created.
"""
from __future__ import annotations

import functools
import threading
import traceback


class _Mode(threading.local):
    enabled = True
    anomaly = False
    callbacks = None  # while a backward runs: functions to call once it has finished


_mode = _Mode()


def is_grad_enabled() -> bool:
    return _mode.enabled


class _GradSwitch:
    """Context manager and decorator that sets grad mode, restoring it on exit."""

    _value: bool

    def __enter__(self):
        self._prev = _mode.enabled
        _mode.enabled = self._value

    def __exit__(self, *exc):
        _mode.enabled = self._prev
        return False

    def __call__(self, fn):
        value = self._value

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _mode.enabled
            _mode.enabled = value
            try:
                return fn(*args, **kwargs)
            finally:
                _mode.enabled = prev
        return wrapper


class no_grad(_GradSwitch):
    """Ops inside record nothing: no graph, no saved values."""
    _value = False


class enable_grad(_GradSwitch):
    """Turn recording back on inside a ``no_grad`` block."""
    _value = True


class set_grad_enabled(_GradSwitch):
    """``set_grad_enabled(False)`` works like ``no_grad``. Called on its own it switches the mode at
    once (as in PyTorch); as a context manager it restores the mode from before the call on exit."""

    def __init__(self, mode: bool):
        self._value = bool(mode)
        self._before = _mode.enabled
        _mode.enabled = self._value

    def __enter__(self):
        self._prev = self._before
        _mode.enabled = self._value


class detect_anomaly:
    """Check every op's output and every gradient for NaN/Inf, naming the op that made it.

    Also records where each node was created, so a backward error points at the forward code.
    Slow; for debugging only.
    """

    def __init__(self, enabled: bool = True):
        self._value = enabled

    def __enter__(self):
        self._prev = _mode.anomaly
        _mode.anomaly = self._value

    def __exit__(self, *exc):
        _mode.anomaly = self._prev
        return False


def set_detect_anomaly(enabled: bool) -> None:
    _mode.anomaly = bool(enabled)


def creation_trace():
    """The stack of the code creating a node, recorded only in anomaly mode."""
    return traceback.format_stack()[:-3]
