"""BERT: the bidirectional Transformer encoder (Devlin et al., 2019) with Hugging Face's module and
parameter names, so that a Hub ``model.safetensors`` loads as it is (folders are read by
``lamina.io.hf``; the sentence-embedding pipeline on top is ``lamina.models.sentence``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import ml_dtypes

from .. import nn, no_grad, ops
from ..io import hf
from ..io.errors import cannot_load
from ..nn import functional as F
from ..nn.module import IncompatibleKeys
from ..tensor import Tensor

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
        return cls.from_dict(hf.read_json(Path(path)))


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
        state, _ = _from_hf_names(hf.read_weights(folder))
        model = cls(config, add_pooling_layer="pooler.dense.weight" in state)
        if dtype is not None:
            model.to(dtype)
        model.load_state_dict(state)
        if device is not None:
            model.to(device)
        return model.eval()


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
