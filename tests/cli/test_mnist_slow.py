"""The acceptance run: the default ``lamina train lenet`` reaches >= 99.0% on the official
10,000 MNIST test images. Slow (minutes); run with ``python -m pytest -m slow``."""
from __future__ import annotations

import json

import pytest

from lamina.cli import main
from lamina.data.cache import lamina_home


@pytest.mark.slow
def test_default_lenet_run_reaches_99_percent(tmp_path, capsys):
    if not (lamina_home() / "mnist").exists():
        pytest.skip("MNIST is not cached under LAMINA_HOME; run `lamina train lenet` once to fetch it")
    run = tmp_path / "run"
    assert main(["train", "lenet", "--out", str(run), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"][-1]["test_accuracy"] >= 0.990
    assert main(["eval", str(run)]) == 0
    assert "test accuracy: 99." in capsys.readouterr().out
