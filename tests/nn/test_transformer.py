"""Transformer layers, stacks and positional encodings: parity with PyTorch in float64 (outputs and the
gradients of inputs and all parameters, weights copied by name), in post-norm and pre-norm, with masks,
in eval and in train mode with dropout 0; dropout > 0 checked against eval mode instead."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lamina
import lamina.nn.functional as F
from lamina.nn.normalization import LayerNorm
from lamina.nn.parameter import Parameter
from lamina.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from lamina.nn.transformer import (
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
)

from .test_attention import assert_parity, bool_mask, causal_float, float_mask

D, NHEAD, FF = 8, 2, 12
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's notes on its own fast paths


def layer_kwargs(norm_first, activation, batch_first):
    return dict(dim_feedforward=FF, dropout=0.0, activation=activation, batch_first=batch_first,
                norm_first=norm_first)


def torch_activation(activation):
    return {"relu": "relu", "gelu": "gelu", "silu": torch.nn.functional.silu}[activation]


def lamina_activation(activation):
    return {"relu": "relu", "gelu": "gelu", "silu": F.silu}[activation]


def build(kind, norm_first, activation, batch_first):
    """(lamina module, torch module) of one kind with the same configuration."""
    lk = layer_kwargs(norm_first, lamina_activation(activation), batch_first)
    tk = layer_kwargs(norm_first, torch_activation(activation), batch_first)
    if kind == "encoder_layer":
        return TransformerEncoderLayer(D, NHEAD, **lk), torch.nn.TransformerEncoderLayer(D, NHEAD, **tk)
    if kind == "decoder_layer":
        return TransformerDecoderLayer(D, NHEAD, **lk), torch.nn.TransformerDecoderLayer(D, NHEAD, **tk)
    if kind == "encoder":
        return (TransformerEncoder(TransformerEncoderLayer(D, NHEAD, **lk), 2, LayerNorm(D)),
                torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, NHEAD, **tk), 2,
                                            torch.nn.LayerNorm(D), enable_nested_tensor=False))
    if kind == "decoder":
        return (TransformerDecoder(TransformerDecoderLayer(D, NHEAD, **lk), 2),
                torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(D, NHEAD, **tk), 2))
    assert kind == "transformer"
    return (Transformer(D, NHEAD, 2, 2, **lk), torch.nn.Transformer(D, NHEAD, 2, 2, **tk))


# (id, kind, norm_first, activation, batch_first, masks): masks names which masks the call passes:
# "src" / "tgt" causal masks, "src_kpm" / "tgt_kpm" / "mem_kpm" padding masks, "mem" a random
# memory mask, "causal" also sets the is_causal hints, "unbatched" drops the batch dim.
LAYER_CASES = [
    ("enc_layer_post_relu", "encoder_layer", False, "relu", False, ()),
    ("enc_layer_pre_gelu_bf", "encoder_layer", True, "gelu", True, ("src", "src_kpm")),
    ("enc_layer_post_gelu_masks", "encoder_layer", False, "gelu", False, ("src", "src_kpm", "causal")),
    ("enc_layer_pre_relu_unbatched", "encoder_layer", True, "relu", False, ("src", "unbatched")),
    ("enc_layer_callable", "encoder_layer", False, "silu", True, ("src_kpm",)),
    ("dec_layer_post_relu", "decoder_layer", False, "relu", False, ()),
    ("dec_layer_pre_gelu_masks", "decoder_layer", True, "gelu", True, ("tgt", "tgt_kpm", "mem", "mem_kpm")),
    ("dec_layer_post_gelu_causal", "decoder_layer", False, "gelu", False, ("tgt", "mem_kpm", "causal")),
    ("dec_layer_pre_relu_unbatched", "decoder_layer", True, "relu", True, ("tgt", "mem", "unbatched")),
    ("encoder_post_relu", "encoder", False, "relu", False, ("src", "src_kpm")),
    ("encoder_pre_gelu_bf", "encoder", True, "gelu", True, ("src", "causal")),
    ("decoder_post_gelu", "decoder", False, "gelu", True, ("tgt", "tgt_kpm", "mem_kpm", "causal")),
    ("decoder_pre_relu", "decoder", True, "relu", False, ("tgt", "mem")),
    ("transformer_post_relu", "transformer", False, "relu", False, ("src_kpm", "tgt", "mem_kpm")),
    ("transformer_pre_gelu_bf", "transformer", True, "gelu", True, ("src", "tgt", "tgt_kpm", "causal")),
    ("transformer_unbatched", "transformer", True, "relu", False, ("tgt", "unbatched")),
]


def run_layer_case(kind, norm_first, activation, batch_first, masks, train, rng):
    lm, tm = build(kind, norm_first, activation, batch_first)
    lm, tm = lm.double(), tm.double()
    N, S, T = (None if "unbatched" in masks else 3), 5, 4

    def seq(length):
        if N is None:
            return (length, D)
        return (N, length, D) if batch_first else (length, N, D)

    src, tgt = rng.standard_normal(seq(S)), rng.standard_normal(seq(T))
    kpm = lambda length: bool_mask(rng, (N, length) if N else (length,))  # noqa: E731
    m = {"src": causal_float(S, S) if "src" in masks else None,
         "tgt": causal_float(T, T) if "tgt" in masks else None,
         "mem": float_mask(rng, (T, S)) if "mem" in masks else None,
         "src_kpm": kpm(S) if "src_kpm" in masks else None,
         "tgt_kpm": kpm(T) if "tgt_kpm" in masks else None,
         "mem_kpm": kpm(S) if "mem_kpm" in masks else None}
    causal = "causal" in masks

    def call(mod, xs, conv):
        c = {k: conv(v) for k, v in m.items()}
        if kind == "encoder_layer":
            return mod(xs[0], src_mask=c["src"], src_key_padding_mask=c["src_kpm"], is_causal=causal)
        if kind == "encoder":
            return mod(xs[0], mask=c["src"], src_key_padding_mask=c["src_kpm"], is_causal=causal)
        if kind in ("decoder_layer", "decoder"):
            return mod(xs[1], xs[0], tgt_mask=c["tgt"], memory_mask=c["mem"], tgt_key_padding_mask=c["tgt_kpm"],
                       memory_key_padding_mask=c["mem_kpm"], tgt_is_causal=causal)
        return mod(xs[0], xs[1], src_mask=c["src"], tgt_mask=c["tgt"], memory_mask=c["mem"],
                   src_key_padding_mask=c["src_kpm"], tgt_key_padding_mask=c["tgt_kpm"],
                   memory_key_padding_mask=c["mem_kpm"], src_is_causal=causal and m["src"] is not None,
                   tgt_is_causal=causal)

    arrays = [src] if kind in ("encoder_layer", "encoder") else [src, tgt]
    assert_parity(lm, tm, arrays, call, train, rng)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name,kind,norm_first,activation,batch_first,masks", LAYER_CASES,
                         ids=[c[0] for c in LAYER_CASES])
def test_transformer_layers_match_torch(name, kind, norm_first, activation, batch_first, masks, train):
    run_layer_case(kind, norm_first, activation, batch_first, masks, train, np.random.default_rng(0))


DROPOUT_CASES = [
    ("encoder_layer", lambda: TransformerEncoderLayer(D, NHEAD, FF, dropout=0.3), 1),
    ("decoder_layer", lambda: TransformerDecoderLayer(D, NHEAD, FF, dropout=0.3, norm_first=True), 2),
    ("transformer", lambda: Transformer(D, NHEAD, 1, 1, FF, dropout=0.3), 2),
]


@pytest.mark.parametrize("name,make,n_inputs", DROPOUT_CASES, ids=[c[0] for c in DROPOUT_CASES])
def test_dropout_acts_in_train_mode_only(name, make, n_inputs):
    m = make()
    xs = [lamina.randn(4, 3, D), lamina.randn(5, 3, D)][:n_inputs]
    with lamina.no_grad():
        m.eval()
        a, b = m(*xs).numpy(), m(*xs).numpy()
        m.train()
        c, d = m(*xs).numpy(), m(*xs).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(c, d)


def test_stack_layers_are_independent_deep_copies():
    layer = TransformerEncoderLayer(D, NHEAD, FF)
    enc = TransformerEncoder(layer, 3)
    assert [name for name, _ in enc.named_children()] == ["layers"]
    ids = [{id(p) for p in mod.parameters()} for mod in enc.layers]
    assert all(not (ids[i] & ids[j]) for i in range(3) for j in range(i + 1, 3))
    assert not ({id(p) for p in layer.parameters()} & set().union(*ids))
    sd = enc.state_dict()
    for k, v in layer.state_dict().items():  # copies start equal to the layer given
        np.testing.assert_array_equal(sd[f"layers.2.{k}"].numpy(), v.numpy())
    with lamina.no_grad():
        enc.layers[0].linear1.weight.fill_(0.5)
    assert not (enc.layers[1].linear1.weight.detach().numpy() == 0.5).any()
    assert not (layer.linear1.weight.detach().numpy() == 0.5).any()
    enc(lamina.randn(4, 2, D)).sum().backward()
    grads = [mod.linear1.weight.grad for mod in enc.layers]
    assert all(g is not None for g in grads) and layer.linear1.weight.grad is None


def test_deepcopy_keeps_tied_parameters_tied():
    layer = TransformerEncoderLayer(D, NHEAD, FF)
    layer.linear2.weight = Parameter(layer.linear1.weight.detach().mT.clone())
    layer.norm2.weight = layer.norm1.weight  # tied: one parameter in two places
    stack = TransformerEncoder(layer, 2)
    for copy_ in stack.layers:
        assert copy_.norm2.weight is copy_.norm1.weight and copy_.norm1.weight is not layer.norm1.weight
    assert stack.layers[0].norm1.weight is not stack.layers[1].norm1.weight


def test_transformer_names_and_init_match_torch():
    lm = Transformer(16, 4, 2, 1, 32, batch_first=True)
    tm = torch.nn.Transformer(16, 4, 2, 1, 32, batch_first=True)
    lsd, tsd = lm.state_dict(), tm.state_dict()
    assert list(lsd) == list(tsd)
    assert "encoder.norm.weight" in lsd and "decoder.norm.bias" in lsd
    for k, v in lsd.items():
        assert v.shape == tuple(tsd[k].shape), k
        if v.ndim > 1:  # xavier uniform everywhere
            bound = math.sqrt(6.0 / (v.shape[0] + v.shape[1]))
            assert np.abs(v.numpy()).max() <= bound and v.numpy().std() > 0.45 * bound, k


def test_generate_square_subsequent_mask_matches_torch():
    m = Transformer.generate_square_subsequent_mask(5)
    assert m.dtype == lamina.float32
    np.testing.assert_array_equal(m.numpy(), torch.nn.Transformer.generate_square_subsequent_mask(5).numpy())
    assert Transformer.generate_square_subsequent_mask(3, dtype=lamina.float64).dtype == lamina.float64


def test_transformer_custom_encoder_and_decoder():
    enc = TransformerEncoder(TransformerEncoderLayer(D, NHEAD, FF), 1)
    dec = TransformerDecoder(TransformerDecoderLayer(D, NHEAD, FF), 1)
    t = Transformer(D, NHEAD, custom_encoder=enc, custom_decoder=dec)
    assert t.encoder is enc and t.decoder is dec
    assert t(lamina.randn(5, 2, D), lamina.randn(4, 2, D)).shape == (4, 2, D)


ERROR_CASES = [
    ("activation", lambda: TransformerEncoderLayer(D, NHEAD, activation="tanh"), ValueError,
     r"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, got 'tanh'"),
    ("heads", lambda: TransformerDecoderLayer(10, 3), ValueError, r"embed_dim=10 is not divisible by num_heads=3"),
    ("not_a_layer", lambda: TransformerDecoder("layer", 2), TypeError,
     r"TransformerDecoder: expected a layer Module to copy, got str"),
    ("num_layers", lambda: TransformerEncoder(TransformerEncoderLayer(D, NHEAD), 0), ValueError,
     r"TransformerEncoder: num_layers must be at least 1"),
    ("batch", lambda: Transformer(D, NHEAD, 1, 1, FF)(lamina.randn(5, 2, D), lamina.randn(4, 3, D)), ValueError,
     r"Transformer: src \(5, 2, 8\) and tgt \(4, 3, 8\) must have the same batch size"),
    ("d_model", lambda: Transformer(D, NHEAD, 1, 1, FF)(lamina.randn(5, 2, 6), lamina.randn(4, 2, 6)), ValueError,
     r"must end in d_model=8"),
    ("mask", lambda: TransformerEncoderLayer(D, NHEAD, FF)(lamina.randn(5, 2, D), src_mask=lamina.zeros(4, 4)),
     ValueError, r"MultiheadAttention: attn_mask must have shape \(5, 5\) or \(4, 5, 5\).*got \(4, 4\)"),
    ("sinusoidal_len", lambda: SinusoidalPositionalEncoding(D, max_len=4)(lamina.randn(5, 2, D)), ValueError,
     r"SinusoidalPositionalEncoding: positions 0..4 of input shape \(5, 2, 8\).*exceed max_len=4"),
    ("learned_len", lambda: LearnedPositionalEmbedding(6, D, batch_first=True)(lamina.randn(2, 7, D)), ValueError,
     r"LearnedPositionalEmbedding: positions 0..6 of input shape \(2, 7, 8\).*exceed max_len=6"),
    ("learned_offset", lambda: LearnedPositionalEmbedding(6, D)(lamina.randn(3, 2, D), offset=4), ValueError,
     r"positions 4..6 .* exceed max_len=6"),
    ("positional_dim", lambda: SinusoidalPositionalEncoding(D)(lamina.randn(5, 2, 6)), ValueError,
     r"SinusoidalPositionalEncoding: expected input .* got shape \(5, 2, 6\)"),
]


@pytest.mark.parametrize("name,fn,exc,match", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_layer_and_shapes(name, fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------- positional encodings

def classic_table(max_len, d_model):
    """The PyTorch tutorial's PositionalEncoding table, in float64."""
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe.numpy()


