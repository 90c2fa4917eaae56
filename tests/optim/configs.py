"""The optimiser configurations every parity test runs: (lamina class, torch class, kwargs)."""
from __future__ import annotations

import pytest
import torch

from lamina import optim

_CASES = {
    "SGD": [
        dict(lr=0.1),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1, maximize=True),
    ],
    "Adam": [
        dict(lr=0.05),
        dict(lr=0.05, amsgrad=True, weight_decay=0.1),
        dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, maximize=True),
        dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True),
    ],
    "AdamW": [
        dict(lr=0.05),
        dict(lr=0.05, amsgrad=True, weight_decay=0.3),
    ],
    "RMSprop": [
        dict(lr=0.01),
        dict(lr=0.01, centered=True),
        dict(lr=0.01, momentum=0.9, weight_decay=0.1),
        dict(lr=0.005, alpha=0.9, centered=True, momentum=0.5, maximize=True),
    ],
    "Adagrad": [
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2),
        dict(lr=0.05, eps=1e-6, maximize=True),
    ],
    "Adadelta": [
        dict(lr=1.0),
        dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1),
        dict(lr=0.9, maximize=True),
    ],
    "Adamax": [
        dict(lr=0.05),
        dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        dict(lr=0.03, maximize=True),
    ],
    "NAdam": [
        dict(lr=0.05),
        dict(lr=0.05, momentum_decay=0.01, weight_decay=0.1),
        dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.03, eps=1e-6, maximize=True),
    ],
    "RAdam": [
        dict(lr=0.05),
        dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
        dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ],
}


def _id(name, kwargs):
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


CASES = [pytest.param(getattr(optim, name), getattr(torch.optim, name), kwargs, id=_id(name, kwargs))
         for name, cases in _CASES.items() for kwargs in cases]
