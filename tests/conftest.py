import numpy as np
import pytest

import lamina


def cuda_available():
    return lamina.cuda_is_available()


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not cuda_available(), reason="needs CUDA and CuPy")])]


@pytest.fixture(autouse=True)
def _seed():
    lamina.manual_seed(0)
    np.random.seed(0)
    yield
