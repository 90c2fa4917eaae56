"""lamina.vision.transforms: tensor resampling against torch's interpolate (the same algorithm
torchvision uses), PIL and tensor paths against each other, and hand-computed cases for
torchvision's documented size, crop, padding and random-parameter rules."""
import colorsys

import numpy as np
import pytest
import torch
from PIL import Image

import lamina
from lamina.vision import transforms as T
from lamina.vision.transforms import functional as F


def rgb_image(h=9, w=11, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def chw(pil):
    """A PIL image's pixels as a (C, H, W) int array."""
    a = np.asarray(pil).astype(np.int64)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


# ---- conversions ----------------------------------------------------------------------------

def test_to_tensor_scales_uint8_and_keeps_other_dtypes():
    img = rgb_image()
    t = T.ToTensor()(Image.fromarray(img))
    assert t.shape == (3, 9, 11) and t.dtype == lamina.float32
    np.testing.assert_array_equal(t.numpy(), img.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(T.ToTensor()(img).numpy(), t.numpy())  # HWC ndarray
    assert T.ToTensor()(Image.fromarray(img[:, :, 0])).shape == (1, 9, 11)  # mode L
    f = np.arange(6, dtype=np.float32).reshape(2, 3) * 10
    np.testing.assert_array_equal(T.ToTensor()(Image.fromarray(f)).numpy(), f[None])  # mode F: not scaled
    np.testing.assert_array_equal(T.ToTensor()(np.array([[0.5, 2.0]])[:, :, None]).numpy(), [[[0.5, 2.0]]])
    bw = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(T.ToTensor()(bw).numpy(), [[[0.0, 1.0]]])


def test_pil_to_tensor_and_back():
    img = rgb_image()
    t = T.PILToTensor()(Image.fromarray(img))
    assert t.dtype == lamina.uint8
    np.testing.assert_array_equal(t.numpy(), img.transpose(2, 0, 1))
    back = T.ToPILImage()(t)
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), img)
    # a float tensor is scaled by 255 and truncated: 0.5 -> 127, 1.0 -> 255
    g = T.ToPILImage()(lamina.tensor([[[0.5, 1.0, 0.0]]]))
    assert g.mode == "L" and np.asarray(g).tolist() == [[127, 255, 0]]
    assert T.ToPILImage()(lamina.rand(4, 2, 2)).mode == "RGBA"
    assert T.ToPILImage(mode="F")(lamina.tensor([[[0.25]]])).getpixel((0, 0)) == 0.25
    with pytest.raises(ValueError, match=r"to_pil_image: mode 'RGBA' does not fit a 3-channel image"):
        T.ToPILImage(mode="RGBA")(lamina.rand(3, 2, 2))
    with pytest.raises(ValueError, match=r"to_pil_image: expected at most 4 channels in dim 0, got shape \(5, 2, 2\)"):
        T.ToPILImage()(lamina.rand(5, 2, 2))


def test_normalize_by_hand_and_errors():
    x = lamina.tensor(np.arange(8, dtype=np.float32).reshape(2, 2, 2))
    out = T.Normalize((1.0, 2.0), (2.0, 4.0))(x).numpy()
    np.testing.assert_allclose(out, [[[-0.5, 0.0], [0.5, 1.0]], [[0.5, 0.75], [1.0, 1.25]]])
    with pytest.raises(TypeError, match="normalize: expected a float tensor, got uint8"):
        T.Normalize((0.5,), (0.5,))(lamina.zeros(1, 2, 2, dtype=lamina.uint8))
    with pytest.raises(ValueError, match=r"normalize: std \[1.0, 0.0\] has a zero"):
        T.Normalize((0.0, 0.0), (1.0, 0.0))(x)
    with pytest.raises(ValueError, match="normalize: mean has 3 values for 2 channels"):
        T.Normalize((0.0, 0.0, 0.0), (1.0,))(x)
    y = x.clone()
    assert T.Normalize((1.0,), (2.0,), inplace=True)(y) is y and y.numpy()[0, 0, 0] == -0.5


