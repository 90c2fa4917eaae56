"""Every Op class in the registry is exercised by the op table, forward and (if differentiable)
backward; an op added without samples fails here."""
from __future__ import annotations

import zlib

import numpy as np

import lamina
from lamina.ops import REGISTRY
from lamina.ops.base import Op
from tests.ops.harness import call, float_outputs, projection_weights, scalar_loss
from tests.ops.opinfo import OPS


def _exercised():
    forward, backward = set(), set()
    orig_call = Op.__call__

    def spy(self, *inputs):
        forward.add(type(self).__name__)
        return orig_call(self, *inputs)

    wrapped = {}
    for name, cls in REGISTRY.items():
        if "backward" in cls.__dict__:
            def make(c, f):
                def bw(self, *a, **k):
                    backward.add(type(self).__name__)
                    return f(self, *a, **k)
                return bw
            wrapped[cls] = cls.__dict__["backward"]
            cls.backward = make(cls, cls.__dict__["backward"])
    Op.__call__ = spy
    try:
        for info in OPS:
            for sample in info.samples(np.random.default_rng(zlib.crc32(info.name.encode()))):
                leaves, outs = call(info, sample)
                outs = float_outputs(outs)
                if info.grad and leaves and outs:
                    loss = scalar_loss(outs, projection_weights(outs))
                    lamina.grad(loss, leaves, allow_unused=True, create_graph=True)
    finally:
        Op.__call__ = orig_call
        for cls, f in wrapped.items():
            cls.backward = f
    return forward, backward


def _has_backward(cls):
    return any("backward" in c.__dict__ for c in cls.__mro__ if c is not Op)


def test_every_op_has_samples():
    forward, backward = _exercised()
    missing = sorted(set(REGISTRY) - forward)
    assert not missing, f"ops without samples in tests/ops/opinfo.py: {missing}"
    no_grad_check = sorted(n for n, c in REGISTRY.items()
                           if c.differentiable and _has_backward(c) and n not in backward)
    assert not no_grad_check, f"differentiable ops whose backward no sample runs: {no_grad_check}"


def test_registry_lists_ops():
    """The registry holds exactly the public Op classes defined in lamina.ops' modules."""
    import importlib
    import pkgutil

    import lamina.ops
    defined = {}
    for mod in pkgutil.iter_modules(lamina.ops.__path__):
        module = importlib.import_module(f"lamina.ops.{mod.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, Op) and obj is not Op and obj.__module__ == module.__name__ \
                    and not name.startswith("_"):
                defined[name] = obj
    assert defined == REGISTRY
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Op) and cls.__name__ == name
