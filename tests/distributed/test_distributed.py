"""Data-parallel training on 2 MPI ranks, started through mpiexec by each test (skipped without
mpi4py or mpiexec), plus the single-process behaviour of lamina.distributed."""
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import lamina
import lamina.distributed as dist
from lamina.distributed import DistributedSampler

from .helpers import run_mpi

# ---------------------------------------------------------------- two ranks

def test_collectives_syncbatchnorm_and_ddp_paths_on_two_ranks():
    proc, _ = run_mpi("collectives.py")
    for check in ("all_reduce", "broadcast", "all_gather", "reduce_scatter", "mismatch errors", "SyncBatchNorm",
                  "all_reduce_sum backward", "DDP find_unused_parameters", "DDP no_sync",
                  "DDP outputs outside the loss", "DDP misuse errors",
                  "DistributedSampler on the group", "DataParallelRun"):
        assert f"OK {check}\n" in proc.stdout, (check, proc.stdout, proc.stderr)


def test_two_ranks_train_like_one_process_with_the_global_batch():
    proc, _ = run_mpi("train_equivalence.py")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("OK ")]
    assert [ln.split()[1] for ln in lines] == ["mlp", "mlp", "lenet", "gpt", "convbn"], proc.stdout
    for ln in lines:
        assert float(ln.rsplit("=", 1)[1]) <= 1e-10, ln


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_and_is_named(mode, tmp_path):
    ckpt = tmp_path / "last.safetensors"
    proc, _ = run_mpi("failing.py", mode, ckpt, timeout=40, check=False)
    ended = time.time()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    failed_at = float(re.search(r"FAILING \w+ at ([\d.]+)", out).group(1))
    assert ended - failed_at < 10, f"the job took {ended - failed_at:.1f} s to end after rank 1 failed"
    if mode == "raise":
        assert "rank 1 of 2 failed with ValueError: rank 1 cannot read its shard" in out, out
    else:
        # the launcher names the killed process by pid; init() printed which pid is which rank
        killed = re.search(r"PID (\d+) RUNNING AT", out)
        assert killed and f"rank 1 pid {killed.group(1)}" in out, out
    # rank 0's checkpoint writes are atomic: whatever was last written loads
    state = lamina.io.load(ckpt)
    assert set(state) == {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}


@pytest.mark.gpu
def test_nccl_collectives_and_ddp_on_cuda():
    if not lamina.cuda_is_available():
        pytest.skip("needs CUDA and CuPy")
    try:
        from cupy.cuda import nccl  # noqa: F401
    except ImportError:
        pytest.skip("needs CuPy built with NCCL")
    import cupy
    ranks = min(2, cupy.cuda.runtime.getDeviceCount())
    proc, _ = run_mpi("nccl_worker.py", n=ranks, timeout=120)
    assert "OK nccl collectives" in proc.stdout and "OK nccl ddp" in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------- one process

def test_import_does_not_load_mpi_and_one_process_is_a_group_of_one():
    code = ("import sys, lamina, lamina.distributed as d; assert 'mpi4py.MPI' not in sys.modules; "
            "g = d.init(); assert (g.size, g.rank, d.get_world_size()) == (1, 0, 1); "
            "assert 'mpi4py.MPI' not in sys.modules; print('ok')")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.fixture
def single():
    if "mpi4py.MPI" in sys.modules or dist.launched_by_mpi():
        pytest.skip("this process already runs under MPI")
    dist.destroy_process_group()
    dist.init()
    yield
    dist.destroy_process_group()


def test_single_process_collectives_are_identity(single):
    t = lamina.tensor([1.0, -2.0, 3.0])
    for op in ("sum", dist.ReduceOp.AVG, dist.ReduceOp.MAX):
        dist.all_reduce(t, op=op)
        np.testing.assert_array_equal(t.numpy(), [1.0, -2.0, 3.0])
    dist.broadcast(t, src=0)
    out = [lamina.zeros(3)]
    dist.all_gather(out, t)
    np.testing.assert_array_equal(out[0].numpy(), t.numpy())
    res = lamina.zeros(3)
    dist.reduce_scatter(res, [t])
    np.testing.assert_array_equal(res.numpy(), t.numpy())
    big = lamina.zeros(3)
    dist.all_gather_into_tensor(big, t)
    np.testing.assert_array_equal(big.numpy(), t.numpy())
    dist.reduce_scatter_tensor(res, t * 2)
    np.testing.assert_array_equal(res.numpy(), t.numpy() * 2)
    dist.barrier()
    with pytest.raises(ValueError, match="broadcast: src must be a rank in"):
        dist.broadcast(t, src=1)
    with pytest.raises(ValueError, match="all_gather: tensor_list must be a list of one tensor per rank"):
        dist.all_gather([lamina.zeros(3), lamina.zeros(3)], t)
    with pytest.raises(ValueError, match=r"all_reduce: tensor \(shape \(2, 3\)\) is a read-only view"):
        dist.all_reduce(lamina.ones(3).expand(2, 3))
    with pytest.raises(TypeError, match="AVG needs a floating tensor"):
        dist.all_reduce(lamina.tensor([1, 2]), op="avg")


