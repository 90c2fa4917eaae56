"""Synthetic seq2seq tasks: targets decode to the right answer, the held-out split shares no source
with training, a seed fixes the data, and the arrays are laid out and padded as documented."""
from __future__ import annotations

import numpy as np
import pytest

from lamina.data.synthetic import (
    BOS, EOS, PAD, Seq2SeqVocab, SyntheticSeq2Seq, add_pairs, encode_pairs, reverse_pairs,
)


@pytest.fixture(scope="module")
def reverse():
    return SyntheticSeq2Seq("reverse", n_train=3000, n_heldout=300, seed=1, min_len=2, max_len=7)


@pytest.fixture(scope="module")
def add():
    return SyntheticSeq2Seq("add", n_train=3000, n_heldout=300, seed=1, max_digits=3)


def test_vocab_round_trip_and_specials():
    v = Seq2SeqVocab()
    assert (v.pad_id, v.bos_id, v.eos_id) == (0, 1, 2) == (PAD, BOS, EOS)
    assert v.vocab_size == len(v) == 14
    ids = v.encode("407+93", bos=True, eos=True)
    assert ids.dtype == np.int64 and ids[0] == BOS and ids[-1] == EOS
    assert len(set(ids[1:-1].tolist())) == 6 and min(ids[1:-1]) >= 3
    assert v.decode(ids) == "407+93"
    assert v.decode([BOS, *v.encode("12"), EOS, *v.encode("99"), PAD]) == "12"  # stops at EOS
    assert v.decode([*v.encode("5"), PAD, PAD]) == "5"
    with pytest.raises(ValueError, match="'x'"):
        v.encode("1x")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode([14])
    with pytest.raises(ValueError, match="more than once"):
        Seq2SeqVocab("11")


def test_reverse_targets(reverse):
    v = reverse.vocab
    for split in (reverse.train, reverse.heldout):
        for (s, t), src, tgt_out in zip(split.pairs, split.src, split.tgt_out):
            assert t == s[::-1] and s.isdigit() and 2 <= len(s) <= 7
            assert v.decode(src) == s and v.decode(tgt_out) == s[::-1]


def test_add_targets(add):
    v = add.vocab
    for split in (add.train, add.heldout):
        for (s, t), src, tgt_in, tgt_out in zip(split.pairs, split.src, split.tgt_in, split.tgt_out):
            a, b = v.decode(src).split("+")
            assert v.decode(tgt_out) == v.decode(tgt_in) == str(int(a) + int(b)) == t
            assert 1 <= len(a) <= 3 and 1 <= len(b) <= 3
            assert a == str(int(a)) and b == str(int(b))  # no leading zeros
    digits = {len(s.split("+")[0]) for s, _ in add.train.pairs}
    assert digits == {1, 2, 3}  # digit counts are drawn uniformly, so short numbers appear too


@pytest.mark.parametrize("name", ["reverse", "add"])
def test_heldout_sources_never_in_training(name, reverse, add):
    task = {"reverse": reverse, "add": add}[name]
    held = [s for s, _ in task.heldout.pairs]
    assert len(held) == len(set(held)) == 300
    assert not set(held) & {s for s, _ in task.train.pairs}
    assert task.heldout_sources == frozenset(held)
    assert all(task.in_heldout_pool(s) for s in held[:50])
    assert not any(task.in_heldout_pool(s) for s, _ in task.train.pairs[:50])
    # the arrays agree with the strings, so the disjointness holds for what the model sees
    assert not {tuple(r) for r in task.heldout.src} & {tuple(r) for r in task.train.src}


def test_heldout_pool_is_decided_per_string():
    # 110 distinct sources, half of them in the pool: every training source is outside it, and
    # every source outside it turns up in training, so no stratum is emptied by the split
    task = SyntheticSeq2Seq("reverse", n_train=3000, n_heldout=10, seed=3, min_len=1, max_len=2,
                            heldout_fraction=0.5)
    every = {str(i) for i in range(10)} | {f"{i:02d}" for i in range(100)}
    pool = {s for s in every if task.in_heldout_pool(s)}
    assert 30 < len(pool) < 80
    assert task.heldout_sources <= pool
    assert {s for s, _ in task.train.pairs} == every - pool


