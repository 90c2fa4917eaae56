"""DataLoader: order, shuffling, batching, collation, the prefetch thread, errors, resuming."""
import gc
import json
import time

import numpy as np
import pytest

import lamina
from lamina.data import DataLoader, Dataset, TensorDataset
from tests.data.helpers import prefetch_threads

PREFETCH = [0, 1, 3]


class Items(Dataset):
    """Sample i is {"x": [i, i], "y": i}; optionally raises at one index; counts __getitem__."""

    def __init__(self, n, fail_at=None, error=KeyError):
        self.n, self.fail_at, self.error, self.calls = n, fail_at, error, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.calls += 1
        if i == self.fail_at:
            raise self.error(f"broken sample {i}")
        return {"x": np.array([i, i], np.float32), "y": i}


def ids(loader):
    return [batch[0].numpy().tolist() for batch in loader]


def numbered(n):
    return TensorDataset(lamina.tensor(np.arange(n)))


@pytest.mark.parametrize("prefetch", PREFETCH)
def test_order_without_shuffle(prefetch):
    assert ids(DataLoader(numbered(7), batch_size=3, prefetch=prefetch)) == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("drop_last, expected", [(False, 4), (True, 3)])
def test_len_and_drop_last(drop_last, expected):
    loader = DataLoader(numbered(10), batch_size=3, drop_last=drop_last)
    batches = ids(loader)
    assert len(loader) == len(batches) == expected
    assert all(len(b) == 3 for b in batches[:3])
    assert len(DataLoader(numbered(9), batch_size=3, drop_last=drop_last)) == 3
    assert len(DataLoader(numbered(0), batch_size=3)) == 0 and ids(DataLoader(numbered(0))) == []


@pytest.mark.parametrize("prefetch", PREFETCH)
def test_shuffle_reproducible_and_new_order_each_epoch(prefetch):
    def two_epochs(seed):
        loader = DataLoader(numbered(20), batch_size=4, shuffle=True, prefetch=prefetch,
                            generator=lamina.Generator(seed=seed))
        return ids(loader), ids(loader)

    first, second = two_epochs(5)
    assert (first, second) == two_epochs(5)
    assert first != second
    assert sorted(np.concatenate(first).tolist()) == list(range(20))
    assert two_epochs(6)[0] != first


def test_shuffle_without_generator_follows_the_global_seed():
    lamina.manual_seed(11)
    a = ids(DataLoader(numbered(20), batch_size=5, shuffle=True))
    lamina.manual_seed(11)
    assert ids(DataLoader(numbered(20), batch_size=5, shuffle=True)) == a
    lamina.manual_seed(12)
    assert ids(DataLoader(numbered(20), batch_size=5, shuffle=True)) != a


@pytest.mark.parametrize("prefetch", PREFETCH)
def test_default_collate_of_dict_samples(prefetch):
    batches = list(DataLoader(Items(5), batch_size=2, prefetch=prefetch))
    assert [b["y"].numpy().tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0]["x"].shape == (2, 2) and batches[0]["x"].dtype == lamina.float32


def test_tuple_samples_collate_to_tuples():
    class Pairs(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return lamina.full((3,), float(i)), i % 2

    x, y = next(iter(DataLoader(Pairs(), batch_size=4)))
    assert x.shape == (4, 3) and y.numpy().tolist() == [0, 1, 0, 1]


def test_custom_collate_fn_gets_the_samples_and_bypasses_getitems():
    seen = []

    def collate(samples):
        seen.append(samples)
        return len(samples)

    assert list(DataLoader(numbered(5), batch_size=2, collate_fn=collate)) == [2, 2, 1]
    assert isinstance(seen[0], list) and seen[0][1][0].item() == 1


def test_getitems_fast_path_is_used():
    class Batched(Items):
        def __getitems__(self, indices):
            return indices.copy()

    ds = Batched(6)
    batches = list(DataLoader(ds, batch_size=4))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]] and ds.calls == 0


@pytest.mark.parametrize("prefetch", [1, 2])
def test_prefetch_thread_gone_after_full_iteration(prefetch):
    loader = DataLoader(numbered(10), batch_size=2, prefetch=prefetch)
    it = iter(loader)
    assert prefetch_threads()
    assert len(list(it)) == 5
    assert prefetch_threads() == []


