"""CharRNN: an LSTM language model over characters (embedding -> LSTM -> linear)."""
from __future__ import annotations

import dataclasses

from .. import nn, no_grad, ops
from ..nn import functional as F
from .sampling import next_token


@dataclasses.dataclass
class CharRNNConfig:
    vocab_size: int = 65
    n_embd: int = 64
    hidden_size: int = 256
    n_layer: int = 2
    dropout: float = 0.0


class CharRNN(nn.Module):
    """``forward(idx, targets=None, state=None) -> (logits, loss, state)``; the state carries the
    LSTM's (h, c) so text can be generated (or long text read) one chunk at a time."""

    def __init__(self, cfg: CharRNNConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.lstm = nn.LSTM(cfg.n_embd, cfg.hidden_size, cfg.n_layer, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, idx, targets=None, state=None):
        out, state = self.lstm(self.embed(idx), state)
        logits = self.head(self.drop(out))
        loss = None
        if targets is not None:
            b, t = idx.shape
            loss = F.cross_entropy(logits.reshape(b * t, -1), targets.reshape(b * t), ignore_index=-1)
        return logits, loss, state

    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator=None):
        """Read ``idx`` (B, T), then sample one token at a time, feeding the LSTM state forward."""
        was_training = self.training
        self.eval()
        try:
            logits, _, state = self(idx)
            for _ in range(max_new_tokens):
                nxt = next_token(logits[:, -1, :], temperature, top_k, generator)
                idx = ops.cat([idx, nxt], dim=1)
                logits, _, state = self(nxt, state=state)
        finally:
            self.train(was_training)
        return idx