def test_convert_image_dtype_and_v2():
    u = lamina.tensor([[[0, 128, 255]]], dtype=lamina.uint8)
    np.testing.assert_allclose(F.convert_image_dtype(u, lamina.float32).numpy(), [[[0, 128 / 255, 1]]], rtol=1e-6)
    back = F.convert_image_dtype(lamina.tensor([[[0.0, 0.5, 1.0]]]), lamina.uint8)
    assert back.numpy().tolist() == [[[0, 127, 255]]]
    img = rgb_image()
    t = T.v2.Compose([T.v2.ToImage(), T.v2.ToDtype(lamina.float32, scale=True)])(Image.fromarray(img))
    np.testing.assert_allclose(t.numpy(), img.transpose(2, 0, 1) / 255, rtol=1e-6)


# ---- resize ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("out", [(5, 7), (20, 30), (13, 9)])
def test_tensor_resize_matches_torch_interpolate(mode, antialias, out):
    x = np.random.default_rng(1).random((2, 3, 13, 17))
    got = F.resize(lamina.tensor(x), list(out), mode, antialias=antialias).numpy()
    want = torch.nn.functional.interpolate(torch.tensor(x), out, mode=mode, antialias=antialias,
                                           align_corners=False).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_tensor_resize_nearest_matches_torch(mode):
    x = np.random.default_rng(2).random((3, 7, 10))
    for out in [(3, 4), (11, 23)]:
        got = F.resize(lamina.tensor(x), list(out), T.InterpolationMode(mode)).numpy()
        want = torch.nn.functional.interpolate(torch.tensor(x)[None], out, mode=mode)[0].numpy()
        np.testing.assert_array_equal(got, want)


def test_resize_gradient_matches_torch():
    x = np.random.default_rng(3).random((1, 2, 9, 8))
    w = np.random.default_rng(4).random((1, 2, 4, 5))
    lx = lamina.tensor(x, requires_grad=True)
    (F.resize(lx, [4, 5]) * lamina.tensor(w)).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.interpolate(tx, (4, 5), mode="bilinear", antialias=True) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), atol=1e-12)


def test_resize_output_size_rules():
    x = lamina.zeros(1, 10, 20)
    assert F.resize(x, 5).shape == (1, 5, 10)           # smaller edge (h) -> 5
    assert F.resize(lamina.zeros(1, 13, 7), 4).shape == (1, 7, 4)  # long edge int(4 * 13 / 7) = 7
    assert F.resize(x, [5]).shape == (1, 5, 10)
    assert F.resize(x, (3, 4)).shape == (1, 3, 4)
    assert F.resize(x, 8, max_size=12).shape == (1, 6, 12)  # long edge capped: short = int(12 * 8 / 16)
    pil = Image.fromarray(rgb_image(10, 20))
    assert T.Resize(5)(pil).size == (10, 5)                 # PIL sizes are (w, h)
    assert T.Resize((3, 4))(pil).size == (4, 3)
    with pytest.raises(ValueError, match="resize: max_size is only allowed when size is a single int"):
        F.resize(x, (3, 4), max_size=10)


def test_resize_pil_and_uint8_tensor_agree():
    img = rgb_image(13, 17)
    pil = Image.fromarray(img)
    for size in [(5, 7), (30, 40)]:
        a = chw(T.Resize(size)(pil))
        b = T.Resize(size)(T.PILToTensor()(pil))
        assert b.dtype == lamina.uint8
        assert np.abs(a - b.numpy().astype(np.int64)).max() <= 1  # PIL rounds in fixed point


# ---- crops, pads, flips ---------------------------------------------------------------------

