"""Recurrent layers with PyTorch's semantics, defaults, initialisation and parameter names (a
PyTorch state dict loads by name): ``RNN``, ``LSTM`` and ``GRU`` over whole sequences (stacked,
bidirectional, batch-first, unbatched, with dropout between layers) and the one-step cells
``RNNCell``, ``LSTMCell`` and ``GRUCell``.

Sequences of different lengths share a batch without packing: ``forward(input, hx, lengths)``
zeroes the outputs past each sequence's length, returns the states at each sequence's last valid
step and starts the reverse direction there, as PyTorch does for packed sequences. A
``PackedSequence`` input is unpacked to that form and the output packed again.

Each layer projects the inputs of all its time steps with one matmul and hands the recurrence to
one op per direction (``lamina.ops.rnn``), which keeps Python out of the per-step work.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import creation, ops
from ..ops import rnn as rnn_ops
from ..tensor import Tensor
from . import functional as F, init
from .module import Module
from .parameter import Parameter
from .rnn_utils import PackedSequence, pack_like, pad_packed_sequence


class RNNBase(Module):
    """Shared by ``RNN``, ``LSTM`` and ``GRU``: parameters, checks, and the loop over layers and
    directions. ``gates`` is how many blocks of ``hidden_size`` rows each weight stacks."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        for what, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: {what} must be a positive integer, got {v!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers, so with num_layers=1 it does nothing",
                          stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        rows = self.gates * hidden_size

        def param(*shape):
            return Parameter(creation.empty(*shape, device=device, dtype=dtype))
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", param(rows, layer_input))
                setattr(self, f"weight_hh_l{layer}{suffix}", param(rows, hidden_size))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", param(rows))
                    setattr(self, f"bias_hh_l{layer}{suffix}", param(rows))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    # ------------------------------------------------------------ forward
    def flatten_parameters(self):
        """Does nothing: PyTorch compacts cuDNN's weight buffer here; Lamina's weights need no
        compacting. Kept so programs that call it run unchanged."""

    def forward(self, input, hx=None, lengths=None):
        """``input`` is (L, N, H_in), (N, L, H_in) with ``batch_first``, or unbatched (L, H_in),
        or a ``PackedSequence`` (then the output is one too, with the input's structure).

        Returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for LSTM): output (L, N, D * H_out)
        (batch first if the input is), each state (D * num_layers, N, H_out). ``lengths`` (one
        int per batch element, each in [1, L]) marks the steps past a sequence's end as padding:
        their outputs are zero and the final states are those of each sequence's last valid step.
        A packed input runs the same way, its lengths taken from the packing; ``hx`` and ``h_n``
        are in the original batch order, as in PyTorch.
        """
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{type(self).__name__}: a PackedSequence carries its own lengths; "
                                 "pass lengths only with a padded tensor")
            padded, lens = pad_packed_sequence(input)
            out, h = self._forward(padded, hx, lens, time_major=True)
            return pack_like(out, input), h
        return self._forward(input, hx, lengths)

    def _forward(self, input, hx, lengths, time_major=False):
        x, batched = self._time_major(input, time_major)
        T, B = x.shape[0], x.shape[1]
        states = self._initial_states(hx, input, x, batched)
        lens = self._lengths(lengths, input, batched, T, B)
        directions = 2 if self.bidirectional else 1
        finals = [[] for _ in states]
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                suffix = "_reverse" if d else ""
                w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
                b_ih = getattr(self, f"bias_ih_l{layer}{suffix}") if self.bias else None
                b_hh = getattr(self, f"bias_hh_l{layer}{suffix}") if self.bias else None
                w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
                idx = layer * directions + d
                y, *last = self._layer(x, w_ih, b_ih, w_hh, b_hh, [s[idx] for s in states], lens, bool(d))
                outs.append(y)
                for f, s in zip(finals, last):
                    f.append(s)
            x = outs[0] if directions == 1 else ops.cat(outs, -1)
            if layer < self.num_layers - 1:
                x = ops.dropout(x, self.dropout, self.training)
        finals = [ops.stack(f, 0) for f in finals]
        if not batched:
            x = x.squeeze(1)
            finals = [f.squeeze(1) for f in finals]
        elif self.batch_first and not time_major:
            x = x.transpose(0, 1)
        return x, (finals[0] if len(finals) == 1 else tuple(finals))

    def _layer(self, x, w_ih, b_ih, w_hh, b_hh, state, lengths, reverse):
        """One layer in one direction over the time-major input x: (y, *final states)."""
        raise NotImplementedError

    @staticmethod
    def _project(x, w_ih, bias):
        """The input part of every step's gates, for all steps in one matmul: (T, B, gates * H)."""
        T, B = x.shape[0], x.shape[1]
        return F.linear(x.reshape(T * B, x.shape[2]), w_ih, bias).reshape(T, B, w_ih.shape[0])

    # ------------------------------------------------------------ checks
    def _time_major(self, input, time_major=False):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor or PackedSequence input, got {type(input).__name__}")
        batch_first = self.batch_first and not time_major
        layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: expected input of shape {layout} or unbatched (L, H_in), got {input.shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input of shape {input.shape} has {input.shape[-1]} features, "
                             f"expected input_size={self.input_size}")
        w = self.weight_ih_l0
        if input.dtype != w.dtype:
            raise TypeError(f"{name}: input dtype {input.dtype} does not match the parameters' dtype {w.dtype}")
        batched = input.ndim == 3
        x = (input.transpose(0, 1) if batch_first else input) if batched else input.unsqueeze(1)
        if x.shape[0] == 0:
            raise ValueError(f"{name}: input of shape {input.shape} has no time steps")
        return x, batched

    def _state_names(self):
        return ("h_0",)

    def _initial_states(self, hx, input, x, batched):
        """Per state (h, and c for LSTM), one (B, H) tensor per layer and direction."""
        name = type(self).__name__
        names = self._state_names()
        B = x.shape[1]
        layers = self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            zeros = creation.zeros(B, self.hidden_size, dtype=x.dtype, device=x.device)
            return [[zeros] * layers for _ in names]
        if len(names) > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
                raise TypeError(f"{name}: hx must be a tuple ({', '.join(names)}), got {type(hx).__name__}")
        else:
            hx = (hx,)
        want = (layers, B, self.hidden_size) if batched else (layers, self.hidden_size)
        states = []
        for what, h in zip(names, hx):
            if not isinstance(h, Tensor):
                raise TypeError(f"{name}: {what} must be a Tensor, got {type(h).__name__}")
            if h.shape != want:
                raise ValueError(f"{name}: expected {what} of shape {want} for input of shape {input.shape}, "
                                 f"got {h.shape}")
            if h.dtype != x.dtype:
                raise TypeError(f"{name}: {what} has dtype {h.dtype} but the input has {x.dtype}")
            states.append(list(ops.unbind(h if batched else h.unsqueeze(1), 0)))
        return states

    def _lengths(self, lengths, input, batched, T, B):
        """``lengths`` as an int64 tensor on the input's device, checked on the host."""
        if lengths is None:
            return None
        name = type(self).__name__
        if not batched:
            raise ValueError(f"{name}: lengths needs batched input, got unbatched input of shape {input.shape}")
        host = lengths.detach().cpu().numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
        if host.dtype.kind not in "iu" or host.shape != (B,):
            raise ValueError(f"{name}: lengths must be {B} integers (one per sequence of input of shape "
                             f"{input.shape}), got {host.dtype} of shape {host.shape}")
        if host.min() < 1 or host.max() > T:
            raise ValueError(f"{name}: lengths must be in [1, {T}] for input of shape {input.shape}, got values in "
                             f"[{host.min()}, {host.max()}]")
        return creation.tensor(host.astype(np.int64), device=input.device)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


