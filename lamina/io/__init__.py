"""Saving and loading: tensors as safetensors files, checkpoints, RNG state, atomic writes.

Nothing here uses pickle: every file is safetensors (JSON header + raw bytes), checked before
it is decoded, so loading a file can never run code.
"""
from .atomic import atomic_write  # noqa: F401
from .checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint  # noqa: F401
from .errors import CheckpointError  # noqa: F401
from .rng import rng_state, set_rng_state  # noqa: F401
from .serialization import load, read_metadata, save  # noqa: F401
