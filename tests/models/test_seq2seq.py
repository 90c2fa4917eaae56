"""Seq2SeqTransformer: shapes, what the masks hide (source padding, future target tokens), greedy
decoding against step-by-step argmax by hand, and parity with a twin built from
``torch.nn.Transformer`` (same weights, float64). The end-to-end run of ``lamina train seq2seq``
with its defaults is marked slow."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import lamina
from lamina.data.synthetic import BOS, EOS, PAD, SyntheticSeq2Seq
from lamina.models.seq2seq import Seq2SeqTransformer

V = 14
SMALL = dict(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=24, dropout=0.0,
             max_len=12)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's notes on its own fast paths


def small(**kw):
    return Seq2SeqTransformer(V, **{**SMALL, **kw})


def padded_sources(rng, n, width):
    """Rows of digit ids, then EOS, then PAD, of random lengths."""
    src = np.full((n, width), PAD, dtype=np.int64)
    for i in range(n):
        k = rng.integers(1, width)
        src[i, :k] = rng.integers(3, V, k)
        src[i, k] = EOS
    return src


def small64():
    """A float64 model, built with float64 as the default dtype so that the sinusoid table is
    computed, not just stored, in float64."""
    before = lamina.get_default_dtype()
    lamina.set_default_dtype(lamina.float64)
    try:
        return small()
    finally:
        lamina.set_default_dtype(before)


def logits_of(model, src, tgt_in):
    return model(lamina.tensor(src), lamina.tensor(tgt_in)).detach().numpy()


class TorchSeq2Seq(torch.nn.Module):
    """The same model written with torch.nn: parameter names equal, so a state dict copies over."""

    def __init__(self, vocab_size, d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                 dropout, max_len, pad_id=0):
        super().__init__()
        self.d_model, self.pad_id = d_model, pad_id
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("pe", pe, persistent=False)
        self.transformer = torch.nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers,
                                                dim_feedforward, dropout, batch_first=True, norm_first=True)

    def forward(self, src, tgt_in):
        def embed(ids):
            return self.embed(ids) * math.sqrt(self.d_model) + self.pe[:ids.shape[1]]
        pad = torch.cumsum(src == self.pad_id, 1) > 0
        T = tgt_in.shape[1]
        causal = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
        h = self.transformer(embed(src), embed(tgt_in), tgt_mask=causal, src_key_padding_mask=pad,
                             memory_key_padding_mask=pad, tgt_is_causal=True)
        return h @ self.embed.weight.T


def torch_twin(model):
    tm = TorchSeq2Seq(V, **SMALL).double()
    sd = model.state_dict()
    assert list(sd) == list(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in sd.items()})
    return tm


# ------------------------------------------------------------------ structure and shapes
def test_forward_shapes_and_tied_embedding():
    m = small()
    rng = np.random.default_rng(0)
    src = padded_sources(rng, 3, 7)
    for T in (1, 5, 12):
        out = m(lamina.tensor(src), lamina.tensor(rng.integers(0, V, (3, T))))
        assert out.shape == (3, T, V) and out.dtype == lamina.float32
    names = [n for n, _ in m.named_parameters()]
    assert names[0] == "embed.weight" and sum("embed" in n for n in names) == 1  # one table: in, in, out
    assert "pos.pe" not in m.state_dict()  # the sinusoid table is a fixed, non-persistent buffer
    assert m.transformer.encoder.layers[0].norm_first and m.transformer.batch_first
    assert abs(m.embed.weight.detach().numpy().std() - 16 ** -0.5) < 0.05


def test_bad_inputs():
    m = small()
    with pytest.raises(ValueError, match="longer than max_len 12"):
        m(lamina.zeros(2, 13, dtype=lamina.int64) + 3, lamina.zeros(2, 3, dtype=lamina.int64))
    with pytest.raises(ValueError, match="integer ids"):
        m(lamina.zeros(2, 4), lamina.zeros(2, 3, dtype=lamina.int64))
    with pytest.raises(ValueError, match="same batch size"):
        m(lamina.zeros(2, 4, dtype=lamina.int64), lamina.zeros(3, 3, dtype=lamina.int64))
    with pytest.raises(ValueError, match="pad_id=20"):
        Seq2SeqTransformer(V, pad_id=20)
    with pytest.raises(ValueError, match="max_len must be in"):
        m.greedy_decode(lamina.zeros(1, 3, dtype=lamina.int64), 13, BOS, EOS)


# ------------------------------------------------------------------ masks
def test_tokens_from_the_first_source_pad_on_are_invisible():
    m = small().eval()
    rng = np.random.default_rng(1)
    src = padded_sources(rng, 6, 9)
    tgt_in = rng.integers(0, V, (6, 5))
    ref = logits_of(m, src, tgt_in)
    noisy = src.copy()
    pads_so_far = np.cumsum(src == PAD, 1)
    after_first_pad = (pads_so_far > 1) | ((pads_so_far == 1) & (src != PAD))
    assert after_first_pad.sum() > 10
    noisy[after_first_pad] = rng.integers(1, V, after_first_pad.sum())  # anything, even EOS or BOS
    np.testing.assert_allclose(logits_of(m, noisy, tgt_in), ref, rtol=1e-5, atol=1e-5)
    # more padding, or none beyond a row's own length, changes nothing either
    wider = np.pad(src, ((0, 0), (0, 3)), constant_values=PAD)
    np.testing.assert_allclose(logits_of(m, wider, tgt_in), ref, rtol=1e-5, atol=1e-5)
    for i in range(6):
        k = int(np.argmax(src[i] == PAD)) if (src[i] == PAD).any() else src.shape[1]
        alone = logits_of(m, src[i:i + 1, :k], tgt_in[i:i + 1])
        np.testing.assert_allclose(alone, ref[i:i + 1], rtol=1e-5, atol=1e-5)
    # and the mask does not hide real tokens: a change before the padding is seen
    changed = src.copy()
    changed[:, 0] = np.where(src[:, 0] == 3, 4, 3)
    assert not np.allclose(logits_of(m, changed, tgt_in), ref, atol=1e-3)


def test_decoder_position_t_ignores_later_target_tokens():
    m = small().eval()
    rng = np.random.default_rng(2)
    src = padded_sources(rng, 4, 6)
    tgt_in = rng.integers(1, V, (4, 8))
    ref = logits_of(m, src, tgt_in)
    for t in range(7):
        other = tgt_in.copy()
        other[:, t + 1:] = rng.integers(0, V, (4, 7 - t))
        out = logits_of(m, src, other)
        np.testing.assert_allclose(out[:, :t + 1], ref[:, :t + 1], rtol=1e-5, atol=1e-5)
        assert not np.allclose(out[:, t + 1:], ref[:, t + 1:], atol=1e-3)


# ------------------------------------------------------------------ loss
def test_loss_ignores_padding():
    m = small()
    rng = np.random.default_rng(3)
    logits = lamina.tensor(rng.standard_normal((3, 5, V)))
    tgt_out = np.array([[4, 5, EOS, PAD, PAD], [6, EOS, PAD, PAD, PAD], [3, 4, 5, 6, EOS]])
    loss = m.loss(logits, lamina.tensor(tgt_out)).item()
    lp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(-1, keepdims=True))
    real = tgt_out != PAD
    want = -np.take_along_axis(lp, tgt_out[..., None], -1)[..., 0][real].mean()
    assert loss == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------ greedy decoding
def greedy_by_hand(model, src, max_len):
    """One sequence at a time, re-running the whole model on the prefix and taking the argmax."""
    rows = []
    for i in range(src.shape[0]):
        ids = [BOS]
        for _ in range(max_len):
            logits = logits_of(model, src[i:i + 1], np.array([ids]))
            ids.append(int(logits[0, -1].argmax()))
            if ids[-1] == EOS:
                break
        rows.append(ids[1:])
    return rows


@pytest.fixture(scope="module")
def trained_reverser():
    """A small model trained for a few seconds on short reversals: it ends its outputs with EOS at
    different lengths (an untrained model rarely emits EOS at all)."""
    lamina.manual_seed(0)
    task = SyntheticSeq2Seq("reverse", n_train=3000, n_heldout=40, seed=0, min_len=1, max_len=4, heldout_fraction=0.1)
    m = Seq2SeqTransformer(V, d_model=32, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64,
                           dropout=0.0, max_len=8)
    opt = lamina.optim.Adam(m.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        i = rng.integers(0, len(task.train), 64)
        loss = m.loss(m(lamina.tensor(task.train.src[i]), lamina.tensor(task.train.tgt_in[i])),
                      lamina.tensor(task.train.tgt_out[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval(), task


def test_greedy_decode_stops_at_eos_and_equals_argmax_by_hand(trained_reverser):
    m, task = trained_reverser
    src = task.heldout.src[:16]
    out = m.greedy_decode(lamina.tensor(src), 6, BOS, EOS)
    assert out.dtype == lamina.int64 and out.shape[0] == 16 and out.shape[1] <= 6
    got = out.numpy()
    ends = []
    for row, want in zip(got, greedy_by_hand(m, src, 6)):
        np.testing.assert_array_equal(row[:len(want)], want)
        if want[-1] == EOS:
            ends.append(len(want))
            assert (row[len(want):] == PAD).all()  # nothing after a row's EOS
    assert len(set(ends)) >= 2  # rows stopped at different steps
    assert got.shape[1] == max(len(w) for w in greedy_by_hand(m, src, 6))  # stops once every row has
    exact = [task.vocab.decode(r) == t for r, (_, t) in zip(got, task.heldout.pairs)]
    assert np.mean(exact) > 0.5  # the decoding is the model's answer, not noise


def test_greedy_decode_untrained_runs_to_max_len_and_encodes_once(monkeypatch):
    m = small()
    m.train()
    rng = np.random.default_rng(4)
    src = padded_sources(rng, 3, 6)
    calls = []
    encoder_forward = m.transformer.encoder.forward
    monkeypatch.setattr(m.transformer.encoder, "forward", lambda *a, **k: calls.append(1) or encoder_forward(*a, **k))
    out = m.greedy_decode(lamina.tensor(src), 5, BOS, EOS).numpy()
    assert len(calls) == 1  # the source is encoded once, not once per step
    assert m.training  # mode restored
    monkeypatch.undo()
    m.eval()
    for row, want in zip(out, greedy_by_hand(m, src, 5)):
        np.testing.assert_array_equal(row[:len(want)], want)
        assert (row[len(want):] == PAD).all()


# ------------------------------------------------------------------ parity with torch
def test_forward_matches_torch_transformer():
    lm = small64().eval()
    tm = torch_twin(lm).eval()
    rng = np.random.default_rng(5)
    src = padded_sources(rng, 4, 9)
    tgt_in = rng.integers(0, V, (4, 7))
    with torch.no_grad():
        want = tm(torch.from_numpy(src), torch.from_numpy(tgt_in)).numpy()
    np.testing.assert_allclose(logits_of(lm, src, tgt_in), want, rtol=1e-9, atol=1e-10)


def test_loss_and_gradients_match_torch():
    lm = small64().train()  # dropout 0: train mode is deterministic, and torch takes its slow path
    tm = torch_twin(lm).train()
    rng = np.random.default_rng(6)
    src = padded_sources(rng, 3, 8)
    tgt_in = rng.integers(0, V, (3, 6))
    tgt_out = rng.integers(0, V, (3, 6))
    loss = lm.loss(lm(lamina.tensor(src), lamina.tensor(tgt_in)), lamina.tensor(tgt_out))
    tlogits = tm(torch.from_numpy(src), torch.from_numpy(tgt_in))
    tloss = torch.nn.functional.cross_entropy(tlogits.reshape(-1, V), torch.from_numpy(tgt_out).reshape(-1),
                                              ignore_index=PAD)
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    loss.backward()
    tloss.backward()
    tparams = dict(tm.named_parameters())
    for name, p in lm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)


# ------------------------------------------------------------------ the training command
TINY_RUN = ["--task", "add", "--epochs", "2", "--n-train", "512", "--n-heldout", "40", "--batch-size", "64",
            "--d-model", "16", "--nhead", "2", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
            "--dim-feedforward", "32", "--examples", "3", "--quiet"]


def run_train_seq2seq(argv):
    """``lamina train seq2seq ARGV`` through the command's own parser."""
    import argparse

    from lamina.cli import seq2seq
    parser = argparse.ArgumentParser()
    seq2seq.add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["seq2seq", *argv])
    return args.func(args)


