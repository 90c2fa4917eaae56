"""Every LR scheduler against torch.optim.lr_scheduler: the lrs written into the optimiser."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import lamina
from lamina import optim
from lamina.nn import Parameter
from lamina.optim import lr_scheduler as sched
from tests.optim.problem import Trainer, assert_close

STEPS = 30
LRS = (0.1, 0.02)  # two param groups


def _optimizers(name, **kwargs):
    """The same two-group optimiser in lamina and torch (their params never get grads)."""
    mine = getattr(optim, name)([{"params": [Parameter(lamina.zeros(2))], "lr": lr} for lr in LRS],
                                **kwargs)
    ref = getattr(torch.optim, name)([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                                      for lr in LRS], **kwargs)
    return mine, ref


def _values(opt, keys):
    """Per group, the values of ``keys`` ("betas" read as beta1)."""
    return [[g[k][0] if k == "betas" else g[k] for k in keys] for g in opt.param_groups]


def _trace(opt, scheduler, steps, metrics=None, keys=("lr",)):
    """Group values after construction and after each of ``steps`` scheduler steps."""
    seen = [_values(opt, keys)]
    for i in range(steps):
        opt.step()
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[i])
        seen.append(_values(opt, keys))
    return seen


def _close(a, b):
    np.testing.assert_allclose(np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-12, atol=0)


def _same_schedule(make, optimizer="SGD", steps=STEPS, keys=("lr",)):
    mine_opt, ref_opt = _optimizers(optimizer)
    mine = make(sched, mine_opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = make(torch.optim.lr_scheduler, ref_opt)
        ref_trace = _trace(ref_opt, ref, steps, keys=keys)
    _close(_trace(mine_opt, mine, steps, keys=keys), ref_trace)
    _close(mine.get_last_lr(), ref.get_last_lr())
    return mine


SCHEDULES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=12, eta_min=0.001),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=8),
    "LinearLR-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=10),
    "OneCycleLR-cos": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=STEPS + 1),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(
        o, max_lr=0.8, epochs=4, steps_per_epoch=8, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10.0, final_div_factor=100.0),
    "SequentialLR-warmup-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=5), m.CosineAnnealingLR(o, T_max=20)],
        milestones=[5]),
    "SequentialLR-three": lambda m, o: m.SequentialLR(
        o, [m.ExponentialLR(o, gamma=0.8), m.StepLR(o, step_size=3), m.LinearLR(o, 0.5, 1.0, 4)],
        milestones=[6, 15]),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_torch(name):
    _same_schedule(SCHEDULES[name])


@pytest.mark.parametrize("optimizer, key", [("SGD", "momentum"), ("RMSprop", "momentum"),
                                            ("Adam", "betas"), ("AdamW", "betas")])
def test_one_cycle_cycles_momentum_like_torch(optimizer, key):
    _same_schedule(lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=STEPS, three_phase=True),
                   optimizer=optimizer, steps=STEPS - 1, keys=("lr", key))


def test_one_cycle_past_total_steps_is_an_error():
    opt, _ = _optimizers("SGD")
    s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=2)
    s.step()
    s.step()
    with pytest.raises(ValueError, match="OneCycleLR: tried to step 3 times; total_steps is 2"):
        s.step()


def test_one_cycle_needs_momentum_or_betas():
    opt, _ = _optimizers("Adagrad")
    with pytest.raises(ValueError, match="OneCycleLR: cycle_momentum needs an optimizer with "
                                         "momentum or betas; Adagrad has neither"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10)


PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.89999, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75,
                   0.69, 0.69, 0.69, 0.69, 0.69, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.4, 0.4,
                   0.4, 0.4, 0.4]


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(patience=2, factor=0.5),
    dict(patience=1, factor=0.5, cooldown=2, threshold_mode="abs", threshold=0.005),
    dict(mode="max", patience=1, factor=0.2, min_lr=[0.01, 0.001]),
    dict(mode="max", patience=0, threshold_mode="abs", threshold=0.0, min_lr=0.005, eps=1e-3),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    mine_opt, ref_opt = _optimizers("SGD")
    mine = sched.ReduceLROnPlateau(mine_opt, **kwargs)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs)
    _close(_trace(mine_opt, mine, STEPS, PLATEAU_METRICS), _trace(ref_opt, ref, STEPS, PLATEAU_METRICS))
    assert (mine.best, mine.num_bad_epochs, mine.cooldown_counter) == \
        (ref.best, ref.num_bad_epochs, ref.cooldown_counter)


def test_reduce_on_plateau_takes_a_tensor_metric():
    opt, _ = _optimizers("SGD")
    s = sched.ReduceLROnPlateau(opt, patience=0)
    s.step(lamina.tensor(1.0))
    s.step(lamina.tensor(2.0))
    assert s.get_last_lr() == [pytest.approx(0.01), pytest.approx(0.002)]


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "OneCycleLR-cos",
                                  "SequentialLR-warmup-cosine"])
def test_state_dict_round_trip_continues_identically(name):
    straight_opt, _ = _optimizers("SGD")
    straight = SCHEDULES[name](sched, straight_opt)
    expected = _trace(straight_opt, straight, 20)[10:]

    first_opt, _ = _optimizers("SGD")
    first = SCHEDULES[name](sched, first_opt)
    _trace(first_opt, first, 10)
    saved_sched = copy.deepcopy(first.state_dict())
    saved_opt = copy.deepcopy(first_opt.state_dict())

    opt, _ = _optimizers("SGD")
    resumed = SCHEDULES[name](sched, opt)  # built first: its constructor writes the lr
    opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    _close(_trace(opt, resumed, 10), expected)


def test_reduce_on_plateau_state_round_trip():
    opt, _ = _optimizers("SGD")
    s = sched.ReduceLROnPlateau(opt, patience=1, mode="max")
    for m in PLATEAU_METRICS[:8]:
        s.step(m)
    other = sched.ReduceLROnPlateau(_optimizers("SGD")[0])
    other.load_state_dict(s.state_dict())
    assert (other.mode, other.mode_worse, other.best, other.patience) == ("max", -np.inf, s.best, 1)


def test_scheduler_errors():
    opt, _ = _optimizers("SGD")
    with pytest.raises(TypeError, match="StepLR: expected a lamina.optim.Optimizer, got SGD"):
        sched.StepLR(_optimizers("SGD")[1], step_size=2)
    with pytest.raises(ValueError, match="LinearLR: start_factor must be in"):
        sched.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: factor must be < 1.0"):
        sched.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="SequentialLR: expects one milestone fewer"):
        sched.SequentialLR(opt, [sched.StepLR(opt, 2), sched.StepLR(opt, 3)], milestones=[])
    other, _ = _optimizers("SGD")
    with pytest.raises(ValueError, match=r"SequentialLR: scheduler 0 \(StepLR\) belongs to a "
                                         "different optimizer"):
        sched.SequentialLR(opt, [sched.StepLR(other, 2)], milestones=[])
    with pytest.raises(KeyError, match="param group 0 has no 'initial_lr'"):
        sched.StepLR(_optimizers("SGD")[0], step_size=2, last_epoch=3)


@pytest.mark.parametrize("opt_name, kwargs, make", [
    ("SGD", dict(lr=0.1), lambda m, o: m.OneCycleLR(o, max_lr=[0.2, 0.1], total_steps=20)),
    ("Adam", dict(lr=0.05), lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=20,
                                                     anneal_strategy="linear")),
    ("AdamW", dict(lr=0.05), lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=4), m.CosineAnnealingLR(o, T_max=16)],
        milestones=[4])),
    ("RMSprop", dict(lr=0.01, momentum=0.5), lambda m, o: m.StepLR(o, step_size=5, gamma=0.5)),
])
def test_scheduled_training_matches_torch(opt_name, kwargs, make):
    mine = Trainer("lamina", getattr(optim, opt_name), kwargs)
    ref = Trainer("torch", getattr(torch.optim, opt_name), kwargs)
    mine_sched, ref_sched = make(sched, mine.opt), make(torch.optim.lr_scheduler, ref.opt)
    for _ in range(19):
        mine.train(1)
        mine_sched.step()
        ref.train(1)
        ref_sched.step()
    assert_close(mine.params, ref.params)
