"""``lamina.nn.utils.rnn`` against ``torch.nn.utils.rnn``: padding, packing and unpacking (values,
batch sizes, batch order, gradients), and the recurrent layers on PackedSequence inputs with the
same weights (outputs, final states, input and parameter gradients)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn as trnn

import lamina
import lamina.nn as nn
from lamina.nn.utils.rnn import (
    PackedSequence, pack_padded_sequence, pack_sequence, pad_packed_sequence, pad_sequence, unpack_sequence,
    unpad_sequence,
)

LENGTHS = [2, 5, 3, 1]  # unsorted, no ties: PyTorch's (unstable) sort order is then the only order


def _seqs(lengths=LENGTHS, features=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, features)) for n in lengths]
    return ([lamina.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.detach().cpu().numpy()


def _same_packed(p, tp):
    np.testing.assert_allclose(_np(p.data), _np(tp.data), rtol=1e-12)
    assert p.batch_sizes.tolist() == tp.batch_sizes.tolist()
    assert p.batch_sizes.dtype == lamina.int64 and p.batch_sizes.device.type == "cpu"
    for mine, theirs in ((p.sorted_indices, tp.sorted_indices), (p.unsorted_indices, tp.unsorted_indices)):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.tolist() == theirs.tolist()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, side):
    ls, ts = _seqs()
    out = pad_sequence(ls, batch_first=batch_first, padding_value=-1.5, padding_side=side)
    tout = trnn.pad_sequence(ts, batch_first=batch_first, padding_value=-1.5, padding_side=side)
    np.testing.assert_array_equal(_np(out), _np(tout))
    w = np.random.default_rng(1).standard_normal(tout.shape)
    (out * lamina.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    for a, b in zip(ls, ts):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pack_and_unpack_match_torch(enforce_sorted, batch_first):
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    ls, ts = _seqs(lengths)
    padded = pad_sequence(ls, batch_first=batch_first)
    tpadded = trnn.pad_sequence(ts, batch_first=batch_first)
    p = pack_padded_sequence(padded, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    tp = trnn.pack_padded_sequence(tpadded, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    assert isinstance(p, PackedSequence) and isinstance(p, tuple) and len(p) == 4
    _same_packed(p, tp)
    out, lens = pad_packed_sequence(p, batch_first=batch_first, padding_value=7.0, total_length=6)
    tout, tlens = trnn.pad_packed_sequence(tp, batch_first=batch_first, padding_value=7.0, total_length=6)
    np.testing.assert_array_equal(_np(out), _np(tout))
    assert lens.tolist() == tlens.tolist() and lens.dtype == lamina.int64
    w = np.random.default_rng(2).standard_normal(tout.shape)
    (out * lamina.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    for a, b in zip(ls, ts):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


def test_pack_sequence_unpack_and_unpad_round_trip():
    ls, ts = _seqs()
    p, tp = pack_sequence(ls, enforce_sorted=False), trnn.pack_sequence(ts, enforce_sorted=False)
    _same_packed(p, tp)
    for a, b in zip(unpack_sequence(p), trnn.unpack_sequence(tp)):
        np.testing.assert_array_equal(_np(a), _np(b))
    padded, lens = pad_packed_sequence(p, batch_first=True)
    for a, s in zip(unpad_sequence(padded, lens, batch_first=True), ls):
        np.testing.assert_array_equal(_np(a), _np(s))
    assert p.to(lamina.float32).data.dtype == lamina.float32
    assert p.double() is p and not p.is_cuda


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_hx,sort", [(False, False), (True, False), (True, True)],
                         ids=["no_hx", "hx", "hx_presorted"])
def test_recurrent_layers_on_packed_input_match_torch(cls, bidirectional, with_hx, sort):
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls)(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    lm = getattr(nn, cls)(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True, dtype=lamina.float64)
    lm.load_state_dict({k: lamina.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    ls, ts = _seqs(sorted(LENGTHS, reverse=True) if sort else LENGTHS)
    p = pack_sequence(ls, enforce_sorted=sort)
    tp = trnn.pack_sequence(ts, enforce_sorted=sort)
    hx = thx = None
    if with_hx:  # in the original batch order, as PyTorch takes it
        rng = np.random.default_rng(3)
        shape = (2 * (2 if bidirectional else 1), len(LENGTHS), 4)
        states = [rng.standard_normal(shape) for _ in range(2 if cls == "LSTM" else 1)]
        hx = tuple(lamina.tensor(s) for s in states)
        thx = tuple(torch.tensor(s) for s in states)
        if cls != "LSTM":
            hx, thx = hx[0], thx[0]
    lm.flatten_parameters()
    tm.flatten_parameters()
    out, h = lm(p, hx)
    tout, th = tm(tp, thx)
    assert isinstance(out, PackedSequence)
    _same_packed(PackedSequence(out.data, out.batch_sizes, out.sorted_indices, out.unsorted_indices), tout)
    h = h if isinstance(h, tuple) else (h,)
    th = th if isinstance(th, tuple) else (th,)
    for a, b in zip(h, th):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(4)
    w = rng.standard_normal(tout.data.shape)
    wh = [rng.standard_normal(b.shape) for b in th]
    loss = (out.data * lamina.tensor(w)).sum()
    tloss = (tout.data * torch.tensor(w)).sum()
    for a, b, v in zip(h, th, wh):
        loss = loss + (a * lamina.tensor(v)).sum()
        tloss = tloss + (b * torch.tensor(v)).sum()
    loss.backward()
    tloss.backward()
    for a, b in zip(ls, ts):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    tparams = dict(tm.named_parameters())
    for name, prm in lm.named_parameters():
        np.testing.assert_allclose(prm.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_packed_input_equals_padded_input_with_lengths():
    lm = nn.GRU(3, 4, dtype=lamina.float64)
    ls, _ = _seqs()
    out, h = lm(pack_sequence(ls, enforce_sorted=False))
    out2, h2 = lm(pad_sequence(ls), lengths=LENGTHS)
    padded, lens = pad_packed_sequence(out)
    np.testing.assert_allclose(_np(padded), _np(out2), rtol=1e-12)
    np.testing.assert_allclose(_np(h), _np(h2), rtol=1e-12)
    assert lens.tolist() == LENGTHS


def test_utils_rnn_import_paths():
    import lamina.nn.utils.rnn as by_import
    assert lamina.nn.utils.rnn is by_import
    assert by_import.pad_sequence is pad_sequence


def test_packing_errors_are_clear():
    ls, _ = _seqs()
    padded = pad_sequence(ls)
    with pytest.raises(ValueError, match=r"lengths \[2, 5, 3, 1\] must be sorted in decreasing order .* "
                                         "enforce_sorted=False"):
        pack_padded_sequence(padded, LENGTHS)
    with pytest.raises(ValueError, match=r"pack_padded_sequence: lengths must be in \[1, 5\]"):
        pack_padded_sequence(padded, [5, 3, 2, 0])
    with pytest.raises(ValueError, match=r"pack_padded_sequence: 3 lengths for a batch of 4 sequences"):
        pack_padded_sequence(padded, [5, 3, 2])
    with pytest.raises(ValueError, match="pad_sequence: sequence 1 has shape"):
        pad_sequence([lamina.ones(2, 3), lamina.ones(2, 4)])
    p = pack_sequence(ls, enforce_sorted=False)
    with pytest.raises(ValueError, match="pad_packed_sequence: total_length 3 is shorter than the longest"):
        pad_packed_sequence(p, total_length=3)
    with pytest.raises(TypeError, match="pad_packed_sequence: expected a PackedSequence"):
        pad_packed_sequence(padded)
    with pytest.raises(ValueError, match="LSTM: a PackedSequence carries its own lengths"):
        nn.LSTM(3, 4, dtype=lamina.float64)(p, lengths=LENGTHS)
