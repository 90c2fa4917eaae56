"""A T5-style encoder-decoder Transformer for sequence-to-sequence tasks: one token embedding shared
by the encoder input, the decoder input and the (tied) output projection; pre-norm layers
(``lamina.nn.Transformer`` with ``norm_first=True``, which ends each stack with a LayerNorm as T5
does); padding masks from ``pad_id``; a causal mask on the decoder; batched greedy decoding.

Where it departs from T5, and why:

- Positions are the fixed sinusoidal table of "Attention Is All You Need", added to the token
  embeddings of both stacks, not T5's learned relative-position biases. ``nn.Transformer``
  shares one attention mask across layers and has no per-layer position bias, and for the short
  synthetic tasks this model is trained on, absolute positions are what the decoder needs: output
  position ``t`` of a reversed string reads the source at ``length - 1 - t``, and the sinusoid's
  dot products depend only on the offset between two positions, which attention picks up in a
  few hundred steps. The table has no parameters to train, so it costs nothing in a short run.
- Embeddings follow the Transformer paper's tied scheme rather than T5's: weights start at
  N(0, 1/d_model) and are multiplied by sqrt(d_model) on input, so inputs have unit scale next to
  the sinusoids and the tied output logits ``h @ E^T`` start at unit scale too.
- LayerNorm with biases and ReLU feed-forward blocks, as in ``torch.nn.Transformer``, so the
  model matches one built from it weight for weight.
"""
from __future__ import annotations

import math

from .. import backend, creation, nn, no_grad, ops
from ..nn import functional as F


class Seq2SeqTransformer(nn.Module):
    """``forward(src, tgt_in) -> logits``: src (N, S) and tgt_in (N, T) int64 ids, logits (N, T, vocab_size).

    A source sequence ends at its first ``pad_id``: that position and every one after it are hidden
    from attention, whatever tokens they hold (so a source must not start with ``pad_id``: with
    nothing left to attend to, its outputs are NaN). ``tgt_in`` position ``t`` sees positions ``<= t``.
    Parameters: ``embed`` (shared and tied), ``pos`` (sinusoidal, no parameters) and ``transformer``
    (a ``lamina.nn.Transformer`` with ``batch_first=True``, ``norm_first=True``).
    """

    def __init__(self, vocab_size: int, d_model: int = 128, nhead: int = 4, num_encoder_layers: int = 3,
                 num_decoder_layers: int = 3, dim_feedforward: int = 512, dropout: float = 0.1,
                 max_len: int = 64, pad_id: int = 0):
        super().__init__()
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"Seq2SeqTransformer: pad_id={pad_id} is outside the vocabulary of {vocab_size}")
        self.vocab_size, self.d_model, self.max_len, self.pad_id = vocab_size, d_model, max_len, pad_id
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.SinusoidalPositionalEncoding(d_model, max_len, dropout=dropout, batch_first=True)
        self.transformer = nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                          dropout, batch_first=True, norm_first=True)
        nn.init.normal_(self.embed.weight, 0.0, d_model ** -0.5)

    def _embed(self, ids, what):
        if ids.ndim != 2 or backend.is_floating(ids.dtype) or ids.dtype == backend.bool_:
            raise ValueError(f"Seq2SeqTransformer: {what} must be (batch, length) integer ids, got shape "
                             f"{ids.shape} and dtype {ids.dtype}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"Seq2SeqTransformer: {what} of length {ids.shape[1]} is longer than max_len "
                             f"{self.max_len}")
        return self.pos(self.embed(ids) * math.sqrt(self.d_model))

    def source_padding_mask(self, src):
        """(N, S) bool, True from each row's first ``pad_id`` on: the keys attention must skip."""
        return (src == self.pad_id).cumsum(1) > 0

    def encode(self, src):
        """(memory (N, S, d_model), source padding mask (N, S)): what every decoding step reuses."""
        mask = self.source_padding_mask(src)
        memory = self.transformer.encoder(self._embed(src, "src"), src_key_padding_mask=mask)
        return memory, mask

    def decode(self, tgt_in, memory, memory_mask):
        """Decoder states (N, T, d_model) for ``tgt_in`` (N, T) attending to an encoded source."""
        if tgt_in.shape[0] != memory.shape[0]:
            raise ValueError(f"Seq2SeqTransformer: tgt_in {tgt_in.shape} and src batch {memory.shape[0]} differ")
        T = tgt_in.shape[1]
        causal = ops.triu(creation.ones(T, T, dtype=backend.bool_, device=tgt_in.device), 1)
        return self.transformer.decoder(self._embed(tgt_in, "tgt_in"), memory, tgt_mask=causal,
                                        memory_key_padding_mask=memory_mask, tgt_is_causal=True)

    def project(self, h):
        """Logits over the vocabulary from decoder states, through the tied embedding."""
        return F.linear(h, self.embed.weight)

    def forward(self, src, tgt_in):
        if src.ndim == 2 and tgt_in.ndim == 2 and src.shape[0] != tgt_in.shape[0]:
            raise ValueError(f"Seq2SeqTransformer: src {src.shape} and tgt_in {tgt_in.shape} must have the same "
                             f"batch size")
        memory, mask = self.encode(src)
        return self.project(self.decode(tgt_in, memory, mask))

    def loss(self, logits, tgt_out, label_smoothing: float = 0.0):
        """Mean token cross-entropy of ``logits`` (N, T, V) against ``tgt_out`` (N, T); ``pad_id`` is ignored."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=self.pad_id,
                               label_smoothing=label_smoothing)

    @no_grad()
    def greedy_decode(self, src, max_len: int, bos_id: int, eos_id: int):
        """(N, L) int64 ids, L <= ``max_len``: the argmax continuation of ``BOS`` for each source.

        The source is encoded once. A row stops at its ``eos_id`` (kept) and is ``pad_id`` after it;
        decoding ends when every row has stopped or after ``max_len`` tokens. Runs in eval mode.
        """
        if not 1 <= max_len <= self.max_len:
            raise ValueError(f"Seq2SeqTransformer.greedy_decode: max_len must be in [1, {self.max_len}], "
                             f"got {max_len}")
        was_training = self.training
        self.eval()
        try:
            memory, mask = self.encode(src)
            n = src.shape[0]
            ids = creation.full((n, 1), bos_id, dtype=backend.int64, device=src.device)
            done = creation.zeros(n, dtype=backend.bool_, device=src.device)
            for _ in range(max_len):
                h = self.decode(ids, memory, mask)[:, -1]
                nxt = self.project(h).argmax(-1).masked_fill(done, self.pad_id)
                ids = ops.cat([ids, nxt.unsqueeze(1)], 1)
                done = done | (nxt == eos_id)
                if bool(done.all().item()):
                    break
        finally:
            self.train(was_training)
        return ids[:, 1:]
