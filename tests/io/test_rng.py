"""rng_state / set_rng_state: restoring the generators reproduces the same random numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest

import lamina
import lamina.io as lio


def draws():
    return [lamina.randn(5).numpy().copy(), lamina.rand(3).numpy().copy(),
            lamina.randint(0, 100, (4,)).numpy().copy(), lamina.randperm(6).numpy().copy()]


def test_restoring_state_repeats_the_draws():
    lamina.randn(7)  # move the stream away from its seed
    state = lio.rng_state()
    first = draws()
    set_back_to = json.loads(json.dumps(state))  # JSON-able, and survives a JSON round trip
    lamina.randn(100)
    lio.set_rng_state(set_back_to)
    for a, b in zip(first, draws(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_restoring_through_a_checkpoint(tmp_path):
    lamina.manual_seed(1234)
    lamina.rand(3)
    lio.save_checkpoint(tmp_path / "r.safetensors", {"rng": lio.rng_state()})
    expected = draws()
    lamina.manual_seed(99)
    lio.set_rng_state(lio.load_checkpoint(tmp_path / "r.safetensors")["rng"])
    for a, b in zip(expected, draws(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert lamina.initial_seed() == 1234


@pytest.mark.parametrize("state", [
    {"generators": {}}, [1, 2], {"seed": 1, "generators": {"cpu": {"bogus": 1}}},
    {"seed": 1, "generators": {"tpu": {}}}, {"seed": 1, "generators": {"cpu": 5}},
], ids=["no-seed", "not-dict", "bad-generator", "bad-device", "generator-not-dict"])
def test_bad_state_is_a_value_error_and_changes_nothing(state):
    lamina.manual_seed(5)
    lamina.rand(2)
    saved = lio.rng_state()
    with pytest.raises(ValueError, match="set_rng_state"):
        lio.set_rng_state(state)
    assert lio.rng_state() == saved


@pytest.mark.skipif(lamina.cuda_is_available(), reason="checks resuming a GPU run without a GPU")
def test_missing_cuda_generator_is_skipped_with_a_warning():
    state = lio.rng_state()
    state["generators"]["cuda:0"] = {"device": "cuda:0", "seed": 1, "draws": 3}
    expected = draws()
    with pytest.warns(UserWarning, match="no cuda:0 here"):
        lio.set_rng_state(state)
    for a, b in zip(expected, draws(), strict=True):
        np.testing.assert_array_equal(a, b)
