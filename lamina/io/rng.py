"""``rng_state`` / ``set_rng_state``: the default random generators as JSON-able data.

Saved in a checkpoint, this makes a resumed run draw the same numbers (dropout masks, data
shuffles, initialisations) as the uninterrupted run would have.
"""
from __future__ import annotations

import warnings

from .. import backend


def rng_state() -> dict:
    """The global seed and the state of every default generator (one per device used so far)."""
    return {"seed": backend.initial_seed(),
            "generators": {str(device): gen.get_state() for device, gen in backend._generators.items()}}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned.

    Generators of devices this machine lacks (a GPU run resumed on CPU) are skipped with a
    warning; every other default generator is reset as if seeded with the saved global seed.
    """
    if not (isinstance(state, dict) and isinstance(state.get("seed"), int)
            and isinstance(state.get("generators"), dict)):
        raise ValueError(f"set_rng_state: expected the dict rng_state() returns, got {state!r:.200}")
    before = rng_state()
    try:
        _apply(state)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _apply(before)  # a bad state changes nothing
        raise ValueError(f"set_rng_state: malformed generator state ({type(e).__name__}: {e})") from None


def _apply(state: dict) -> None:
    # manual_seed first, so generators created after this call start where they would have
    # in the saved run: from the saved global seed.
    backend.manual_seed(state["seed"])
    for name, gen_state in state["generators"].items():
        device = backend.Device(name)
        if device.type == "cuda" and device.index >= backend.cuda_device_count():
            warnings.warn(f"set_rng_state: no {device} here; its generator state is not restored",
                          stacklevel=3)
            continue
        backend.default_generator(device).set_state(gen_state)