def test_data_parallel_alone_is_the_plain_loop(single):
    dp = dist.DataParallelRun.setup(10)
    assert (dp.rank, dp.world_size, dp.per_rank_batch, dp.is_main, dp.distributed) == (0, 1, 10, True, False)
    model = lamina.nn.Linear(2, 2)
    assert dp.wrap(model) is model and dp.sampler(range(5)) is None and dp.mean(2.5) == 2.5
    dp.barrier()
    x = lamina.arange(10)
    assert dp.shard(x).tolist() == x.tolist() and dp.shard([x])[0].tolist() == x.tolist()
    with pytest.raises(ValueError, match=r"DataParallelRun.shard: expected a global batch of 10 rows, got shape \(9,\)"):
        dp.shard(lamina.arange(9))
    with pytest.raises(ValueError, match="global_batch must be a positive int"):
        dist.DataParallelRun.setup(0)


def test_ddp_is_importable_by_pytorch_path():
    from lamina.nn.data_parallel import DataParallel as single
    from lamina.nn.parallel import DataParallel, DistributedDataParallel
    assert DistributedDataParallel is dist.DistributedDataParallel and DataParallel is single


def test_init_errors_and_aliases(single):
    assert dist.is_initialized() and dist.get_backend() == "mpi"
    assert dist.init() is dist.current_group()
    with pytest.raises(RuntimeError, match="already exists with backend 'mpi'"):
        dist.init("nccl")
    dist.destroy_process_group()
    with pytest.raises(RuntimeError, match="not initialized"):
        dist.get_rank()
    with pytest.raises(ValueError, match="world_size=2 was requested"):
        dist.init_process_group("mpi", world_size=2)
    with pytest.raises(ValueError, match="init_method 'tcp://h:1' is not supported"):
        dist.init_process_group("mpi", init_method="tcp://h:1")
    with pytest.raises(ValueError, match="backend must be 'mpi' or 'nccl'"):
        dist.init("gloo")
    dist.init_process_group(backend="mpi")
    assert dist.get_rank() == 0


def test_ddp_single_process_matches_the_plain_model_and_keeps_pytorch_names(single):
    lamina.manual_seed(0)
    model = lamina.models.MLP((4, 8, 3))
    ddp = dist.DistributedDataParallel(model)
    assert ddp.module is model
    assert list(ddp.state_dict()) == ["module." + k for k in model.state_dict()]
    x = lamina.randn(5, 4)
    np.testing.assert_array_equal(ddp(x).detach().numpy(), model(x).detach().numpy())
    with pytest.raises(ValueError, match="bucket_mb must be > 0"):
        dist.DistributedDataParallel(model, bucket_mb=0)
    with pytest.raises(TypeError, match="module must be a lamina.nn.Module"):
        dist.DistributedDataParallel(lambda x: x)


