"""``lamina.nn.utils.rnn``: batches of variable-length sequences, as ``torch.nn.utils.rnn``.

``pad_sequence`` stacks sequences into one zero-padded tensor; ``pack_padded_sequence`` and
``pack_sequence`` make a ``PackedSequence`` (the valid steps only, time step by time step, longest
sequence first); ``pad_packed_sequence`` turns one back into a padded tensor and its lengths. The
recurrent layers take a ``PackedSequence`` and return one. Packing and unpacking are row gathers
(``index_select``), so gradients flow through them.

``lamina.nn.utils`` is a module, so this file is registered under the name ``lamina.nn.utils.rnn``
when ``lamina.nn`` is imported (as ``os.path`` is), and ``from lamina.nn.utils.rnn import ...``
works as it does with PyTorch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import backend, creation, ops
from ..tensor import Tensor


def _host_ints(values, opname, what):
    """An int64 NumPy copy of a list or tensor of integers."""
    if isinstance(values, Tensor):
        arr = values.detach().cpu().numpy()
    else:
        arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{opname}: {what} must be a 1-D sequence of integers, got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


def _index_tensor(arr, device=None):
    return creation.tensor(np.asarray(arr, dtype=np.int64), device=device)


class PackedSequence(NamedTuple):
    """Sequences of different lengths without padding, as PyTorch's.

    ``data`` (sum of lengths, *) holds step 0 of every sequence, then step 1 of every sequence
    still running, and so on, with the sequences ordered longest first; ``batch_sizes`` (int64,
    on the CPU) says how many sequences run at each step. ``sorted_indices`` maps that order to
    the original batch positions and ``unsorted_indices`` back (both None when the batch was
    already sorted by decreasing length).
    """

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args, **kwargs):
        """The same sequences with ``data`` moved/cast as ``Tensor.to``; the index tensors follow
        the device, ``batch_sizes`` stays on the CPU."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        def move(t):
            return None if t is None else t.to(data.device)
        return type(self)(data, self.batch_sizes, move(self.sorted_indices), move(self.unsorted_indices))

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(backend.float32)

    def double(self):
        return self.to(backend.float64)

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda


def _invert(perm):
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    return inv


