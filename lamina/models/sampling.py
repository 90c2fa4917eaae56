"""``next_token``: the one sampling step every autoregressive model here uses."""
from __future__ import annotations

from .. import ops
from ..nn import functional as F


def next_token(logits, temperature: float = 1.0, top_k: int | None = None, generator=None):
    """The next token id (B, 1) from the last position's ``logits`` (B, V).

    ``temperature == 0`` picks the most likely token (greedy); otherwise logits are divided by it
    and, with ``top_k`` (None or 0: all tokens), only the ``top_k`` most likely are kept before
    sampling from the softmax.
    """
    if temperature < 0:
        raise ValueError(f"next_token: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"next_token: top_k must be >= 0 (0: no limit), got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        kth = ops.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return ops.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
