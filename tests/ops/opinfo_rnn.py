"""Samples of the recurrent sequence ops (lamina/ops/rnn.py). The references step PyTorch's own
cells (``torch.lstm_cell``, ``torch.gru_cell``, ``torch.rnn_*_cell``) over time with an identity
input weight, so the gate arithmetic under test is PyTorch's."""
from __future__ import annotations

import numpy as np
import torch

from lamina.ops import rnn
from tests.ops.opinfo import OpInfo, R, Sample

T, B, H = 4, 3, 2
LENGTHS = np.array([4, 1, 3])


def _torch_steps(cell, gates, xg, h0, lengths, reverse):
    """Run ``cell(x_t, state) -> state`` over time; padded steps keep the state and output zeros."""
    eye = torch.eye(gates * H, dtype=xg.dtype)
    steps = range(xg.shape[0] - 1, -1, -1) if reverse else range(xg.shape[0])
    state, ys = h0, [None] * xg.shape[0]
    for t in steps:
        new = cell(xg[t], state, eye)
        h_new = new[0] if isinstance(new, tuple) else new
        if lengths is None:
            state, ys[t] = new, h_new
            continue
        v = (t < lengths)[:, None]
        if isinstance(new, tuple):
            state = tuple(torch.where(v, n, s) for n, s in zip(new, state))
        else:
            state = torch.where(v, new, state)
        ys[t] = torch.where(v, h_new, torch.zeros_like(h_new))
    return (torch.stack(ys),) + (state if isinstance(state, tuple) else (state,))


def lstm_ref(xg, w_hh, h0, c0, lengths=None, reverse=False):
    return _torch_steps(lambda x, s, eye: torch.lstm_cell(x, s, eye, w_hh), 4, xg, (h0, c0), lengths, reverse)


def gru_ref(xg, w_hh, b_hh, h0, lengths=None, reverse=False):
    zeros = torch.zeros(3 * H, dtype=xg.dtype)
    return _torch_steps(lambda x, s, eye: torch.gru_cell(x, s, eye, w_hh, zeros, b_hh), 3, xg, h0, lengths, reverse)


def rnn_ref(xg, w_hh, h0, lengths=None, reverse=False, nonlinearity="tanh"):
    cell = torch.rnn_relu_cell if nonlinearity == "relu" else torch.rnn_tanh_cell
    return _torch_steps(lambda x, s, eye: cell(x, s, eye, w_hh), 1, xg, h0, lengths, reverse)


def _samples(gates, extra):
    """Forward and reverse, with and without lengths, and one step; ``extra`` adds per-op inputs."""
    def samples(rng):
        def args(t):
            return (R(rng, t, B, gates * H), R(rng, gates * H, H)) + extra(rng)
        yield Sample(args(T))
        yield Sample(args(T), dict(reverse=True), desc="reverse")
        # lengths go positionally: the harness converts arrays in args only
        yield Sample(args(T) + (LENGTHS,), desc="lengths")
        yield Sample(args(T) + (LENGTHS,), dict(reverse=True), desc="lengths reverse")
        yield Sample(args(1), desc="one step")
    return samples


def _relu_samples(rng):
    for s in _samples(1, lambda rng: (R(rng, B, H),))(rng):
        yield Sample(s.args, dict(s.kwargs, nonlinearity="relu"), s.desc)


OPS = [
    OpInfo("lstm_sequence", rnn.lstm_sequence, lstm_ref, _samples(4, lambda rng: (R(rng, B, H), R(rng, B, H)))),
    OpInfo("gru_sequence", rnn.gru_sequence, gru_ref, _samples(3, lambda rng: (R(rng, 3 * H), R(rng, B, H)))),
    OpInfo("rnn_sequence", rnn.rnn_sequence, rnn_ref, _samples(1, lambda rng: (R(rng, B, H),))),
    OpInfo("rnn_sequence_relu", rnn.rnn_sequence, rnn_ref, _relu_samples),
]
