"""Datasets and collation: TensorDataset, Subset, ConcatDataset, random_split, default_collate."""
import collections

import numpy as np
import pytest

import lamina
from lamina.data import (
    ConcatDataset,
    Dataset,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i * i


def test_tensor_dataset_items_and_batches():
    x = lamina.tensor(np.arange(12, dtype=np.float32).reshape(6, 2))
    y = lamina.tensor(np.arange(6))
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi.numpy(), [8, 9])
    assert yi.item() == 4 and yi.dtype == lamina.int64
    xb, yb = ds.__getitems__(np.array([5, 0, 3]))
    np.testing.assert_array_equal(xb.numpy(), x.numpy()[[5, 0, 3]])
    np.testing.assert_array_equal(yb.numpy(), [5, 0, 3])


def test_tensor_dataset_accepts_numpy_and_rejects_other_types():
    ds = TensorDataset(np.zeros((3, 2)))
    assert isinstance(ds[0][0], lamina.Tensor)
    with pytest.raises(TypeError, match="TensorDataset: argument 1 is a list"):
        TensorDataset(np.zeros(3), [1, 2, 3])


def test_tensor_dataset_shape_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"TensorDataset.*same size in dim 0.*\(10, 3\), \(9,\)"):
        TensorDataset(lamina.zeros(10, 3), lamina.zeros(9))
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorDataset()


def test_subset_maps_indices_and_uses_the_fast_path_when_it_can():
    ds = TensorDataset(lamina.tensor(np.arange(10)))
    sub = Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[0][0].item() == 7
    (batch,) = sub.__getitems__(np.array([2, 0]))
    np.testing.assert_array_equal(batch.numpy(), [5, 7])
    plain = Subset(Squares(10), [3, 4])
    np.testing.assert_array_equal(plain.__getitems__(np.array([1, 0])).numpy(), [16, 9])
    with pytest.raises(ValueError, match="Subset: indices must be 1-d"):
        Subset(ds, [[1, 2]])


def test_concat_dataset_and_add():
    both = Squares(3) + Squares(2)
    assert isinstance(both, ConcatDataset)
    assert [both[i] for i in range(len(both))] == [0, 1, 4, 0, 1]
    assert both[-1] == 1
    with pytest.raises(IndexError, match="ConcatDataset: index 5 is out of range for 5 samples"):
        both[5]


def test_random_split_sizes_cover_everything_once():
    parts = random_split(Squares(10), [3, 7], generator=lamina.Generator(seed=1))
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(np.concatenate([p.indices for p in parts]).tolist()) == list(range(10))


def test_random_split_fractions_spread_the_remainder_like_pytorch():
    parts = random_split(Squares(10), [0.33, 0.33, 0.34])
    assert [len(p) for p in parts] == [4, 3, 3]


def test_random_split_is_reproducible_with_a_seed():
    a = random_split(Squares(20), [0.5, 0.5], generator=lamina.Generator(seed=7))
    b = random_split(Squares(20), [0.5, 0.5], generator=lamina.Generator(seed=7))
    c = random_split(Squares(20), [0.5, 0.5], generator=lamina.Generator(seed=8))
    assert a[0].indices.tolist() == b[0].indices.tolist()
    assert a[0].indices.tolist() != c[0].indices.tolist()
    lamina.manual_seed(3)
    d = random_split(Squares(20), [10, 10])
    lamina.manual_seed(3)
    assert random_split(Squares(20), [10, 10])[1].indices.tolist() == d[1].indices.tolist()


def test_random_split_rejects_bad_lengths():
    with pytest.raises(ValueError, match=r"random_split: lengths \[3, 3\] sum to 6 but the dataset has 10"):
        random_split(Squares(10), [3, 3])
    with pytest.raises(ValueError, match="non-negative ints or fractions summing to 1"):
        random_split(Squares(10), [0.5, 0.2])


def test_default_collate_numbers_arrays_tensors():
    ints = default_collate([1, 2, 3])
    assert ints.dtype == lamina.int64 and ints.numpy().tolist() == [1, 2, 3]
    assert default_collate([0.5, 1.0]).dtype == lamina.float32
    assert default_collate([True, False]).dtype == lamina.bool
    assert default_collate([np.float64(1), np.float64(2)]).dtype == lamina.float64
    arrays = default_collate([np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    assert arrays.shape == (2, 2, 3)
    tensors = default_collate([lamina.ones(4), lamina.zeros(4)])
    assert tensors.shape == (2, 4) and not tensors.requires_grad
    assert default_collate(["a", "b"]) == ["a", "b"]


def test_default_collate_recurses_into_tuples_lists_dicts():
    Pair = collections.namedtuple("Pair", "x y")
    batch = default_collate([{"x": np.ones(2), "meta": (1, [2.0, "s"])},
                             {"x": np.zeros(2), "meta": (3, [4.0, "t"])}])
    assert batch["x"].shape == (2, 2)
    ids, (values, names) = batch["meta"]
    assert isinstance(batch["meta"], tuple) and isinstance(batch["meta"][1], list)
    assert ids.numpy().tolist() == [1, 3] and values.numpy().tolist() == [2.0, 4.0]
    assert names == ["s", "t"]
    pairs = default_collate([Pair(1, 2), Pair(3, 4)])
    assert isinstance(pairs, Pair) and pairs.y.numpy().tolist() == [2, 4]


def test_default_collate_errors_are_clear():
    with pytest.raises(ValueError, match=r"different shapes: sample 0 has \(2,\), sample 1 has \(3,\)"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="different lengths"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object()])
