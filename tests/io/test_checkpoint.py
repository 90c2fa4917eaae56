"""save_checkpoint / load_checkpoint: nested training state round trips exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy

import lamina
import lamina.io as lio
from tests.conftest import DEVICES
from tests.io.helpers import assert_same_state


def training_state():
    w, b = lamina.randn(4, 3), lamina.randn(4)
    return {
        "model": {"fc.weight": w, "fc.bias": b, "bn.num_batches_tracked": lamina.tensor(7)},
        "optimizer": {  # the shape of a PyTorch optimizer state_dict
            "state": {0: {"step": lamina.tensor(12.0), "exp_avg": lamina.zeros(4, 3), "exp_avg_sq": lamina.ones(4, 3)},
                      1: {"step": lamina.tensor(12.0), "exp_avg": lamina.zeros(4), "exp_avg_sq": lamina.ones(4)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                              "amsgrad": False, "foreach": None, "params": [0, 1]}],
        },
        "scheduler": {"last_epoch": 3, "base_lrs": [0.1], "_last_lr": [0.025], "milestones": {30: 1, 80: 2}},
        "epoch": 3, "step": 1200, "best_loss": float("inf"), "worst": float("-inf"), "undefined": float("nan"),
        "big": 2 ** 100, "negative_big": -(2 ** 70), "name": "run-ünï\n\"quoted\"", "nothing": None,
        "flags": (True, False), "nested": [[{"a": [1, (2, 3)], "b": {}}], [], ()],
        "numpy": {"f32": np.float32(0.1), "f64": np.float64(1 / 3), "i64": np.int64(-5),
                  "u64": np.uint64(2 ** 64 - 1), "b": np.bool_(True), "inf": np.float32("inf"),
                  "bf16": lamina.bfloat16.type(1.5), "array": np.arange(6).reshape(2, 3)},
        "mixed_keys": {1: "int", "1": "str", (2, "x"): "tuple", 2.5: "float", None: "none", False: "bool"},
        "rng": lio.rng_state(),
    }


def test_nested_state_round_trips_exactly(tmp_path):
    state = training_state()
    lio.save_checkpoint(tmp_path / "ckpt.safetensors", state)
    back = lio.load_checkpoint(tmp_path / "ckpt.safetensors")
    assert_same_state(state, back)
    assert isinstance(back["model"]["fc.weight"], lamina.Tensor)
    assert isinstance(back["numpy"]["array"], np.ndarray)


def test_scalar_values_keep_exact_value_and_type(tmp_path):
    state = {"x": [0.1, 1e308, 5e-324, -0.0, 2 ** 63, 2 ** 64 + 1, np.float32(3.4e38), np.int8(-128)]}
    lio.save_checkpoint(tmp_path / "s.safetensors", state)
    back = lio.load_checkpoint(tmp_path / "s.safetensors")["x"]
    assert_same_state(state["x"], back)
    assert str(back[3]) == "-0.0"


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_come_back_on_device(tmp_path, device):
    lio.save_checkpoint(tmp_path / "d.safetensors", {"w": lamina.ones(2, device=device), "a": np.ones(2)})
    back = lio.load_checkpoint(tmp_path / "d.safetensors", device=device)
    assert back["w"].device == lamina.Device(device)
    assert isinstance(back["a"], np.ndarray)


def test_tensor_stored_twice_is_written_once_and_comes_back_shared(tmp_path):
    w = lamina.randn(3)
    lio.save_checkpoint(tmp_path / "t.safetensors", {"encoder": {"embed": w}, "decoder": {"embed": w}})
    assert list(lio.load(tmp_path / "t.safetensors")) == ["encoder/embed"]
    back = lio.load_checkpoint(tmp_path / "t.safetensors")
    assert back["encoder"]["embed"] is back["decoder"]["embed"]


def test_colliding_paths_stay_distinct(tmp_path):
    state = {"a/b": lamina.ones(1), "a": {"b": lamina.zeros(1)}, "tensor": lamina.full((1,), 2.0)}
    lio.save_checkpoint(tmp_path / "c.safetensors", state)
    assert_same_state(state, lio.load_checkpoint(tmp_path / "c.safetensors"))


def test_tensor_at_top_level(tmp_path):
    t = lamina.randn(2)
    lio.save_checkpoint(tmp_path / "t.safetensors", t)
    assert_same_state(t, lio.load_checkpoint(tmp_path / "t.safetensors"))


def test_metadata_records_versions_and_is_standard_json(tmp_path):
    lio.save_checkpoint(tmp_path / "m.safetensors", {"best": float("nan"), "t": lamina.ones(1)})
    meta = lio.read_metadata(tmp_path / "m.safetensors")
    assert meta["lamina.checkpoint_version"] == str(lio.FORMAT_VERSION)
    assert meta["lamina.version"] == lamina.__version__
    json.loads(meta["lamina.state"], parse_constant=pytest.fail)  # no NaN/Infinity literals


@pytest.mark.parametrize("value", [object(), {"x": {1, 2}}, [b"bytes"], {lamina.ones(1): 1},
                                   {"c": np.complex64(1j)}, {"x": np.zeros(2, dtype=object)}],
                         ids=["object", "set", "bytes", "tensor-key", "complex", "object-array"])
def test_unsupported_values_raise_before_touching_the_file(tmp_path, value):
    p = tmp_path / "u.safetensors"
    lio.save_checkpoint(p, {"ok": 1})
    with pytest.raises(TypeError, match="save_checkpoint"):
        lio.save_checkpoint(p, value)
    assert lio.load_checkpoint(p) == {"ok": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["u.safetensors"]


def test_plain_safetensors_file_is_not_a_checkpoint(tmp_path):
    lio.save({"w": lamina.ones(2)}, tmp_path / "weights.safetensors")
    with pytest.raises(lio.CheckpointError, match=r"weights\.safetensors.*not a Lamina checkpoint"):
        lio.load_checkpoint(tmp_path / "weights.safetensors")


def _forged(path, metadata, tensors=None):
    safetensors.numpy.save_file(tensors or {"w": np.zeros(2, np.float32)}, path, metadata=metadata)


def test_future_format_version_is_refused(tmp_path):
    p = tmp_path / "future.safetensors"
    _forged(p, {"lamina.checkpoint_version": str(lio.FORMAT_VERSION + 1), "lamina.version": "9.0",
                "lamina.state": "null"})
    with pytest.raises(lio.CheckpointError, match=r"future\.safetensors.*format version 2.*Lamina 9\.0.*upgrade"):
        lio.load_checkpoint(p)


@pytest.mark.parametrize("state_json, match", [
    ("{not json", "malformed"),
    ('{"$tensor": "missing"}', "'missing' that is not in the file"),
    ('{"$unknown": 1}', "unexpected JSON value"),
    ('{"$dict": [[[1], 2]]}', "not hashable"),
    ('{"$scalar": ["int8", 1000]}', "malformed"),
    ('{"$scalar": ["object", 1]}', "unexpected JSON value"),
    ('{"$scalar": ["float32", [1, 2]]}', "unexpected JSON value"),
    ("[" * 100000 + "]" * 100000, "malformed"),
], ids=["bad-json", "missing-tensor", "unknown-tag", "unhashable-key", "scalar-overflow",
        "object-scalar", "array-scalar", "deep"])
def test_malformed_structure_is_a_checkpoint_error(tmp_path, state_json, match):
    p = tmp_path / "bad.safetensors"
    _forged(p, {"lamina.checkpoint_version": "1", "lamina.state": state_json})
    with pytest.raises(lio.CheckpointError, match=match) as info:
        lio.load_checkpoint(p)
    assert "bad.safetensors" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("meta, match", [
    ({"lamina.checkpoint_version": "one", "lamina.state": "null"}, "not a number"),
    ({"lamina.checkpoint_version": "1"}, "lacks 'lamina.state'"),
])
def test_malformed_version_metadata(tmp_path, meta, match):
    _forged(tmp_path / "v.safetensors", meta)
    with pytest.raises(lio.CheckpointError, match=match):
        lio.load_checkpoint(tmp_path / "v.safetensors")


def test_bad_device_is_refused_before_reading(tmp_path):
    for loader in (lio.load, lio.load_checkpoint):
        with pytest.raises(ValueError, match="unknown device type 'tpu'") as info:
            loader(tmp_path / "missing.safetensors", device="tpu")
        assert not isinstance(info.value, lio.CheckpointError)
