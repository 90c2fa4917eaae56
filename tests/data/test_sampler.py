"""Samplers: lengths and semantics against PyTorch's, reproducibility, errors."""
import collections

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import lamina
from lamina.utils.data import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)


def test_sequential_sampler_matches_pytorch():
    assert list(SequentialSampler(range(5))) == list(tud.SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(SequentialSampler(range(5))) == 5 and list(SequentialSampler([])) == []


@pytest.mark.parametrize("n, num_samples", [(10, None), (10, 4), (10, 25), (7, 7), (1, 3)])
def test_random_sampler_without_replacement_covers_like_pytorch(n, num_samples):
    ours = list(RandomSampler(range(n), num_samples=num_samples, generator=lamina.Generator(seed=1)))
    theirs = list(tud.RandomSampler(range(n), num_samples=num_samples, generator=torch.Generator().manual_seed(1)))
    assert len(ours) == len(theirs) == len(RandomSampler(range(n), num_samples=num_samples))
    # the same multiset shape: whole permutations, then one cut short
    assert sorted(collections.Counter(ours).values()) == sorted(collections.Counter(theirs).values())
    k = len(ours)
    for start in range(0, k - k % n, n):
        assert sorted(ours[start:start + n]) == list(range(n))


def test_random_sampler_with_replacement():
    ours = list(RandomSampler(range(4), replacement=True, num_samples=400, generator=lamina.Generator(seed=0)))
    theirs = list(tud.RandomSampler(range(4), replacement=True, num_samples=400))
    assert len(ours) == len(theirs) == 400
    counts = np.bincount(ours, minlength=4)
    assert set(ours) == {0, 1, 2, 3} and counts.min() > 60  # uniform: about 100 each
    assert len(RandomSampler(range(4), replacement=True)) == 4


def test_random_sampler_epochs_and_seeds():
    s = RandomSampler(range(20), generator=lamina.Generator(seed=3))
    first, second = list(s), list(s)
    assert first != second and sorted(first) == sorted(second) == list(range(20))
    assert list(RandomSampler(range(20), generator=lamina.Generator(seed=3))) == first
    lamina.manual_seed(5)
    a = list(RandomSampler(range(20)))
    lamina.manual_seed(5)
    assert list(RandomSampler(range(20))) == a  # without a generator: the global seed decides


def test_subset_random_sampler():
    idx = [10, 20, 30, 40]
    ours = list(SubsetRandomSampler(idx, generator=lamina.Generator(seed=0)))
    assert sorted(ours) == sorted(tud.SubsetRandomSampler(idx)) == idx
    assert len(SubsetRandomSampler(idx)) == 4


def test_weighted_random_sampler_with_replacement_follows_the_weights():
    weights = [0.0, 1.0, 3.0, 0.0]
    ours = list(WeightedRandomSampler(weights, 4000, generator=lamina.Generator(seed=0)))
    theirs = list(tud.WeightedRandomSampler(weights, 4000))
    assert len(ours) == len(theirs) == 4000
    counts = np.bincount(ours, minlength=4)
    assert counts[0] == counts[3] == 0
    assert abs(counts[2] / 4000 - 0.75) < 0.03


def test_weighted_random_sampler_without_replacement():
    weights = torch.tensor([1.0, 1.0, 100.0, 0.0, 1.0])
    ours = list(WeightedRandomSampler(lamina.tensor(weights.numpy()), 4, replacement=False,
                                      generator=lamina.Generator(seed=0)))
    theirs = list(tud.WeightedRandomSampler(weights, 4, replacement=False))
    assert sorted(ours) == sorted(theirs) == [0, 1, 2, 4]  # every non-zero weight once
    firsts = [next(iter(WeightedRandomSampler([1.0, 1.0, 100.0], 1, replacement=False,
                                              generator=lamina.Generator(seed=s)))) for s in range(50)]
    assert firsts.count(2) > 40  # the heavy index usually comes first
    with pytest.raises(ValueError, match="cannot draw 5 samples without replacement from 4 non-zero weights"):
        WeightedRandomSampler(weights.numpy(), 5, replacement=False)


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (9, 3, False),
                                                      (9, 3, True), (2, 5, False), (2, 5, True), (0, 2, False)])
def test_batch_sampler_matches_pytorch(n, batch_size, drop_last):
    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs)
    assert len(ours) == len(theirs)


def test_any_iterable_is_a_sampler_and_subclasses_work():
    class Evens(Sampler):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(0, self.n, 2))

        def __len__(self):
            return (self.n + 1) // 2

    assert list(BatchSampler(Evens(7), 2, False)) == [[0, 2], [4, 6]]
    assert list(BatchSampler([5, 4, 3], 2, False)) == [[5, 4], [3]]


def test_errors_name_the_sampler_and_value():
    with pytest.raises(ValueError, match="BatchSampler: batch_size must be a positive int, got 0"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(TypeError, match="BatchSampler: drop_last must be a bool, got 1"):
        BatchSampler(range(3), 2, 1)
    with pytest.raises(ValueError, match="RandomSampler: num_samples must be a positive int, got 0"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="RandomSampler: replacement must be a bool"):
        RandomSampler(range(3), replacement="yes")
    with pytest.raises(ValueError, match="WeightedRandomSampler: weights must be finite, non-negative"):
        WeightedRandomSampler([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="WeightedRandomSampler: weights must be 1-d"):
        WeightedRandomSampler([[1.0]], 1)
    with pytest.raises(ValueError, match="RandomSampler: generator must be a CPU lamina.Generator"):
        RandomSampler(range(3), generator=np.random.default_rng(0))