def test_sync_batchnorm_conversion_keeps_state_and_acts_as_batchnorm_alone(single):
    net = lamina.nn.Sequential(lamina.nn.Conv2d(1, 2, 3), lamina.nn.BatchNorm2d(2), lamina.nn.ReLU())
    bn = net[1]
    net2 = lamina.nn.Sequential(lamina.nn.Conv2d(1, 2, 3), lamina.nn.BatchNorm2d(2), lamina.nn.ReLU())
    net2.load_state_dict(net.state_dict())
    x = lamina.randn(4, 1, 5, 5)
    want = net(x).detach().numpy()
    converted = dist.SyncBatchNorm.convert_sync_batchnorm(net2)
    assert converted is net2 and isinstance(net2[1], dist.SyncBatchNorm)
    np.testing.assert_allclose(net2(x).detach().numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(net2[1].running_mean.numpy(), bn.running_mean.numpy(), rtol=1e-6)
    single_bn = dist.SyncBatchNorm.convert_sync_batchnorm(lamina.nn.BatchNorm1d(3).eval())
    assert isinstance(single_bn, dist.SyncBatchNorm) and not single_bn.training


# ---------------------------------------------------------------- the sampler (no group needed)

@pytest.mark.parametrize("n,w,drop", [(10, 3, False), (10, 3, True), (9, 3, False), (2, 4, False), (7, 2, True)])
def test_sampler_splits_like_pytorch(n, w, drop):
    torch = pytest.importorskip("torch")
    for shuffle in (False, True):
        ours = [DistributedSampler(range(n), num_replicas=w, rank=r, shuffle=shuffle, seed=5, drop_last=drop)
                for r in range(w)]
        theirs = [torch.utils.data.DistributedSampler(range(n), num_replicas=w, rank=r, shuffle=shuffle, drop_last=drop)
                  for r in range(w)]
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        got = [list(s) for s in ours]
        if not shuffle:  # same order in, same split out
            assert got == [list(s) for s in theirs]
        flat = sorted(i for part in got for i in part)
        if drop:
            assert len(set(flat)) == len(flat) == n // w * w
        else:
            assert set(flat) == set(range(n)) and len(flat) == -(-n // w) * w


def test_sampler_reshuffles_per_epoch_and_agrees_across_ranks():
    a = DistributedSampler(range(20), num_replicas=2, rank=0, seed=1)
    b = DistributedSampler(range(20), num_replicas=2, rank=1, seed=1)
    epochs = []
    for e in range(3):
        a.set_epoch(e)
        b.set_epoch(e)
        ia, ib = list(a), list(b)
        assert sorted(ia + ib) == list(range(20))
        epochs.append(ia)
    assert epochs[0] != epochs[1] != epochs[2]
    a.set_epoch(1)
    assert list(a) == epochs[1]  # the epoch alone fixes the order


@pytest.mark.parametrize("w_before,w_after", [(2, 2), (4, 2), (2, 3)])
def test_sampler_resumes_mid_epoch_on_any_world_size(w_before, w_after):
    n, epoch = 23, 4
    before = [DistributedSampler(range(n), num_replicas=w_before, rank=r, seed=9) for r in range(w_before)]
    consumed = set()
    for s in before:
        s.set_epoch(epoch)
        it = iter(s)
        consumed.update(next(it) for _ in range(3))
    states = [s.state_dict() for s in before]
    assert all(st == states[0] for st in states) and states[0]["consumed"] == 3 * w_before
    after = [DistributedSampler(range(n), num_replicas=w_after, rank=r, seed=9) for r in range(w_after)]
    for s in after:
        s.load_state_dict(json_roundtrip(states[0]))
        assert s.state_dict() == states[0]
        s.set_epoch(epoch)  # the training loop's usual call keeps the restored position
    rest = [i for s in after for i in s]
    assert set(rest) | consumed == set(range(n))
    assert not set(rest) & consumed or len(rest) > n - len(consumed)  # only padding repeats
    if w_before == w_after:  # the very same indices an uninterrupted run would have yielded
        for r in range(w_after):
            full = DistributedSampler(range(n), num_replicas=w_after, rank=r, seed=9)
            full.set_epoch(epoch)
            resumed = DistributedSampler(range(n), num_replicas=w_after, rank=r, seed=9)
            resumed.load_state_dict(states[0])
            assert list(full)[3:] == list(resumed)
    # after the resumed epoch, the next one starts from its beginning
    after[0].set_epoch(epoch + 1)
    fresh = DistributedSampler(range(n), num_replicas=w_after, rank=0, seed=9)
    fresh.set_epoch(epoch + 1)
    assert list(after[0]) == list(fresh)


def json_roundtrip(state):
    import json
    return json.loads(json.dumps(state))


def test_sampler_drives_the_data_loader_and_resumes_it_on_another_world_size():
    n, batch = 26, 3
    data = lamina.data.TensorDataset(lamina.arange(n))

    def loaders(w, state=None):
        out = []
        for r in range(w):
            s = DistributedSampler(data, num_replicas=w, rank=r, seed=4)
            if state is not None:
                s.load_state_dict(state)
            s.set_epoch(1)
            out.append((s, lamina.data.DataLoader(data, batch_size=batch, sampler=s)))
        return out

    seen = []
    first = loaders(2)
    for s, loader in first:  # every rank trains 2 batches, then the job stops
        it = iter(loader)
        seen += [i for _ in range(2) for i in next(it)[0].tolist()]
    state = first[0][0].state_dict(samples_consumed=2 * batch)
    assert state == first[1][0].state_dict(samples_consumed=2 * batch) and state["consumed"] == 12
    rest = []
    for s, loader in loaders(3, state):  # resumed on 3 ranks
        assert len(s) == 5 and len(loader) == 2
        rest += [i for (xb,) in loader for i in xb.tolist()]
    assert set(seen) | set(rest) == set(range(n))
    # the 14 samples not yet seen, plus one repeat padding 14 up to 3 ranks x 5
    assert len(set(seen)) == len(seen) == 12 and len(rest) == 15 and len(set(rest) - set(seen)) == 14


def test_sampler_state_counts_what_the_loader_consumed_and_checks_its_input():
    s = DistributedSampler(range(10), num_replicas=2, rank=1, seed=0, shuffle=False)
    assert list(s) == [1, 3, 5, 7, 9]
    assert s.state_dict()["consumed"] == 10
    assert s.state_dict(samples_consumed=2)["consumed"] == 4
    with pytest.raises(ValueError, match=r"samples_consumed must be in \[0, 5\]"):
        s.state_dict(samples_consumed=6)
    with pytest.raises(ValueError, match="state is for a dataset of 10 samples, this one has 11"):
        DistributedSampler(range(11), num_replicas=2, rank=0, shuffle=False).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="state has shuffle=False but this sampler has shuffle=True"):
        DistributedSampler(range(10), num_replicas=2, rank=0).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match=r"rank must be in \[0, 1\], got 2"):
        DistributedSampler(range(10), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="state lacks"):
        s.load_state_dict({"epoch": 0})