def _order(packed):
    """(sorted -> original, original -> sorted) batch index arrays of a PackedSequence."""
    n = int(packed.batch_sizes[0].item()) if packed.batch_sizes.numel() else 0
    if packed.sorted_indices is None:
        ident = np.arange(n)
        return ident, ident
    s = _host_ints(packed.sorted_indices, "PackedSequence", "sorted_indices")
    u = _invert(s) if packed.unsorted_indices is None else _host_ints(packed.unsorted_indices, "PackedSequence",
                                                                        "unsorted_indices")
    return s, u


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors of shape (L_i, *) into (L_max, B, *) ((B, L_max, *) with ``batch_first``),
    filling the missing steps with ``padding_value`` (after each sequence, or before it with
    ``padding_side="left"``)."""
    opname = "pad_sequence"
    if isinstance(sequences, Tensor):
        sequences = list(ops.unbind(sequences, 0))
    sequences = list(sequences)
    if not sequences:
        raise ValueError(f"{opname}: expected at least one sequence, got none")
    if padding_side not in ("left", "right"):
        raise ValueError(f"{opname}: padding_side must be 'left' or 'right', got {padding_side!r}")
    first = sequences[0]
    for i, s in enumerate(sequences):
        if not isinstance(s, Tensor):
            raise TypeError(f"{opname}: sequence {i} is a {type(s).__name__}, expected a Tensor")
        if s.ndim < 1 or s.shape[1:] != first.shape[1:]:
            raise ValueError(f"{opname}: sequence {i} has shape {s.shape}, but sequence 0 has {first.shape}; "
                             "all must be (L_i, *) with the same trailing dims")
    longest = max(s.shape[0] for s in sequences)
    padded = []
    for s in sequences:
        missing = longest - s.shape[0]
        if missing:
            widths = [0, 0] * (s.ndim - 1) + ([0, missing] if padding_side == "right" else [missing, 0])
            s = ops.pad(s, widths, value=padding_value)
        padded.append(s)
    return ops.stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The list of unpadded sequences (L_i, *) of a padded batch."""
    lens = _host_ints(lengths, "unpad_sequence", "lengths")
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    if len(lens) != x.shape[0]:
        raise ValueError(f"unpad_sequence: {len(lens)} lengths for a batch of {x.shape[0]} sequences "
                         f"(input shape {padded_sequences.shape})")
    return [x[i, :int(n)] for i, n in enumerate(lens)]


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) ((B, T, *) with ``batch_first``) whose sequence b has
    ``lengths[b]`` valid steps. With ``enforce_sorted`` the lengths must not increase along the
    batch; otherwise the batch is sorted here and the order kept in the result."""
    opname = "pack_padded_sequence"
    if not isinstance(input, Tensor) or input.ndim < 2:
        raise ValueError(f"{opname}: expected a padded tensor of at least 2 dims, got "
                         f"{input.shape if isinstance(input, Tensor) else type(input).__name__}")
    lens = _host_ints(lengths, opname, "lengths")
    x = input.transpose(0, 1) if batch_first else input
    T, B = x.shape[0], x.shape[1]
    if len(lens) != B:
        raise ValueError(f"{opname}: {len(lens)} lengths for a batch of {B} sequences (input shape {input.shape}, "
                         f"batch_first={batch_first})")
    if B and (lens.min() <= 0 or lens.max() > T):
        raise ValueError(f"{opname}: lengths must be in [1, {T}] for input of shape {input.shape}, got "
                         f"{lens.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise ValueError(f"{opname}: lengths {lens.tolist()} must be sorted in decreasing order when "
                             "enforce_sorted=True; pass enforce_sorted=False to pack an unsorted batch")
        order, sorted_idx, unsorted_idx = np.arange(B), None, None
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_idx = _index_tensor(order, input.device)
        unsorted_idx = _index_tensor(_invert(order), input.device)
    sorted_lens = lens[order]
    steps = int(sorted_lens[0]) if B else 0
    batch_sizes = np.array([(sorted_lens > t).sum() for t in range(steps)], dtype=np.int64)
    rows = np.concatenate([t * B + order[:n] for t, n in enumerate(batch_sizes)]) if steps else np.zeros(0, np.int64)
    flat = x.reshape(T * B, *x.shape[2:])
    data = ops.index_select(flat, 0, _index_tensor(rows, input.device))
    return PackedSequence(data, _index_tensor(batch_sizes), sorted_idx, unsorted_idx)


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of (L_i, *) tensors (longest first unless ``enforce_sorted=False``)."""
    sequences = list(sequences)
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def _padded_rows(batch_sizes, sorted_to_orig, steps, pad_row):
    """For each (t, original b) of a (steps, B) padded layout, the packed row it comes from, or
    ``pad_row`` past the sequence's end."""
    B = len(sorted_to_orig)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]]).astype(np.int64)
    rows = np.full((steps, B), pad_row, dtype=np.int64)
    for t, n in enumerate(batch_sizes):
        rows[t, sorted_to_orig[:n]] = offsets[t] + np.arange(n)
    return rows.reshape(-1)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Unpack to ``(padded, lengths)``: padded (T, B, *) ((B, T, *) with ``batch_first``) in the
    original batch order, T the longest length (or ``total_length``), and the lengths as an
    int64 CPU tensor."""
    opname = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{opname}: expected a PackedSequence, got {type(sequence).__name__}")
    batch_sizes = _host_ints(sequence.batch_sizes, opname, "batch_sizes")
    steps = len(batch_sizes)
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"{opname}: total_length {total_length} is shorter than the longest sequence "
                             f"({steps} steps)")
        steps = int(total_length)
    sorted_to_orig, orig_to_sorted = _order(sequence)
    data = sequence.data
    B = len(sorted_to_orig)
    pad = creation.full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    ext = ops.cat([data, pad], 0)
    rows = _padded_rows(batch_sizes, sorted_to_orig, steps, data.shape[0])
    padded = ops.index_select(ext, 0, _index_tensor(rows, data.device)).reshape(steps, B, *data.shape[1:])
    sorted_lens = np.array([(batch_sizes > b).sum() for b in range(B)], dtype=np.int64)
    lengths = _index_tensor(sorted_lens[orig_to_sorted])
    return (padded.transpose(0, 1) if batch_first else padded), lengths


def unpack_sequence(packed_sequences):
    """The list of (L_i, *) sequences of a PackedSequence, in the original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


def pack_like(padded, like: PackedSequence) -> PackedSequence:
    """Pack the time-major (T, B, *) ``padded`` with the structure of ``like`` (the same
    batch sizes and batch order); the recurrent layers use it for their packed outputs."""
    batch_sizes = _host_ints(like.batch_sizes, "pack_like", "batch_sizes")
    sorted_to_orig, _ = _order(like)
    B = padded.shape[1]
    rows = np.concatenate([t * B + sorted_to_orig[:n] for t, n in enumerate(batch_sizes)])
    flat = padded.reshape(padded.shape[0] * B, *padded.shape[2:])
    data = ops.index_select(flat, 0, _index_tensor(rows, padded.device))
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
