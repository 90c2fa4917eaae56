"""Datasets and collation: TensorDataset, Subset, ConcatDataset, random_split, default_collate."""
import collections

import numpy as np
import pytest
import torch

import lamina
from lamina.utils.data import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)
from lamina.utils.data import default_convert


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


class Stream(IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)


def test_iterable_dataset_chains_and_refuses_indexing_and_concat():
    chained = Stream([1, 2]) + Stream([3])
    assert isinstance(chained, ChainDataset) and list(chained) == [1, 2, 3] and len(chained) == 3
    with pytest.raises(TypeError, match="Stream is an IterableDataset: iterate over it"):
        Stream([1])[0]
    with pytest.raises(TypeError, match="ConcatDataset: dataset 1 is an IterableDataset"):
        ConcatDataset([Squares(2), Stream([1])])
    with pytest.raises(TypeError, match="ChainDataset: dataset 0 is a Squares"):
        ChainDataset([Squares(2)])


@pytest.mark.filterwarnings("ignore:Length of split at index")  # PyTorch's note on empty parts
@pytest.mark.parametrize("lengths", [[0.3, 0.7], [0.33, 0.33, 0.34], [0.5, 0.5], [0.1] * 10, [1.0, 0.0]])
@pytest.mark.parametrize("n", [10, 11, 7])
def test_random_split_lengths_match_pytorch(n, lengths):
    theirs = torch.utils.data.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    ours = random_split(Squares(n), lengths, generator=lamina.Generator(seed=0))
    assert [len(p) for p in ours] == [len(p) for p in theirs]


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


def _like_torch(ours, theirs):
    """Same structure, types of containers, dtypes and values as PyTorch's collated batch."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, lamina.Tensor)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            _like_torch(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours).__name__ == type(theirs).__name__ and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _like_torch(a, b)
    else:
        assert ours == theirs


Pair = collections.namedtuple("Pair", "x y")

COLLATE_CASES = {
    "ints": [1, 2, 3],
    "floats": [0.5, 1.0],
    "bools": [True, False],
    "numpy scalars": [np.float32(1), np.float32(2)],
    "numpy int64 scalars": [np.int64(4), np.int64(5)],
    "arrays": [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)],
    "strings": ["a", "b"],
    "tuples": [(1, 2.0), (3, 4.0)],
    "lists": [[1, "x"], [2, "y"]],
    "dicts": [{"x": np.ones(2), "meta": (1, [2.0, "s"])}, {"x": np.zeros(2), "meta": (3, [4.0, "t"])}],
    "namedtuples": [Pair(1, np.ones(2, np.int32)), Pair(3, np.zeros(2, np.int32))],
    "ordered dicts": [collections.OrderedDict(a=1, b=2.5), collections.OrderedDict(a=3, b=4.5)],
}


@pytest.mark.parametrize("case", list(COLLATE_CASES))
def test_default_collate_matches_pytorch(case):
    from torch.utils.data import default_collate as torch_collate
    samples = COLLATE_CASES[case]
    _like_torch(default_collate(samples), torch_collate(samples))


def test_default_collate_of_tensors_records_no_history():
    tensors = default_collate([lamina.ones(4, requires_grad=True), lamina.zeros(4)])
    assert tensors.shape == (2, 4) and not tensors.requires_grad


@pytest.mark.parametrize("case", ["ints", "arrays", "tuples", "dicts", "namedtuples", "strings"])
def test_default_convert_matches_pytorch(case):
    from torch.utils.data import default_convert as torch_convert
    sample = COLLATE_CASES[case][0]
    _like_torch(default_convert(sample), torch_convert(sample))


def test_default_collate_errors_are_clear():
    with pytest.raises(ValueError, match=r"different shapes: sample 0 has \(2,\), sample 1 has \(3,\)"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="different lengths"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="cannot batch samples of type object"):
        default_collate([object()])
    with pytest.raises(TypeError, match="cannot batch NumPy arrays of dtype <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])