@pytest.mark.parametrize("d_model", [8, 7])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
def test_sinusoidal_positional_encoding(d_model, batch_first):
    pe = SinusoidalPositionalEncoding(d_model, max_len=50, batch_first=batch_first, dtype=lamina.float64)
    assert pe.state_dict() == {} and pe.pe.dtype == lamina.float64
    assert SinusoidalPositionalEncoding(d_model, max_len=50).pe.dtype == lamina.float32
    table = classic_table(50, d_model)
    np.testing.assert_allclose(pe.pe.numpy(), table, rtol=1e-12, atol=1e-15)
    x = np.random.default_rng(0).standard_normal((3, 6, d_model) if batch_first else (6, 3, d_model))
    lx = lamina.tensor(x, requires_grad=True)
    out = pe(lx)
    expected = x + (table[None, :6] if batch_first else table[:6, None])
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    out.sum().backward()
    np.testing.assert_array_equal(lx.grad.numpy(), np.ones_like(x))
    np.testing.assert_allclose(pe(lamina.tensor(x[0] if batch_first else x[:, 0]), offset=2).numpy(),
                               (x[0] if batch_first else x[:, 0]) + table[2:8], rtol=1e-12)


def test_sinusoidal_dropout_in_train_mode_only():
    pe = SinusoidalPositionalEncoding(D, dropout=0.5)
    x = lamina.randn(6, 2, D)
    pe.eval()
    np.testing.assert_array_equal(pe(x).numpy(), pe(x).numpy())
    pe.train()
    assert (pe(x).numpy() == 0).any()


@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
def test_learned_positional_embedding(batch_first):
    emb = LearnedPositionalEmbedding(10, D, batch_first=batch_first).double()
    assert list(emb.state_dict()) == ["weight"] and emb.weight.shape == (10, D)
    w = emb.weight.detach().numpy().copy()
    x = np.random.default_rng(0).standard_normal((2, 4, D) if batch_first else (4, 2, D))
    out = emb(lamina.tensor(x))
    np.testing.assert_allclose(out.detach().numpy(), x + (w[None, :4] if batch_first else w[:4, None]), rtol=1e-12)
    out.sum().backward()
    expected = np.zeros((10, D))
    expected[:4] = 2.0  # each position is used once per batch element
    np.testing.assert_array_equal(emb.weight.grad.numpy(), expected)
    np.testing.assert_allclose(emb(lamina.tensor(x[0] if batch_first else x[:, 0]), offset=6).detach().numpy(),
                               (x[0] if batch_first else x[:, 0]) + w[6:10], rtol=1e-12)


def test_learned_positional_embedding_init_is_standard_normal():
    w = LearnedPositionalEmbedding(1000, 64).weight.detach().numpy()
    assert abs(w.std() - 1.0) < 0.02 and abs(w.mean()) < 0.02