def test_every_length_is_trained(reverse):
    # only ten one-digit strings exist: holding out distinct draws must not take them all
    assert {len(s) for s, _ in reverse.train.pairs} == set(range(2, 8))
    task = SyntheticSeq2Seq("reverse", n_train=2000, n_heldout=1000, seed=0)
    assert len({s for s, _ in task.train.pairs if len(s) == 1}) >= 8


def test_same_seed_same_data_other_seed_other_data():
    a = SyntheticSeq2Seq("add", n_train=500, n_heldout=50, seed=7)
    b = SyntheticSeq2Seq("add", n_train=500, n_heldout=50, seed=7)
    c = SyntheticSeq2Seq("add", n_train=500, n_heldout=50, seed=8)
    for split in ("train", "heldout"):
        for field in ("src", "tgt_in", "tgt_out"):
            np.testing.assert_array_equal(getattr(getattr(a, split), field), getattr(getattr(b, split), field))
        assert getattr(a, split).pairs == getattr(b, split).pairs
    assert a.train.pairs != c.train.pairs
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    assert reverse_pairs(rng1, 20) == reverse_pairs(rng2, 20)
    assert add_pairs(rng1, 20) == add_pairs(rng2, 20)


def test_padding_layout(reverse):
    split = reverse.train
    n = len(split)
    assert split.src.shape == (n, 8) and split.tgt_in.shape == (n, 8) and split.tgt_out.shape == (n, 8)
    assert split.src.dtype == split.tgt_in.dtype == split.tgt_out.dtype == np.int64
    for (s, t), src, tgt_in, tgt_out in zip(split.pairs[:200], split.src, split.tgt_in, split.tgt_out):
        k, m = len(s), len(t)
        assert src[k] == EOS and (src[k + 1:] == PAD).all() and (src[:k] > EOS).all()
        assert tgt_in[0] == BOS and (tgt_in[1:m + 1] > EOS).all() and (tgt_in[m + 1:] == PAD).all()
        assert tgt_out[m] == EOS and (tgt_out[m + 1:] == PAD).all()
        np.testing.assert_array_equal(tgt_in[1:m + 1], tgt_out[:m])  # teacher forcing: shifted by one


def test_encode_pairs_widths_and_errors():
    v = Seq2SeqVocab()
    src, tgt_in, tgt_out = encode_pairs(v, [("12", "21"), ("3", "3")], src_len=5, tgt_len=4)
    np.testing.assert_array_equal(src, [[4, 5, EOS, PAD, PAD], [6, EOS, PAD, PAD, PAD]])
    np.testing.assert_array_equal(tgt_in, [[BOS, 5, 4, PAD], [BOS, 6, PAD, PAD]])
    np.testing.assert_array_equal(tgt_out, [[5, 4, EOS, PAD], [6, EOS, PAD, PAD]])
    with pytest.raises(ValueError, match="src_len >= 3"):
        encode_pairs(v, [("12", "21")], src_len=2, tgt_len=4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        SyntheticSeq2Seq("sort")
    with pytest.raises(ValueError, match="too large"):
        SyntheticSeq2Seq("reverse", n_heldout=50, min_len=1, max_len=2)
    with pytest.raises(ValueError, match="heldout_fraction"):
        SyntheticSeq2Seq("reverse", heldout_fraction=0.0)
    with pytest.raises(ValueError, match="min_len"):
        SyntheticSeq2Seq("reverse", min_len=5, max_len=3)
    with pytest.raises(ValueError, match="positive"):
        SyntheticSeq2Seq("add", n_train=0)
    with pytest.raises(ValueError, match="seed"):
        SyntheticSeq2Seq("add", seed=-1)
