"""Files interoperate with PyTorch's safetensors both ways, bfloat16 included."""
from __future__ import annotations

import numpy as np
import pytest

import lamina
import lamina.io as lio

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")

PAIRS = [  # (lamina dtype, torch dtype, integer view of the same width for bit comparison)
    (lamina.float16, torch.float16, torch.int16), (lamina.float32, torch.float32, torch.int32),
    (lamina.float64, torch.float64, torch.int64), (lamina.bfloat16, torch.bfloat16, torch.int16),
    (lamina.int8, torch.int8, None), (lamina.int16, torch.int16, None),
    (lamina.int32, torch.int32, None), (lamina.int64, torch.int64, None),
    (lamina.uint8, torch.uint8, None), (lamina.bool_, torch.bool, None),
]


def bits_of_torch(t, as_int) -> np.ndarray:
    return (t.view(as_int) if as_int is not None else t).numpy()


def bits_of_lamina(t) -> np.ndarray:
    a = t.numpy()
    return a.view(f"i{a.itemsize}") if a.dtype.kind == "f" or a.dtype == lamina.bfloat16 else a


@pytest.mark.parametrize("ldtype, tdtype, as_int", PAIRS, ids=[str(p[0]) for p in PAIRS])
def test_lamina_file_loads_in_torch(tmp_path, ldtype, tdtype, as_int):
    values = np.arange(-6, 6).reshape(3, 4) * (0.37 if ldtype.kind == "f" or ldtype == lamina.bfloat16 else 1)
    t = lamina.tensor(values, dtype=ldtype)
    lio.save({"w": t, "wT": t.transpose(0, 1), "scalar": t[1, 2]}, tmp_path / "l.safetensors")
    back = st_torch.load_file(tmp_path / "l.safetensors")
    assert back["w"].dtype == tdtype and tuple(back["w"].shape) == (3, 4)
    np.testing.assert_array_equal(bits_of_torch(back["w"], as_int), bits_of_lamina(t))
    np.testing.assert_array_equal(bits_of_torch(back["wT"], as_int), bits_of_lamina(t).T)
    assert back["scalar"].shape == ()
    np.testing.assert_array_equal(bits_of_torch(back["scalar"], as_int), bits_of_lamina(t)[1, 2])


@pytest.mark.parametrize("ldtype, tdtype, as_int", PAIRS, ids=[str(p[0]) for p in PAIRS])
def test_torch_file_loads_in_lamina(tmp_path, ldtype, tdtype, as_int):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(4, 5, generator=g, dtype=torch.float64) * 50).to(tdtype)
    st_torch.save_file({"w": t, "empty": t[:0], "scalar": t[0, 0].clone()}, tmp_path / "t.safetensors",
                       metadata={"format": "pt"})
    back = lio.load(tmp_path / "t.safetensors")
    assert back["w"].dtype == ldtype and back["w"].shape == (4, 5)
    np.testing.assert_array_equal(bits_of_lamina(back["w"]), bits_of_torch(t, as_int))
    assert back["empty"].shape == (0, 5) and back["empty"].dtype == ldtype
    assert back["scalar"].shape == ()
    np.testing.assert_array_equal(bits_of_lamina(back["scalar"]), bits_of_torch(t[0, 0], as_int))
    assert lio.read_metadata(tmp_path / "t.safetensors") == {"format": "pt"}


def test_checkpoint_tensors_readable_by_any_safetensors_reader(tmp_path):
    w = lamina.randn(2, 3)
    lio.save_checkpoint(tmp_path / "c.safetensors", {"model": {"w": w}, "epoch": 1})
    back = st_torch.load_file(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(back["model/w"].numpy(), w.numpy())
