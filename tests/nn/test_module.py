"""Module: registration, walking, modes, devices/dtypes, state dicts, hooks and printing."""
from __future__ import annotations

import numpy as np
import pytest

import lamina
import lamina.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8))
        self.heads = nn.ModuleList([nn.Linear(8, 2), nn.Linear(8, 3)])
        self.extra = nn.ModuleDict({"proj": nn.Linear(8, 1)})
        self.scale = nn.Parameter(lamina.ones(1))
        self.register_buffer("steps", lamina.zeros(()))
        self.register_buffer("cache", lamina.zeros(2), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        h = self.features(x)
        return [head(h) * self.scale for head in self.heads]


def test_registration_and_walking():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                     "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias",
                     "extra.proj.weight", "extra.proj.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "steps", "cache", "features.2.running_mean", "features.2.running_var", "features.2.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["features", "heads", "extra"]
    assert len(list(net.modules())) == 10
    assert net.note == "plain attribute"
    assert "cache" not in net.state_dict() and "steps" in net.state_dict()


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2


def test_reassignment_moves_between_kinds():
    net = Net()
    net.scale = None
    assert net.scale is None and "scale" not in dict(net.named_parameters())
    with pytest.raises(TypeError, match="parameter"):
        net.scale = lamina.ones(1)
    net.features = nn.Identity()
    assert "features.0.weight" not in net.state_dict()


def test_train_eval_and_zero_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    out = net(lamina.randn(5, 4))
    (out[0].sum() + out[1].sum()).backward()
    assert all(p.grad is not None for p in net.parameters() if p is not net.extra.proj.weight
               and p is not net.extra.proj.bias)
    net.zero_grad(set_to_none=False)
    assert all(p.grad is None or not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_dtype_keeps_parameter_identity():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == lamina.float64 for p in net.parameters())
    assert net.features[2].num_batches_tracked.dtype == lamina.int64
    with pytest.raises(TypeError, match="floating"):
        net.to(lamina.int32)


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=k)
    sd = a.state_dict()
    sd.pop("heads.0.weight")
    sd["bogus"] = lamina.zeros(1)
    sd["heads.1.bias"] = lamina.zeros(7)
    before = b.heads[1].weight.detach().numpy().copy()
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: heads.0.weight" in msg and "unexpected keys: bogus" in msg
    assert "heads.1.bias: checkpoint (7,) vs model (3,)" in msg
    np.testing.assert_array_equal(b.heads[1].weight.detach().numpy(), before)  # nothing written on error
    sd.pop("heads.1.bias")
    sd["heads.1.bias"] = a.state_dict()["heads.1.bias"]
    res = b.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["heads.0.weight"] and res.unexpected_keys == ["bogus"]


def test_state_dict_is_detached_copy_of_values():
    lin = nn.Linear(2, 2)
    sd = lin.state_dict()
    assert not sd["weight"].requires_grad
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    seen = []
    h1 = lin.register_forward_pre_hook(lambda m, args: seen.append(("pre", args[0].shape)))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    out = lin(lamina.ones(3, 2))
    assert seen == [("pre", (3, 2))] and not out.detach().numpy().any()
    h1.remove()
    h2.remove()
    assert lin(lamina.ones(3, 2)).detach().numpy().any()


def test_apply_and_requires_grad():
    net = Net()
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and "Linear" in visited
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_repr_shows_tree_and_counts():
    text = repr(Net())
    assert "(features): Sequential(" in text
    assert "(0): Linear(in_features=4, out_features=8, bias=True)  # 40 params" in text
    assert text.rstrip().endswith("parameters")


def test_sequential_and_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU)
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(nn.Linear(3, 1))
    assert seq(lamina.ones(4, 2)).shape == (4, 1)
    ml = nn.ModuleList()
    ml.append(nn.Linear(1, 1)).extend([nn.ReLU()])
    ml.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Tanh", "Linear", "ReLU"]
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.ReLU()
    assert list(md.keys()) == ["a", "b"] and "a" in md and len(md) == 2


def test_module_without_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_layer_input_errors_name_the_layer():
    with pytest.raises(ValueError, match="linear: input of shape \\(2, 3\\)"):
        nn.Linear(4, 2)(lamina.ones(2, 3))
    with pytest.raises(ValueError, match="Conv2d: input of shape \\(1, 2, 5, 5\\) has 2 channels"):
        nn.Conv2d(3, 4, 3)(lamina.ones(1, 2, 5, 5))
    with pytest.raises(ValueError, match="BatchNorm2d: expected 4 channels"):
        nn.BatchNorm2d(4)(lamina.ones(2, 3, 2, 2))
    with pytest.raises(ValueError, match="layer_norm"):
        nn.LayerNorm(5)(lamina.ones(2, 4))


def test_replacing_a_submodule_keeps_its_place():
    import torch
    ours = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    ref = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    for m in (ours, ref):
        setattr(m, "0", type(m[0])(2, 5))
    assert [type(c).__name__ for c in ours.children()] == [type(c).__name__ for c in ref.children()]
    assert list(dict(ours.named_children())) == list(dict(ref.named_children())) == ["0", "1", "2"]
