"""Resampling, padding, group/instance normalisation, channel dropout, distance and activation
layers against torch.nn: the same state (copied by name through state_dict), the same input,
equal outputs, input and parameter gradients and buffers in float64, in train and eval mode."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from tests.nn.test_layers import copy_weights

T = torch.nn

# (id, lamina factory, torch factory, input shape)
LAYERS = [
    ("group_norm", lambda: nn.GroupNorm(2, 4), lambda: T.GroupNorm(2, 4), (3, 4, 5)),
    ("group_norm_noaffine_2d", lambda: nn.GroupNorm(3, 6, affine=False), lambda: T.GroupNorm(3, 6, affine=False),
     (2, 6, 2, 3)),
    ("group_norm_nobias", lambda: nn.GroupNorm(1, 3, eps=1e-3, bias=False),
     lambda: T.GroupNorm(1, 3, eps=1e-3, bias=False), (2, 3, 4)),
    ("instance_norm1d", lambda: nn.InstanceNorm1d(3), lambda: T.InstanceNorm1d(3), (2, 3, 5)),
    ("instance_norm1d_unbatched", lambda: nn.InstanceNorm1d(3, affine=True), lambda: T.InstanceNorm1d(3, affine=True),
     (3, 5)),
    ("instance_norm2d_affine", lambda: nn.InstanceNorm2d(3, affine=True), lambda: T.InstanceNorm2d(3, affine=True),
     (2, 3, 4, 3)),
    ("instance_norm2d_running", lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True, momentum=0.3),
     lambda: T.InstanceNorm2d(3, affine=True, track_running_stats=True, momentum=0.3), (2, 3, 4, 3)),
    ("instance_norm2d_unbatched_running", lambda: nn.InstanceNorm2d(2, track_running_stats=True),
     lambda: T.InstanceNorm2d(2, track_running_stats=True), (2, 3, 4)),
    ("instance_norm3d", lambda: nn.InstanceNorm3d(2, affine=True), lambda: T.InstanceNorm3d(2, affine=True),
     (1, 2, 2, 3, 2)),
    ("pixel_shuffle", lambda: nn.PixelShuffle(2), lambda: T.PixelShuffle(2), (2, 8, 3, 2)),
    ("pixel_unshuffle", lambda: nn.PixelUnshuffle(3), lambda: T.PixelUnshuffle(3), (1, 2, 3, 6)),
    ("upsample_nearest", lambda: nn.Upsample(scale_factor=2), lambda: T.Upsample(scale_factor=2), (2, 3, 3, 4)),
    ("upsample_nearest_1d", lambda: nn.Upsample(size=7), lambda: T.Upsample(size=7), (2, 3, 4)),
    ("upsample_bilinear_ac", lambda: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
     lambda: T.Upsample(size=(5, 7), mode="bilinear", align_corners=True), (1, 2, 3, 4)),
    ("upsample_bilinear_fraction", lambda: nn.Upsample(scale_factor=(1.5, 0.75), mode="bilinear"),
     lambda: T.Upsample(scale_factor=(1.5, 0.75), mode="bilinear"), (1, 2, 4, 5)),
    ("upsample_bicubic", lambda: nn.Upsample(scale_factor=2, mode="bicubic"),
     lambda: T.Upsample(scale_factor=2, mode="bicubic"), (1, 1, 3, 3)),
    ("upsample_trilinear", lambda: nn.Upsample(scale_factor=2, mode="trilinear"),
     lambda: T.Upsample(scale_factor=2, mode="trilinear"), (1, 1, 2, 2, 3)),
    ("upsampling_nearest2d", lambda: nn.UpsamplingNearest2d(scale_factor=3),
     lambda: T.UpsamplingNearest2d(scale_factor=3), (1, 2, 2, 3)),
    ("upsampling_bilinear2d", lambda: nn.UpsamplingBilinear2d(size=(4, 4)),
     lambda: T.UpsamplingBilinear2d(size=(4, 4)), (1, 2, 3, 2)),
    ("zero_pad2d", lambda: nn.ZeroPad2d((1, 2, 0, 3)), lambda: T.ZeroPad2d((1, 2, 0, 3)), (2, 3, 4, 4)),
    ("zero_pad1d", lambda: nn.ZeroPad1d(2), lambda: T.ZeroPad1d(2), (2, 3, 4)),
    ("constant_pad2d", lambda: nn.ConstantPad2d(1, 0.5), lambda: T.ConstantPad2d(1, 0.5), (1, 2, 3, 3)),
    ("reflection_pad1d", lambda: nn.ReflectionPad1d(2), lambda: T.ReflectionPad1d(2), (2, 3, 5)),
    ("reflection_pad2d", lambda: nn.ReflectionPad2d((1, 2, 2, 1)), lambda: T.ReflectionPad2d((1, 2, 2, 1)),
     (2, 3, 4, 4)),
    ("reflection_pad2d_unbatched", lambda: nn.ReflectionPad2d(1), lambda: T.ReflectionPad2d(1), (3, 4, 4)),
    ("reflection_pad3d", lambda: nn.ReflectionPad3d(1), lambda: T.ReflectionPad3d(1), (1, 1, 2, 3, 3)),
    ("replication_pad1d", lambda: nn.ReplicationPad1d((0, 3)), lambda: T.ReplicationPad1d((0, 3)), (2, 3, 4)),
    ("replication_pad2d", lambda: nn.ReplicationPad2d(2), lambda: T.ReplicationPad2d(2), (1, 2, 3, 3)),
    ("circular_pad2d", lambda: nn.CircularPad2d(1), lambda: T.CircularPad2d(1), (1, 2, 3, 3)),
    ("dropout2d_eval", lambda: nn.Dropout2d(0.5).eval(), lambda: T.Dropout2d(0.5).eval(), (2, 3, 4, 4)),
    ("relu6", lambda: nn.ReLU6(), lambda: T.ReLU6(), (3, 4)),
    ("hardtanh", lambda: nn.Hardtanh(-0.5, 0.7), lambda: T.Hardtanh(-0.5, 0.7), (3, 4)),
    ("hardswish", lambda: nn.Hardswish(), lambda: T.Hardswish(), (3, 4)),
    ("hardsigmoid", lambda: nn.Hardsigmoid(), lambda: T.Hardsigmoid(), (3, 4)),
    ("mish", lambda: nn.Mish(), lambda: T.Mish(), (3, 4)),
    ("prelu", lambda: nn.PReLU(), lambda: T.PReLU(), (2, 3, 4)),
    ("prelu_channels", lambda: nn.PReLU(3, init=0.1), lambda: T.PReLU(3, init=0.1), (2, 3, 4)),
    ("selu", lambda: nn.SELU(), lambda: T.SELU(), (3, 4)),
    ("celu", lambda: nn.CELU(0.5), lambda: T.CELU(0.5), (3, 4)),
    ("logsigmoid", lambda: nn.LogSigmoid(), lambda: T.LogSigmoid(), (3, 4)),
    ("softsign", lambda: nn.Softsign(), lambda: T.Softsign(), (3, 4)),
    ("tanhshrink", lambda: nn.Tanhshrink(), lambda: T.Tanhshrink(), (3, 4)),
    ("softmin", lambda: nn.Softmin(dim=1), lambda: T.Softmin(dim=1), (3, 4)),
    ("threshold", lambda: nn.Threshold(0.1, 20.0), lambda: T.Threshold(0.1, 20.0), (3, 4)),
    ("glu", lambda: nn.GLU(1), lambda: T.GLU(1), (3, 4)),
    ("softmax2d", lambda: nn.Softmax2d(), lambda: T.Softmax2d(), (2, 3, 2, 2)),
    ("hardshrink", lambda: nn.Hardshrink(0.3), lambda: T.Hardshrink(0.3), (3, 4)),
    ("softshrink", lambda: nn.Softshrink(), lambda: T.Softshrink(), (3, 4)),
    ("decoder", lambda: nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Mish(),
                                      nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1),
                                      nn.Conv2d(8, 12, 3), nn.InstanceNorm2d(12, affine=True), nn.PReLU(12),
                                      nn.PixelShuffle(2)),
     lambda: T.Sequential(T.Conv2d(2, 8, 3, padding=1), T.GroupNorm(2, 8), T.Mish(),
                          T.Upsample(scale_factor=2, mode="bilinear"), T.ReflectionPad2d(1),
                          T.Conv2d(8, 12, 3), T.InstanceNorm2d(12, affine=True), T.PReLU(12), T.PixelShuffle(2)),
     (2, 2, 3, 3)),
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,make,make_ref,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_torch(name, make, make_ref, shape, train):
    lm, tm = make().double(), make_ref().double()
    copy_weights(lm, tm)
    lm.train(train and not name.endswith("_eval"))
    tm.train(train and not name.endswith("_eval"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 3
    lx = lamina.tensor(x, dtype=lamina.float64, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    for _ in range(2):  # twice: running statistics must evolve the same way
        out, tout = lm(lx), tm(tx)
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(tout.shape)
    (out * lamina.tensor(w, dtype=lamina.float64)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    # PyTorch's hardsigmoid backward scales by the float32 constant 1/6, even in float64
    rtol = 1e-7 if name == "hardsigmoid" else 1e-9
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=1e-12)
    tparams = dict(tm.named_parameters())
    for pname, p in lm.named_parameters():
        tg = tparams[pname].grad
        assert (p.grad is None) == (tg is None), pname
        if tg is not None:
            np.testing.assert_allclose(p.grad.numpy(), tg.numpy(), rtol=1e-9, atol=1e-12, err_msg=pname)
    tbuffers = dict(tm.named_buffers())
    assert [b for b, _ in lm.named_buffers()] == list(tbuffers)
    for bname, b in lm.named_buffers():
        np.testing.assert_allclose(b.numpy(), tbuffers[bname].numpy(), rtol=1e-12, err_msg=bname)


@pytest.mark.parametrize("name,make,make_ref,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_state_dict_and_repr_match_torch(name, make, make_ref, shape):
    lm, tm = make(), make_ref()
    lsd, tsd = lm.state_dict(), tm.state_dict()
    assert list(lsd) == list(tsd)
    for k in lsd:
        assert lsd[k].shape == tuple(tsd[k].shape), k
        if name != "decoder":  # (its convolutions start random)
            np.testing.assert_array_equal(lsd[k].numpy(), tsd[k].numpy(), err_msg=f"{k}: initial value")
    if name != "decoder":  # (Lamina's containers also print a parameter count)
        assert repr(lm) == repr(tm)


def test_float32_upsample_and_norms_match_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    for lm, tm in ((nn.Upsample(scale_factor=1.5, mode="bilinear"), T.Upsample(scale_factor=1.5, mode="bilinear")),
                   (nn.Upsample(scale_factor=2.5), T.Upsample(scale_factor=2.5)),
                   (nn.GroupNorm(2, 4), T.GroupNorm(2, 4)), (nn.InstanceNorm2d(4), T.InstanceNorm2d(4))):
        out = lm(lamina.tensor(x))
        assert out.dtype == lamina.float32
        np.testing.assert_allclose(out.detach().numpy(), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                                   atol=1e-5)


def test_distance_layers_match_torch():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    for lm, tm in ((nn.CosineSimilarity(dim=1), T.CosineSimilarity(dim=1)),
                   (nn.CosineSimilarity(dim=0, eps=1e-6), T.CosineSimilarity(dim=0, eps=1e-6)),
                   (nn.PairwiseDistance(), T.PairwiseDistance()),
                   (nn.PairwiseDistance(p=1.0, keepdim=True), T.PairwiseDistance(p=1.0, keepdim=True))):
        la, lb = lamina.tensor(a, requires_grad=True), lamina.tensor(b, requires_grad=True)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        out, tout = lm(la, lb), tm(ta, tb)
        np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10)
        out.sum().backward()
        tout.sum().backward()
        np.testing.assert_allclose(la.grad.numpy(), ta.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(lb.grad.numpy(), tb.grad.numpy(), rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- channel dropout

@pytest.mark.parametrize("layer,shape,lead", [(nn.Dropout1d, (8, 50, 6), 2), (nn.Dropout2d, (8, 50, 3, 4), 2),
                                              (nn.Dropout3d, (4, 100, 2, 2, 3), 2), (nn.Dropout1d, (60, 5), 1),
                                              (nn.Dropout3d, (60, 2, 2, 2), 1)])
def test_channel_dropout_zeroes_whole_channels(layer, shape, lead):
    """``lead`` dims (batch and channel, or channel alone when unbatched) index the channels."""
    p = 0.3
    lamina.manual_seed(0)
    x = lamina.tensor(np.random.default_rng(0).uniform(1.0, 2.0, shape), requires_grad=True)
    m = layer(p)
    y = m(x)
    ratio = (y / x).detach().numpy()
    per_channel = ratio.reshape(shape[:lead] + (-1,))
    # every channel is either all zero or all scaled by 1/(1-p)
    first = per_channel[..., :1]
    np.testing.assert_allclose(per_channel, np.broadcast_to(first, per_channel.shape), rtol=1e-12)
    assert set(np.round(np.unique(first), 12)) <= {0.0, round(1 / (1 - p), 12)}
    dropped = float((first == 0).mean())
    assert 0.15 < dropped < 0.45, dropped
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ratio, rtol=1e-12)
    m.eval()
    assert m(x) is x


def test_channel_dropout_seeded_edges_and_errors():
    x = lamina.randn(4, 6, 3, 3)
    lamina.manual_seed(5)
    a = F.dropout2d(x, 0.5)
    lamina.manual_seed(5)
    b = F.dropout2d(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert F.dropout2d(x, 0.0) is x
    assert F.dropout2d(x, 0.5, training=False) is x
    assert float(ops_abs_sum(F.dropout2d(x, 1.0))) == 0.0
    # a 3-D input to dropout2d is (N, C, L), as PyTorch takes it: masks per (n, c)
    with pytest.warns(UserWarning, match="dropout2d: received a 3-D input and takes it as"):
        y = F.dropout2d(lamina.ones(6, 40, 5), 0.5).numpy()
    assert np.all(y.min(axis=2) == y.max(axis=2)) and np.any(y[0] == 0) and np.any(y[0] != 0)
    with pytest.raises(ValueError, match=r"dropout1d: expected a 2-D or 3-D input .* got shape \(2, 3, 4, 5\)"):
        F.dropout1d(lamina.ones(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"dropout3d: p must be in \[0, 1\], got 1.5"):
        F.dropout3d(lamina.ones(2, 3, 4, 5), 1.5)
    with pytest.raises(ValueError, match=r"Dropout2d: p must be in \[0, 1\], got -0.1"):
        nn.Dropout2d(-0.1)
    with pytest.raises(TypeError, match="dropout2d: expected a floating-point tensor"):
        F.dropout2d(lamina.ones(2, 3, 4, 4, dtype=lamina.int64))


def test_dropout2d_on_2d_input_drops_single_elements_as_pytorch():
    """PyTorch deprecates a 2-D input to dropout2d but still takes it, dropping single elements
    (pytorch/examples' mnist_rnn puts Dropout2d after an LSTM's (N, hidden) output)."""
    x = lamina.tensor(np.random.default_rng(1).uniform(1.0, 2.0, (64, 80)), requires_grad=True)
    with pytest.warns(UserWarning, match="dropout2d: received a 2-D input"):
        y = nn.Dropout2d(0.25)(x)
    with pytest.warns(UserWarning, match="dropout2d: Received a 2-D input"):
        t = T.Dropout2d(0.25)(torch.ones(64, 80, dtype=torch.float64))
    ratio = (y / x).detach().numpy()
    assert set(np.round(np.unique(ratio), 12)) <= {0.0, round(1 / 0.75, 12)}
    assert set(np.unique(t.numpy())) <= {0.0, 1 / 0.75}
    # elements, not rows, are dropped: nearly every row keeps some and loses some (as torch's)
    mixed = lambda r: float(((r == 0).any(axis=1) & (r != 0).any(axis=1)).mean())  # noqa: E731
    assert mixed(ratio) > 0.9 and mixed(t.numpy()) > 0.9
    assert 0.18 < float((ratio == 0).mean()) < 0.32
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ratio, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert F.dropout2d(x, 0.5, training=False) is x
        with pytest.raises(ValueError, match=r"dropout2d: p must be in \[0, 1\], got 2"):
            F.dropout2d(x, 2)


def ops_abs_sum(t):
    return lamina.abs(t).sum().item()


# ---------------------------------------------------------------- errors

def test_resampling_and_norm_errors_are_clear():
    x = lamina.ones(1, 2, 4, 4)
    with pytest.raises(ValueError, match="interpolate: pass exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="interpolate: pass exactly one of size and scale_factor"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="interpolate: align_corners can only be set with the interpolating modes"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match=r"interpolate: mode 'bilinear' needs a 4-D input, got shape \(1, 2, 4\)"):
        F.interpolate(lamina.ones(1, 2, 4), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="antialias=True needs mode .bilinear. or .bicubic., got .nearest."):
        F.interpolate(x, scale_factor=0.5, antialias=True)
    with pytest.raises(ValueError, match="interpolate: unknown mode 'cubic'"):
        F.interpolate(x, scale_factor=2, mode="cubic")
    with pytest.raises(ValueError, match=r"interpolate: size \(3, 3, 3\) has 3 entries for input of shape"):
        F.interpolate(x, size=(3, 3, 3))
    with pytest.raises(ValueError, match=r"pixel_shuffle: channels 2 of input shape \(1, 2, 4, 4\) are not divisible"):
        F.pixel_shuffle(x, 2)
    with pytest.raises(ValueError, match="pixel_unshuffle: height 4 and width 4 .* divisible by downscale_factor 3"):
        F.pixel_unshuffle(x, 3)
    with pytest.raises(ValueError, match="GroupNorm: num_channels 5 must be divisible by num_groups 2"):
        nn.GroupNorm(2, 5)
    with pytest.raises(ValueError, match=r"GroupNorm: expected input \(N, 4, \*\), got shape \(1, 2, 4, 4\)"):
        nn.GroupNorm(2, 4)(x)
    with pytest.raises(ValueError, match=r"InstanceNorm2d: expected 3 channels \(dim 1\), got input shape"):
        nn.InstanceNorm2d(3, affine=True)(x)
    with pytest.raises(ValueError, match=r"InstanceNorm1d: expected a 2-D \(unbatched\) or 3-D input"):
        nn.InstanceNorm1d(2)(x)
    with pytest.raises(ValueError, match="instance_norm: expected more than 1 spatial element per channel"):
        F.instance_norm(lamina.ones(2, 3, 1))
    with pytest.raises(ValueError, match=r"ReflectionPad2d: expected a 3-D or 4-D input, got shape \(4, 4\)"):
        nn.ReflectionPad2d(1)(lamina.ones(4, 4))
    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int or 4 ints, got \(1, 2\)"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match="prelu: weight of 3 elements must match the channels"):
        F.prelu(x, lamina.ones(3))
    with pytest.raises(ValueError, match=r"affine_grid: expected theta of shape \(1, 2, 3\)"):
        F.affine_grid(lamina.ones(1, 3, 3), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="grid_sample: padding_mode must be"):
        F.grid_sample(x, lamina.ones(1, 2, 2, 2), padding_mode="wrap")


def test_instance_norm_warns_on_channel_mismatch_without_state():
    x = lamina.randn(2, 5, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = nn.InstanceNorm1d(3)(x)
    assert any("expected 3 channels" in str(w.message) for w in caught)
    np.testing.assert_allclose(y.numpy().mean(axis=2), 0.0, atol=1e-6)


def test_interpolate_nearest_upsample_gradient_sums_each_block():
    x = lamina.tensor(np.arange(6.0).reshape(1, 1, 2, 3), requires_grad=True)
    y = F.interpolate(x, scale_factor=2)
    np.testing.assert_array_equal(y.detach().numpy()[0, 0, :2, :2], [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(y.detach().numpy()[0, 0, 3], [3.0, 3.0, 4.0, 4.0, 5.0, 5.0])
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 8.0 * x.detach().numpy())


def test_diagonal_is_a_view_and_diag_a_copy_as_in_torch():
    x = lamina.zeros(3, 4)
    lamina.ops.diagonal(x, 1).fill_(2.0)
    tx = torch.zeros(3, 4)
    torch.diagonal(tx, 1).fill_(2.0)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    lamina.ops.diag(x).fill_(5.0)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    # an in-place change through the view is differentiated as PyTorch does it
    a = lamina.tensor(np.arange(9.0).reshape(3, 3), requires_grad=True)
    ta = torch.tensor(np.arange(9.0).reshape(3, 3), requires_grad=True)
    b, tb = a * 1.0, ta * 1.0
    lamina.ops.diagonal(b).mul_(3.0)
    tb.diagonal().mul_(3.0)
    (b * b).sum().backward()
    (tb * tb).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())


def test_nearest_interpolation_keeps_integer_dtypes():
    x = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    for kwargs in (dict(scale_factor=2), dict(size=(5, 7)), dict(size=(2, 3), mode="nearest-exact")):
        out = F.interpolate(lamina.tensor(x), **kwargs)
        assert out.dtype == lamina.uint8
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), **kwargs)
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
    with pytest.raises(TypeError, match="interpolate: expected a floating-point tensor"):
        F.interpolate(lamina.tensor(x), scale_factor=2, mode="bilinear")


@pytest.mark.parametrize("mode", ["linear", "bilinear", "bicubic"])
def test_interpolation_keeps_a_nan_local_as_torch(mode):
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 6)[:3 if mode == "linear" else 4])
    x[(0, 1, 2, 3)[:x.ndim]] = np.nan
    out = F.interpolate(lamina.tensor(x), scale_factor=2, mode=mode).numpy()
    ref = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=2, mode=mode).numpy()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
