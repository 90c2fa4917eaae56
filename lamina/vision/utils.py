"""``make_grid`` (a batch of images tiled into one image) and ``save_image``, with torchvision's
layout rules.

Layout: images go left to right, top to bottom, ``xmaps = min(nrow, N)`` per row and
``ceil(N / xmaps)`` rows; each cell is the image plus ``padding`` pixels on its top and left, and
the grid has one more ``padding`` strip on the right and bottom, so the grid is
``(C, rows * (H + padding) + padding, xmaps * (W + padding) + padding)`` filled with
``pad_value`` between images. Grey images (C = 1) are repeated to 3 channels; a single image is
returned as it is (after that and after ``normalize``), without padding.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import backend, creation
from ..tensor import Tensor

try:
    from PIL import Image
except ImportError:
    Image = None


def _as_batch(tensor) -> np.ndarray:
    if isinstance(tensor, (list, tuple)):
        if not tensor or not all(isinstance(t, Tensor) for t in tensor):
            raise TypeError("make_grid: expected a Tensor or a non-empty list of Tensors")
        shapes = {tuple(t.shape) for t in tensor}
        if len(shapes) != 1:
            raise ValueError(f"make_grid: the images have different shapes {sorted(shapes)}")
        return np.stack([t.detach().cpu().numpy() for t in tensor])
    if not isinstance(tensor, Tensor):
        raise TypeError(f"make_grid: expected a Tensor or a list of Tensors, got {type(tensor).__name__}")
    return tensor.detach().cpu().numpy()


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """Tile a (N, C, H, W) batch (or a list of (C, H, W) images, or one (C, H, W) / (H, W)
    image) into one (C, H', W') image; see the module docstring for the layout.

    ``normalize`` maps ``value_range`` (default: the min and max of the whole batch, or of each
    image with ``scale_each``) to [0, 1], clamping outside it.
    """
    device = tensor[0].device if isinstance(tensor, (list, tuple)) and tensor else getattr(tensor, "device", None)
    a = _as_batch(tensor)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3:
        if a.shape[0] == 1:
            a = np.concatenate([a, a, a], 0)
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"make_grid: expected images of shape (N, C, H, W), (C, H, W) or (H, W), got {a.shape}")
    if a.shape[1] == 1:
        a = np.concatenate([a, a, a], 1)
    if normalize:
        if value_range is not None and not (isinstance(value_range, tuple) and len(value_range) == 2):
            raise TypeError(f"make_grid: value_range must be a (min, max) tuple, got {value_range!r}")
        a = a.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32, copy=True)
        parts = list(a) if scale_each else [a]
        for part in parts:
            low, high = value_range if value_range is not None else (float(part.min()), float(part.max()))
            np.clip(part, low, high, out=part)
            part -= low
            part /= max(high - low, 1e-5)
    if a.shape[0] == 1:
        return creation.tensor(a[0], dtype=backend.as_dtype(a.dtype), device=device)
    nmaps = a.shape[0]
    xmaps = min(nrow, nmaps)
    ymaps = math.ceil(nmaps / xmaps)
    height, width = a.shape[2] + padding, a.shape[3] + padding
    grid = np.full((a.shape[1], height * ymaps + padding, width * xmaps + padding), pad_value, dtype=a.dtype)
    for k in range(nmaps):
        y, x = divmod(k, xmaps)
        top, left = y * height + padding, x * width + padding
        grid[:, top:top + height - padding, left:left + width - padding] = a[k]
    return creation.tensor(grid, dtype=backend.as_dtype(grid.dtype), device=device)


def save_image(tensor, fp, format=None, **kwargs):
    """Write ``make_grid(tensor, **kwargs)`` as an image file (PNG, JPEG, ... by ``fp``'s extension
    or ``format``). Values in [0, 1] map to bytes as round(x * 255), clamped."""
    if Image is None:
        raise ImportError("save_image: writing images needs Pillow: pip install 'lamina[image]'")
    grid = make_grid(tensor, **kwargs).numpy()
    # x * 255 + 0.5 truncated is round-half-up, as torchvision does it
    values = grid if np.issubdtype(grid.dtype, np.floating) else grid.astype(np.float32)
    arr = np.clip(values * values.dtype.type(255) + values.dtype.type(0.5), 0, 255).astype(np.uint8)
    arr = arr.transpose(1, 2, 0)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(np.ascontiguousarray(arr))
    img.save(os.fspath(fp) if isinstance(fp, os.PathLike) else fp, format=format)
