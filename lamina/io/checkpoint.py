"""``save_checkpoint`` / ``load_checkpoint``: a whole training state in one safetensors file.

The tensors go in as ordinary safetensors entries named by their path in the state; the rest
of the structure (see ``structure``) goes in the header metadata, beside the checkpoint format
version and the Lamina version that wrote it. Any safetensors reader can open the file.
"""
from __future__ import annotations

from .._version import __version__
from .errors import cannot_load
from .serialization import as_device, read_safetensors, write_safetensors
from .structure import Malformed, flatten, unflatten

FORMAT_VERSION = 1

# Header metadata keys; the first marks a file as a Lamina checkpoint.
_VERSION_KEY = "lamina.checkpoint_version"
_LAMINA_KEY = "lamina.version"
_STATE_KEY = "lamina.state"


def save_checkpoint(path, state) -> None:
    """Write ``state`` to ``path`` atomically.

    ``state`` nests dicts (any hashable scalar or tuple keys), lists and tuples; its leaves are
    Tensors, NumPy arrays, NumPy scalars, ints, floats (inf and NaN too), bools, strings and
    None. Typically ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
    "rng": lamina.io.rng_state()}``. An unsupported value raises ``TypeError`` before any file
    is touched.
    """
    text, arrays = flatten(state)
    metadata = {_VERSION_KEY: str(FORMAT_VERSION), _LAMINA_KEY: __version__, _STATE_KEY: text}
    write_safetensors(path, arrays, metadata, "save_checkpoint")


def load_checkpoint(path, device=None):
    """The state ``save_checkpoint`` wrote to ``path``, with Tensors on ``device`` (default cpu).

    Tuples, int keys and NumPy scalars come back as they went in; NumPy arrays come back as
    NumPy arrays. A damaged or foreign file, a plain safetensors file, or a checkpoint of a newer
    format raises ``CheckpointError``.
    """
    device = as_device(device)
    arrays, metadata = read_safetensors(path)
    version = metadata.get(_VERSION_KEY)
    if version is None:
        raise cannot_load(path, f"it is a safetensors file but not a Lamina checkpoint (no "
                                f"{_VERSION_KEY!r} in its metadata); read its tensors with lamina.io.load")
    if not (version.isascii() and version.isdigit()):
        raise cannot_load(path, f"its checkpoint format version {version!r:.40} is not a number")
    if int(version) > FORMAT_VERSION:
        raise cannot_load(path, f"it is a checkpoint of format version {version}, written by Lamina "
                                f"{metadata.get(_LAMINA_KEY, '(unknown)')!s:.40}; this Lamina reads "
                                f"versions up to {FORMAT_VERSION}, so upgrade Lamina to load it")
    if _STATE_KEY not in metadata:
        raise cannot_load(path, f"its metadata lacks {_STATE_KEY!r}")
    try:
        return unflatten(metadata[_STATE_KEY], arrays, device)
    except Malformed as e:
        raise cannot_load(path, f"its stored state structure is malformed: {e}") from None
