"""torchvision's ``transforms.v2`` names: the same transforms plus ``ToImage`` and ``ToDtype``.

``ToImage`` turns a PIL image or an (H, W, C) ndarray into a (C, H, W) Tensor of its own dtype;
``ToDtype(dtype, scale=False)`` converts a tensor image's dtype, rescaling values when ``scale``.
"""
import numpy as np

from .... import backend, creation
from .. import functional  # noqa: F401
from ..functional import InterpolationMode, convert_image_dtype, pil_to_tensor  # noqa: F401
from ..transforms import *
from ..transforms import Transform


class ToImage(Transform):
    """PIL image or (H, W[, C]) ndarray -> (C, H, W) Tensor, values and dtype unchanged."""

    def forward(self, img):
        if isinstance(img, np.ndarray):
            arr = img[:, :, None] if img.ndim == 2 else img
            return creation.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if hasattr(img, "shape") and hasattr(img, "dtype"):
            return img
        return pil_to_tensor(img)


class ToDtype(Transform):
    """Tensor image to ``dtype``; with ``scale``, values are rescaled as ``convert_image_dtype``."""

    def __init__(self, dtype, scale=False):
        self.dtype, self.scale = backend.as_dtype(dtype), scale

    def forward(self, img):
        return convert_image_dtype(img, self.dtype) if self.scale else img.to(self.dtype)

    def extra_repr(self):
        return f"dtype={self.dtype}, scale={self.scale}"