def test_train_command_writes_metrics_checkpoint_plot_and_resumes(tmp_path, monkeypatch, capsys):
    from lamina.cli import seq2seq
    full = tmp_path / "full"
    assert run_train_seq2seq([*TINY_RUN, "--out", str(full)]) == 0
    metrics = json.loads((full / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for key in ("train_loss", "eval_loss", "heldout_exact_match", "heldout_token_accuracy", "elapsed_s"):
        assert key in metrics["epochs"][-1]
    assert metrics["config"]["task"] == "add" and metrics["steps"]
    assert (full / "checkpoint.safetensors").exists() and (full / "loss.png").exists()
    printed = capsys.readouterr().out
    assert "held-out exact match" in printed
    assert len([line for line in printed.splitlines() if line.startswith("  ") and " -> " in line]) == 3

    # interrupted during epoch 2's evaluation, then resumed: the same run as the uninterrupted one
    cut = tmp_path / "cut"
    evaluate, calls = seq2seq.evaluate, []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(seq2seq, "evaluate", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_train_seq2seq([*TINY_RUN, "--out", str(cut)])
    monkeypatch.undo()
    assert len(json.loads((cut / "metrics.json").read_text())["epochs"]) == 1
    assert run_train_seq2seq(["--resume", str(cut), "--quiet"]) == 0
    resumed = json.loads((cut / "metrics.json").read_text())
    for a, b in zip(resumed["epochs"], metrics["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-6)
        assert a["heldout_exact_match"] == b["heldout_exact_match"]


def test_train_command_rejects_bad_task_settings(tmp_path):
    from lamina.cli.run import UserError
    with pytest.raises(UserError, match="too large"):
        run_train_seq2seq(["--max-len", "2", "--n-heldout", "100", "--out", str(tmp_path), "--quiet"])


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_default_training_run_reaches_99_percent_heldout_exact_match(tmp_path):
    from lamina.cli import main
    out = tmp_path / "run"
    assert main(["train", "seq2seq", "--task", "reverse", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"][-1]["heldout_exact_match"] >= 0.99
    assert (out / "checkpoint.safetensors").exists()
