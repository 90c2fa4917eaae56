"""``lamina.amp``: automatic mixed precision, as ``torch.amp``.

``autocast`` (``autocast_mode``) runs the matrix products and convolutions inside it in a lower
precision (bfloat16 or float16) with float32 accumulation, and the precision-sensitive ops
(losses, and on the GPU softmax and normalisation) in float32. ``GradScaler`` (``grad_scaler``)
scales the loss so small float16 gradients do not flush to zero, and skips the steps whose
gradients overflowed. Ops take part through the ``autocast_op`` decorator on their functions.
"""
from .autocast_mode import (  # noqa: F401
    autocast, autocast_op, get_autocast_dtype, is_autocast_available, is_autocast_enabled,
)
from .grad_scaler import GradScaler  # noqa: F401
