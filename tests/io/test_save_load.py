"""lamina.io.save / load / read_metadata: every dtype, odd shapes and layouts, metadata, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import lamina
import lamina.io as lio
from tests.conftest import DEVICES
from tests.io.helpers import assert_bits_equal

DTYPES = [lamina.float16, lamina.float32, lamina.float64, lamina.bfloat16, lamina.int8,
          lamina.int16, lamina.int32, lamina.int64, lamina.uint8, lamina.bool_]


def sample(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == lamina.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.asarray(rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype))
    return np.asarray(rng.standard_normal(shape) * 100).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(3, 5), (), (0,), (2, 0, 3), (7,)], ids=str)
def test_round_trip_every_dtype_and_shape(tmp_path, dtype, shape):
    t = lamina.from_numpy(sample(dtype, shape))
    lio.save({"t": t}, tmp_path / "a.safetensors")
    back = lio.load(tmp_path / "a.safetensors")["t"]
    assert isinstance(back, lamina.Tensor) and back.device == lamina.Device("cpu")
    assert_bits_equal(back, t)


def test_special_float_values_survive(tmp_path):
    a = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40, np.finfo(np.float32).max], dtype=np.float32)
    lio.save({"a": a, "b": a.astype(lamina.bfloat16)}, tmp_path / "f.safetensors")
    back = lio.load(tmp_path / "f.safetensors")
    assert_bits_equal(back["a"], a)
    assert_bits_equal(back["b"], a.astype(lamina.bfloat16))


@pytest.mark.parametrize("view", [
    lambda a: a.T, lambda a: a[:, ::2], lambda a: a[::-1], lambda a: a[1:, 1:3], lambda a: a.T[::-2],
], ids=["transpose", "step", "negative-stride", "slice", "transpose-negative-step"])
def test_non_contiguous_saved_as_its_elements(tmp_path, view):
    base = np.arange(40, dtype=np.float32).reshape(5, 8)
    v = view(base)
    assert not v.flags.c_contiguous
    lio.save({"array": v, "tensor": lamina.from_numpy(v)}, tmp_path / "v.safetensors")
    back = lio.load(tmp_path / "v.safetensors")
    assert_bits_equal(back["array"], np.ascontiguousarray(v))
    assert_bits_equal(back["tensor"], np.ascontiguousarray(v))


def test_non_contiguous_lamina_view(tmp_path):
    t = lamina.randn(4, 6)
    v = t.transpose(0, 1)
    lio.save({"v": v}, tmp_path / "v.safetensors")
    assert_bits_equal(lio.load(tmp_path / "v.safetensors")["v"], np.ascontiguousarray(t.numpy().T))


def test_big_endian_array_saved_by_value(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    lio.save({"a": a}, tmp_path / "be.safetensors")
    back = lio.load(tmp_path / "be.safetensors")["a"]
    assert back.dtype == lamina.int32
    np.testing.assert_array_equal(back.numpy(), a)


def test_tensor_requiring_grad_is_saved_detached(tmp_path):
    w = lamina.randn(3, requires_grad=True)
    lio.save({"w": w * 2}, tmp_path / "g.safetensors")
    back = lio.load(tmp_path / "g.safetensors")["w"]
    assert not back.requires_grad
    np.testing.assert_array_equal(back.numpy(), (w * 2).detach().numpy())


def test_loaded_tensors_are_writable_and_independent(tmp_path):
    lio.save({"a": lamina.zeros(3), "b": lamina.zeros(3)}, tmp_path / "w.safetensors")
    back = lio.load(tmp_path / "w.safetensors")
    back["a"].add_(1)
    np.testing.assert_array_equal(back["a"].numpy(), [1, 1, 1])
    np.testing.assert_array_equal(back["b"].numpy(), [0, 0, 0])


def test_many_tensors_and_names(tmp_path):
    sd = {f"layers.{i}.{kind}": lamina.randn(i + 1, 2) for i in range(5) for kind in ("weight", "bias")}
    sd["weird name/with ünïcode"] = lamina.ones(1)
    lio.save(sd, tmp_path / "m.safetensors")
    back = lio.load(tmp_path / "m.safetensors")
    assert set(back) == set(sd)
    for k in sd:
        assert_bits_equal(back[k], sd[k])


def test_empty_state_dict(tmp_path):
    lio.save({}, tmp_path / "e.safetensors")
    assert lio.load(tmp_path / "e.safetensors") == {}


def test_metadata_round_trip(tmp_path):
    meta = {"format": "pt", "note": "ünïcode\nand newlines", "": "empty key"}
    lio.save({"x": lamina.ones(2)}, tmp_path / "m.safetensors", metadata=meta)
    assert lio.read_metadata(tmp_path / "m.safetensors") == meta
    lio.save({"x": lamina.ones(2)}, tmp_path / "n.safetensors")
    assert lio.read_metadata(tmp_path / "n.safetensors") == {}


def test_path_may_be_str(tmp_path):
    lio.save({"x": lamina.ones(2)}, str(tmp_path / "s.safetensors"))
    assert_bits_equal(lio.load(str(tmp_path / "s.safetensors"))["x"], lamina.ones(2))


@pytest.mark.parametrize("device", DEVICES)
def test_load_onto_device(tmp_path, device):
    t = lamina.randn(2, 3, device=device)
    lio.save({"t": t}, tmp_path / "d.safetensors")
    back = lio.load(tmp_path / "d.safetensors", device=device)["t"]
    assert back.device == lamina.Device(device)
    assert_bits_equal(back, t)


@pytest.mark.parametrize("state_dict, metadata, error, match", [
    ([lamina.ones(1)], None, TypeError, "expected a dict"),
    ({1: lamina.ones(1)}, None, TypeError, "names must be strings"),
    ({"x": [1.0, 2.0]}, None, TypeError, "'x' is a list"),
    ({"x": np.zeros(2, dtype=np.complex64)}, None, TypeError, "'x' has dtype complex64"),
    ({"x": np.zeros(2, dtype=np.uint32)}, None, TypeError, "'x' has dtype uint32"),
    ({"__metadata__": lamina.ones(1)}, None, ValueError, "reserved"),
    ({"x": lamina.ones(1)}, {"a": 1}, TypeError, "metadata must be a dict of str to str"),
], ids=["not-dict", "int-name", "list-value", "complex", "uint32", "reserved-name", "metadata"])
def test_bad_input_raises_before_touching_the_file(tmp_path, state_dict, metadata, error, match):
    p = tmp_path / "x.safetensors"
    with pytest.raises(error, match=match):
        lio.save(state_dict, p, metadata=metadata)
    assert list(tmp_path.iterdir()) == []
