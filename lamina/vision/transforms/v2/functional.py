"""torchvision's ``transforms.v2.functional`` names: the v1 functional forms, their v2 aliases
(``horizontal_flip``, ``vertical_flip``, ``to_grayscale``) and ``to_image`` / ``to_dtype``."""
import numpy as np

from .... import backend, creation
from ..functional import *
from ..functional import convert_image_dtype, hflip, pil_to_tensor, rgb_to_grayscale, vflip

horizontal_flip = hflip
vertical_flip = vflip
to_grayscale = rgb_to_grayscale


def to_image(inpt):
    """A PIL image or an (H, W[, C]) ndarray as a (C, H, W) Tensor, values and dtype unchanged;
    a Tensor is returned as it is."""
    if isinstance(inpt, np.ndarray):
        if inpt.ndim not in (2, 3):
            raise ValueError(f"to_image: expected an ndarray of 2 or 3 dims (H, W[, C]), got shape {inpt.shape}")
        arr = inpt[:, :, None] if inpt.ndim == 2 else inpt
        return creation.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if hasattr(inpt, "shape") and hasattr(inpt, "dtype"):
        return inpt
    return pil_to_tensor(inpt)


def to_dtype(inpt, dtype=backend.float32, scale=False):
    """``inpt`` in ``dtype``; with ``scale``, values are rescaled (uint8 [0, 255] <-> float [0, 1])."""
    dtype = backend.as_dtype(dtype)
    return convert_image_dtype(inpt, dtype) if scale else inpt.to(dtype)
