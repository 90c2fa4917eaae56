"""Reading Hugging Face model folders: the safetensors weights (one file or shards named by an
index) and JSON config files, with one-line errors and never a pickle."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import cannot_load
from .serialization import load


def read_weights(folder) -> dict:
    """The tensors of a Hugging Face model folder's safetensors file(s), on cpu."""
    folder = Path(folder)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load(single)
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise cannot_load(index, "it has no 'weight_map' object")
        state = {}
        for shard in sorted(set(weight_map.values())):
            state.update(load(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        raise cannot_load(folder / "pytorch_model.bin", "it is a PyTorch pickle and Lamina never unpickles "
                          "files (they can run code); convert it to model.safetensors first")
    raise cannot_load(single, "no such file (a Hugging Face model folder holds config.json and "
                      "model.safetensors)")


def read_json(path):
    """The parsed JSON file ``path``; a missing or malformed file raises ``CheckpointError``."""
    path = Path(path)
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
