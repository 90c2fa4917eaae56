import pytest

import lamina


@pytest.fixture(autouse=True)
def _float64():
    prev = lamina.get_default_dtype()
    lamina.set_default_dtype(lamina.float64)
    yield
    lamina.set_default_dtype(prev)
