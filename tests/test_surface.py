"""Lamina's three public surfaces (``lamina.*``, Tensor methods, ``lamina.nn.functional``) hold
each name exactly where PyTorch 2.13 does, as ``lamina.surface.SURFACES`` declares."""
import types

import torch

import lamina
import lamina.nn.functional as F
import lamina.ops as ops
from lamina.surface import EXTRA, SURFACES

PLACES = {"L": (lamina, torch), "T": (lamina.Tensor, torch.Tensor), "F": (F, torch.nn.functional)}


def _function_like(v):
    return callable(v) and not isinstance(v, (type, types.ModuleType, property))


def _implemented():
    names = {n for mod in (ops, F) for n, v in vars(mod).items() if not n.startswith("_") and _function_like(v)}
    return names | {n for n in dir(lamina.Tensor) if not n.startswith("_") and _function_like(getattr(lamina.Tensor, n))}


def test_the_table_is_pytorchs_for_every_name_lamina_implements():
    expected = {}
    for name in _implemented():
        where = "".join(p for p, (_, ref) in PLACES.items()
                        if name in dir(ref) and _function_like(getattr(ref, name, None)))
        if where:
            expected[name] = where
    assert SURFACES == expected


def test_every_name_is_on_exactly_its_surfaces():
    for name, where in SURFACES.items():
        for place, (target, _) in PLACES.items():
            here = _function_like(getattr(target, name, None))
            if place in where:
                assert here, f"{name} is missing from {place}"
            elif place not in EXTRA.get(name, ""):
                assert not here, f"{name} is on {place}, where PyTorch has no {name}; add it to EXTRA or remove it"


def test_named_examples():
    x = lamina.tensor([0.5, 1.0])
    assert lamina.log1p(x).tolist() == x.log1p().tolist()
    for name in ("conv3d", "max_pool1d", "log1p"):
        assert _function_like(getattr(lamina, name))
    assert _function_like(F.gelu) and not hasattr(lamina, "gelu") and not hasattr(x, "gelu")
    assert _function_like(F.silu) and not hasattr(lamina, "silu")
