"""lamina.save / lamina.load (lamina.io.objects) against torch.save / torch.load semantics."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import lamina
import lamina.nn as nn
from lamina.io import CheckpointError, load_checkpoint, read_metadata
from lamina.io.header import read_header
from lamina.io.objects import DEVICES_KEY, load, save
from lamina.io.serialization import read_safetensors, write_safetensors

from .helpers import assert_same_state, raw

torch = pytest.importorskip("torch")


def small_net():
    lamina.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def to_plain(x):
    """Python structure with tensors (of either library) as NumPy arrays, for comparisons."""
    if isinstance(x, lamina.Tensor):
        return ("tensor", raw(x).tolist(), str(raw(x).dtype))
    if isinstance(x, torch.Tensor):
        return ("tensor", x.numpy().tolist(), str(x.numpy().dtype))
    if isinstance(x, dict):
        return ("dict", [(to_plain(k), to_plain(v)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [to_plain(v) for v in x])
    if isinstance(x, float) and math.isnan(x):
        return ("nan",)
    return (type(x).__name__, x)


# ---------------------------------------------------------------- model and optimiser state


def test_model_state_dict_round_trip_loads_into_a_new_model(tmp_path):
    net = small_net()
    net.train()
    net(lamina.randn(2, 1, 6, 6))  # moves BatchNorm's running statistics and its int64 counter
    save(net.state_dict(), tmp_path / "net.pt")
    back = load(tmp_path / "net.pt")
    assert list(back) == list(net.state_dict())
    assert_same_state(dict(net.state_dict()), back)
    assert back["1.num_batches_tracked"].dtype == lamina.int64
    fresh = small_net()
    with lamina.no_grad():
        for p in fresh.parameters():
            p.mul_(0.0)
    fresh.load_state_dict(back)
    net.eval(), fresh.eval()
    x = lamina.randn(3, 1, 6, 6)
    np.testing.assert_array_equal(raw(fresh(x)), raw(net(x)))


def train_steps(model, opt, n, seed):
    lamina.manual_seed(seed)
    for _ in range(n):
        opt.zero_grad()
        loss = model(lamina.randn(4, 1, 6, 6)).pow(2).mean()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("make", [lambda ps: lamina.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.9)),
                                  lambda ps: lamina.optim.SGD(ps, lr=1e-2, momentum=0.9)],
                         ids=["Adam", "SGD"])
def test_optimizer_state_dict_round_trip_resumes_training_exactly(tmp_path, make):
    net = small_net()
    opt = make(net.parameters())
    train_steps(net, opt, 2, seed=1)
    save({"model": net.state_dict(), "optimizer": opt.state_dict(), "iter_num": 2}, tmp_path / "ck.pt")

    ck = load(tmp_path / "ck.pt")
    assert ck["iter_num"] == 2
    state = ck["optimizer"]["state"]
    assert all(type(k) is int for k in state)  # int keys stay ints, as torch.load gives them
    assert isinstance(ck["optimizer"]["param_groups"][0]["params"], list)
    net2 = small_net()
    opt2 = make(net2.parameters())
    net2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["optimizer"])

    train_steps(net, opt, 2, seed=2)
    train_steps(net2, opt2, 2, seed=2)
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        np.testing.assert_array_equal(raw(p), raw(q))


def test_adam_betas_tuple_and_structure_types_match_torch(tmp_path):
    # The same Python values through torch.save/torch.load and lamina.save/lamina.load.
    def make(lib):
        t = lib.tensor([[1.5, -2.0], [0.25, 3.0]])
        return {"a": [1, 2.5, "s", None, True], "t": (1, (2, "x")), 3: {"w": t, "n": lib.tensor(7)},
                (1, "k"): [], "inf": float("inf"), "nan": float("nan"), "neg": -0.0, "big": 2**62}
    torch.save(make(torch), tmp_path / "t.pt")
    save(make(lamina), tmp_path / "l.pt")
    assert to_plain(load(tmp_path / "l.pt")) == to_plain(torch.load(tmp_path / "t.pt"))


# ---------------------------------------------------------------- shared tensors


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT models do


def test_tied_weights_are_stored_once_and_load_shared(tmp_path):
    model = Tied()
    sd = model.state_dict()
    assert sd["embed.weight"] is not sd["head.weight"]  # detached views of one parameter
    save(sd, tmp_path / "tied.pt")
    with open(tmp_path / "tied.pt", "rb") as f:
        assert len(read_header(f, tmp_path / "tied.pt").tensors) == 1
    back = load(tmp_path / "tied.pt")
    assert back["embed.weight"] is back["head.weight"]

    # torch shows the same semantics: one storage, both names
    tm = torch.nn.Embedding(10, 4)
    torch.save({"a": tm.weight.detach(), "b": tm.weight.detach()}, tmp_path / "t.pt")
    tb = torch.load(tmp_path / "t.pt")
    assert tb["a"].untyped_storage().data_ptr() == tb["b"].untyped_storage().data_ptr()

    model2 = Tied()
    model2.load_state_dict(back)
    np.testing.assert_array_equal(raw(model2.head.weight), raw(model.embed.weight))


def test_distinct_views_of_one_buffer_stay_distinct(tmp_path):
    base = lamina.arange(12, dtype=lamina.float32).reshape(3, 4)
    obj = {"row0": base[0], "row1": base[1], "all": base, "again": base, "T": base.transpose(0, 1)}
    save(obj, tmp_path / "v.pt")
    back = load(tmp_path / "v.pt")
    assert back["all"] is back["again"]
    assert back["row0"] is not back["row1"]
    assert_same_state({k: v.contiguous() for k, v in obj.items()}, back)


# ---------------------------------------------------------------- file objects and paths


def test_bytesio_round_trip_and_buffer_position(tmp_path):
    obj = {"w": lamina.randn(3, 2), "step": 4}
    buf = io.BytesIO()
    buf.write(b"prefix")
    save(obj, buf)
    buf.seek(6)
    assert_same_state(obj, load(buf))
    assert buf.read() == b""  # load consumed exactly what save wrote


def test_open_binary_files_round_trip(tmp_path):
    obj = [lamina.ones(2, dtype=lamina.bfloat16), np.arange(3, dtype=np.int16), np.float32(0.5)]
    with open(tmp_path / "f.bin", "wb") as f:
        save(obj, f)
    with open(tmp_path / "f.bin", "rb") as f:
        back = load(f)
    assert_same_state(obj, back)


def test_text_mode_files_are_refused(tmp_path):
    with open(tmp_path / "t.txt", "w") as f, pytest.raises(TypeError, match="binary mode"):
        save({"a": 1}, f)
    (tmp_path / "t.txt").write_text("hello")
    with open(tmp_path / "t.txt") as f, pytest.raises(TypeError, match="binary mode"):
        load(f)


def test_a_missing_file_is_file_not_found_as_in_torch(tmp_path):
    with pytest.raises(FileNotFoundError, match="lamina.load: no such file"):
        load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):
        torch.load(tmp_path / "missing.pt")


def test_errors_from_a_file_object_name_the_object_not_a_temporary_copy():
    with pytest.raises(CheckpointError) as e:
        load(io.BytesIO(b"\x05\x00\x00\x00\x00\x00\x00\x00{}"))
    assert "<BytesIO>" in str(e.value) and "lamina-load" not in str(e.value)


def test_file_is_a_lamina_checkpoint_and_records_devices(tmp_path):
    save({"w": lamina.zeros(2), "k": [lamina.ones(1)]}, tmp_path / "c.pt")
    assert_same_state({"w": lamina.zeros(2), "k": [lamina.ones(1)]}, load_checkpoint(tmp_path / "c.pt"))
    assert json.loads(read_metadata(tmp_path / "c.pt")[DEVICES_KEY]) == {"w": "cpu", "k/0": "cpu"}


def test_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "keep.pt"
    save({"a": lamina.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save({"a": lamina.ones(2), "bad": {1, 2}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pt"]


# ---------------------------------------------------------------- refusals


def test_whole_module_is_refused_pointing_to_state_dict(tmp_path):
    with pytest.raises(TypeError) as e:
        save(small_net(), tmp_path / "m.pt")
    msg = str(e.value)
    assert "\n" not in msg and "Sequential" in msg and "state_dict()" in msg
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(TypeError, match=r"at model.*state_dict\(\)"):
        save({"model": nn.Linear(2, 2)}, tmp_path / "m.pt")


def test_optimizer_scheduler_and_other_objects_are_refused(tmp_path):
    net = nn.Linear(2, 2)
    opt = lamina.optim.SGD(net.parameters(), lr=0.1)
    sched = lamina.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(TypeError, match=r"optimizer\.state_dict\(\)"):
        save(opt, tmp_path / "o.pt")
    with pytest.raises(TypeError, match=r"StepLR.*state_dict\(\)"):
        save({"s": sched}, tmp_path / "o.pt")
    with pytest.raises(TypeError, match=r"cannot save a set \(at x/1\)"):
        save({"x": [1, {2}]}, tmp_path / "o.pt")
    with pytest.raises(TypeError, match="dict key"):
        save({lamina.Device("cpu"): 1}, tmp_path / "o.pt")
    with pytest.raises(TypeError, match="dtype complex128"):
        save({"c": np.zeros(2, complex)}, tmp_path / "o.pt")
    with pytest.raises(TypeError, match="path or a writable"):
        save({}, 3)
    assert not (tmp_path / "o.pt").exists()


def test_sched_state_dict_saves(tmp_path):
    net = nn.Linear(2, 2)
    sched = lamina.optim.lr_scheduler.StepLR(lamina.optim.SGD(net.parameters(), lr=0.1), 1)
    save(sched.state_dict(), tmp_path / "s.pt")
    assert_same_state(sched.state_dict(), load(tmp_path / "s.pt"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_torch_save_files_get_a_conversion_hint(tmp_path, legacy):
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "t.pt")
    msg = str(e.value)
    assert "\n" not in msg and "torch.save" in msg and "never unpickles" in msg and "save_file" in msg
    with pytest.raises(CheckpointError, match="never loads anything executable"):
        load(tmp_path / "t.pt", weights_only=False)
    with open(tmp_path / "t.pt", "rb") as f, pytest.raises(CheckpointError, match="torch.save"):
        load(f)


def test_plain_safetensors_from_torch_loads_as_a_dict(tmp_path):
    from safetensors.torch import save_file
    tnet = torch.nn.Linear(3, 2)
    save_file(tnet.state_dict(), tmp_path / "m.safetensors")
    back = load(tmp_path / "m.safetensors", map_location="cpu")
    assert sorted(back) == ["bias", "weight"]
    np.testing.assert_array_equal(raw(back["weight"]), tnet.weight.detach().numpy())
    net = nn.Linear(3, 2)
    net.load_state_dict(back)
    np.testing.assert_array_equal(raw(net.bias), tnet.bias.detach().numpy())


# ---------------------------------------------------------------- map_location and weights_only


@pytest.mark.parametrize("where", ["cpu", lamina.Device("cpu"), {"cpu": "cpu"}, {"cuda:1": "cpu"},
                                   None, lambda t, loc: None, lambda t, loc: t],
                         ids=["str", "device", "dict", "dict-unused", "None", "callable-None", "callable"])
def test_map_location_forms_load_onto_the_cpu(tmp_path, where):
    obj = {"w": lamina.randn(2, 2), "shared": None}
    obj["shared"] = obj["w"]
    save(obj, tmp_path / "m.pt")
    back = load(tmp_path / "m.pt", map_location=where)
    assert back["w"].device == lamina.Device("cpu") and back["shared"] is back["w"]
    np.testing.assert_array_equal(raw(back["w"]), raw(obj["w"]))


def test_map_location_callable_sees_each_tensor_once_with_its_location(tmp_path):
    w = lamina.randn(3)
    save({"a": w, "b": w, "c": lamina.zeros(1)}, tmp_path / "m.pt")
    seen = []

    def fn(t, loc):
        seen.append((tuple(t.shape), loc))
        return t * 2

    back = load(tmp_path / "m.pt", map_location=fn)
    assert sorted(seen) == [((1,), "cpu"), ((3,), "cpu")]
    np.testing.assert_array_equal(raw(back["a"]), raw(w) * 2)
    assert back["a"] is back["b"]


def test_map_location_and_weights_only_errors(tmp_path):
    save({"a": lamina.ones(1)}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="map_location 'tpu'"):
        load(tmp_path / "m.pt", map_location="tpu")
    with pytest.raises(TypeError, match="map_location must be"):
        load(tmp_path / "m.pt", map_location=3)
    with pytest.raises(ValueError, match="map_location entry"):
        load(tmp_path / "m.pt", map_location={"cpu": "nowhere"})
    with pytest.raises(TypeError, match="returned a str"):
        load(tmp_path / "m.pt", map_location=lambda t, loc: "cpu")
    with pytest.raises(TypeError, match="weights_only"):
        load(tmp_path / "m.pt", weights_only="yes")
    with pytest.raises(TypeError, match="pickle_module"):
        load(tmp_path / "m.pt", pickle_module=None)
    with pytest.raises(TypeError, match="mmap must be"):
        load(tmp_path / "m.pt", mmap="yes")
    assert_same_state({"a": lamina.ones(1)}, load(tmp_path / "m.pt", mmap=True))
    assert_same_state({"a": lamina.ones(1)}, load(tmp_path / "m.pt", weights_only=False))


def write_with_devices(path, devices):
    """A file as lamina.save writes it, but recording other devices (no GPU needed)."""
    save({"w": lamina.ones(2), "v": lamina.zeros(1)}, path)
    arrays, metadata = read_safetensors(path)
    metadata = {k: v for k, v in metadata.items() if k != "lamina.sha256"}
    metadata[DEVICES_KEY] = json.dumps(devices)
    write_safetensors(path, arrays, metadata, "test")


@pytest.mark.skipif(lamina.cuda_is_available(), reason="checks the CPU-only behaviour")
def test_cuda_tensors_without_cuda_need_map_location(tmp_path):
    write_with_devices(tmp_path / "g.pt", {"w": "cuda:0", "v": "cpu"})
    with pytest.raises(RuntimeError, match=r"'w' \(saved on cuda:0\) would go to cuda:0 .*map_location='cpu'"):
        load(tmp_path / "g.pt")
    save({"v": lamina.zeros(1)}, tmp_path / "c.pt")
    with pytest.raises(RuntimeError, match=r"'v' \(saved on cpu\) would go to cuda:0"):
        load(tmp_path / "c.pt", map_location="cuda")
    for where in ("cpu", {"cuda:0": "cpu"}, lambda t, loc: t.cpu()):
        back = load(tmp_path / "g.pt", map_location=where)
        assert back["w"].device == lamina.Device("cpu")
    seen = []
    load(tmp_path / "g.pt", map_location=lambda t, loc: seen.append(loc) or t)
    assert sorted(seen) == ["cpu", "cuda:0"]


def test_damaged_device_record_is_a_checkpoint_error(tmp_path):
    write_with_devices(tmp_path / "d.pt", ["cuda:0"])
    with pytest.raises(CheckpointError, match="lamina.devices"):
        load(tmp_path / "d.pt")


def test_requires_grad_parameters_save_as_data(tmp_path):
    net = nn.Linear(2, 3)
    save(net.state_dict(keep_vars=True), tmp_path / "p.pt")
    back = load(tmp_path / "p.pt")
    assert not back["weight"].requires_grad
    np.testing.assert_array_equal(raw(back["weight"]), raw(net.weight))