def test_center_crop_by_hand():
    x = lamina.tensor(np.arange(25, dtype=np.float32).reshape(1, 5, 5))
    np.testing.assert_array_equal(T.CenterCrop(3)(x).numpy()[0], np.arange(25).reshape(5, 5)[1:4, 1:4])
    # top = round((5 - 2) / 2) = round(1.5) = 2 (Python rounds half to even, as torchvision)
    np.testing.assert_array_equal(T.CenterCrop(2)(x).numpy()[0], np.arange(25).reshape(5, 5)[2:4, 2:4])
    small = lamina.ones(1, 2, 2)
    big = T.CenterCrop((4, 5))(small).numpy()[0]
    # padded by (left 1, top 1, right 2, bottom 1), then cropped to the whole padded image
    assert big.shape == (4, 5) and big[1:3, 1:3].sum() == 4 and big.sum() == 4
    pil = Image.fromarray(rgb_image())
    for size in [4, (6, 3), (12, 15)]:
        np.testing.assert_array_equal(chw(T.CenterCrop(size)(pil)), T.CenterCrop(size)(T.PILToTensor()(pil)).numpy())


def test_crop_outside_is_zero_for_pil_and_tensor():
    img = rgb_image()
    t = F.crop(T.PILToTensor()(Image.fromarray(img)), -2, 3, 6, 10)
    np.testing.assert_array_equal(chw(F.crop(Image.fromarray(img), -2, 3, 6, 10)), t.numpy())
    assert t.numpy()[:, :2].sum() == 0 and t.numpy()[:, :, 8:].sum() == 0
    np.testing.assert_array_equal(t.numpy()[:, 2:, :8], img[:4, 3:11].transpose(2, 0, 1))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_modes_match_numpy(mode):
    img = rgb_image()
    kw = {"constant_values": 7} if mode == "constant" else {}
    want = np.pad(img.transpose(2, 0, 1), [(0, 0), (2, 4), (1, 3)], mode=mode, **kw)
    pad = T.Pad((1, 2, 3, 4), fill=7, padding_mode=mode)  # left, top, right, bottom
    np.testing.assert_array_equal(pad(T.PILToTensor()(Image.fromarray(img))).numpy(), want)
    np.testing.assert_array_equal(chw(pad(Image.fromarray(img))), want)
    assert T.Pad(2)(lamina.zeros(1, 3, 3)).shape == (1, 7, 7)
    assert T.Pad((1, 2))(lamina.zeros(1, 3, 3)).shape == (1, 7, 5)  # (left/right, top/bottom)


