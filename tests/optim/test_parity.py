"""Every optimiser against torch.optim: same float64 problem, same numbers after 20 steps."""
from __future__ import annotations

import pytest

from lamina.optim import flat
from tests.optim.configs import CASES
from tests.optim.problem import Trainer, assert_close

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
