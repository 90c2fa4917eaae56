"""ONNX files written by torch.onnx.export (the TorchScript exporter, dynamo=False) run in Lamina
and match PyTorch within 1e-4: a ResNet-18-shaped CNN, a 2-layer LSTM, a Transformer encoder,
GRU and RNN variants; the imported modules are differentiable and can be fine-tuned."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
import torch.nn as tnn  # noqa: E402

import lamina  # noqa: E402
import lamina.onnx as lo  # noqa: E402


def _export(model, args, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, **kw)
    return lo.load(str(path))


def _close(a, b, tol=1e-4):
    a = a.detach().numpy() if isinstance(a, lamina.Tensor) else a
    np.testing.assert_allclose(a, b.detach().numpy(), rtol=tol, atol=tol)


class _Block(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = tnn.BatchNorm2d(cout)
        self.c2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = tnn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class _ResNet18(tnn.Module):
    """torchvision's ResNet-18 layout (stem, 4 stages of 2 basic blocks, pool, fc), narrower."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, width, 7, 2, 3, bias=False), tnn.BatchNorm2d(width), tnn.ReLU(),
                                   tnn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, c in enumerate([width, 2 * width, 4 * width, 8 * width]):
            blocks += [_Block(cin, c, 1 if i == 0 else 2), _Block(c, c, 1)]
            cin = c
        self.layers = tnn.Sequential(*blocks)
        self.pool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _resnet():
    torch.manual_seed(0)
    m = _ResNet18().eval()
    for mod in m.modules():  # statistics that are not the identity, so BatchNorm is really tested
        if isinstance(mod, tnn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m


def test_resnet18_shaped_network(tmp_path):
    m = _resnet()
    x = torch.randn(2, 3, 48, 48)
    lm = _export(m, (x,), tmp_path / "resnet.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert {"Conv", "MaxPool", "GlobalAveragePool", "Gemm", "Add", "Relu"} <= {n.op_type for n in lm.nodes}
    _close(lm(lamina.from_numpy(x.numpy())), m(x))
    x3 = torch.randn(3, 3, 48, 48)  # the batch axis is symbolic
    _close(lm(lamina.from_numpy(x3.numpy())), m(x3))
    # differentiable: the gradient of the output with respect to the input matches torch's
    xt = x.clone().requires_grad_(True)
    m(xt).square().sum().backward()
    xl = lamina.tensor(x.numpy(), requires_grad=True)
    lm(xl).square().sum().backward()
    np.testing.assert_allclose(xl.grad.numpy(), xt.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_resnet18_with_batchnorm_nodes_fine_tunes(tmp_path):
    m = _resnet()
    x = torch.randn(4, 3, 32, 32)
    lm = _export(m, (x,), tmp_path / "resnet_bn.onnx", do_constant_folding=False,
                 training=torch.onnx.TrainingMode.PRESERVE)
    assert sum(n.op_type == "BatchNormalization" for n in lm.nodes) == 20
    _close(lm(lamina.from_numpy(x.numpy())), m(x))
    names = dict(lm.named_buffers())
    assert len(names) == 40  # running means and variances are buffers, not trained
    assert all(isinstance(p, lamina.nn.Parameter) for p in lm.parameters())
    assert set(lm.onnx_names.values()) >= {"fc.weight", "stem.0.weight", "layers.0.c1.weight"}
    # a few SGD steps on a fixed batch lower the loss; the parameters were really updated
    rng = np.random.default_rng(0)
    xs = lamina.from_numpy(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    ys = lamina.from_numpy(rng.integers(0, 10, 8))
    opt = lamina.optim.SGD(lm.parameters(), lr=0.05)
    fc_before = lm.fc_weight.detach().numpy().copy()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = lamina.nn.functional.cross_entropy(lm(xs), ys)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not np.allclose(lm.fc_weight.detach().numpy(), fc_before)
    # in training mode BatchNormalization normalises with batch statistics and updates its buffers
    stats = {k: v.numpy().copy() for k, v in lm.named_buffers()}
    lm.train()
    with lamina.no_grad():
        lm(xs)
    assert all(not np.allclose(v.numpy(), stats[k]) for k, v in lm.named_buffers())


def test_two_layer_lstm(tmp_path):
    torch.manual_seed(1)

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = tnn.LSTM(5, 16, num_layers=2, batch_first=True)
            self.fc = tnn.Linear(16, 3)

        def forward(self, x):
            y, (h, c) = self.lstm(x)
            return self.fc(y), h, c

    m = Net().eval()
    x = torch.randn(3, 7, 5)
    lm = _export(m, (x,), tmp_path / "lstm.onnx", input_names=["x"],
                 dynamic_axes={"x": {0: "batch", 1: "time"}})
    assert sum(n.op_type == "LSTM" for n in lm.nodes) == 2
    for a, b in zip(lm(lamina.from_numpy(x.numpy())), m(x)):
        _close(a, b)
    x2 = torch.randn(2, 11, 5)  # other batch and sequence lengths
    for a, b in zip(lm(lamina.from_numpy(x2.numpy())), m(x2)):
        _close(a, b)
    # the imported LSTM trains: its weights get the same gradients as torch's
    xl = lamina.from_numpy(x.numpy())
    lm(xl)[0].square().sum().backward()
    m(x)[0].square().sum().backward()
    w_ih0 = torch.cat([m.lstm.weight_ih_l0.grad[i * 16:(i + 1) * 16] for i in (0, 3, 1, 2)])  # i,f,g,o -> i,o,f,c
    lstm_w = [p for p in lm.parameters() if tuple(p.shape) == (1, 64, 5)]
    assert len(lstm_w) == 1
    np.testing.assert_allclose(lstm_w[0].grad.numpy()[0], w_ih0.numpy(), rtol=1e-4, atol=1e-5)


def test_bidirectional_gru_and_relu_rnn(tmp_path):
    torch.manual_seed(2)
    gru = tnn.GRU(4, 6, num_layers=2, bidirectional=True).eval()
    x = torch.randn(5, 2, 4)
    lm = _export(gru, (x,), tmp_path / "gru.onnx")
    for a, b in zip(lm(lamina.from_numpy(x.numpy())), gru(x)):
        _close(a, b)
    rnn = tnn.RNN(4, 6, nonlinearity="relu", bidirectional=True).eval()
    lm = _export(rnn, (x,), tmp_path / "rnn.onnx")
    for a, b in zip(lm(lamina.from_numpy(x.numpy())), rnn(x)):
        _close(a, b)


def test_small_transformer_encoder(tmp_path):
    torch.manual_seed(3)
    layer = tnn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    enc = tnn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 10, 32)
    lm = _export(enc, (x,), tmp_path / "encoder.onnx")
    assert {"MatMul", "Softmax", "LayerNormalization"} <= {n.op_type for n in lm.nodes}
    _close(lm(lamina.from_numpy(x.numpy())), enc(x))
    # with a padding mask, and a GELU encoder with a causal mask
    layer = tnn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True)
    enc = tnn.TransformerEncoder(layer, 1, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 16)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6)

    class Masked(tnn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, x):
            return self.enc(x, mask=mask)

    lm = _export(Masked().eval(), (x,), tmp_path / "causal.onnx")
    _close(lm(lamina.from_numpy(x.numpy())), Masked().eval()(x))


def test_upsampling_decoder(tmp_path):
    """Resize as torch exports it: nearest, bilinear (half-pixel and align_corners) and bicubic."""
    torch.manual_seed(4)

    class Decoder(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(3, 4, 3, padding=1)
            self.convt = tnn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            y = tnn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest")
            y = tnn.functional.interpolate(y, size=(13, 9), mode="bilinear", align_corners=False)
            # sizes, not a scale: with align_corners, ONNX's reference and PyTorch differ on scales whose
            # output length is not a whole number
            y = tnn.functional.interpolate(y, size=(20, 14), mode="bilinear", align_corners=True)
            y = tnn.functional.interpolate(self.convt(y), size=(20, 30), mode="bicubic", align_corners=False)
            return y

    m = Decoder().eval()
    x = torch.randn(2, 3, 5, 4)
    lm = _export(m, (x,), tmp_path / "decoder.onnx")
    assert sum(n.op_type == "Resize" for n in lm.nodes) == 4
    _close(lm(lamina.from_numpy(x.numpy())), m(x))
