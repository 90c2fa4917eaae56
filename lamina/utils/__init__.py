"""Utilities on PyTorch's paths: ``lamina.utils.data`` is ``torch.utils.data``'s counterpart."""
from . import data  # noqa: F401
