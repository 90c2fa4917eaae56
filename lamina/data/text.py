"""Text as token ids: ``CharTokenizer``, the train/validation split and block sampling for
language models, and ``load_text`` for a local UTF-8 file.

A language model is trained on one long 1-d array of token ids. Its examples are windows of
``block_size`` tokens ``x = ids[i:i+block]`` paired with the same window shifted by one,
``y = ids[i+1:i+block+1]``: at each position the target is the next token.

Relationship with nanoGPT (Karpathy's ``data/shakespeare_char/prepare.py`` and ``train.py``):

- ``CharTokenizer.from_text`` is prepare.py's ``stoi``/``itos``: the sorted unique characters of
  the text, id = position in that order.
- ``split_tokens(ids, 0.1)`` is prepare.py's split: the first ``int(n * 0.9)`` ids train, the
  rest validate. The split is by position, not shuffled, so validation text is text the model
  never saw, not sentences interleaved with training ones.
- ``random_blocks`` is train.py's ``get_batch``: ``batch_size`` offsets drawn uniformly from
  ``[0, len(ids) - block_size)`` and the windows at those offsets, as int64. It draws from a
  ``lamina.Generator`` instead of torch's global RNG, so a seeded run repeats exactly.
- ``BlockDataset`` is the map-style view of the same windows (every offset once), for a
  ``DataLoader`` epoch or a deterministic evaluation pass; nanoGPT has no equivalent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend
from ..tensor import Tensor
from .collate import wrap_array
from .dataset import Dataset

_MAX_LISTED = 10  # unknown characters / bad ids quoted in an error message


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id: ``chars[i]`` has id ``i``.

    ``CharTokenizer.from_text(text)`` takes the sorted unique characters of ``text``.
    ``state_dict()`` is a JSON-serialisable dict, so a checkpoint can carry the tokenizer its
    model was trained with.
    """

    def __init__(self, chars):
        if not isinstance(chars, str):
            chars = list(chars)
            if not all(isinstance(c, str) and len(c) == 1 for c in chars):
                raise TypeError("CharTokenizer: the vocabulary must be a str or a sequence of "
                                "one-character strs")
            chars = "".join(chars)
        if not chars:
            raise ValueError("CharTokenizer: the vocabulary is empty; expected at least one character")
        if len(set(chars)) != len(chars):
            repeated = sorted(c for c in set(chars) if chars.count(c) > 1)
            raise ValueError(f"CharTokenizer: the vocabulary lists {_quote(repeated)} more than once; "
                             "each character must have exactly one id")
        self.chars = chars
        # Code points, so encode/decode run as NumPy lookups instead of a Python loop per character.
        self._codes = _code_points(chars)
        self._order = np.argsort(self._codes, kind="stable")
        self._sorted_codes = self._codes[self._order]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted unique characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.from_text: expected a str, got a {type(text).__name__}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self):
        return self.vocab_size

    def encode(self, text: str) -> np.ndarray:
        """The ids of the characters of ``text``: a 1-d int64 NumPy array of ``len(text)``."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: expected a str, got a {type(text).__name__}")
        codes = _code_points(text)
        pos = np.searchsorted(self._sorted_codes, codes)
        np.minimum(pos, self.vocab_size - 1, out=pos)
        unknown = self._sorted_codes[pos] != codes
        if unknown.any():
            missing = [chr(c) for c in np.unique(codes[unknown]).tolist()]
            first = int(np.argmax(unknown))
            raise ValueError(f"CharTokenizer.encode: {len(missing)} character(s) of the text are not in "
                             f"the vocabulary of {self.vocab_size}: {_quote(missing)} (first at "
                             f"position {first}); build the tokenizer from a text containing them")
        return self._order[pos].astype(np.int64, copy=False)

    def decode(self, ids) -> str:
        """The text of ``ids``: a list of ints, a 0-d or 1-d integer NumPy/CuPy array or Tensor."""
        if isinstance(ids, Tensor):
            ids = ids.array
        if not isinstance(ids, np.ndarray) and hasattr(ids, "__cuda_array_interface__"):
            ids = backend.to_device(ids, backend.cpu)
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.ndim > 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"CharTokenizer.decode: expected a 1-d sequence of integer ids, got "
                             f"shape {ids.shape} and dtype {ids.dtype}")
        ids = ids.reshape(-1)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            listed = ", ".join(str(i) for i in np.unique(ids[bad])[:_MAX_LISTED].tolist())
            raise ValueError(f"CharTokenizer.decode: ids {listed} are outside the vocabulary "
                             f"0..{self.vocab_size - 1}")
        return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def state_dict(self) -> dict:
        """``{"type": "CharTokenizer", "chars": <the vocabulary in id order>}``; JSON-serialisable."""
        return {"type": "CharTokenizer", "chars": self.chars}

    @classmethod
    def from_state_dict(cls, state) -> CharTokenizer:
        """The tokenizer saved by ``state_dict()``."""
        if not (isinstance(state, dict) and state.get("type") == "CharTokenizer"
                and isinstance(state.get("chars"), str)):
            raise ValueError(f"CharTokenizer.from_state_dict: expected a dict with type "
                             f"'CharTokenizer' and a str 'chars', got {state!r:.120}")
        return cls(state["chars"])

    def __eq__(self, other):
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _code_points(text: str) -> np.ndarray:
    # surrogatepass: a str may hold lone surrogates, which plain UTF-32 refuses to encode.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)


def _quote(chars) -> str:
    shown = ", ".join(repr(c) for c in chars[:_MAX_LISTED])
    return shown + (f" and {len(chars) - _MAX_LISTED} more" if len(chars) > _MAX_LISTED else "")


def load_text(path) -> str:
    """The contents of the UTF-8 text file ``path``, e.g. your own corpus for a char model."""
    path = Path(path).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"load_text: no file {path}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"load_text: {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise OSError(f"load_text: cannot read {path}: {e.strerror or e}") from None


def _token_array(ids, where: str):
    """The 1-d integer NumPy/CuPy array behind ``ids`` (an array or a Tensor)."""
    data = ids.array if isinstance(ids, Tensor) else ids
    if not (isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__")):
        raise TypeError(f"{where}: expected a 1-d integer array or Tensor of token ids, got a "
                        f"{type(ids).__name__}")
    if data.ndim != 1 or data.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected a 1-d integer array of token ids, got shape "
                         f"{tuple(data.shape)} and dtype {data.dtype}")
    return data


def _check_block_size(block_size, n: int, where: str) -> int:
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"{where}: block_size must be a positive int, got {block_size!r}")
    if n <= block_size:
        raise ValueError(f"{where}: {n} token ids are too few for block_size {block_size}; a block "
                         f"and its shifted target need at least {block_size + 1}")
    return int(block_size)


def split_tokens(ids, val_fraction: float = 0.1):
    """``(train, val)``: the first ``int(n * (1 - val_fraction))`` ids and the rest, as in nanoGPT.

    Both are views of the array behind ``ids`` (a NumPy/CuPy array or a Tensor), not copies.
    """
    data = _token_array(ids, "split_tokens")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"split_tokens: val_fraction must lie in [0, 1), got {val_fraction}")
    cut = int(len(data) * (1 - val_fraction))
    return data[:cut], data[cut:]


class BlockDataset(Dataset):
    """Every window of a token stream: item ``i`` is ``(ids[i:i+block], ids[i+1:i+block+1])``.

    ``len(dataset) == len(ids) - block_size``, one item per offset nanoGPT's ``get_batch`` can
    draw. Items are int64 Tensors of shape ``(block_size,)`` on the device of ``ids``;
    ``__getitems__`` gathers a whole batch ``(B, block_size)`` with one fancy index.
    """

    def __init__(self, ids, block_size: int):
        data = _token_array(ids, "BlockDataset")
        self.block_size = _check_block_size(block_size, len(data), "BlockDataset")
        # int64 once here rather than per batch: stored ids are often uint16, as in nanoGPT's .bin.
        self.ids = data.astype(np.int64, copy=False)
        self._window = backend.xp_of(self.ids).arange(self.block_size, dtype=np.int64)

    def __len__(self):
        return len(self.ids) - self.block_size

    def __getitem__(self, index):
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"BlockDataset: index {i} is out of range for {n} blocks")
        i %= n
        # Copies, so a caller editing an item cannot change the dataset.
        return (wrap_array(self.ids[i:i + self.block_size].copy()),
                wrap_array(self.ids[i + 1:i + self.block_size + 1].copy()))

    def __getitems__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"BlockDataset: indices must lie in [{-n}, {n}) for {n} blocks, got "
                             f"values from {indices.min()} to {indices.max()}")
        xp = backend.xp_of(self.ids)
        starts = xp.asarray(indices % n)[:, None] + self._window
        return wrap_array(self.ids[starts]), wrap_array(self.ids[starts + 1])

    def __repr__(self):
        return f"BlockDataset({len(self)} blocks of {self.block_size} from {len(self.ids)} ids)"


def random_blocks(ids, block_size: int, batch_size: int, generator=None):
    """``(x, y)``: ``batch_size`` windows at uniformly random offsets, nanoGPT's ``get_batch``.

    Offsets ``o`` are drawn from ``[0, len(ids) - block_size)`` with
    ``generator.integers(0, len(ids) - block_size, (batch_size,), int64)``; row ``b`` of ``x`` is
    ``ids[o[b]:o[b]+block_size]`` and of ``y`` the same window one token later. Both are int64
    Tensors of shape ``(batch_size, block_size)`` on the device of ``ids``. ``generator``
    (default: that device's default generator) must live on that device too, so a batch is
    drawn and gathered without a host-device copy.
    """
    data = _token_array(ids, "random_blocks")
    block_size = _check_block_size(block_size, len(data), "random_blocks")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"random_blocks: batch_size must be a positive int, got {batch_size!r}")
    device = backend.device_of(data)
    gen = backend.default_generator(device) if generator is None else generator
    if gen.device != device:
        raise ValueError(f"random_blocks: the generator is on {gen.device} but the token ids are on "
                         f"{device}; use a generator of the ids' device")
    offsets = gen.integers(0, len(data) - block_size, (int(batch_size),), np.int64)
    starts = offsets[:, None] + backend.xp_of(data).arange(block_size, dtype=np.int64)
    return (wrap_array(data[starts].astype(np.int64, copy=False)),
            wrap_array(data[starts + 1].astype(np.int64, copy=False)))
