"""Optimisers written the PyTorch way, subclassing ``lamina.optim.Optimizer``: a Lion against a
NumPy reference, and a hand-written Adam variant run twice (on lamina and on torch) from one body."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import lamina
from lamina import optim
from tests.optim.problem import (
    Trainer,
    assert_close,
    data,
    initial_arrays,
    numpy_loss_and_grads,
    values,
)


class Lion(lamina.optim.Optimizer):
    """Lion (Chen et al., 2023), as a user would write it for PyTorch."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @lamina.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with lamina.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = lamina.zeros_like(p)
                exp_avg = state["exp_avg"]
                beta1, beta2 = group["betas"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = exp_avg.clone().lerp_(grad, 1 - beta1).sign()
                p.add_(update, alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
        return loss


def lion_reference(arrays, steps, lr, betas, weight_decay, lr_of_group):
    """Lion in plain NumPy on the shared problem; ``lr_of_group[i]`` scales parameter i's lr."""
    x, y = data()
    params = [a.copy() for a in arrays]
    exp_avgs = [np.zeros_like(a) for a in arrays]
    beta1, beta2 = betas
    for _ in range(steps):
        _, grads = numpy_loss_and_grads(params, x, y)
        for p, g, m, scale in zip(params, grads, exp_avgs, lr_of_group):
            step_lr = lr * scale
            p *= 1 - step_lr * weight_decay
            p -= step_lr * np.sign(beta1 * m + (1 - beta1) * g)
            m *= beta2
            m += (1 - beta2) * g
    return params


@pytest.mark.parametrize("kwargs", [dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.5)])
def test_lion_matches_numpy_reference(kwargs):
    mine = Trainer("lamina", Lion, kwargs).train(12)
    ref = lion_reference(initial_arrays(), 12, kwargs["lr"], kwargs.get("betas", (0.9, 0.99)),
                         kwargs.get("weight_decay", 0.0), lr_of_group=[1, 1, 0.5, 0.5, 0.5])
    for i, (a, b) in enumerate(zip(values(mine.params), ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"parameter {i}")
    assert float(mine.opt.state[mine.params[0]]["exp_avg"].abs().sum()) > 0


def test_user_optimizer_leaves_parameters_in_place_and_has_torch_state():
    t = Trainer("lamina", Lion, dict(lr=0.01))
    arrays = [p.array for p in t.params]
    t.train(2)
    assert all(p.array is a for p, a in zip(t.params, arrays))  # no flat buffers for own steps
    assert t.opt._buckets == []
    state = t.opt.state
    assert type(state).__name__ == "defaultdict" and state.default_factory is dict
    assert [id(p) for p in state] == [id(p) for p in t.params]
    assert t.opt.defaults == dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.0)


def test_lion_works_with_lr_schedulers_and_edited_groups():
    t = Trainer("lamina", Lion, dict(lr=0.01))
    sched = optim.lr_scheduler.StepLR(t.opt, step_size=1, gamma=0.5)
    before = values(t.params)
    t.train(1)
    sched.step()
    assert t.opt.param_groups[0]["lr"] == 0.005
    moved = [np.abs(a - b).max() for a, b in zip(values(t.params), before)]
    t.opt.param_groups[1]["lr"] = 0.0
    frozen = values(t.params)[2:]
    t.train(1)
    for a, b in zip(values(t.params)[2:], frozen):
        np.testing.assert_array_equal(a, b)
    assert moved[0] == pytest.approx(0.01)  # a Lion step moves every coordinate by exactly lr


def make_hand_adam(base, no_grad, zeros_like):
    """A hand-written Adam variant (decoupled decay, gradient clamping, a recorded last update,
    ``reset_moments``) over framework primitives, so the very same body runs on torch."""

    class HandAdam(base):
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                     clip=None):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          clip=clip))

        @no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                lr, (beta1, beta2) = group["lr"], group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad
                    if group["clip"] is not None:
                        grad.clamp_(-group["clip"], group["clip"])
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = zeros_like(p)
                        state["exp_avg_sq"] = zeros_like(p)
                        state["last_update"] = zeros_like(p)
                    state["step"] += 1
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                    state["last_update"].copy_(p)
                    p.mul_(1 - lr * group["weight_decay"])
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    bias_correction1 = 1 - beta1 ** state["step"]
                    bias_correction2 = 1 - beta2 ** state["step"]
                    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                    p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
                    state["last_update"].sub_(p).neg_()

        def reset_moments(self):
            for s in self.state.values():
                s["exp_avg"].zero_()

    return HandAdam


