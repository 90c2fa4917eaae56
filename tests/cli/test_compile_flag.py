"""``lamina train lenet|gpt|char-rnn|seq2seq --compile``: one short run with and one without the flag give
the same losses and weights (float32 tolerance); the epoch's last, smaller batch re-traces once."""
from __future__ import annotations

import json

import numpy as np
import pytest

import lamina
from lamina.cli import main

from .test_lenet_cli import _synthetic_mnist
from .test_textlm_cli import TEXT, _train


def _weights(run):
    state = lamina.io.load_checkpoint(run / "checkpoint.safetensors")
    return {k: v.numpy() for k, v in state["model"].items()}


def _assert_same_run(a, b):
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert len(ma["epochs"]) == len(mb["epochs"]) > 0
    for ea, eb in zip(ma["epochs"], mb["epochs"]):
        assert ea["step"] == eb["step"]
        np.testing.assert_allclose(ea["train_loss"], eb["train_loss"], rtol=1e-4)
        np.testing.assert_allclose(ea["eval_loss"], eb["eval_loss"], rtol=1e-4)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-3, atol=2e-5, err_msg=k)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_lenet_compiled_equals_eager(optimizer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    data = _synthetic_mnist(tmp_path / "mnist", 72, 32)  # batches of 16: the last one has 8 rows
    common = ["--epochs", "2", "--batch-size", "16", "--optimizer", optimizer, "--data-dir", str(data),
              "--quiet", "--device", "cpu"]
    assert main(["train", "lenet", *common, "--out", str(tmp_path / "eager")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("LAMINA_LOG", "recompiles")
    assert main(["train", "lenet", *common, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    err = capsys.readouterr().err
    # the last batch of the first epoch is traced anew; the second epoch finds both graphs
    assert err.count("re-tracing") == 1 and "(16, 1, 28, 28)" in err and "(8, 1, 28, 28)" in err
    _assert_same_run(tmp_path / "eager", tmp_path / "compiled")


@pytest.mark.parametrize("recipe", ["gpt", "char-rnn"])
def test_text_models_compiled_equal_eager(recipe, tmp_path, monkeypatch, capsys):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT)
    assert _train(recipe, p, tmp_path / "eager", "--max-iters", "8", "--eval-interval", "4") == 0
    assert _train(recipe, p, tmp_path / "compiled", "--max-iters", "8", "--eval-interval", "4", "--compile") == 0
    _assert_same_run(tmp_path / "eager", tmp_path / "compiled")


def test_seq2seq_compiled_equals_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    common = ["--epochs", "1", "--n-train", "96", "--n-heldout", "16", "--examples", "0", "--seed", "3",
              "--quiet"]
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        assert main(["train", "seq2seq", *common, "--out", str(tmp_path / name), *extra]) == 0
    _assert_same_run(tmp_path / "eager", tmp_path / "compiled")


@pytest.mark.parametrize("command", ["lenet", "gpt", "char-rnn", "seq2seq"])
def test_compile_is_a_train_option(command, capsys):
    with pytest.raises(SystemExit):
        main(["train", command, "--help"])
    assert "--compile" in capsys.readouterr().out
