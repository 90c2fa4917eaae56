"""Every optimiser against torch.optim: same float64 problem, same numbers after 20 steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lamina
from lamina.optim import flat
from tests.optim.configs import CASES
from tests.optim.problem import Trainer, assert_close, loss, values

STEPS = 20


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_matches_torch(ours, theirs, kwargs):
    mine = Trainer("lamina", ours, kwargs).train(STEPS)
    ref = Trainer("torch", theirs, kwargs).train(STEPS)
    assert_close(mine.params, ref.params)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_matches_torch_when_some_params_miss_steps(ours, theirs, kwargs):
    # b1 never gets a grad (skipped every step, splitting the flat run); the 0-d scale only on
    # odd steps, so its step count falls behind the others'.
    def skip_at(step):
        return (1, 4) if step % 2 == 0 else (1,)

    mine = Trainer("lamina", ours, kwargs, skip_at=skip_at).train(STEPS)
    ref = Trainer("torch", theirs, kwargs, skip_at=skip_at).train(STEPS)
    assert_close(mine.params, ref.params)
    assert mine.params[1].grad is None
    assert set(mine.opt.state_dict()["state"]) == set(ref.opt.state_dict()["state"])


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_matches_torch_with_parameters_split_across_chunks(monkeypatch, ours, theirs, kwargs):
    # 5-element CPU chunks: the (4, 3) weight spans three chunks, small ones share a chunk.
    monkeypatch.setattr(flat, "CPU_CHUNK", 5)
    mine = Trainer("lamina", ours, kwargs, skip_at=lambda step: (4,) if step % 3 else ()).train(STEPS)
    ref = Trainer("torch", theirs, kwargs, skip_at=lambda step: (4,) if step % 3 else ()).train(STEPS)
    assert mine.opt._buckets[0][0].chunk == 5
    assert_close(mine.params, ref.params)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_add_param_group_mid_run_matches_torch(ours, theirs, kwargs):
    extra = np.linspace(-1, 1, 6).reshape(2, 3)
    runs = []
    for framework, make in (("lamina", lambda: lamina.nn.Parameter(lamina.tensor(extra.copy()))),
                            ("torch", lambda: torch.tensor(extra.copy(), requires_grad=True))):
        t = Trainer(framework, ours if framework == "lamina" else theirs, kwargs).train(3)
        p = make()
        t.opt.add_param_group({"params": [p], "lr": kwargs["lr"] * 0.3})
        for _ in range(4):
            t.opt.zero_grad()
            (loss(t.params, t.x, t.y) + (p * p * p).sum() * 0.1).backward()
            t.opt.step()
        runs.append(t.params + [p])
    assert_close(*runs)


@pytest.mark.parametrize("ours, theirs, kwargs", [c for c in CASES if c.id.endswith("(lr=0.05)") or
                                                  c.id in ("Adadelta(lr=1.0)", "RMSprop(lr=0.01)",
                                                           "Adagrad(lr=0.1)", "SGD(lr=0.1)")])
def test_float32_matches_torch(ours, theirs, kwargs):
    rng = np.random.default_rng(7)
    start = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (3,), ())]
    target = [rng.standard_normal(a.shape).astype(np.float32) for a in start]
    runs = []
    for lib, cls in ((lamina, ours), (torch, theirs)):
        params = [lamina.nn.Parameter(lamina.tensor(a.copy())) if lib is lamina else
                  torch.tensor(a.copy(), requires_grad=True) for a in start]
        goal = [lib.tensor(a) for a in target]
        opt = cls(params, **kwargs)
        for _ in range(10):
            opt.zero_grad()
            sum((((p - g) ** 2) * (p * p + 1)).sum() for p, g in zip(params, goal)).backward()
            opt.step()
        runs.append(params)
    for a, b in zip(*runs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("ours, theirs, kwargs", [c for c in CASES if c.values[0].__name__ in
                                                  ("SGD", "Adam", "AdamW", "RMSprop")])
def test_compiled_kernels_give_the_numpy_rules_bits(monkeypatch, ours, theirs, kwargs):
    from lamina import kernels
    if not kernels.enabled():
        pytest.skip("compiled kernels are off (LAMINA_KERNELS=0 or no Numba)")

    def run():
        return values(Trainer("lamina", ours, kwargs, skip_at=lambda s: (4,) if s % 2 else ())
                      .train(STEPS).params)

    monkeypatch.setattr(flat, "CPU_CHUNK", 7)  # chunks that cut parameters, as large models do
    with_kernels = run()
    # only the update rules fall back to NumPy: the model's ops keep their kernels in both runs
    for name in ("sgd_update", "adam_update", "rmsprop_update"):
        monkeypatch.setattr(kernels, name, lambda *args, **kwargs: False)
    without = run()
    for a, b in zip(with_kernels, without):
        np.testing.assert_array_equal(a, b)