def test_prefetch_thread_gone_after_early_break():
    loader = DataLoader(numbered(100), batch_size=2, prefetch=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert prefetch_threads() == []


def test_prefetch_thread_gone_when_iterator_is_collected():
    it = iter(DataLoader(numbered(100), batch_size=2, prefetch=2))
    next(it)
    assert prefetch_threads()
    del it
    gc.collect()
    assert prefetch_threads() == []


def test_prefetch_thread_gone_after_close():
    it = iter(DataLoader(numbered(100), batch_size=2, prefetch=2))
    next(it)
    it.close()
    assert prefetch_threads() == []
    assert list(it) == []


@pytest.mark.parametrize("prefetch", PREFETCH)
@pytest.mark.parametrize("error", [KeyError, ValueError, ZeroDivisionError])
def test_dataset_exception_reaches_the_consumer_with_its_type(prefetch, error):
    loader = DataLoader(Items(10, fail_at=5, error=error), batch_size=2, prefetch=prefetch)
    got = []
    with pytest.raises(error, match="broken sample 5"):
        for batch in loader:
            got.append(batch["y"].numpy().tolist())
    assert got == [[0, 1], [2, 3]]
    assert prefetch_threads() == []


def test_prefetch_runs_ahead_by_at_most_its_depth():
    ds = Items(100)
    it = iter(DataLoader(ds, batch_size=1, prefetch=3))
    next(it)
    for _ in range(100):  # give the thread time to fill the queue
        if ds.calls >= 4:
            break
        time.sleep(0.01)
    assert ds.calls <= 1 + 3 + 1  # consumed + queued + one being loaded
    it.close()


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("stop_after", [0, 3, 5])
def test_state_dict_resume_gives_exactly_the_remaining_batches(shuffle, prefetch, stop_after):
    def make():
        return DataLoader(numbered(23), batch_size=4, shuffle=shuffle, prefetch=prefetch,
                          generator=lamina.Generator(seed=3) if shuffle else None)

    reference = make()
    full = [ids(reference) for _ in range(3)]

    loader = make()
    first_epoch = ids(loader)
    it = iter(loader)
    seen = [next(it)[0].numpy().tolist() for _ in range(stop_after)]
    state = json.loads(json.dumps(loader.state_dict()))  # a checkpoint stores it as JSON
    assert state["batches_consumed"] == stop_after
    del it

    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    rest = ids(resumed)
    assert first_epoch == full[0]
    assert seen + rest == full[1]
    assert ids(resumed) == full[2]


def test_state_after_last_batch_points_at_the_next_epoch():
    loader = DataLoader(numbered(8), batch_size=4, shuffle=True, generator=lamina.Generator(seed=1))
    for _ in loader:
        pass
    state = loader.state_dict()
    assert state["batches_consumed"] == 0
    expected_next = ids(loader)
    resumed = DataLoader(numbered(8), batch_size=4, shuffle=True, generator=lamina.Generator(seed=99))
    resumed.load_state_dict(state)
    assert ids(resumed) == expected_next


def test_load_state_dict_rejects_mismatched_states():
    state = DataLoader(numbered(10), batch_size=2, shuffle=True).state_dict()
    with pytest.raises(ValueError, match="state is for 10 samples in batches of 2, but this loader has 12"):
        DataLoader(numbered(12), batch_size=2, shuffle=True).load_state_dict(state)
    with pytest.raises(ValueError, match="shuffle=True, but this loader has shuffle=False"):
        DataLoader(numbered(10), batch_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match=r"batches_consumed=9 is outside \[0, 5\]"):
        DataLoader(numbered(10), batch_size=2, shuffle=True).load_state_dict({**state, "batches_consumed": 9})
    with pytest.raises(ValueError, match="state lacks"):
        DataLoader(numbered(10), batch_size=2).load_state_dict({})


def test_bad_arguments():
    with pytest.raises(ValueError, match="DataLoader: batch_size must be a positive int or None, got 0"):
        DataLoader(numbered(3), batch_size=0)
    with pytest.raises(ValueError, match="DataLoader: prefetch must be an int >= 0, got -1"):
        DataLoader(numbered(3), prefetch=-1)
