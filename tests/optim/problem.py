"""A tiny float64 MLP regression written twice, with lamina ops and the identical torch ops.

Shared by the optimiser tests: both frameworks start from the same parameters (several shapes,
a 0-d scale included), split into two param groups, and see the same loss every step.
"""
from __future__ import annotations

import numpy as np
import torch

import lamina
from lamina.nn import Parameter

SHAPES = [(4, 3), (3,), (3, 2), (2,), ()]


def initial_arrays(seed=0):
    rng = np.random.default_rng(seed)
    # np.asarray: a 0-d draw is a NumPy scalar, which lamina.tensor would take as a Python float
    return [np.asarray(rng.standard_normal(s) * 0.5) for s in SHAPES]


def data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 4)), rng.standard_normal((8, 2))


def lamina_params(arrays):
    return [Parameter(lamina.tensor(a.copy())) for a in arrays]


def torch_params(arrays):
    return [torch.tensor(a.copy(), requires_grad=True) for a in arrays]


def groups(params, lr):
    """Two param groups; the second has its own lr (half the first's)."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": lr * 0.5}]


def loss(params, x, y, skip=()):
    """Mean squared error of a one-hidden-layer tanh MLP; works on lamina or torch tensors.

    Parameters whose index is in ``skip`` are left out of the graph (their grad stays None),
    which is how tests make some parameters miss some steps.
    """
    w1, b1, w2, b2, s = params
    h = x @ w1
    if 1 not in skip:
        h = h + b1
    h = h.tanh()
    out = h @ w2 + b2
    if 4 not in skip:
        out = out * s
    d = out - y
    return (d * d).mean()


class Trainer:
    """Parameters, data and an optimiser of one framework, trained on ``loss``.

    ``skip_at(step)`` gives the parameter indices left out of the loss at that step.
    """

    def __init__(self, framework, opt_cls, kwargs, arrays=None, skip_at=lambda step: ()):
        arrays = initial_arrays() if arrays is None else arrays
        x, y = data()
        if framework == "torch":
            self.params, self.x, self.y = torch_params(arrays), torch.tensor(x), torch.tensor(y)
        else:
            self.params, self.x, self.y = lamina_params(arrays), lamina.tensor(x), lamina.tensor(y)
        self.opt = opt_cls(groups(self.params, kwargs["lr"]), **kwargs)
        self.skip_at = skip_at
        self.steps = 0

    def train(self, n):
        for _ in range(n):
            self.opt.zero_grad()
            loss(self.params, self.x, self.y, self.skip_at(self.steps)).backward()
            self.opt.step()
            self.steps += 1
        return self


def values(params):
    return [p.detach().numpy().copy() for p in params]


def assert_close(actual, expected, rtol=1e-10, atol=1e-12):
    for i, (a, b) in enumerate(zip(values(actual), values(expected))):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"parameter {i}")


def numpy_loss_and_grads(arrays, x, y):
    """``loss`` and its gradients for every parameter, by hand in NumPy (an independent oracle)."""
    w1, b1, w2, b2, s = arrays
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    d = z * s - y
    dout = 2 * d / d.size
    ds = (dout * z).sum()
    dz = dout * s
    dh = dz @ w2.T * (1 - h * h)
    return (d * d).mean(), [x.T @ dh, dh.sum(0), h.T @ dz, dz.sum(0), np.asarray(ds)]
