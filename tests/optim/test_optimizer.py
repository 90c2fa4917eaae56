"""The Optimizer base: param groups, zero_grad, skipping, no graph, errors, and the flat layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lamina
from lamina import optim
from lamina.nn import Parameter
from tests.optim.problem import Trainer, assert_close


def _param(*shape, dtype=lamina.float64):
    return Parameter(lamina.randn(*shape, dtype=dtype))


def _quadratic_step(opt, params):
    opt.zero_grad()
    sum(((p * p).sum() for p in params[1:]), (params[0] * params[0]).sum()).backward()
    opt.step()


# ---------------------------------------------------------------- groups and defaults
def test_defaults_merge_into_groups_in_torch_order():
    a, b = _param(2), _param(3)
    opt = optim.Adam([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1)
    ref = torch.optim.Adam([{"params": [torch.zeros(2)]}, {"params": torch.zeros(3), "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["params"][0] is b
    for g, rg in zip(opt.param_groups, ref.param_groups):
        assert [k for k in g if k in rg] == [k for k in rg if k in g]


def test_add_param_group_then_step_updates_it():
    a, b = _param(2), _param(3)
    opt = optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.0})
    before = b.detach().numpy().copy()
    _quadratic_step(opt, [a, b])
    np.testing.assert_array_equal(b.detach().numpy(), before)  # lr 0 for its group
    assert len(opt.param_groups) == 2


def test_duplicate_parameter_across_groups_is_an_error():
    a = _param(2)
    with pytest.raises(ValueError, match="SGD: some parameters appear in more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)


def test_duplicate_parameter_in_a_group_is_an_error():
    a = _param(2)
    with pytest.raises(ValueError, match="Adam: a parameter appears twice in one param group"):
        optim.Adam([a, a])


def test_non_leaf_and_non_tensor_parameters_are_errors():
    a = _param(2)
    with pytest.raises(ValueError, match="RMSprop: can't optimize a non-leaf Tensor"):
        optim.RMSprop([a * 2])
    with pytest.raises(TypeError, match="Adagrad: can only optimize Tensors, but parameter 0 of the "
                                        "group is a ndarray"):
        optim.Adagrad([np.zeros(2)])
    with pytest.raises(ValueError, match="AdamW: got an empty parameter list"):
        optim.AdamW([])
    with pytest.raises(TypeError, match="SGD: parameters must be in an ordered collection"):
        optim.SGD({a}, lr=0.1)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD([p], lr=-1.0), "SGD: invalid learning rate -1.0; expected >= 0"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "SGD: Nesterov momentum requires a momentum"),
    (lambda p: optim.Adam([p], betas=(1.0, 0.999)), "Adam: invalid beta parameter at index 0 1.0"),
    (lambda p: optim.AdamW([p], eps=-1e-8), "AdamW: invalid epsilon -1e-08"),
    (lambda p: optim.RMSprop([p], alpha=-0.5), "RMSprop: invalid alpha -0.5"),
    (lambda p: optim.Adagrad([p], lr_decay=-1), "Adagrad: invalid lr_decay -1"),
    (lambda p: optim.Adam([{"params": [p], "weight_decay": -0.1}]), "Adam: invalid weight_decay -0.1"),
])
def test_bad_hyper_parameters_name_the_optimizer_and_value(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make(_param(2))


# ---------------------------------------------------------------- zero_grad, skipping, graphs
def test_zero_grad_sets_to_none_by_default():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)
    (a * a).sum().backward()
    opt.zero_grad()
    assert a.grad is None


def test_zero_grad_in_place_keeps_the_grad_tensor():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)
    (a * a).sum().backward()
    grad = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is grad
    np.testing.assert_array_equal(grad.numpy(), np.zeros(3))


def test_parameter_without_grad_is_skipped():
    a, b = _param(3), _param(2)
    opt = optim.Adam([a, b], lr=0.1, weight_decay=0.5)  # decay would move b if it were stepped
    before = b.detach().numpy().copy()
    (a * a).sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), before)
    assert list(opt.state_dict()["state"]) == [0]
    assert b._version[0] == 0 and a._version[0] == 1


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_step_builds_no_graph_and_bumps_versions(cls):
    params = [_param(3, 2), _param(2)]
    opt = cls(params, lr=0.1)
    _quadratic_step(opt, params)
    for p in params:
        assert p._node is None and p.grad_fn is None and p.is_leaf and p.requires_grad
        assert p._version[0] == 1
    assert all(s["step"]._node is None for s in opt.state.values() if "step" in s)


def test_step_returns_the_closure_loss_computed_with_grad_on():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    with lamina.no_grad():
        loss = opt.step(closure)
    assert loss.item() > 0


def test_stale_saved_values_are_detected_after_a_step():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)
    (a * a).sum().backward()
    y = (a * a).sum()  # saves a's array for backward
    opt.step()
    with pytest.raises(RuntimeError):
        y.backward()


# ---------------------------------------------------------------- the flat layout
def test_parameters_become_views_of_one_buffer_per_device_and_dtype():
    a, b, c = _param(3, 2), _param(4), _param(5, dtype=lamina.float32)
    values_before = [p.detach().numpy().copy() for p in (a, b, c)]
    optim.Adam([a, b, c])
    assert a.array.base is b.array.base is not None
    assert c.array.base is not None and c.array.base is not a.array.base
    for p, v in zip((a, b, c), values_before):
        np.testing.assert_array_equal(p.detach().numpy(), v)
        assert p.array.flags.c_contiguous


def test_mixed_dtypes_in_one_group_match_torch():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(3), rng.standard_normal((2, 2)).astype(np.float32),
              rng.standard_normal(4)]
    mine = [Parameter(lamina.tensor(a)) for a in arrays]
    ref = [torch.tensor(a, requires_grad=True) for a in arrays]
    opt = optim.Adam(mine, lr=0.1, amsgrad=True)
    ref_opt = torch.optim.Adam(ref, lr=0.1, amsgrad=True)
    assert len(opt._buckets[0]) == 2  # float64 and float32
    for _ in range(5):
        for params, o in ((mine, opt), (ref, ref_opt)):
            o.zero_grad()
            for k, p in enumerate(params):  # one backward per parameter: no mixed-dtype ops
                (p * p * (k + 1.0)).sum().backward()
            o.step()
    for k, (a, b) in enumerate(zip(mine, ref)):
        assert a.dtype == arrays[k].dtype
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5)


def test_in_place_writes_to_parameters_are_seen():
    kwargs = dict(lr=0.05)
    mine = Trainer("lamina", optim.Adam, kwargs).train(3)
    ref = Trainer("torch", torch.optim.Adam, kwargs).train(3)
    with lamina.no_grad():
        mine.params[0].copy_(lamina.ones(4, 3, dtype=lamina.float64))
    mine.params[3].array[...] = 2.0
    with torch.no_grad():
        ref.params[0].copy_(torch.ones(4, 3))
        ref.params[3][...] = 2.0
    assert_close(mine.train(3).params, ref.train(3).params)


def test_rebinding_parameter_data_is_noticed_at_the_next_step():
    kwargs = dict(lr=0.05, momentum=0.9)
    mine = Trainer("lamina", optim.SGD, kwargs).train(3)
    ref = Trainer("torch", torch.optim.SGD, kwargs).train(3)
    new = np.full((3, 2), 0.25)
    mine.params[2].array = new.copy()
    ref.params[2].data = torch.tensor(new)
    mine.train(3)
    ref.train(3)
    assert_close(mine.params, ref.params)
    assert mine.params[2].array.base is mine.params[3].array.base


def test_changing_dtype_after_state_exists_is_an_error():
    t = Trainer("lamina", optim.Adam, dict(lr=0.1)).train(1)
    t.params[1].array = t.params[1].array.astype(np.float32)
    with pytest.raises(ValueError, match=r"Adam: parameter 1 changed from \(3,\) float64 on cpu to "
                                         r"\(3,\) float32 on cpu after its optimizer state"):
        t.train(1)


def test_wrong_grad_shape_is_an_error():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)
    a.grad = lamina.zeros(4, dtype=lamina.float64)
    with pytest.raises(ValueError, match=r"SGD: parameter 0 has shape \(3,\) on cpu but its grad has "
                                         r"shape \(4,\)"):
        opt.step()


def test_repr_lists_groups_like_torch():
    text = repr(optim.SGD([_param(2)], lr=0.1))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.1\n" in text



def test_casting_a_parameter_before_any_state_rebuilds_the_layout():
    a, b = _param(3), _param(2)
    opt = optim.Adam([a, b], lr=0.1)
    a.array = a.array.astype(np.float32)
    (a * a).sum().backward()
    (b * b).sum().backward()
    opt.step()
    assert a.dtype == np.float32 and a.array.base is not None
    assert len(opt._buckets[0]) == 2
    assert opt.state[a]["exp_avg"].dtype == np.float32


def test_a_parameter_shared_by_two_optimizers_stays_correct():
    # Each optimiser re-adopts the parameter when it finds p.data pointing at the other's buffer.
    arrays = [np.linspace(-1, 1, 6).reshape(3, 2), np.linspace(0, 2, 3)]
    mine = [Parameter(lamina.tensor(a)) for a in arrays]
    ref = [torch.tensor(a, requires_grad=True) for a in arrays]
    opts = [optim.SGD(mine, lr=0.1, momentum=0.9), optim.Adam(mine[:1], lr=0.05)]
    ref_opts = [torch.optim.SGD(ref, lr=0.1, momentum=0.9), torch.optim.Adam(ref[:1], lr=0.05)]
    for step in range(6):
        for params, o in ((mine, opts[step % 2]), (ref, ref_opts[step % 2])):
            o.zero_grad()
            ((params[0] * params[0]).sum() * params[1].sum()).backward()
            o.step()
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)


def test_parameters_in_shared_memory_stay_there():
    from lamina import multiprocessing as mp
    model = mp.module_share_memory(lamina.nn.Sequential(lamina.nn.Linear(3, 4), lamina.nn.Tanh(),
                                                        lamina.nn.Linear(4, 2)))
    params = list(model.parameters())
    reference = [Parameter(lamina.tensor(p.detach().numpy().copy())) for p in params]
    # Groups that cut the shared tiling: a run of two, then two apart (each in place alone).
    opts = [optim.Adam([{"params": [params[0], params[1]]}, {"params": [params[3], params[2]]}],
                       lr=0.1),
            optim.Adam([{"params": reference[:2]}, {"params": [reference[3], reference[2]]}], lr=0.1)]
    x = lamina.randn(5, 3, dtype=lamina.float32)
    for _ in range(3):
        for ps, opt in zip((params, reference), opts):
            opt.zero_grad()
            h = lamina.nn.functional.linear(x, ps[0], ps[1]).tanh()
            (lamina.nn.functional.linear(h, ps[2], ps[3]) ** 2).sum().backward()
            opt.step()
    assert all(mp.is_shared(p) for p in params)
    assert len(opts[0]._buckets[1]) == 2
    for p, r in zip(params, reference):
        np.testing.assert_allclose(p.detach().numpy(), r.detach().numpy(), rtol=1e-6)


def test_named_parameters_keep_their_names_like_torch():
    model = lamina.nn.Linear(3, 2)
    ref = torch.nn.Linear(3, 2)
    opt = optim.AdamW(model.named_parameters(), lr=0.1)
    ref_opt = torch.optim.AdamW(ref.named_parameters(), lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(model.weight), id(model.bias)]
    groups, ref_groups = opt.state_dict()["param_groups"], ref_opt.state_dict()["param_groups"]
    assert groups[0]["param_names"] == ref_groups[0]["param_names"]
    assert list(groups[0]) == [k for k in ref_groups[0] if k not in ("foreach", "capturable",
                                                                     "differentiable", "fused")]
    with pytest.raises(ValueError, match="AdamW: give every parameter of a group with a name"):
        optim.AdamW([("w", _param(2)), _param(3)])
