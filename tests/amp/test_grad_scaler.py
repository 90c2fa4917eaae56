"""lamina.amp.GradScaler against torch.amp.GradScaler on the CPU, float32."""
from __future__ import annotations

import numpy as np
import pytest

import lamina
import lamina.nn as nn
from lamina.amp import GradScaler

torch = pytest.importorskip("torch")


def model_and_data(seed=0):
    lamina.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
    rng = np.random.default_rng(seed)
    batches = [(lamina.tensor(rng.standard_normal((8, 6)).astype(np.float32)),
                lamina.tensor(rng.standard_normal((8, 2)).astype(np.float32))) for _ in range(6)]
    return model, batches


def train(scaler, clip=False, poison=()):
    """Adam steps through ``scaler``; the gradient of step i is made inf when i is in ``poison``."""
    model, batches = model_and_data()
    opt = lamina.optim.Adam(model.parameters(), lr=1e-2)
    stepped = []
    for i, (x, y) in enumerate(batches):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        scaler.scale(loss).backward()
        if i in poison:
            with lamina.no_grad():
                next(model.parameters()).grad.fill_(float("inf") if i % 2 else float("nan"))
        if clip:
            scaler.unscale_(opt)
            lamina.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        before = next(model.parameters()).detach().clone()
        scaler.step(opt)
        scaler.update()
        stepped.append(not np.array_equal(before.numpy(), next(model.parameters()).detach().numpy()))
    return model, stepped


@pytest.mark.parametrize("clip", [False, True], ids=["plain", "unscale-and-clip"])
def test_power_of_two_scaling_is_exact_on_float32(clip):
    reference, _ = train(GradScaler("cpu", enabled=False), clip=clip)
    scaled, stepped = train(GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=2), clip=clip)
    assert all(stepped)
    for p, q in zip(reference.parameters(), scaled.parameters(), strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_steps_with_inf_or_nan_gradients_are_skipped_and_the_scale_backs_off():
    scaler = GradScaler("cpu", init_scale=1024.0, growth_interval=100)
    _, stepped = train(scaler, poison=(1, 4))
    assert stepped == [True, False, True, True, False, True]
    assert scaler.get_scale() == 256.0 and scaler.state_dict()["_growth_tracker"] == 1


def test_scale_schedule_matches_torch():
    ours = GradScaler("cpu", init_scale=8.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=3)
    theirs = torch.amp.GradScaler("cpu", init_scale=8.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=3)
    w = lamina.zeros(2, requires_grad=True)
    tw = torch.zeros(2, requires_grad=True)
    opt, topt = lamina.optim.SGD([w], lr=0.1), torch.optim.SGD([tw], lr=0.1)
    pattern = [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # 1: an overflowing step
    for bad in pattern:
        g = [float("inf"), 1.0] if bad else [1.0, -2.0]
        w.grad = ours.scale(lamina.tensor(g))
        tw.grad = theirs.scale(torch.tensor(g))
        r, tr = ours.step(opt), theirs.step(topt)
        assert (r is None) == (tr is None)
        ours.update(), theirs.update()
        assert ours.state_dict() == {k: (v.item() if torch.is_tensor(v) else v) for k, v in theirs.state_dict().items()}
    np.testing.assert_array_equal(w.detach().numpy(), tw.detach().numpy())


def test_scaled_outputs_and_unscaled_grads_match_torch():
    ours, theirs = GradScaler("cpu", init_scale=2.0 ** 10), torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x = np.array([0.5, -3.0, 1e-3], np.float32)
    w, tw = lamina.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    a, b = ours.scale((w * w).sum()), theirs.scale((tw * tw).sum())
    assert a.item() == b.item()
    a.backward(), b.backward()
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())
    opt, topt = lamina.optim.SGD([w], lr=1.0), torch.optim.SGD([tw], lr=1.0)
    ours.unscale_(opt), theirs.unscale_(topt)
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())
    np.testing.assert_array_equal(w.grad.numpy(), 2 * x)
    pair = ours.scale([lamina.ones(1), (lamina.ones(2, dtype=lamina.float16),)])
    assert pair[0].item() == 1024.0 and pair[1][0].dtype == lamina.float16