def _sum_bias(b_ih, b_hh):
    return None if b_ih is None else b_ih + b_hh


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)
        self.nonlinearity = nonlinearity

    def _layer(self, x, w_ih, b_ih, w_hh, b_hh, state, lengths, reverse):
        xg = self._project(x, w_ih, _sum_bias(b_ih, b_hh))
        return rnn_ops.rnn_sequence(xg, w_hh, state[0], lengths, reverse, self.nonlinearity)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


class LSTM(RNNBase):
    """Long short-term memory with gates i, f, g, o stacked in that order in each weight."""

    gates = 4

    def _state_names(self):
        return ("h_0", "c_0")

    def _layer(self, x, w_ih, b_ih, w_hh, b_hh, state, lengths, reverse):
        xg = self._project(x, w_ih, _sum_bias(b_ih, b_hh))
        return rnn_ops.lstm_sequence(xg, w_hh, state[0], state[1], lengths, reverse)


class GRU(RNNBase):
    """Gated recurrent unit with gates r, z, n and PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""

    gates = 3

    def _layer(self, x, w_ih, b_ih, w_hh, b_hh, state, lengths, reverse):
        xg = self._project(x, w_ih, b_ih)
        if b_hh is None:
            b_hh = creation.zeros(w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
        return rnn_ops.gru_sequence(xg, w_hh, b_hh, state[0], lengths, reverse)


# ---------------------------------------------------------------- cells

class RNNCellBase(Module):
    """One time step: parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` as in PyTorch."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        for what, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: {what} must be a positive integer, got {v!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        rows = self.gates * hidden_size
        self.weight_ih = Parameter(creation.empty(rows, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(creation.empty(rows, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(creation.empty(rows, device=device, dtype=dtype))
            self.bias_hh = Parameter(creation.empty(rows, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _one_step(self, input, hx, n_states, bias):
        """Checks, then the input projection as a one-step sequence (1, B, gates * H), the initial
        states as (B, H) tensors, and whether the input was batched."""
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {input.shape}")
        if input.dtype != self.weight_ih.dtype:
            raise TypeError(f"{name}: input dtype {input.dtype} does not match the parameters' dtype "
                            f"{self.weight_ih.dtype}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        B = x.shape[0]
        want = (B, self.hidden_size) if batched else (self.hidden_size,)
        if hx is None:
            zeros = creation.zeros(B, self.hidden_size, dtype=x.dtype, device=x.device)
            states = [zeros] * n_states
        else:
            hx = (hx,) if n_states == 1 else hx
            if n_states > 1 and (not isinstance(hx, (tuple, list)) or len(hx) != n_states):
                raise TypeError(f"{name}: hx must be a tuple (h, c), got {type(hx).__name__}")
            states = []
            for h in hx:
                if not isinstance(h, Tensor):
                    raise TypeError(f"{name}: hx must hold Tensors, got {type(h).__name__}")
                if h.shape != want:
                    raise ValueError(f"{name}: expected hidden state of shape {want} for input of shape "
                                     f"{input.shape}, got {h.shape}")
                if h.dtype != x.dtype:
                    raise TypeError(f"{name}: hidden state dtype {h.dtype} does not match the input's {x.dtype}")
                states.append(h if batched else h.unsqueeze(0))
        xg = F.linear(x, self.weight_ih, bias).unsqueeze(0)
        return xg, states, batched

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


def _unbatch(h, batched):
    return h if batched else h.squeeze(0)


class RNNCell(RNNCellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        xg, (h,), batched = self._one_step(input, hx, 1, _sum_bias(self.bias_ih, self.bias_hh))
        _, h = rnn_ops.rnn_sequence(xg, self.weight_hh, h, nonlinearity=self.nonlinearity)
        return _unbatch(h, batched)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, (h, c))`` returns ``(h', c')``."""

    gates = 4

    def forward(self, input, hx=None):
        xg, (h, c), batched = self._one_step(input, hx, 2, _sum_bias(self.bias_ih, self.bias_hh))
        _, h, c = rnn_ops.lstm_sequence(xg, self.weight_hh, h, c)
        return _unbatch(h, batched), _unbatch(c, batched)


class GRUCell(RNNCellBase):
    """One GRU step with PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""

    gates = 3

    def forward(self, input, hx=None):
        xg, (h,), batched = self._one_step(input, hx, 1, self.bias_ih)
        b_hh = self.bias_hh
        if b_hh is None:
            b_hh = creation.zeros(self.weight_hh.shape[0], dtype=xg.dtype, device=xg.device)
        _, h = rnn_ops.gru_sequence(xg, self.weight_hh, b_hh, h)
        return _unbatch(h, batched)
