"""state_dict / load_state_dict: PyTorch's layout, round trips mid-run, and clear mismatch errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lamina
from lamina import optim
from tests.optim.configs import CASES
from tests.optim.problem import Trainer, assert_close, values

TORCH_ONLY_KEYS = {"foreach", "capturable", "differentiable", "fused"}


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_layout_matches_torch(ours, theirs, kwargs):
    mine = Trainer("lamina", ours, kwargs).train(3).opt.state_dict()
    ref = Trainer("torch", theirs, kwargs).train(3).opt.state_dict()
    assert [g["params"] for g in mine["param_groups"]] == [g["params"] for g in ref["param_groups"]]
    for g, rg in zip(mine["param_groups"], ref["param_groups"]):
        assert set(g) == set(rg) - TORCH_ONLY_KEYS
        assert all(g[k] == rg[k] for k in g)
    assert mine["state"].keys() == ref["state"].keys()
    for i, entry in mine["state"].items():
        assert list(entry) == list(ref["state"][i]), f"state keys of parameter {i}"
        for key, value in entry.items():
            np.testing.assert_allclose(value.numpy(), ref["state"][i][key].numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=f"state[{i}][{key!r}]")


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_round_trip_mid_run_continues_identically(ours, theirs, kwargs):
    straight = Trainer("lamina", ours, kwargs).train(20)
    first = Trainer("lamina", ours, kwargs).train(10)
    saved, at_10 = copy.deepcopy(first.opt.state_dict()), values(first.params)
    first.train(3)  # the saved copy must not follow later steps

    resumed = Trainer("lamina", ours, kwargs, arrays=at_10)  # a fresh optimizer
    resumed.opt.load_state_dict(saved)
    resumed.train(10)
    assert_close(resumed.params, straight.params, rtol=0, atol=0)


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_loads_torch_state_and_continues_like_torch(ours, theirs, kwargs):
    ref = Trainer("torch", theirs, kwargs).train(10)
    mine = Trainer("lamina", ours, kwargs, arrays=values(ref.params))
    mine.opt.load_state_dict(ref.opt.state_dict())
    assert_close(mine.train(10).params, ref.train(10).params)


def test_state_tensors_share_memory_with_the_optimizer():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1)).train(2)
    exp_avg = t.opt.state_dict()["state"][0]["exp_avg"]
    before = exp_avg.numpy().copy()
    t.train(1)
    assert not np.array_equal(exp_avg.numpy(), before)
    assert t.opt.state[t.params[0]]["exp_avg"].shape == t.params[0].shape


def test_fresh_adagrad_has_state_for_every_parameter_like_torch():
    mine = Trainer("lamina", optim.Adagrad, dict(lr=0.1, initial_accumulator_value=0.5))
    ref = Trainer("torch", torch.optim.Adagrad, dict(lr=0.1, initial_accumulator_value=0.5))
    sd, rsd = mine.opt.state_dict(), ref.opt.state_dict()
    assert sd["state"].keys() == rsd["state"].keys()
    assert float(sd["state"][2]["step"]) == 0.0
    np.testing.assert_array_equal(sd["state"][2]["sum"].numpy(), rsd["state"][2]["sum"].numpy())


def test_sgd_without_momentum_keeps_no_state():
    assert Trainer("lamina", optim.SGD, dict(lr=0.1)).train(2).opt.state_dict()["state"] == {}


def test_loaded_hyper_parameters_replace_the_groups():
    src = Trainer("lamina", optim.SGD, dict(lr=0.1, momentum=0.9)).train(2)
    src.opt.param_groups[1]["lr"] = 0.123
    dst = Trainer("lamina", optim.SGD, dict(lr=0.5, momentum=0.9))
    params = dst.opt.param_groups[1]["params"]
    dst.opt.load_state_dict(src.opt.state_dict())
    assert dst.opt.param_groups[1]["lr"] == 0.123
    assert dst.opt.param_groups[1]["params"] is params


def test_adamw_stays_decoupled_when_loading_adam_state():
    adam = Trainer("lamina", optim.Adam, dict(lr=0.1, weight_decay=0.1)).train(1)
    adamw = Trainer("lamina", optim.AdamW, dict(lr=0.1))
    adamw.opt.load_state_dict(adam.opt.state_dict())
    assert all(g["decoupled_weight_decay"] for g in adamw.opt.param_groups)


def _sgd_state():
    return Trainer("lamina", optim.SGD, dict(lr=0.1, momentum=0.9)).train(2).opt.state_dict()


def test_mismatched_group_count_is_an_error():
    p = lamina.nn.Parameter(lamina.zeros(3))
    with pytest.raises(ValueError, match="SGD.load_state_dict: the loaded state has 2 parameter "
                                         "groups, this optimizer has 1"):
        optim.SGD([p], lr=0.1).load_state_dict(_sgd_state())


def test_mismatched_group_size_is_an_error():
    t = Trainer("lamina", optim.SGD, dict(lr=0.1, momentum=0.9))
    t.opt.add_param_group({"params": [lamina.nn.Parameter(lamina.zeros(1))]})
    sd = _sgd_state()
    sd["param_groups"].append({**sd["param_groups"][1], "params": [5, 6]})
    with pytest.raises(ValueError, match="parameter group 2 has 2 parameters in the loaded state, "
                                         "1 here"):
        t.opt.load_state_dict(sd)


def test_mismatched_state_shape_is_an_error_and_changes_nothing():
    t = Trainer("lamina", optim.SGD, dict(lr=0.1, momentum=0.9)).train(1)
    before = t.opt.state_dict()
    sd = _sgd_state()
    sd["param_groups"][0]["lr"] = 9.0
    sd["state"][3]["momentum_buffer"] = lamina.zeros(7)
    with pytest.raises(ValueError, match=r"'momentum_buffer' of parameter 3 has shape \(7,\), the "
                                         r"parameter has shape \(2,\)"):
        t.opt.load_state_dict(sd)
    assert t.opt.param_groups[0]["lr"] == 0.1
    assert t.opt.state_dict()["state"].keys() == before["state"].keys()


def test_unknown_state_key_is_an_error():
    sd = _sgd_state()
    sd["state"][0]["exp_avg"] = sd["state"][0]["momentum_buffer"]
    t = Trainer("lamina", optim.SGD, dict(lr=0.1, momentum=0.9))
    with pytest.raises(ValueError, match="unknown state 'exp_avg' for parameter 0; SGD keeps "
                                         "momentum_buffer"):
        t.opt.load_state_dict(sd)


def test_not_a_state_dict_is_an_error():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1))
    with pytest.raises(ValueError, match="Adam.load_state_dict: expected a dict with 'state'"):
        t.opt.load_state_dict({"state": {}})
