"""Converting samples to Lamina and PyTorch, finite-difference gradient checks, and comparisons."""
from __future__ import annotations

import numpy as np
import torch

import lamina


def is_float_array(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous layout."""
    if a.ndim == 0 or a.size == 0:
        return a
    return np.repeat(a, 2, axis=-1)[..., ::2]


def to_lamina(obj, device="cpu", leaves=None, noncontig=False, dtype=np.float64):
    """Convert a sample argument; float arrays become leaves of ``dtype`` that require grad."""
    if isinstance(obj, np.ndarray):
        if is_float_array(obj):
            arr = noncontiguous(obj.astype(dtype)) if noncontig else obj.astype(dtype)
            t = lamina.from_numpy(arr) if device == "cpu" else lamina.tensor(arr, device=device)
            t.requires_grad_(True)
            if leaves is not None:
                leaves.append(t)
            return t
        return lamina.tensor(obj, device=device)
    if isinstance(obj, tuple):
        return tuple(to_lamina(o, device, leaves, noncontig, dtype) for o in obj)
    if isinstance(obj, list):
        return [to_lamina(o, device, leaves, noncontig, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: to_lamina(v, device, leaves, noncontig, dtype) for k, v in obj.items()}
    return obj


def to_torch(obj, leaves=None, dtype=np.float64):
    if isinstance(obj, np.ndarray):
        if is_float_array(obj):
            t = torch.tensor(obj.astype(dtype), requires_grad=True)
            if leaves is not None:
                leaves.append(t)
            return t
        return torch.from_numpy(obj.copy())
    if isinstance(obj, tuple):
        return tuple(to_torch(o, leaves, dtype) for o in obj)
    if isinstance(obj, list):
        return [to_torch(o, leaves, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: to_torch(v, leaves, dtype) for k, v in obj.items()}
    return obj


def flat_outputs(out):
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(flat_outputs(o))
        return res
    return [out]


def as_numpy(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return np.asarray(t.detach().cpu().array)


def call(info, sample, device="cpu", noncontig=False, dtype=np.float64):
    """Run the Lamina function on a sample; returns (leaves, outputs)."""
    leaves = []
    args = to_lamina(sample.args, device, leaves, noncontig, dtype)
    kwargs = to_lamina(sample.kwargs, device, leaves, noncontig, dtype)
    if info.random:
        lamina.manual_seed(1234)
    out = info.fn(*args, **kwargs)
    return leaves, flat_outputs(out)


def projection_weights(outputs, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(o.shape) for o in outputs]


def float_outputs(outputs):
    return [o for o in outputs if o.dtype.kind == "f"]


def scalar_loss(outputs, weights, device="cpu"):
    total = None
    for o, w in zip(outputs, weights):
        term = (o * lamina.tensor(w, dtype=o.dtype, device=device)).sum()
        total = term if total is None else total + term
    return total


def call_with(info, sample, device, values):
    """Call with the float leaves replaced by ``values`` (in order)."""
    it = iter(values)

    def sub(obj):
        if isinstance(obj, np.ndarray):
            if is_float_array(obj):
                return lamina.tensor(next(it), dtype=lamina.float64, device=device)
            return lamina.tensor(obj, device=device)
        if isinstance(obj, tuple):
            return tuple(sub(o) for o in obj)
        if isinstance(obj, list):
            return [sub(o) for o in obj]
        if isinstance(obj, dict):
            return {k: sub(v) for k, v in obj.items()}
        return obj
    args, kwargs = sub(sample.args), sub(sample.kwargs)
    if info.random:
        lamina.manual_seed(1234)
    return flat_outputs(info.fn(*args, **kwargs))


def numeric_gradient(f, values, eps=1e-6):
    grads = []
    for i, v in enumerate(values):
        g = np.zeros_like(v)
        for j in range(v.size):
            orig = v.flat[j]
            v.flat[j] = orig + eps
            up = f(values)
            v.flat[j] = orig - eps
            down = f(values)
            v.flat[j] = orig
            g.flat[j] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def assert_close(actual, expected, atol, rtol, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    if expected.dtype.kind in "biu":
        assert actual.dtype.kind == expected.dtype.kind, f"{what}: dtype {actual.dtype} vs {expected.dtype}"
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what, equal_nan=True)
