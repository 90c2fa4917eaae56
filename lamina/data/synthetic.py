"""Synthetic sequence-to-sequence tasks for encoder-decoder models: ``"reverse"`` (a digit string,
backwards) and ``"add"`` (``"a+b"`` to the digits of ``a + b``), over the small vocabulary of
``Seq2SeqVocab``, with a held-out split whose source strings never occur in training.

Every example is a pair of strings ``(source, target)``. As arrays (``encode_pairs``), with ids
padded by ``PAD`` on the right to a fixed width:

- ``src``     = ``source`` + ``EOS``            (the encoder's input, as in T5)
- ``tgt_in``  = ``BOS`` + ``target``            (the decoder's input, teacher forcing)
- ``tgt_out`` = ``target`` + ``EOS``            (what the decoder predicts: ``tgt_in`` shifted by one)

Randomness comes only from a NumPy ``Generator`` seeded with an explicit seed, so a task with the
same arguments and seed is the same data on every machine.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
TASKS = ("reverse", "add")


class Seq2SeqVocab:
    """Ids ``PAD=0``, ``BOS=1``, ``EOS=2``, then one id per character of ``symbols``, in order."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, symbols: str = "0123456789+"):
        if not isinstance(symbols, str) or not symbols:
            raise ValueError(f"Seq2SeqVocab: symbols must be a non-empty str, got {symbols!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"Seq2SeqVocab: symbols {symbols!r} list a character more than once")
        self.symbols = symbols
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(symbols)}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.symbols)

    def __len__(self):
        return self.vocab_size

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> np.ndarray:
        """The ids of ``text``'s characters (int64), optionally after ``BOS`` and before ``EOS``."""
        try:
            ids = [self._ids[c] for c in text]
        except KeyError as e:
            raise ValueError(f"Seq2SeqVocab.encode: character {e.args[0]!r} of {text!r} is not in the "
                             f"vocabulary {self.symbols!r}") from None
        return np.array(([BOS] if bos else []) + ids + ([EOS] if eos else []), dtype=np.int64)

    def decode(self, ids) -> str:
        """The text of ``ids`` up to the first ``EOS``; ``PAD`` and ``BOS`` are skipped."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            if not len(SPECIALS) <= i < self.vocab_size:
                raise ValueError(f"Seq2SeqVocab.decode: id {i} is outside the vocabulary of {self.vocab_size}")
            out.append(self.symbols[i - len(SPECIALS)])
        return "".join(out)


def _digits(rng: np.random.Generator, n: int, min_len: int, max_len: int) -> list[str]:
    """``n`` digit strings (leading zeros allowed), lengths uniform in [min_len, max_len]."""
    lengths = rng.integers(min_len, max_len + 1, size=n)
    digits = rng.integers(0, 10, size=(n, max_len)).astype(np.uint8) + ord("0")
    return [row[:k].tobytes().decode() for row, k in zip(digits, lengths)]


def _numbers(rng: np.random.Generator, n: int, max_digits: int) -> np.ndarray:
    """``n`` numbers whose digit count is uniform in [1, max_digits], then uniform among those
    numbers, so short and long numbers are equally common (0 counts as one digit)."""
    k = rng.integers(1, max_digits + 1, size=n)
    return rng.integers(np.where(k == 1, 0, 10 ** (k - 1)), 10 ** k)


def reverse_pairs(rng: np.random.Generator, n: int, min_len: int = 1, max_len: int = 10) -> list[tuple[str, str]]:
    """``n`` pairs (digit string, the string reversed)."""
    return [(s, s[::-1]) for s in _digits(rng, n, min_len, max_len)]


def add_pairs(rng: np.random.Generator, n: int, max_digits: int = 3) -> list[tuple[str, str]]:
    """``n`` pairs (``"a+b"``, digits of ``a + b``) with ``a`` and ``b`` of 1 to ``max_digits`` digits."""
    a, b = _numbers(rng, n, max_digits), _numbers(rng, n, max_digits)
    return [(f"{x}+{y}", str(x + y)) for x, y in zip(a.tolist(), b.tolist())]


def encode_pairs(vocab: Seq2SeqVocab, pairs, src_len: int, tgt_len: int):
    """(src, tgt_in, tgt_out): int64 arrays (n, src_len), (n, tgt_len), (n, tgt_len), padded with PAD.

    ``src_len`` counts the source's ``EOS``; ``tgt_len`` counts ``tgt_in``'s ``BOS`` (equally
    ``tgt_out``'s ``EOS``).
    """
    n = len(pairs)
    src = np.full((n, src_len), PAD, dtype=np.int64)
    tgt_in = np.full((n, tgt_len), PAD, dtype=np.int64)
    tgt_out = np.full((n, tgt_len), PAD, dtype=np.int64)
    for i, (s, t) in enumerate(pairs):
        if len(s) + 1 > src_len or len(t) + 1 > tgt_len:
            raise ValueError(f"encode_pairs: pair {i} ({s!r}, {t!r}) needs src_len >= {len(s) + 1} and "
                             f"tgt_len >= {len(t) + 1}, got {src_len} and {tgt_len}")
        s_ids, t_ids = vocab.encode(s, eos=True), vocab.encode(t)
        src[i, :len(s_ids)] = s_ids
        tgt_in[i, 0] = BOS
        tgt_in[i, 1:len(t_ids) + 1] = t_ids
        tgt_out[i, :len(t_ids)] = t_ids
        tgt_out[i, len(t_ids)] = EOS
    return src, tgt_in, tgt_out


@dataclasses.dataclass
class Seq2SeqSplit:
    """One split of a task: the string pairs and their padded arrays (see ``encode_pairs``)."""
    pairs: list
    src: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray

    def __len__(self):
        return len(self.pairs)


class SyntheticSeq2Seq:
    """A seeded task with a training split of ``n_train`` examples and a held-out split of
    ``n_heldout`` distinct examples whose source strings never occur in training.

    ``task="reverse"`` uses ``min_len`` and ``max_len`` (digits per string); ``task="add"`` uses
    ``max_digits`` (per operand). Which sources are held out is decided per string, by a seeded
    hash: a fraction ``heldout_fraction`` of all possible sources forms the held-out pool, and the
    held-out split draws ``n_heldout`` distinct sources from the task's distribution restricted to
    that pool, training examples from the rest. Deciding per string rather than holding out the
    first distinct draws keeps every stratum in training: there are only ten one-digit strings,
    and a thousand distinct draws would otherwise take all of them out of training. Training
    examples may repeat; held-out ones do not.
    """

    def __init__(self, task: str = "reverse", n_train: int = 20000, n_heldout: int = 1000, seed: int = 0,
                 min_len: int = 1, max_len: int = 10, max_digits: int = 3, heldout_fraction: float = 0.05):
        if task not in TASKS:
            raise ValueError(f"SyntheticSeq2Seq: task must be one of {', '.join(TASKS)}, got {task!r}")
        if n_train < 1 or n_heldout < 1:
            raise ValueError(f"SyntheticSeq2Seq: n_train and n_heldout must be positive, got {n_train} and "
                             f"{n_heldout}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise ValueError(f"SyntheticSeq2Seq: seed must be an int in [0, 2**63), got {seed!r}")
        seed = int(seed)
        if not 0.0 < heldout_fraction <= 0.5:
            raise ValueError(f"SyntheticSeq2Seq: heldout_fraction must be in (0, 0.5], got {heldout_fraction}")
        if task == "reverse":
            if not 1 <= min_len <= max_len:
                raise ValueError(f"SyntheticSeq2Seq: need 1 <= min_len <= max_len, got {min_len} and {max_len}")
            space = sum(10 ** k for k in range(min_len, max_len + 1))
            self.src_len, self.tgt_len = max_len + 1, max_len + 1
            self._draw = lambda rng, n: reverse_pairs(rng, n, min_len, max_len)
        else:
            if max_digits < 1:
                raise ValueError(f"SyntheticSeq2Seq: max_digits must be at least 1, got {max_digits}")
            space = (10 ** max_digits) ** 2
            self.src_len, self.tgt_len = 2 * max_digits + 2, max_digits + 2
            self._draw = lambda rng, n: add_pairs(rng, n, max_digits)
        if n_heldout > space * heldout_fraction / 4:  # keeps distinct draws from the pool cheap
            raise ValueError(f"SyntheticSeq2Seq: n_heldout={n_heldout} is too large for a held-out pool of about "
                             f"{space * heldout_fraction:.0f} of the {space} sources of this task (at most a "
                             f"quarter of the pool; raise heldout_fraction or lower n_heldout)")
        self.task, self.seed, self.heldout_fraction = task, seed, heldout_fraction
        self.config = dict(task=task, n_train=n_train, n_heldout=n_heldout, seed=seed, min_len=min_len,
                           max_len=max_len, max_digits=max_digits, heldout_fraction=heldout_fraction)
        self.vocab = Seq2SeqVocab()
        self._salt = seed.to_bytes(8, "little", signed=False)
        rng = np.random.Generator(np.random.PCG64(seed))
        self.heldout = self._split(self._draw_distinct(rng, n_heldout))
        self.train = self._split(self._draw_where(rng, n_train, heldout=False))

    def in_heldout_pool(self, source: str) -> bool:
        """Whether ``source`` belongs to the held-out pool (so never to training)."""
        h = hashlib.blake2b(source.encode(), digest_size=8, key=self._salt).digest()
        return int.from_bytes(h, "little") < self.heldout_fraction * 2.0 ** 64

    @property
    def heldout_sources(self) -> frozenset:
        return frozenset(s for s, _ in self.heldout.pairs)

    def _draw_where(self, rng, n, heldout):
        pairs = []
        while len(pairs) < n:
            pairs += [p for p in self._draw(rng, n) if self.in_heldout_pool(p[0]) == heldout]
        return pairs[:n]

    def _draw_distinct(self, rng, n):
        chosen = {}
        while len(chosen) < n:
            for s, t in self._draw_where(rng, n - len(chosen), heldout=True):
                chosen.setdefault(s, t)
        return list(chosen.items())[:n]

    def _split(self, pairs):
        return Seq2SeqSplit(pairs, *encode_pairs(self.vocab, pairs, self.src_len, self.tgt_len))
