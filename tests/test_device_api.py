"""lamina.cuda, lamina.accelerator, lamina.backends and the legacy constructors (lamina.legacy),
against torch's CPU-only answers; the GPU paths run against a stand-in for CuPy."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import lamina
import lamina.accelerator as accelerator
import lamina.backends as backends
import lamina.cuda as cuda
from lamina import backend, legacy
from lamina.io.objects import load as load_fn
from lamina.io.objects import save as save_fn

torch = pytest.importorskip("torch")

needs_cpu_only = pytest.mark.skipif(lamina.cuda_is_available(), reason="checks a machine without CUDA")


# ---------------------------------------------------------------- CPU-only answers, as torch's


@needs_cpu_only
def test_cuda_queries_without_cuda_answer_as_torch_does():
    assert cuda.is_available() is False and torch.cuda.is_available() is False
    assert cuda.device_count() == torch.cuda.device_count() == 0
    assert cuda.memory_allocated() == torch.cuda.memory_allocated() == 0
    assert cuda.memory_reserved() == torch.cuda.memory_reserved() == 0
    assert cuda.is_bf16_supported() is torch.cuda.is_bf16_supported() is False
    assert cuda.empty_cache() is None
    cuda.manual_seed(3), cuda.manual_seed_all(3)  # ignored, as torch ignores them
    assert lamina.Device("cuda") not in backend._generators


@needs_cpu_only
@pytest.mark.parametrize("call", [cuda.current_device, cuda.synchronize, cuda.get_device_name,
                                  cuda.get_device_capability, cuda.get_device_properties,
                                  lambda: cuda.set_device(0)],
                         ids=["current_device", "synchronize", "get_device_name", "get_device_capability",
                              "get_device_properties", "set_device"])
def test_cuda_calls_that_need_a_gpu_raise_one_clear_line(call):
    with pytest.raises(RuntimeError) as e:
        call()
    assert "CUDA is not available" in str(e.value) and "\n" not in str(e.value)


@needs_cpu_only
def test_accelerator_without_one_answers_as_torch_does():
    assert accelerator.is_available() is torch.accelerator.is_available() is False
    assert accelerator.current_accelerator() is torch.accelerator.current_accelerator() is None
    assert accelerator.current_accelerator(check_available=True) is None
    assert accelerator.device_count() == torch.accelerator.device_count() == 0
    for call in (accelerator.current_device_index, accelerator.synchronize, accelerator.current_device_idx):
        with pytest.raises(RuntimeError, match="no accelerator"):
            call()
        with pytest.raises(RuntimeError):
            torch.accelerator.current_device_index()
    # the idiom of pytorch/examples picks the CPU
    dev = accelerator.current_accelerator() if accelerator.is_available() else lamina.Device("cpu")
    assert lamina.ones(2).to(dev).device.type == "cpu"


# ---------------------------------------------------------------- GPU paths, with CuPy stood in


class FakeCupy:
    """The few CuPy calls lamina.cuda makes, on two pretend GPUs."""

    def __init__(self):
        self.current, self.synced, self.freed = 0, [], []
        fake = self

        class Device:
            def __init__(self, index=None):
                self.index = fake.current if index is None else index

            def synchronize(self):
                fake.synced.append(self.index)

            def __enter__(self):
                self.prev, fake.current = fake.current, self.index

            def __exit__(self, *exc):
                fake.current = self.prev

        def props(i):
            return {"name": f"Fake GPU {i}".encode(), "major": 8 + i, "minor": 0, "totalGlobalMem": 80 << 30,
                    "multiProcessorCount": 132}

        runtime = SimpleNamespace(getDeviceCount=lambda: 2, getDevice=lambda: fake.current,
                                  setDevice=lambda i: setattr(fake, "current", i), getDeviceProperties=props)
        self.cuda = SimpleNamespace(runtime=runtime, Device=Device)
        pool = SimpleNamespace(used_bytes=lambda: 1000 * (fake.current + 1), total_bytes=lambda: 4096,
                               free_all_blocks=lambda: fake.freed.append("device"))
        pinned = SimpleNamespace(free_all_blocks=lambda: fake.freed.append("pinned"))
        self.get_default_memory_pool = lambda: pool
        self.get_default_pinned_memory_pool = lambda: pinned


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_generators", dict(backend._generators))
    return fake


def test_cuda_with_a_gpu(fake_gpu):
    assert cuda.is_available() and cuda.device_count() == 2
    assert cuda.current_device() == 0
    cuda.set_device("cuda:1")
    assert cuda.current_device() == 1 and fake_gpu.current == 1
    assert cuda.get_device_name() == "Fake GPU 1" and cuda.get_device_name(0) == "Fake GPU 0"
    assert cuda.get_device_capability(lamina.Device("cuda:0")) == (8, 0)
    props = cuda.get_device_properties(1)
    assert (props.name, props.total_memory, props.major, props.multi_processor_count) == ("Fake GPU 1", 80 << 30, 9, 132)
    assert cuda.is_bf16_supported()
    cuda.synchronize(), cuda.synchronize(0)
    assert fake_gpu.synced == [1, 0]
    assert cuda.memory_allocated(0) == 1000 and cuda.memory_allocated() == 2000 and cuda.memory_reserved() == 4096
    assert fake_gpu.current == 1  # the per-device queries restored the current device
    cuda.empty_cache()
    assert fake_gpu.freed == ["device", "pinned"]
    with pytest.raises(ValueError, match="no GPU 2; CuPy sees 2"):
        cuda.synchronize(2)
    with pytest.raises(ValueError, match="expected a CUDA device, got cpu"):
        cuda.get_device_name("cpu")


def test_cuda_seeding_with_gpus(fake_gpu):
    cuda.manual_seed_all(11)
    assert [backend.default_generator(f"cuda:{i}").initial_seed() for i in (0, 1)] == [11, 11]
    cuda.set_device(1)
    cuda.manual_seed(5)
    assert [backend.default_generator(f"cuda:{i}").initial_seed() for i in (0, 1)] == [11, 5]


def test_accelerator_with_a_gpu(fake_gpu):
    assert accelerator.is_available() and accelerator.device_count() == 2
    assert accelerator.current_accelerator() == lamina.Device("cuda")
    assert accelerator.current_accelerator().type == "cuda"
    accelerator.set_device_index(1)
    assert accelerator.current_device_index() == 1
    accelerator.synchronize()
    assert fake_gpu.synced == [1]


# ---------------------------------------------------------------- lamina.backends


def test_backend_flags_have_torch_defaults_and_keep_assignments():
    assert backends.cudnn.enabled is torch.backends.cudnn.enabled is True
    assert backends.cudnn.benchmark is torch.backends.cudnn.benchmark is False
    assert backends.cudnn.deterministic is torch.backends.cudnn.deterministic is False
    assert backends.cudnn.allow_tf32 is torch.backends.cudnn.allow_tf32 is True
    assert backends.cuda.matmul.allow_tf32 is torch.backends.cuda.matmul.allow_tf32 is False
    assert backends.mps.is_available() is torch.backends.mps.is_available() is False
    assert backends.mps.is_built() is False and backends.cudnn.is_available() is False
    assert backends.opt_einsum.is_available() is torch.backends.opt_einsum.is_available()
    assert backends.opt_einsum.enabled is torch.backends.opt_einsum.enabled
    assert backends.opt_einsum.strategy == torch.backends.opt_einsum.strategy
    assert backends.cuda.flash_sdp_enabled() is torch.backends.cuda.flash_sdp_enabled()
    try:
        backends.cudnn.benchmark = True
        backends.cudnn.deterministic = True
        backends.cuda.matmul.allow_tf32 = True
        backends.cuda.enable_flash_sdp(False)
        assert backends.cudnn.benchmark and backends.cudnn.deterministic and backends.cuda.matmul.allow_tf32
        assert backends.cuda.flash_sdp_enabled() is False
    finally:
        backends.cudnn.benchmark = backends.cudnn.deterministic = backends.cuda.matmul.allow_tf32 = False
        backends.cuda.enable_flash_sdp(True)


def test_backend_flags_refuse_typos_and_non_bools():
    with pytest.raises(AttributeError, match="no flag 'benchmarks'.*benchmark, deterministic"):
        backends.cudnn.benchmarks = True
    with pytest.raises(TypeError, match=r"cudnn\.benchmark must be True or False, got 'yes'"):
        backends.cudnn.benchmark = "yes"
    with pytest.raises(TypeError, match="allow_tf32"):
        backends.cuda.matmul.allow_tf32 = 1
    with pytest.raises(TypeError, match="enable_math_sdp"):
        backends.cuda.enable_math_sdp("no")
    with pytest.raises(AttributeError, match="no flag 'speed'"):
        backends.cudnn.speed  # noqa: B018
    assert backends.cudnn.benchmark is False
    backends.opt_einsum.strategy = "greedy"
    assert backends.opt_einsum.strategy == "greedy"
    backends.opt_einsum.strategy = torch.backends.opt_einsum.strategy


def test_cuda_backend_is_built_follows_cupy():
    import importlib.util
    assert backends.cuda.is_built() is (importlib.util.find_spec("cupy") is not None)


# ---------------------------------------------------------------- legacy constructors


LEGACY = [("FloatTensor", torch.float32), ("DoubleTensor", torch.float64), ("HalfTensor", torch.float16),
          ("LongTensor", torch.int64), ("IntTensor", torch.int32), ("ShortTensor", torch.int16),
          ("CharTensor", torch.int8), ("ByteTensor", torch.uint8), ("BoolTensor", torch.bool)]


@pytest.mark.parametrize("name, tdtype", LEGACY, ids=[n for n, _ in LEGACY])
def test_legacy_constructors_match_torch(name, tdtype):
    ours, theirs = getattr(legacy, name), getattr(torch, name)
    a, b = ours(2, 3), theirs(2, 3)
    assert a.shape == tuple(b.shape) == (2, 3)
    assert str(a.dtype) == str(b.dtype).removeprefix("torch.")
    assert ours().shape == tuple(theirs().shape) == (0,)
    data = [[1, 0], [3, 1]]
    np.testing.assert_array_equal(ours(data).numpy(), theirs(data).numpy())
    assert isinstance(ours(data), ours) and isinstance(b, theirs)
    assert not isinstance(ours(data).double() if name != "DoubleTensor" else ours(data).float(), ours)
    assert not isinstance(np.zeros(2), ours)
    assert repr(ours) == f"<class 'lamina.{name}'>"


def test_legacy_constructor_edge_cases():
    x = legacy.FloatTensor([1.0, 2.0])
    same = legacy.FloatTensor(x)
    assert same.array is x.array  # torch too: FloatTensor(float_tensor) shares its memory
    np.testing.assert_array_equal(legacy.LongTensor(lamina.tensor([1.7, -2.2])).numpy(),
                                  torch.LongTensor(torch.tensor([1.7, -2.2]).long()).numpy())
    assert legacy.FloatTensor(np.array([1, 2])).dtype == lamina.float32
    assert legacy.BFloat16Tensor(2).dtype == lamina.bfloat16
    with pytest.raises(ValueError, match=r"FloatTensor: sizes must be non-negative, got \(2, -1\)"):
        legacy.FloatTensor(2, -1)
    with pytest.raises(TypeError, match=r"LongTensor: expected sizes .* got \(list, int\)"):
        legacy.LongTensor([1], 2)
    with pytest.raises(RuntimeError, match="negative dimension"):  # torch refuses too
        torch.FloatTensor(2, -1)


def test_tensor_constructor_rules_match_torch():
    def make(*args, **kw):
        return legacy.constructor_array("Tensor", args, **kw)

    a = make(2, 3)
    assert a.shape == tuple(torch.Tensor(2, 3).shape) and a.dtype == np.float32
    assert make().shape == tuple(torch.Tensor().shape) == (0,)
    np.testing.assert_array_equal(make([1, 2]), torch.Tensor([1, 2]).numpy())
    assert make([1, 2]).dtype == np.float32 == torch.Tensor([1, 2]).numpy().dtype
    assert make(((1, 2), (3, 4))).shape == (2, 2)
    # Lamina's own uses keep working: arrays keep their dtype, dtype= makes numbers data
    assert make(np.arange(3)).dtype == np.int64
    assert make(1, dtype=lamina.int64).shape == () and make(2.5).shape == ()
    with pytest.raises(TypeError, match="Tensor: expected sizes"):
        make([1], [2])


def test_cuda_legacy_types_are_cuda_tensors():
    assert repr(cuda.FloatTensor) == "<class 'lamina.cuda.FloatTensor'>"
    assert not isinstance(lamina.ones(2), cuda.FloatTensor)
    assert isinstance(lamina.ones(2), legacy.FloatTensor)
    with pytest.raises(AttributeError, match="no attribute 'NotATensor'"):
        cuda.NotATensor  # noqa: B018


@pytest.mark.skipif(not hasattr(lamina, "device"), reason="lamina/__init__ does not export the device API yet")
def test_torch_spellings_are_exported_from_lamina():
    assert lamina.device is lamina.Device
    assert lamina.device("cpu", 0) == lamina.device("cpu") and lamina.device("cpu").type == "cpu"
    assert lamina.device("cuda", 1).index == 1 and lamina.device("cuda:1").type == "cuda"
    assert lamina.cuda is cuda and lamina.accelerator is accelerator and lamina.backends is backends
    assert lamina.FloatTensor is legacy.FloatTensor and lamina.LongTensor is legacy.LongTensor
    assert lamina.device(0) == lamina.device("cuda:0")  # torch.device(0) is the first GPU
    assert lamina.save is save_fn and lamina.load is load_fn and lamina.autocast is lamina.amp.autocast


@needs_cpu_only
def test_cuda_amp_spellings_without_cuda_warn_and_disable():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = cuda.amp.GradScaler(init_scale=8.0)
    assert not scaler.is_enabled() and scaler.get_scale() == 1.0
    with pytest.warns(UserWarning, match="CUDA is not available"):
        region = cuda.amp.autocast()
    assert region.device_type == "cuda" and region.fast_dtype == lamina.float16
    with region:
        assert not lamina.amp.is_autocast_enabled("cuda")


def test_size_keyword_rule_matches_torch():
    from lamina import creation
    from lamina.creation import _shape
    for size in ((2, 3), [4], ()):
        shape = _shape(creation.size_args((), size, "empty"), "empty")
        assert shape == tuple(torch.empty(size=size).shape)
    assert creation.size_args((2, 3), None, "zeros") == (2, 3)
    with pytest.raises(TypeError, match=r"empty: give the shape as sizes or as size=, not both"):
        creation.size_args((2,), (3,), "empty")
    with pytest.raises(TypeError):
        torch.empty(2, size=(3,))
    with pytest.raises(TypeError, match="empty: size must be a tuple of ints, got int"):
        creation.size_args((), 5, "empty")
    with pytest.raises(TypeError, match="must be tuple of ints"):
        torch.empty(size=5)


def _takes(fn, name) -> bool:
    import inspect
    return name in inspect.signature(fn).parameters


@pytest.mark.skipif(not _takes(lamina.Tensor.__init__, "args"), reason="lamina.Tensor does not take legacy sizes yet")
def test_tensor_class_follows_the_legacy_rules():
    assert lamina.Tensor(2, 3).shape == tuple(torch.Tensor(2, 3).shape) and lamina.Tensor(2, 3).dtype == lamina.float32
    assert lamina.Tensor().shape == (0,)
    np.testing.assert_array_equal(lamina.Tensor([1, 2]).numpy(), torch.Tensor([1, 2]).numpy())
    assert lamina.Tensor(np.arange(2)).dtype == lamina.int64
    assert lamina.nn.Parameter(lamina.ones(2)).shape == (2,)


@pytest.mark.skipif(not hasattr(lamina.Tensor, "is_cpu"), reason="Tensor.is_cpu/is_xpu/is_mps are not there yet")
def test_device_type_properties_as_torch():
    t, tt = lamina.ones(2), torch.ones(2)
    assert (t.is_cpu, t.is_cuda, t.is_xpu, t.is_mps) == (tt.is_cpu, tt.is_cuda, tt.is_xpu, tt.is_mps) == (True, False, False, False)


@pytest.mark.skipif(not _takes(lamina.empty, "size"), reason="the creation functions do not take size= yet")
def test_creation_functions_take_size_as_torch():
    for name in ("empty", "zeros", "ones", "rand", "randn"):
        assert getattr(lamina, name)(size=(2, 3)).shape == tuple(getattr(torch, name)(size=(2, 3)).shape)
    np.testing.assert_array_equal(lamina.zeros(size=[4]).numpy(), torch.zeros(size=[4]).numpy())
    with pytest.raises(TypeError, match="not both"):
        lamina.ones(2, size=(3,))
