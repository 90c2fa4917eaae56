"""make_grid and save_image against hand-computed layouts (torchvision's rules)."""
import numpy as np
import pytest
from PIL import Image

import lamina
import lamina.vision.utils as vutils


def test_make_grid_layout_by_hand():
    # three 1x2x2 images valued 1, 2, 3; nrow=2, padding=1, pad_value=9 -> 2 rows of 2 cells:
    # height 2 * (2 + 1) + 1 = 7, width 2 * (2 + 1) + 1 = 7; grey is repeated to 3 channels
    batch = lamina.tensor(np.stack([np.full((1, 2, 2), v, np.float32) for v in (1, 2, 3)]))
    grid = vutils.make_grid(batch, nrow=2, padding=1, pad_value=9).numpy()
    expected = np.array([
        [9, 9, 9, 9, 9, 9, 9],
        [9, 1, 1, 9, 2, 2, 9],
        [9, 1, 1, 9, 2, 2, 9],
        [9, 9, 9, 9, 9, 9, 9],
        [9, 3, 3, 9, 9, 9, 9],
        [9, 3, 3, 9, 9, 9, 9],
        [9, 9, 9, 9, 9, 9, 9]], np.float32)
    assert grid.shape == (3, 7, 7)
    for c in range(3):
        np.testing.assert_array_equal(grid[c], expected)


def test_make_grid_shapes():
    assert vutils.make_grid(lamina.zeros(10, 3, 4, 5)).shape == (3, 2 * 6 + 2, 8 * 7 + 2)  # nrow 8: 2 rows
    assert vutils.make_grid(lamina.zeros(3, 3, 4, 5), nrow=8).shape == (3, 6 + 2, 3 * 7 + 2)  # xmaps = min(8, 3)
    assert vutils.make_grid(lamina.zeros(1, 1, 4, 5)).shape == (3, 4, 5)  # one image: no padding
    assert vutils.make_grid(lamina.zeros(4, 5)).shape == (3, 4, 5)
    assert vutils.make_grid([lamina.zeros(3, 4, 5)] * 2, padding=0).shape == (3, 4, 10)
    with pytest.raises(ValueError, match="make_grid: the images have different shapes"):
        vutils.make_grid([lamina.zeros(3, 4, 5), lamina.zeros(3, 4, 4)])


def test_make_grid_normalize():
    batch = lamina.tensor(np.array([[[[0.0, 2.0]]], [[[4.0, 8.0]]]], np.float32))
    g = vutils.make_grid(batch, padding=0, normalize=True).numpy()[0]
    np.testing.assert_allclose(g, [[0.0, 0.25, 0.5, 1.0]])  # one range for the batch: [0, 8]
    g = vutils.make_grid(batch, padding=0, normalize=True, scale_each=True).numpy()[0]
    np.testing.assert_allclose(g, [[0.0, 1.0, 0.0, 1.0]])  # each image its own range
    g = vutils.make_grid(batch, padding=0, normalize=True, value_range=(1.0, 5.0)).numpy()[0]
    np.testing.assert_allclose(g, [[0.0, 0.25, 0.75, 1.0]])  # clamped to the range first
    assert batch.numpy()[1, 0, 0, 1] == 8.0  # the input is not modified
    with pytest.raises(TypeError, match="make_grid: value_range must be a"):
        vutils.make_grid(batch, normalize=True, value_range=[0, 1])


def test_save_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    batch = rng.random((2, 3, 4, 5)).astype(np.float32)
    path = tmp_path / "grid.png"
    vutils.save_image(lamina.tensor(batch), path, nrow=2, padding=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (6, 13, 3) and img.dtype == np.uint8
    expected = np.clip(batch * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img[1:5, 1:6], expected[0].transpose(1, 2, 0))
    np.testing.assert_array_equal(img[1:5, 7:12], expected[1].transpose(1, 2, 0))
    assert img[0].sum() == 0 and img[:, 6].sum() == 0
    # values outside [0, 1] are clamped; 0.5 rounds half up to 128
    vutils.save_image(lamina.tensor([[[-1.0, 0.5, 2.0]]]), tmp_path / "one.png")
    assert np.asarray(Image.open(tmp_path / "one.png"))[0, :, 0].tolist() == [0, 128, 255]