LaminaHandAdam = make_hand_adam(lamina.optim.Optimizer, lamina.no_grad, lamina.zeros_like)
TorchHandAdam = make_hand_adam(torch.optim.Optimizer, torch.no_grad, torch.zeros_like)
HAND_KWARGS = [dict(lr=0.05), dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1, clip=0.05)]


def _assert_states_close(mine, ref):
    assert mine.keys() == ref.keys()
    for k, entry in mine.items():
        assert list(entry) == list(ref[k])
        for key, value in entry.items():
            theirs = ref[k][key]
            if isinstance(value, lamina.Tensor):
                np.testing.assert_allclose(value.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-12)
            else:
                assert value == theirs


@pytest.mark.parametrize("kwargs", HAND_KWARGS)
def test_hand_written_adam_matches_the_same_code_on_torch(kwargs):
    mine = Trainer("lamina", LaminaHandAdam, kwargs).train(5)
    ref = Trainer("torch", TorchHandAdam, kwargs).train(5)
    mine.opt.reset_moments()
    ref.opt.reset_moments()
    mine.train(5)
    ref.train(5)
    assert_close(mine.params, ref.params)
    _assert_states_close(mine.opt.state_dict()["state"], ref.opt.state_dict()["state"])
    last = mine.opt.state[mine.params[0]]["last_update"].numpy()
    assert np.abs(last).max() > 0


@pytest.mark.parametrize("kwargs", HAND_KWARGS)
def test_hand_written_adam_state_dict_round_trip_and_torch_state(kwargs):
    straight = Trainer("lamina", LaminaHandAdam, kwargs).train(8)
    first = Trainer("lamina", LaminaHandAdam, kwargs).train(4)
    saved, at_4 = first.opt.state_dict(), values(first.params)
    assert saved["state"][0]["step"] == 4 and saved["param_groups"][1]["params"] == [2, 3, 4]
    resumed = Trainer("lamina", LaminaHandAdam, kwargs, arrays=at_4)
    resumed.opt.load_state_dict(copy.deepcopy(saved))
    assert resumed.opt.state[resumed.params[0]]["exp_avg"] is not saved["state"][0]["exp_avg"]
    resumed.train(4)
    assert_close(resumed.params, straight.params, rtol=0, atol=0)

    ref = Trainer("torch", TorchHandAdam, kwargs).train(4)
    from_torch = Trainer("lamina", LaminaHandAdam, kwargs, arrays=values(ref.params))
    from_torch.opt.load_state_dict(ref.opt.state_dict())
    assert isinstance(from_torch.opt.state[from_torch.params[3]]["exp_avg_sq"], lamina.Tensor)
    assert_close(from_torch.train(4).params, ref.train(4).params)


def test_an_optimizer_without_step_says_so():
    class NoStep(lamina.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    opt = NoStep([lamina.nn.Parameter(lamina.zeros(2))])
    with pytest.raises(NotImplementedError, match="NoStep: a subclass of Optimizer must define step"):
        opt.step()


# The tensor methods hand-written optimisers are made of, each against torch (results may differ
# from torch's in the last bit where torch fuses a multiply-add).
PRIMITIVES = {
    "add_(alpha)": lambda x, y, z: x.add_(y, alpha=-0.3),
    "add_(scalar)": lambda x, y, z: x.add_(0.5),
    "mul_": lambda x, y, z: x.mul_(0.9).mul_(y),
    "addcmul_": lambda x, y, z: x.addcmul_(y, z, value=0.1),
    "addcdiv_": lambda x, y, z: x.addcdiv_(y, z, value=-0.1),
    "lerp_": lambda x, y, z: x.lerp_(y, 0.1),
    "lerp_(weight > 0.5)": lambda x, y, z: x.lerp_(y, 0.7),
    "sqrt": lambda x, y, z: z.sqrt(),
    "clamp_": lambda x, y, z: x.clamp_(-0.5, 0.5),
    "clamp_(max)": lambda x, y, z: x.clamp_(max=0.2),
    "copy_": lambda x, y, z: x.copy_(y),
    "zero_": lambda x, y, z: x.zero_(),
    "sign": lambda x, y, z: x.sign(),
}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_in_place_primitives_match_torch(name):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    c = np.abs(rng.standard_normal((3, 4))) + 0.5
    fn = PRIMITIVES[name]
    x = lamina.tensor(a.copy())
    out = fn(x, lamina.tensor(b), lamina.tensor(c))
    expected = fn(torch.tensor(a.copy()), torch.tensor(b), torch.tensor(c)).numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14, atol=1e-15)
    if name.endswith("_") or "_(" in name:
        assert out is x
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-14, atol=1e-15)