def test_disabled_scaler_passes_everything_through():
    scaler = GradScaler("cpu", enabled=False)
    w = lamina.ones(2, requires_grad=True)
    out = (w * 3).sum()
    assert scaler.scale(out) is out and scaler.get_scale() == 1.0 and not scaler.is_enabled()
    out.backward()
    opt = lamina.optim.SGD([w], lr=0.5)
    scaler.unscale_(opt), scaler.unscale_(opt)  # no-ops, so no "already unscaled" error
    calls = []
    assert scaler.step(opt, closure=lambda: calls.append(1) or 7.0) == 7.0 and calls == [1]
    scaler.update()
    np.testing.assert_array_equal(w.detach().numpy(), [-0.5, -0.5])
    assert scaler.state_dict() == {} == torch.amp.GradScaler("cpu", enabled=False).state_dict()
    scaler.load_state_dict({})


def test_misuse_is_refused_as_torch_refuses_it():
    scaler = GradScaler("cpu")
    w = lamina.ones(2, requires_grad=True)
    opt = lamina.optim.SGD([w], lr=0.1)
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()
    scaler.scale(w.sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already called"):
        scaler.step(opt)
    scaler.update()
    with pytest.raises(RuntimeError, match="closure"):
        scaler.step(opt, closure=lambda: 0.0)
    with pytest.raises(TypeError, match="floating-point"):
        scaler.scale(lamina.tensor([1, 2]))
    with pytest.raises(ValueError, match="a Tensor or a list/tuple"):
        scaler.scale(3.0)
    half = lamina.ones(2, dtype=lamina.float16, requires_grad=True)
    half.grad = lamina.ones(2, dtype=lamina.float16)
    with pytest.raises(ValueError, match="float16"):
        scaler.unscale_(lamina.optim.SGD([half], lr=0.1))
    for bad, match in [(dict(init_scale=0.0), "init_scale"), (dict(growth_factor=1.0), "growth_factor"),
                       (dict(backoff_factor=1.5), "backoff_factor"), (dict(growth_interval=0), "growth_interval")]:
        with pytest.raises(ValueError, match=match):
            GradScaler("cpu", **bad)
    with pytest.raises(ValueError, match="device"):
        GradScaler("tpu")


@pytest.mark.skipif(lamina.cuda_is_available(), reason="checks a machine without CUDA")
def test_cuda_scaler_without_cuda_warns_and_disables_as_torch():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = GradScaler()
    with pytest.warns(UserWarning):
        theirs = torch.amp.GradScaler()
    assert scaler.is_enabled() is theirs.is_enabled() is False


def test_state_dict_round_trips_through_lamina_save(tmp_path):
    from lamina.io.objects import load, save
    scaler = GradScaler("cpu", init_scale=64.0, growth_interval=5)
    _, _ = train(scaler, poison=(2,))
    save({"scaler": scaler.state_dict()}, tmp_path / "s.pt")
    other = GradScaler("cpu")
    other.load_state_dict(load(tmp_path / "s.pt")["scaler"])
    assert other.state_dict() == scaler.state_dict()
    assert set(scaler.state_dict()) == set(torch.amp.GradScaler("cpu").state_dict())
    with pytest.raises(RuntimeError, match="empty"):
        other.load_state_dict({})
    before = other.state_dict()
    with pytest.raises(KeyError, match="_growth_tracker"):
        other.load_state_dict({k: v for k, v in before.items() if k != "_growth_tracker"})
    assert other.state_dict() == before
    other.update(new_scale=lamina.tensor(8.0))
    assert other.get_scale() == 8.0
