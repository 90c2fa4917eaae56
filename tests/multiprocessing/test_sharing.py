"""lamina.multiprocessing: shared tensors and modules across processes, Hogwild training."""
import gc
import multiprocessing as std_mp
import os

import numpy as np
import pytest

import lamina
import lamina.multiprocessing as mp
from lamina import nn
from lamina.multiprocessing import shared_memory

SPAWN = mp.get_context("spawn")
FORK = mp.get_context("fork")


def test_the_standard_namespace_is_there():
    for name in ("Process", "Queue", "Pipe", "Pool", "Lock", "Event", "get_context", "set_start_method",
                 "get_start_method", "cpu_count", "current_process", "active_children"):
        assert getattr(mp, name) is getattr(std_mp, name)
    assert mp.get_sharing_strategy() == "file_system"


def test_share_memory_moves_the_array_and_keeps_values():
    t = lamina.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    assert not mp.is_shared(t)
    assert mp.share_memory_(t) is t
    assert mp.is_shared(t) and t.requires_grad
    np.testing.assert_array_equal(t.detach().numpy(), np.arange(6).reshape(2, 3))
    seg, _ = shared_memory.segment_of(t.array)
    assert os.path.exists(seg.path)
    array = t.array
    mp.share_memory_(t)  # already shared: nothing moves
    assert t.array is array
    with pytest.raises(TypeError, match="share_memory_: expected a lamina.Tensor, got ndarray"):
        mp.share_memory_(np.zeros(2))


def test_segment_is_removed_when_its_owner_drops_it():
    t = mp.share_memory_(lamina.zeros(4))
    path = shared_memory.segment_of(t.array)[0].path
    del t
    gc.collect()
    assert not os.path.exists(path)


def _add_ones(t, q):
    with lamina.no_grad():
        t.add_(1)
    q.put((type(t).__name__, t.requires_grad, mp.is_shared(t)))


def _child_writes_queue_tensor(q_in, q_out):
    t = q_in.get()
    t.array[...] = 42
    q_out.put("done")


@pytest.mark.parametrize("ctx", [FORK, SPAWN], ids=["fork", "spawn"])
def test_child_writes_are_seen_by_the_parent(ctx):
    shared = mp.share_memory_(lamina.zeros(3))
    param = nn.Parameter(lamina.zeros(2))
    mp.share_memory_(param)
    q = ctx.Queue()
    procs = [ctx.Process(target=_add_ones, args=(t, q)) for t in (shared, param)]
    for p in procs:
        p.start()
    reports = sorted(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    assert shared.numpy().tolist() == [1, 1, 1] and param.detach().numpy().tolist() == [1, 1]
    if ctx is SPAWN:  # the pickled tensors arrive as the same types, flags, and shared memory
        assert reports == [("Parameter", True, True), ("Tensor", False, True)]


def test_queue_sends_shared_tensors_by_name_and_others_by_value():
    shared = mp.share_memory_(lamina.zeros(1000))
    private = lamina.zeros(1000)
    q_in, q_out = FORK.Queue(), FORK.Queue()
    p = FORK.Process(target=_child_writes_queue_tensor, args=(q_in, q_out))
    p.start()
    q_in.put(shared)
    assert q_out.get(timeout=30) == "done"
    p.join()
    assert (shared.numpy() == 42).all()
    p = FORK.Process(target=_child_writes_queue_tensor, args=(q_in, q_out))
    p.start()
    q_in.put(private)
    assert q_out.get(timeout=30) == "done"
    p.join()
    assert (private.numpy() == 0).all()


def test_module_share_memory_tiles_each_dtype_in_one_segment():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model(lamina.randn(5, 3)).sum().backward()
    values = [p.detach().numpy().copy() for p in model.parameters()]
    assert mp.module_share_memory(model) is model
    params = list(model.parameters())
    assert all(mp.is_shared(p) for p in params)
    assert all(mp.is_shared(b) for b in model.buffers())
    assert all(mp.is_shared(p.grad) for p in params)
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p.detach().numpy(), v)
    flat = shared_memory.tiled_view([p.array for p in params])
    assert flat is not None and flat.size == sum(p.numel() for p in params)
    flat[:] = 0.5
    assert all((p.detach().numpy() == 0.5).all() for p in params)
    assert shared_memory.tiled_view([params[1].array, params[0].array]) is None  # out of order
    assert shared_memory.tiled_view([np.zeros(3), np.zeros(3)]) is None


# ------------------------------------------------------------------ Hogwild
X = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
W_TRUE = np.array([[2.0, -3.0]], np.float32)


def _loss(model):
    x = lamina.tensor(X)
    return float(((model(x) - lamina.tensor(X @ W_TRUE.T + 0.5)) ** 2).mean())


def _hogwild_worker(model, steps, use_optimizer):
    x = lamina.tensor(X)
    y = lamina.tensor(X @ W_TRUE.T + 0.5)
    opt = lamina.optim.SGD(model.parameters(), lr=0.2) if use_optimizer else None
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        model.zero_grad()
        loss.backward()
        if opt is not None:
            opt.step()
        else:
            with lamina.no_grad():
                for p in model.parameters():
                    p.sub_(0.2 * p.grad)


def _hogwild(ctx, use_optimizer):
    lamina.manual_seed(0)
    model = nn.Linear(2, 1)
    mp.module_share_memory(model)
    before = _loss(model)
    procs = [ctx.Process(target=_hogwild_worker, args=(model, 30, use_optimizer)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return before, _loss(model), model


@pytest.mark.parametrize("ctx", [FORK, SPAWN], ids=["fork", "spawn"])
def test_hogwild_two_processes_train_one_shared_model(ctx):
    before, after, model = _hogwild(ctx, use_optimizer=False)
    assert after < 1e-3 < before  # 60 steps in all reach the solution; 30 alone leave 6e-3
    np.testing.assert_allclose(model.weight.detach().numpy(), W_TRUE, atol=0.05)
    np.testing.assert_allclose(model.bias.detach().numpy(), [0.5], atol=0.05)


def test_hogwild_with_an_optimizer_in_each_process():
    before, after, model = _hogwild(FORK, use_optimizer=True)
    assert after < 1e-3 < before
    assert all(mp.is_shared(p) for p in model.parameters())