def test_flips():
    img = rgb_image()
    t = T.PILToTensor()(Image.fromarray(img))
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(t).numpy(), img[:, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(T.RandomVerticalFlip(p=1.0)(t).numpy(), img[::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(chw(T.RandomHorizontalFlip(p=1.0)(Image.fromarray(img))),
                                  img[:, ::-1].transpose(2, 0, 1))
    assert T.RandomHorizontalFlip(p=0.0)(t) is t
    lamina.manual_seed(0)
    flips = sum(T.RandomHorizontalFlip()(lamina.tensor([[[0.0, 1.0]]])).numpy()[0, 0, 0] == 1.0 for _ in range(2000))
    assert abs(flips / 2000 - 0.5) < 5 * np.sqrt(0.25 / 2000)


# ---- random crops ---------------------------------------------------------------------------

def test_random_crop_windows_are_uniform_and_seeded():
    x = lamina.tensor(np.arange(36, dtype=np.float32).reshape(1, 6, 6))
    lamina.manual_seed(3)
    tops = [T.RandomCrop(4).get_params(x, (4, 4))[0] for _ in range(3000)]
    assert set(tops) == {0, 1, 2} and max(abs(tops.count(k) / 3000 - 1 / 3) for k in range(3)) < 0.04
    lamina.manual_seed(9)
    a = T.RandomCrop(3)(x).numpy()
    lamina.manual_seed(9)
    np.testing.assert_array_equal(a, T.RandomCrop(3)(x).numpy())
    top, left = np.argwhere(np.arange(36).reshape(6, 6) == a[0, 0, 0])[0]
    np.testing.assert_array_equal(a[0], np.arange(36).reshape(6, 6)[top:top + 3, left:left + 3])


def test_random_crop_padding_and_pad_if_needed():
    x = lamina.ones(1, 4, 4)
    assert T.RandomCrop(4, padding=2)(x).shape == (1, 4, 4)
    # padding=2 then a full-size window: the crop equals the padded image
    assert T.RandomCrop(8, padding=2)(x).numpy().sum() == 16
    out = T.RandomCrop((6, 5), pad_if_needed=True)(x)
    assert out.shape == (1, 6, 5) and out.numpy().sum() == 16
    pil = T.RandomCrop((6, 5), pad_if_needed=True)(Image.fromarray(rgb_image(4, 4)))
    assert pil.size == (5, 6)
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(6, 6\) is larger than the input image size \(4, 4\)"):
        T.RandomCrop(6)(x)


def test_random_resized_crop_params_and_fallback():
    x = lamina.zeros(1, 20, 30)
    lamina.manual_seed(1)
    for _ in range(200):
        i, j, h, w = T.RandomResizedCrop.get_params(x, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 < h <= 20 and 0 < w <= 30 and 0 <= i <= 20 - h and 0 <= j <= 30 - w
        assert 0.08 * 600 * 0.8 <= h * w <= 600
    # an impossible area (scale 2) always falls back to the central crop clamped to the ratio range:
    # width/height = 3 > 4/3, so h = 4 and w = round(4 * 4/3) = 5, centred
    assert T.RandomResizedCrop.get_params(lamina.zeros(1, 4, 12), (2.0, 2.0), (3 / 4, 4 / 3)) == (0, 3, 4, 5)
    assert T.RandomResizedCrop.get_params(lamina.zeros(1, 4, 4), (2.0, 2.0), (3 / 4, 4 / 3)) == (0, 0, 4, 4)
    assert T.RandomResizedCrop(8)(x).shape == (1, 8, 8)
    assert T.RandomResizedCrop((5, 6))(Image.fromarray(rgb_image(20, 30))).size == (6, 5)


# ---- colour ---------------------------------------------------------------------------------

def test_color_adjustments_by_hand_on_float_tensors():
    x = lamina.tensor([[[0.2, 0.8]], [[0.4, 0.6]], [[0.0, 1.0]]])  # (3, 1, 2)
    np.testing.assert_allclose(F.adjust_brightness(x, 1.5).numpy(), np.clip(x.numpy() * 1.5, 0, 1), rtol=1e-6)
    gray = 0.2989 * x.numpy()[0] + 0.587 * x.numpy()[1] + 0.114 * x.numpy()[2]
    np.testing.assert_allclose(F.rgb_to_grayscale(x).numpy()[0], gray, rtol=1e-6)
    m = gray.mean()
    np.testing.assert_allclose(F.adjust_contrast(x, 0.5).numpy(), np.clip(0.5 * x.numpy() + 0.5 * m, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(F.adjust_saturation(x, 0.0).numpy(), np.broadcast_to(gray, (3, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(F.adjust_saturation(x, 1.0).numpy(), x.numpy(), rtol=1e-6)


def test_adjust_hue_by_colorsys():
    rgb = np.random.default_rng(5).random((3, 2, 4)).astype(np.float64)
    out = F.adjust_hue(lamina.tensor(rgb), 0.2).numpy()
    for r in range(2):
        for c in range(4):
            h, s, v = colorsys.rgb_to_hsv(*rgb[:, r, c])
            np.testing.assert_allclose(out[:, r, c], colorsys.hsv_to_rgb((h + 0.2) % 1.0, s, v), atol=1e-12)
    red = lamina.tensor([[[1.0]], [[0.0]], [[0.0]]])
    np.testing.assert_allclose(F.adjust_hue(red, 0.5).numpy().ravel(), [0.0, 1.0, 1.0], atol=1e-12)
    with pytest.raises(ValueError, match=r"adjust_hue: hue_factor must be in \[-0.5, 0.5\], got 0.7"):
        F.adjust_hue(red, 0.7)


def test_pil_and_uint8_tensor_color_paths_agree():
    pil = Image.fromarray(rgb_image())
    t = T.PILToTensor()(pil)
    for fn, v in [(F.adjust_brightness, 1.3), (F.adjust_brightness, 0.6), (F.adjust_contrast, 0.5),
                  (F.adjust_contrast, 1.7), (F.adjust_saturation, 0.3), (F.adjust_saturation, 1.8)]:
        assert np.abs(chw(fn(pil, v)) - fn(t, v).numpy().astype(np.int64)).max() <= 1, (fn.__name__, v)
    assert np.abs(chw(T.Grayscale()(pil)) - T.Grayscale()(t).numpy().astype(np.int64)).max() <= 1
    assert T.Grayscale(3)(pil).mode == "RGB" and T.Grayscale(3)(t).shape == (3, 9, 11)
    # PIL's hue works on 8-bit HSV: the hue channel moves by int(0.25 * 255) = 63 steps
    h_before = np.asarray(pil.convert("HSV"))[..., 0].astype(np.int64)
    h_after = np.asarray(F.adjust_hue(pil, 0.25).convert("HSV"))[..., 0].astype(np.int64)
    assert np.mean(np.abs(((h_after - h_before) % 256) - 63) <= 3) > 0.9


def test_color_jitter_ranges_order_and_seed():
    cj = T.ColorJitter(brightness=0.5, contrast=(0.2, 0.4), hue=0.1)
    assert cj.brightness == (0.5, 1.5) and cj.contrast == (0.2, 0.4) and cj.saturation is None
    assert cj.hue == (-0.1, 0.1)
    lamina.manual_seed(4)
    for _ in range(50):
        order, b, c, s, h = cj.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue)
        assert sorted(order) == [0, 1, 2, 3] and 0.5 <= b <= 1.5 and 0.2 <= c <= 0.4 and s is None
        assert -0.1 <= h <= 0.1
    x = lamina.rand(3, 4, 4)
    lamina.manual_seed(8)
    a = cj(x).numpy()
    lamina.manual_seed(8)
    np.testing.assert_array_equal(a, cj(x).numpy())
    assert cj(Image.fromarray(rgb_image())).size == (11, 9)
    with pytest.raises(ValueError, match="ColorJitter: brightness as a single number must be non-negative, got -1"):
        T.ColorJitter(brightness=-1)
    with pytest.raises(ValueError, match=r"ColorJitter: hue values \[-0.7, 0.7\] should be ordered and within"):
        T.ColorJitter(hue=0.7)


def test_compose_lambda_and_a_seeded_pipeline():
    pipeline = T.Compose([T.RandomResizedCrop(8), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Lambda(lambda t: t * 2), T.Normalize((0.5,) * 3, (0.5,) * 3)])
    pil = Image.fromarray(rgb_image(16, 16))
    lamina.manual_seed(2)
    a = pipeline(pil)
    lamina.manual_seed(2)
    b = pipeline(pil)
    assert a.shape == (3, 8, 8) and np.array_equal(a.numpy(), b.numpy())
    with pytest.raises(TypeError, match="Lambda: argument should be callable"):
        T.Lambda(3)
    with pytest.raises(TypeError, match="resize: expected a PIL Image or a Tensor, got list"):
        F.resize([1, 2], 3)


def test_v2_functional_names():
    v2f = T.v2.functional
    img = rgb_image()
    t = v2f.to_image(img)
    assert t.dtype == lamina.uint8 and t.shape == (3, 9, 11)
    np.testing.assert_array_equal(v2f.horizontal_flip(t).numpy(), img[:, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(v2f.vertical_flip(t).numpy(), img[::-1].transpose(2, 0, 1))
    np.testing.assert_allclose(v2f.to_dtype(t, lamina.float32, scale=True).numpy(), img.transpose(2, 0, 1) / 255,
                               rtol=1e-6)
    assert v2f.to_dtype(t, lamina.float32).numpy().max() == img.max()
    assert v2f.resize(t, [4, 5]).shape == (3, 4, 5)
