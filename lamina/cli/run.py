"""What every training command shares: the run folder, progress bars, metrics.json, the loss
curve plot, checkpoints with everything needed to resume, and one-line user errors."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from .. import backend, io


class UserError(Exception):
    """A problem the user can fix (missing file, wrong model, bad option): printed as one line."""


def pick_device(name: str) -> backend.Device:
    if name == "auto":
        return backend.Device("cuda") if backend.cuda_is_available() else backend.cpu
    try:
        dev = backend.Device(name)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    if dev.type == "cuda" and not backend.cuda_is_available():
        raise UserError(f"device {dev} requested but no CUDA GPU with CuPy is available; use --device cpu")
    return dev


def new_run_dir(out: str | None, name: str) -> Path:
    path = Path(out) if out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_path(run_or_ckpt: str) -> Path:
    """A run folder (its checkpoint.safetensors) or a checkpoint file itself."""
    p = Path(run_or_ckpt)
    if p.is_dir():
        p = p / "checkpoint.safetensors"
    if not p.exists():
        raise UserError(f"no checkpoint at {p}")
    return p


def load_run_checkpoint(run_or_ckpt: str, model_name, device=None) -> dict:
    """Load a checkpoint and check it belongs to ``model_name`` (a name or a tuple of names)."""
    path = checkpoint_path(run_or_ckpt)
    try:
        state = io.load_checkpoint(path, device=device)
    except io.CheckpointError as e:
        raise UserError(str(e)) from None
    found = state.get("model_name") if isinstance(state, dict) else None
    names = (model_name,) if isinstance(model_name, str) else tuple(model_name)
    if found not in names:
        raise UserError(f"{path} is a checkpoint of {found or 'an unknown model'}, not {' or '.join(names)}")
    return state


def start_run(args, model_name, new_config, prefix, device):
    """(config, run folder, checkpoint state) for ``--resume RUN_OR_CKPT``, or (``new_config()``,
    a new run folder named after ``prefix(config)``, None) for a fresh run."""
    if args.resume:
        state = load_run_checkpoint(args.resume, model_name, device)
        p = Path(args.resume)
        return state["config"], (p if p.is_dir() else p.parent), state
    config = new_config()
    return config, new_run_dir(args.out, prefix(config)), None


def restore_run(state: dict, **parts) -> None:
    """Put every named part (model, optimizer, scheduler, loader, generators, ...) back into the
    state saved under its name, then the global RNG state, so a resumed run continues exactly."""
    for key, obj in parts.items():
        if hasattr(obj, "load_state_dict"):
            obj.load_state_dict(state[key])
        else:
            obj.set_state(state[key])
    io.set_rng_state(state["rng"])


def save_run_checkpoint(run_dir: Path, state: dict) -> Path:
    path = run_dir / "checkpoint.safetensors"
    io.save_checkpoint(path, {**state, "rng": io.rng_state()})
    return path


def write_json(path: Path, obj) -> None:
    with io.atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2).encode())


def plot_curves(run_dir: Path, metrics: dict, title: str, score: str = "test_accuracy",
                score_label: str = "test accuracy (%)") -> Path | None:
    """loss.png: training loss per step, evaluation loss per epoch, and the epochs' ``score`` (a
    fraction, drawn in percent) when the metrics have one."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install lamina[plot])", file=sys.stderr)
        return None
    steps = metrics.get("steps", [])
    epochs = metrics.get("epochs", [])
    has_acc = any(score in e for e in epochs)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4))
    ax = axes[0] if has_acc else axes
    if steps:
        ax.plot([s for s, _ in steps], [v for _, v in steps], lw=0.8, label="train (running)")
    evals = [(e["step"], e["eval_loss"]) for e in epochs if "eval_loss" in e]
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    if has_acc:
        acc = [(e["epoch"], 100 * e[score]) for e in epochs]
        axes[1].plot(*zip(*acc), "o-", color="tab:green")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel(score_label)
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "loss.png"
    with io.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def progress(iterable, total, desc, disable=False):
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=True,
                disable=disable, file=sys.stderr, mininterval=0.5)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
