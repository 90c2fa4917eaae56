"""`lamina export RUN --onnx model.onnx` end to end: tiny runs made by `lamina train` (seq2seq on its
synthetic task, char-RNN on a small text file) and a LeNet run folder written as training writes
one; the file runs in onnxruntime and matches the run's model."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lamina  # noqa: E402
from lamina import io, models  # noqa: E402
from lamina.cli import build_parser  # noqa: E402
from lamina.onnx.export_cli import rebuild  # noqa: E402


def _run(argv):
    args = build_parser().parse_args(argv)
    return args.func(args)


def _check_against_run(run, path, feeds):
    model = rebuild(str(run))[0]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: f for i, f in zip(sess.get_inputs(), feeds)})
    with lamina.no_grad():
        res = model(*[lamina.tensor(f) for f in feeds])
    want = [res] if isinstance(res, lamina.Tensor) else [res[0]] + (list(res[2]) if len(res) > 2 else [])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)
    return sess


def test_export_a_seq2seq_run(tmp_path, capsys):
    run = tmp_path / "s2s"
    assert _run(["train", "seq2seq", "--epochs", "1", "--n-train", "64", "--n-heldout", "8", "--d-model", "16",
                 "--nhead", "2", "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--dim-feedforward", "32",
                 "--batch-size", "32", "--max-len", "5", "--examples", "0", "--out", str(run)]) == 0
    path = tmp_path / "s2s.onnx"
    capsys.readouterr()
    assert _run(["export", str(run), "--onnx", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "src[batch, 6]" in printed and "logits[batch, 6," in printed
    rng = np.random.default_rng(0)
    src = rng.integers(3, 13, (3, 6))
    sess = _check_against_run(run, path, [src, rng.integers(3, 13, (3, 6))])
    assert [i.name for i in sess.get_inputs()] == ["src", "tgt_in"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["lamina.model_name"] == "seq2seq" and json.loads(meta["lamina.config"])["d_model"] == 16


def test_export_a_char_rnn_run(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("a tiny corpus for a character model, read twice.\n" * 20)
    run = tmp_path / "rnn"
    assert _run(["train", "char-rnn", "--text", str(text), "--max-iters", "2", "--batch-size", "2", "--block-size",
                 "8", "--n-layer", "1", "--n-embd", "8", "--hidden-size", "16", "--eval-interval", "2",
                 "--out", str(run)]) == 0
    path = tmp_path / "rnn.onnx"
    assert _run(["export", str(run), "--onnx", str(path), "--seq-len", "5"]) == 0
    vocab = len(set(text.read_text()))
    sess = _check_against_run(run, path, [np.random.default_rng(1).integers(0, vocab, (2, 5))])
    assert [o.name for o in sess.get_outputs()] == ["logits", "h_n", "c_n"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "lamina.tokenizer" in meta


def test_export_a_lenet_run_folder(tmp_path):
    run = tmp_path / "lenet"
    run.mkdir()
    lamina.manual_seed(0)
    model = models.LeNet5()
    io.save_checkpoint(run / "checkpoint.safetensors",
                       {"model_name": "lenet5", "config": {"epochs": 1, "batch_size": 64}, "model": model.state_dict()})
    path = tmp_path / "lenet.onnx"
    assert _run(["export", str(run), "--onnx", str(path)]) == 0
    x = np.random.default_rng(2).standard_normal((4, 1, 28, 28)).astype(np.float32)
    sess = _check_against_run(run, path, [x])
    assert sess.get_inputs()[0].name == "image" and sess.get_inputs()[0].shape == ["batch", 1, 28, 28]


def test_export_errors_are_one_line(tmp_path, capsys):
    assert _run(["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lamina export: no checkpoint at") and err.count("\n") == 1
    run = tmp_path / "lenet"
    run.mkdir()
    io.save_checkpoint(run / "checkpoint.safetensors",
                       {"model_name": "lenet5", "config": {}, "model": models.LeNet5().state_dict()})
    assert _run(["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--opset", "12"]) == 1
    assert "opset must be an int from 17" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
