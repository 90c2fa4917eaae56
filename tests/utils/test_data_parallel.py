"""DataParallel: the wrapped module runs as it is; state dict and attributes as in PyTorch."""
import numpy as np
import pytest
import torch

import lamina
from lamina import nn
from lamina.nn.data_parallel import DataParallel


def test_forward_backward_and_state_dict_like_pytorch():
    lamina.manual_seed(0)
    inner = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    dp = DataParallel(inner)
    assert dp.module is inner and dp.device_ids == [] and dp.dim == 0
    x = lamina.randn(5, 3)
    np.testing.assert_array_equal(dp(x).detach().numpy(), inner(x).detach().numpy())
    dp(x).sum().backward()
    assert inner[0].weight.grad is not None
    assert [n for n, _ in dp.named_parameters()] == [f"module.{n}" for n, _ in inner.named_parameters()]

    torch_dp = torch.nn.DataParallel(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                                         torch.nn.Linear(4, 2)))
    assert list(dp.state_dict()) == list(torch_dp.state_dict())
    torch_dp.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in dp.state_dict().items()})
    np.testing.assert_allclose(torch_dp(torch.from_numpy(x.numpy())).detach().numpy(),
                               dp(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    fresh = DataParallel(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    fresh.load_state_dict(dp.state_dict())
    np.testing.assert_array_equal(fresh(x).detach().numpy(), dp(x).detach().numpy())


def test_keyword_arguments_and_device_ids_without_a_gpu():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            return {"y": x * factor}

    out = DataParallel(Scale(), device_ids=[0, 1], output_device=0)(lamina.ones(2), factor=3.0)
    assert out["y"].numpy().tolist() == [3.0, 3.0]


def test_rejects_a_non_module():
    with pytest.raises(TypeError, match="DataParallel: module must be a lamina.nn.Module, got function"):
        DataParallel(lambda x: x)
