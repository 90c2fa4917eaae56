"""Recurrent layers against PyTorch in float64: PyTorch's weights loaded by name, then equal
outputs, final states and gradients (input, initial states, every parameter) across the layer
options; ``lengths`` against PyTorch's packed sequences; cells; dropout between layers; errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lamina
from lamina.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

I, H, T, B = 3, 4, 5, 3

# kind -> (lamina class, torch class, extra constructor arguments)
KINDS = {
    "rnn_tanh": (RNN, torch.nn.RNN, {}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "gru": (GRU, torch.nn.GRU, {}),
}
CELLS = {
    "rnn_tanh": (RNNCell, torch.nn.RNNCell, {}),
    "rnn_relu": (RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (GRUCell, torch.nn.GRUCell, {}),
}


def make_pair(table, kind, *args, **kwargs):
    """A float64 torch layer and the lamina layer holding its weights (loaded by name)."""
    cls, tcls, extra = table[kind]
    torch.manual_seed(0)
    tm = tcls(*args, **extra, **kwargs).double()
    lm = cls(*args, **extra, **kwargs).double()
    lm.load_state_dict(tm.state_dict())
    return lm, tm


def leaves(rng, *shapes):
    """The same random float64 values as lamina and torch leaves that require grad."""
    arrays = [rng.standard_normal(s) for s in shapes]
    return ([lamina.tensor(a, dtype=lamina.float64, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def flat(out):
    """(output, h_n) or (output, (h_n, c_n)) as a flat list."""
    first, rest = out
    return [first] + (list(rest) if isinstance(rest, tuple) else [rest])


def compare(louts, touts, lgrad_of, tgrad_of, rng, names):
    """Equal outputs, then equal gradients of one random projection of all outputs."""
    assert len(louts) == len(touts)
    for k, (lo, to) in enumerate(zip(louts, touts)):
        np.testing.assert_allclose(lo.detach().numpy(), to.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"output {k}")
    weights = [rng.standard_normal(tuple(o.shape)) for o in touts]
    lloss = sum((o * lamina.tensor(w, dtype=lamina.float64)).sum() for o, w in zip(louts, weights))
    tloss = sum((o * torch.tensor(w)).sum() for o, w in zip(touts, weights))
    lgrads = lamina.grad(lloss, lgrad_of)
    tgrads = torch.autograd.grad(tloss, tgrad_of)
    for name, lg, tg in zip(names, lgrads, tgrads):
        np.testing.assert_allclose(lg.numpy(), tg.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"grad of {name}")


def state_shapes(kind, layers, batch=(B,)):
    return [(layers, *batch, H)] * (2 if kind == "lstm" else 1)


def as_hx(kind, states):
    if not states:
        return None
    return tuple(states) if kind == "lstm" else states[0]


def run_pair(lm, tm, kind, x_shape, hx_shapes, lengths=None, batch_first=False):
    """Run both layers on the same input (and initial states); torch packs when lengths are given."""
    rng = np.random.default_rng(1)
    (lx, *lh), (tx, *th) = leaves(rng, x_shape, *hx_shapes)
    lout = flat(lm(lx, as_hx(kind, lh), lengths=lengths))
    if lengths is None:
        tout = flat(tm(tx, as_hx(kind, th)))
    else:
        packed = pack_padded_sequence(tx, torch.as_tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        tout = flat(tm(packed, as_hx(kind, th)))
        steps = x_shape[1 if batch_first else 0]
        tout[0] = pad_packed_sequence(tout[0], batch_first=batch_first, total_length=steps)[0]
    names = ["input"] + [f"hx[{i}]" for i in range(len(lh))] + [n for n, _ in tm.named_parameters()]
    lparams = dict(lm.named_parameters())
    compare(lout, tout, [lx, *lh] + [lparams[n] for n, _ in tm.named_parameters()],
            [tx, *th] + list(tm.parameters()), rng, names)
    with lamina.no_grad():  # inference runs without saving anything for backward
        again = flat(lm(lx.detach(), as_hx(kind, [h.detach() for h in lh]), lengths=lengths))
    for a, b in zip(again, lout):
        np.testing.assert_array_equal(a.numpy(), b.detach().numpy())


PARITY = list(itertools.product(KINDS, [1, 2], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,with_hx", PARITY,
                         ids=[f"{k}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tf'}-{'hx' if h else 'nohx'}"
                              for k, n, b, f, h in PARITY])
def test_matches_torch(kind, layers, bidirectional, batch_first, with_hx):
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    D = 2 if bidirectional else 1
    hx_shapes = state_shapes(kind, D * layers) if with_hx else []
    run_pair(lm, tm, kind, (B, T, I) if batch_first else (T, B, I), hx_shapes)


@pytest.mark.parametrize("kind", list(KINDS))
def test_without_bias_matches_torch(kind):
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=2, bias=False, bidirectional=True)
    assert not any("bias" in n for n, _ in lm.named_parameters())
    run_pair(lm, tm, kind, (T, B, I), state_shapes(kind, 4))


@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_matches_torch(kind, with_hx):
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=2, bidirectional=True, batch_first=True)
    run_pair(lm, tm, kind, (T, I), state_shapes(kind, 4, batch=()) if with_hx else [])


LENGTHS = [5, 2, 1, 4]
# PyTorch's backward through packed batch-first sequences is slow, so batch_first is one config
PACKED = list(itertools.product(KINDS, [(1, False, False), (1, True, True), (2, True, False), (2, True, True),
                                        (2, False, True)], [False])) + [(k, (2, True, True), True) for k in KINDS]


@pytest.mark.parametrize("kind,config,batch_first", PACKED,
                         ids=[f"{k}-L{n}-{'bi' if b else 'uni'}-{'hx' if h else 'nohx'}-{'bf' if f else 'tf'}"
                              for k, (n, b, h), f in PACKED])
def test_lengths_match_torch_packed_sequences(kind, config, batch_first):
    layers, bidirectional, with_hx = config
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    D = 2 if bidirectional else 1
    nb = len(LENGTHS)
    hx_shapes = state_shapes(kind, D * layers, batch=(nb,)) if with_hx else []
    run_pair(lm, tm, kind, (nb, T, I) if batch_first else (T, nb, I), hx_shapes, LENGTHS, batch_first)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_second_order_gradients_with_lengths_match_torch(kind):
    """A gradient penalty (the norm of d loss / d input, differentiated again) through a padded
    bidirectional batch: the create_graph backward of the recurrence ops."""
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(4)
    (lx,), (tx,) = leaves(rng, (T, len(LENGTHS), I))
    w = rng.standard_normal((T, len(LENGTHS), 2 * H))
    lout = lm(lx, lengths=LENGTHS)[0]
    (lg,) = lamina.grad((lout * lamina.tensor(w)).sum(), [lx], create_graph=True)
    packed = pack_padded_sequence(tx, torch.as_tensor(LENGTHS), enforce_sorted=False)
    tout = pad_packed_sequence(tm(packed)[0], total_length=T)[0]
    (tg,) = torch.autograd.grad((tout * torch.tensor(w)).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(lg.detach().numpy(), tg.detach().numpy(), rtol=1e-9, atol=1e-12)
    names = [n for n, _ in tm.named_parameters()]
    lparams = dict(lm.named_parameters())
    lgrads = lamina.grad((lg * lg).sum(), [lparams[n] for n in names])
    tgrads = torch.autograd.grad((tg * tg).sum(), list(tm.parameters()))
    for name, a, b in zip(names, lgrads, tgrads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("as_type", [list, np.array, lamina.tensor], ids=["list", "numpy", "tensor"])
def test_lengths_types_and_full_lengths(as_type):
    lm = LSTM(I, H, bidirectional=True).double()
    x = lamina.randn(T, B, I, dtype=lamina.float64)
    out, (h, c) = lm(x, lengths=as_type([T] * B))
    ref, (rh, rc) = lm(x)
    for a, b in ((out, ref), (h, rh), (c, rc)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-14)
    out, _ = lm(x, lengths=as_type([2, T, 1]))
    assert not out.detach().numpy()[2:, 0].any() and not out.detach().numpy()[1:, 2].any()


CELL_CASES = list(itertools.product(CELLS, [True, False], [False, True]))


@pytest.mark.parametrize("kind,batched,with_hx", CELL_CASES,
                         ids=[f"{k}-{'batched' if b else 'unbatched'}-{'hx' if h else 'nohx'}"
                              for k, b, h in CELL_CASES])
def test_cells_match_torch(kind, batched, with_hx):
    lm, tm = make_pair(CELLS, kind, I, H)
    assert [n for n, _ in lm.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    batch = (B,) if batched else ()
    rng = np.random.default_rng(2)
    n_states = 2 if kind == "lstm" else 1
    (lx, *lh), (tx, *th) = leaves(rng, (*batch, I), *([(*batch, H)] * n_states if with_hx else []))
    lout, tout = lm(lx, as_hx(kind, lh)), tm(tx, as_hx(kind, th))
    lout = list(lout) if isinstance(lout, tuple) else [lout]
    tout = list(tout) if isinstance(tout, tuple) else [tout]
    lparams = dict(lm.named_parameters())
    names = [n for n, _ in tm.named_parameters()]
    compare(lout, tout, [lx, *lh] + [lparams[n] for n in names], [tx, *th] + list(tm.parameters()), rng,
            ["input"] + [f"hx[{i}]" for i in range(len(lh))] + names)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_cell_without_bias_matches_torch(kind):
    lm, tm = make_pair(CELLS, kind, I, H, bias=False)
    rng = np.random.default_rng(3)
    (lx,), (tx,) = leaves(rng, (B, I))
    lout, tout = lm(lx), tm(tx)
    lout = lout[0] if isinstance(lout, tuple) else lout
    tout = tout[0] if isinstance(tout, tuple) else tout
    compare([lout], [tout], [lx, lm.weight_hh], [tx, tm.weight_hh], rng, ["input", "weight_hh"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_names_and_init_match_torch(kind):
    cls, tcls, extra = KINDS[kind]
    lm, tm = cls(6, 50, num_layers=2, bidirectional=True, **extra), tcls(6, 50, num_layers=2, bidirectional=True,
                                                                          **extra)
    lsd, tsd = lm.state_dict(), tm.state_dict()
    assert list(lsd) == list(tsd)
    bound = 1 / np.sqrt(50)
    for k in lsd:
        assert lsd[k].shape == tuple(tsd[k].shape), k
        a = lsd[k].numpy().ravel()
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound, k
        assert abs(a.std() - bound / np.sqrt(3)) < 5 * bound / np.sqrt(3 * a.size), k
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in lsd.items()})


# ---------------------------------------------------------------- dropout between layers

@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_in_eval_mode_and_p0_is_exact(kind):
    lm, tm = make_pair(KINDS, kind, I, H, num_layers=3, dropout=0.5, bidirectional=True)
    lm.eval(), tm.eval()
    run_pair(lm, tm, kind, (T, B, I), [])
    x = lamina.randn(T, B, I, dtype=lamina.float64)
    lm.train()
    lm.dropout = 0.0
    train_out = lm(x)[0]
    lm.eval()
    np.testing.assert_array_equal(train_out.detach().numpy(), lm(x)[0].detach().numpy())


def test_dropout_applies_between_layers_in_training(monkeypatch):
    """Called once between each pair of layers with the layer's p; it zeroes about a fraction p of
    the outputs it is given and scales the rest by 1 / (1 - p)."""
    calls = []
    real = lamina.ops.dropout

    def spy(x, p=0.5, training=True, generator=None):
        out = real(x, p, training, generator)
        calls.append((x.detach().numpy(), out.detach().numpy(), p, training))
        return out
    monkeypatch.setattr(lamina.ops, "dropout", spy)
    lm = GRU(I, 16, num_layers=3, dropout=0.3, bidirectional=True)
    x = lamina.randn(40, 20, I)
    lm(x)
    assert len(calls) == 2 and all(p == 0.3 and training for _, _, p, training in calls)
    for before, after, _, _ in calls:
        assert before.shape == (40, 20, 32)
        zeroed = after == 0
        assert abs(zeroed.mean() - 0.3) < 0.03
        np.testing.assert_allclose(after[~zeroed], before[~zeroed] / 0.7, rtol=1e-6)
    calls.clear()
    lm.eval()
    lm(x)
    assert all(not training for _, _, _, training in calls)


def test_dropout_p1_feeds_zeros_to_the_next_layer():
    lm = LSTM(I, H, num_layers=2, dropout=1.0).double()
    top = LSTM(H, H).double()
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in lm.state_dict().items() if k.endswith("_l1")})
    out = lm(lamina.randn(T, B, I, dtype=lamina.float64))[0]
    expected = top(lamina.zeros(T, B, H, dtype=lamina.float64))[0]
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-14)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="LSTM: dropout=0.5 acts between layers"):
        LSTM(I, H, dropout=0.5)


# ---------------------------------------------------------------- errors

def _x(*shape):
    return lamina.randn(*shape)


ERRORS = [
    ("input size", lambda: LSTM(I, H)(_x(T, B, 7)), ValueError,
     r"LSTM: input of shape \(5, 3, 7\) has 7 features, expected input_size=3"),
    ("input dims", lambda: GRU(I, H)(_x(2, T, B, I)), ValueError, r"GRU: expected input of shape \(L, N, H_in\)"),
    ("input dtype", lambda: RNN(I, H).double()(_x(T, B, I)), TypeError,
     r"RNN: input dtype float32 does not match the parameters' dtype float64"),
    ("h_0 shape", lambda: LSTM(I, H, num_layers=2)(_x(T, B, I), (_x(1, B, H), _x(2, B, H))), ValueError,
     r"LSTM: expected h_0 of shape \(2, 3, 4\) for input of shape \(5, 3, 3\), got \(1, 3, 4\)"),
    ("c_0 shape", lambda: LSTM(I, H)(_x(T, B, I), (_x(1, B, H), _x(1, 2, H))), ValueError,
     r"LSTM: expected c_0 of shape \(1, 3, 4\) for input of shape \(5, 3, 3\), got \(1, 2, 4\)"),
    ("hx batched for unbatched input", lambda: GRU(I, H, bidirectional=True)(_x(T, I), _x(2, 1, H)), ValueError,
     r"GRU: expected h_0 of shape \(2, 4\) for input of shape \(5, 3\), got \(2, 1, 4\)"),
    ("lstm hx not a pair", lambda: LSTM(I, H)(_x(T, B, I), _x(1, B, H)), TypeError,
     r"LSTM: hx must be a tuple \(h_0, c_0\)"),
    ("hx dtype", lambda: RNN(I, H)(_x(T, B, I), _x(1, B, H).double()), TypeError,
     r"RNN: h_0 has dtype float64 but the input has float32"),
    ("lengths too long", lambda: LSTM(I, H)(_x(T, B, I), lengths=[5, 6, 1]), ValueError,
     r"LSTM: lengths must be in \[1, 5\] for input of shape \(5, 3, 3\), got values in \[1, 6\]"),
    ("lengths zero", lambda: GRU(I, H, batch_first=True)(_x(B, T, I), lengths=[0, 2, 1]), ValueError,
     r"GRU: lengths must be in \[1, 5\] for input of shape \(3, 5, 3\), got values in \[0, 2\]"),
    ("lengths count", lambda: RNN(I, H)(_x(T, B, I), lengths=[1, 2]), ValueError,
     r"RNN: lengths must be 3 integers \(one per sequence of input of shape \(5, 3, 3\)\), got int64 of shape \(2,\)"),
    ("lengths float", lambda: RNN(I, H)(_x(T, B, I), lengths=[1.0, 2.0, 3.0]), ValueError,
     r"RNN: lengths must be 3 integers"),
    ("lengths unbatched", lambda: LSTM(I, H)(_x(T, I), lengths=[3]), ValueError,
     r"LSTM: lengths needs batched input, got unbatched input of shape \(5, 3\)"),
    ("cell input size", lambda: LSTMCell(I, H)(_x(B, 5)), ValueError,
     r"LSTMCell: expected input of shape \(N, 3\) or \(3,\), got \(3, 5\)"),
    ("cell hx shape", lambda: GRUCell(I, H)(_x(B, I), _x(2, H)), ValueError,
     r"GRUCell: expected hidden state of shape \(3, 4\) for input of shape \(3, 3\), got \(2, 4\)"),
    ("cell hx not a pair", lambda: LSTMCell(I, H)(_x(B, I), _x(B, H)), TypeError, r"LSTMCell: hx must be a tuple"),
    ("nonlinearity", lambda: RNN(I, H, nonlinearity="sigmoid"), ValueError,
     r"RNN: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    ("cell nonlinearity", lambda: RNNCell(I, H, nonlinearity="gelu"), ValueError, r"RNNCell: nonlinearity"),
    ("hidden size", lambda: GRU(I, 0), ValueError, r"GRU: hidden_size must be a positive integer, got 0"),
    ("dropout range", lambda: LSTM(I, H, num_layers=2, dropout=1.5), ValueError,
     r"LSTM: dropout must be a number in \[0, 1\], got 1.5"),
]


@pytest.mark.parametrize("what,call,exc,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_the_layer_and_shapes(what, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_repr_lists_options():
    assert repr(LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.1, bidirectional=True)) == (
        "LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.1, bidirectional=True)")
    assert repr(RNNCell(3, 4, bias=False, nonlinearity="relu")) == "RNNCell(3, 4, bias=False, nonlinearity='relu')"
