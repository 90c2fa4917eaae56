"""PyTorch's extension points on the built-in (flat) optimisers: ``optimizer.state`` as a
``defaultdict(dict)`` keyed by parameter, edits to it and to ``param_groups`` taking effect at the
next step, ``defaults``; each checked against torch doing the same edit."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

import lamina
from lamina import optim
from tests.optim.problem import Trainer, assert_close, loss

TORCH_ONLY_KEYS = {"foreach", "capturable", "differentiable", "fused"}

KINDS = [
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
]


def _pair(name, kwargs, steps=3):
    mine = Trainer("lamina", getattr(optim, name), kwargs).train(steps)
    ref = Trainer("torch", getattr(torch.optim, name), kwargs).train(steps)
    return mine, ref


def _same_edit(mine, ref, edit):
    """Apply ``edit(opt, params, lib)`` to both runs, train on, compare."""
    edit(mine.opt, mine.params, lamina)
    edit(ref.opt, ref.params, torch)
    mine.train(4)
    ref.train(4)
    assert_close(mine.params, ref.params)
    for i, entry in mine.opt.state_dict()["state"].items():
        for key, value in entry.items():
            np.testing.assert_allclose(np.asarray(value.numpy()),
                                       ref.opt.state_dict()["state"][i][key].numpy(),
                                       rtol=1e-10, atol=1e-12, err_msg=f"state[{i}][{key!r}]")


def test_state_is_a_defaultdict_keyed_by_parameter():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1))
    state = t.opt.state
    assert isinstance(state, defaultdict) and state.default_factory is dict
    assert t.params[0] not in state
    assert t.opt.state[t.params[0]] == {}
    assert t.params[0] in t.opt.state  # reading created it, as in torch
    t.train(1)
    entry = t.opt.state[t.params[0]]
    assert list(entry) == ["step", "exp_avg", "exp_avg_sq"] and float(entry["step"]) == 1.0
    assert t.opt.state is state  # one object for the optimiser's life


def test_state_tensors_are_live_views_and_user_keys_survive():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1)).train(1)
    p = t.params[2]
    t.opt.state[p]["mine"] = lamina.ones(3)
    t.opt.state[t.params[4]]["note"] = "hello"
    exp_avg = t.opt.state[p]["exp_avg"]
    before = exp_avg.numpy().copy()
    t.train(2)
    assert not np.array_equal(exp_avg.numpy(), before)  # the same memory the update writes
    assert t.opt.state[p]["mine"].numpy().tolist() == [1.0, 1.0, 1.0]
    assert t.opt.state[t.params[4]]["note"] == "hello"
    assert float(t.opt.state[p]["step"]) == 3.0
    assert "mine" not in t.opt.state_dict()["state"][2]


@pytest.mark.parametrize("name, kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_in_place_edit_of_a_state_tensor_is_seen(name, kwargs):
    key = {"SGD": "momentum_buffer", "RMSprop": "square_avg"}.get(name, "exp_avg")

    def edit(opt, params, lib):
        opt.state[params[0]][key].mul_(0.5)

    _same_edit(*_pair(name, kwargs), edit)


@pytest.mark.parametrize("name, kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_replacing_a_state_value_takes_effect_at_the_next_step(name, kwargs):
    key = {"SGD": "momentum_buffer", "RMSprop": "grad_avg"}.get(name, "exp_avg")

    def edit(opt, params, lib):
        opt.state[params[2]][key] = lib.full((3, 2), 0.25, dtype=lib.float64)
        if name != "SGD":
            opt.state[params[1]]["step"] = lib.tensor(1.0)
        if name == "NAdam":
            opt.state[params[4]]["mu_product"] = lib.tensor(0.5)

    _same_edit(*_pair(name, kwargs), edit)


@pytest.mark.parametrize("name, kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_deleting_state_starts_a_parameter_afresh(name, kwargs):
    def edit(opt, params, lib):
        del opt.state[params[0]]
        opt.state[params[3]].clear()

    _same_edit(*_pair(name, kwargs), edit)


def test_replacing_the_whole_state_resets_it_like_torch():
    def edit(opt, params, lib):
        opt.state = defaultdict(dict)

    _same_edit(*_pair("Adam", dict(lr=0.05)), edit)


def test_a_bad_state_value_is_an_error_before_anything_changes():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1)).train(1)
    before = [p.detach().numpy().copy() for p in t.params]
    t.opt.state[t.params[2]]["exp_avg"] = lamina.zeros(7)
    t.opt.zero_grad()
    with pytest.raises(ValueError, match=r"Adam.state: state 'exp_avg' has shape \(7,\), the "
                                         r"parameter has shape \(3, 2\)"):
        t.train(1)
    for p, b in zip(t.params, before):
        np.testing.assert_array_equal(p.detach().numpy(), b)


@pytest.mark.parametrize("name, kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_editing_param_groups_takes_effect_at_the_next_step(name, kwargs):
    def edit(opt, params, lib):
        opt.param_groups[0]["lr"] *= 3
        opt.param_groups[1]["my_key"] = "kept"

    mine, ref = _pair(name, kwargs)
    _same_edit(mine, ref, edit)
    assert mine.opt.state_dict()["param_groups"][1]["my_key"] == "kept"


def test_parameters_added_to_a_group_join_with_their_state_kept():
    rng = np.random.default_rng(5)
    extra = rng.standard_normal((2, 2))
    runs = []
    for lib, cls in ((lamina, optim.Adam), (torch, torch.optim.Adam)):
        t = Trainer("lamina" if lib is lamina else "torch", cls, dict(lr=0.05)).train(3)
        p = lamina.nn.Parameter(lib.tensor(extra)) if lib is lamina else \
            torch.tensor(extra, requires_grad=True)
        t.opt.param_groups[1]["params"].append(p)
        t.opt.param_groups[0]["params"].reverse()
        for _ in range(4):
            t.opt.zero_grad()
            (loss(t.params, t.x, t.y) + (p * p * p).sum()).backward()
            t.opt.step()
        runs.append(t.params + [p])
    assert_close(*runs)


def test_defaults_match_torch():
    for name in ("Adadelta", "Adamax", "NAdam", "RAdam", "LBFGS", "Adam", "SGD"):
        p = lamina.nn.Parameter(lamina.zeros(2))
        mine = getattr(optim, name)([p]).defaults if name != "SGD" else optim.SGD([p], lr=0.1).defaults
        tp = torch.zeros(2, requires_grad=True)
        ref = getattr(torch.optim, name)([tp]).defaults if name != "SGD" else \
            torch.optim.SGD([tp], lr=0.1).defaults
        assert mine == {k: v for k, v in ref.items() if k not in TORCH_ONLY_KEYS}, name
