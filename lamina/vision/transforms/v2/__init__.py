"""torchvision's ``transforms.v2`` names: the same transforms plus ``ToImage`` and ``ToDtype``,
and ``v2.functional`` with ``to_image`` / ``to_dtype`` and the v2 aliases."""
from ..functional import InterpolationMode  # noqa: F401
from ..transforms import *
from ..transforms import Transform
from . import functional  # noqa: F401
from .functional import to_dtype, to_image


class ToImage(Transform):
    """PIL image or (H, W[, C]) ndarray -> (C, H, W) Tensor, values and dtype unchanged."""

    def forward(self, img):
        return to_image(img)


class ToDtype(Transform):
    """Tensor image to ``dtype``; with ``scale``, values are rescaled as ``convert_image_dtype``."""

    def __init__(self, dtype, scale=False):
        self.dtype, self.scale = dtype, scale

    def forward(self, img):
        return to_dtype(img, self.dtype, self.scale)

    def extra_repr(self):
        return f"dtype={self.dtype}, scale={self.scale}"

