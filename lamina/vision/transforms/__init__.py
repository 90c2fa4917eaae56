"""Image transforms with torchvision's names (``from lamina.vision import transforms``): the
transform objects, ``transforms.functional`` and ``transforms.v2``."""
from . import (
    functional,  # noqa: F401
    v2,  # noqa: F401
)
from .functional import InterpolationMode  # noqa: F401
from .transforms import *
from .transforms import __all__  # noqa: F401
