import pytest


@pytest.fixture(autouse=True)
def _offline_home(tmp_path, monkeypatch):
    """Every data test gets an empty LAMINA_HOME (and, from tests/conftest.py, no network)."""
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "lamina-home"))
