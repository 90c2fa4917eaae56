"""Lamina as a backend of the ``onnx`` package's backend test suite (``onnx.backend.test``).

``LaminaBackend.prepare(model)`` loads the model with ``lamina.onnx.from_model``; ``run`` feeds
NumPy arrays and returns NumPy arrays. ``bench/onnx_conformance.py`` and ``tests/onnx`` run the
node tests through ``onnx.backend.test.runner.Runner`` with it.
"""
from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

import lamina

from .module import from_model


class LaminaBackendRep(BackendRep):
    def __init__(self, module):
        self.module = module

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {k: lamina.from_numpy(np.asarray(v)) for k, v in inputs.items()}
            args = ()
        else:
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            args = tuple(lamina.from_numpy(np.asarray(v)) for v in inputs)
            feeds = {}
        with lamina.no_grad():
            out = self.module(*args, **feeds)
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(_host(o) for o in outs)


def _host(t):
    a = t.array
    return np.asarray(a if isinstance(a, np.ndarray) else a.get())


class LaminaBackend(Backend):
    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return LaminaBackendRep(from_model(model))

    @classmethod
    def supports_device(cls, device):
        return str(device).upper() == "CPU"

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)
