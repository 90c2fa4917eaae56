"""What every training command shares: the run folder, progress bars, metrics.json, the loss
curve plot, checkpoints with everything needed to resume, one-line user errors, and joining the
other ranks of a ``--distributed`` run (``join``; see ``parallel``)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from .. import backend, io
from .parallel import SINGLE, Ranks


class UserError(Exception):
    """A problem the user can fix (missing file, wrong model, bad option): printed as one line.
    ``echo=False``: another rank reports the same error, this one stays quiet."""

    def __init__(self, message: str, echo: bool = True):
        super().__init__(message)
        self.echo = echo


def pick_device(name: str, local_rank: int = 0) -> backend.Device:
    """The device ``--device`` names; ``auto`` and a bare ``cuda`` mean the GPU of this rank's
    local index (GPU 0 for a single process)."""
    if name == "auto":
        name = "cuda" if backend.cuda_is_available() else "cpu"
    try:
        dev = backend.Device(f"cuda:{local_rank}" if name == "cuda" else name)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    if dev.type == "cuda" and not backend.cuda_is_available():
        raise UserError(f"device {dev} requested but no CUDA GPU with CuPy is available; use --device cpu")
    return dev


def join(args) -> Ranks:
    """This process's place in the run (once per command): with ``--distributed`` under
    ``mpiexec``, its rank in the group of all the processes mpiexec started; otherwise alone.
    Ranks other than 0 print nothing to stdout from here on (rank 0 speaks for the run)."""
    ranks = getattr(args, "_ranks", None)
    if ranks is not None:
        return ranks
    # mpi4py is imported only under an MPI launcher
    from ..distributed import group as dist
    wanted = getattr(args, "distributed", False)
    ranks = SINGLE
    if dist.launched_by_mpi():
        try:
            g = dist.init()
        except RuntimeError as e:
            raise UserError(str(e)) from None
        if g.size > 1 and not wanted:
            raise UserError(f"this process is one of {g.size} that mpiexec started; pass --distributed to "
                            "train one run on all of them")
        ranks = Ranks(g)
        if ranks.distributed and getattr(args, "threads", None) is None:
            # the default threads were the idle cores: share them among this machine's ranks
            from threadpoolctl import threadpool_limits

            from . import idle_cores
            threadpool_limits(max(1, idle_cores()[1] // max(1, g.local_size)))
    elif wanted:
        print("lamina: --distributed: not started by mpiexec, so training as 1 process (mpiexec -n N python "
              "-m mpi4py -m lamina train ... --distributed runs N)", file=sys.stderr)
    if not ranks.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)
    args._ranks = ranks
    return ranks


def train_device(args) -> backend.Device:
    """Join the run's ranks (``join``) and pick this rank's device from ``--device``."""
    return pick_device(args.device, join(args).local_rank)


class RunFolder:
    """A training run's folder, made ready before any data is loaded.

    Opening one creates the folder, proves it writable, takes an advisory lock (``fcntl``) that
    a second process trying the same folder fails on at once (naming the holder's PID), and
    removes temporary files a killed write left behind. A new run refuses a folder that already
    holds one unless ``overwrite`` (then the old run's files are removed first); ``resume``
    needs one.
    """

    RUN_FILES = ("checkpoint.safetensors", "metrics.json", "loss.png")
    LOCK = ".lock"
    ranks = SINGLE  # the ranks training this run (``open_run`` sets it for --distributed)

    def __init__(self, path, *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the run folder {self.path}: {e.strerror or e}") from None
        self._lock_file = self._lock()
        try:
            self._prove_writable()
            stale = self._remove_stale_temporaries()
            if stale:
                print(f"removed {stale} temporary file{'s' if stale > 1 else ''} left by an interrupted "
                      f"write in {self.path}", file=sys.stderr)
            has_run = (self.path / "checkpoint.safetensors").exists()
            if resume and not has_run:
                raise UserError(f"no checkpoint at {self.path / 'checkpoint.safetensors'} to resume")
            if not resume and has_run or not resume and (self.path / "metrics.json").exists():
                if not overwrite:
                    raise UserError(f"{self.path} already holds a run; continue it with --resume {self.path}, "
                                    "replace it with --overwrite, or choose another --out")
                for name in self.RUN_FILES:
                    (self.path / name).unlink(missing_ok=True)
        except BaseException:
            self.close()
            raise

    def _lock(self):
        import fcntl
        lock_path = self.path / self.LOCK
        try:
            f = open(lock_path, "a+")
        except OSError as e:
            raise UserError(f"cannot write to the run folder {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise UserError(f"the run folder {self.path} is in use by another lamina process (PID {holder}); "
                            "wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f

    def _prove_writable(self):
        probe = self.path / f".write-test.{os.getpid()}.tmp"
        try:
            with open(probe, "wb") as f:
                f.write(b"lamina")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as e:
            raise UserError(f"cannot write to the run folder {self.path}: {e.strerror or e}") from None

    def _remove_stale_temporaries(self) -> int:
        n = 0
        for p in self.path.glob(".*.tmp"):  # only this process holds the lock: no writer is live
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def save_checkpoint(self, state: dict) -> Path:
        path = self.path / "checkpoint.safetensors"
        io.save_checkpoint(path, {**state, "rng": io.rng_state()})
        return path

    def close(self):
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def ranks_note(run) -> str:
    """`` x N ranks`` for the start-up line of a --distributed run; empty alone."""
    n = run.ranks.size
    return f" x {n} ranks (batch split across them)" if n > 1 else ""


class RankView:
    """A rank other than 0's view of the run folder rank 0 holds: its path, nothing else. It
    takes no lock and writes nothing (``fit`` writes on rank 0 only)."""

    def __init__(self, path, ranks: Ranks):
        self.path = Path(path)
        self.ranks = ranks

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def default_run_path(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


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


def open_run(args, model_name, new_config, default_name):
    """(run folder, config, saved state or None) for ``--resume RUN`` or a new run.

    ``new_config()`` is the configuration a new run would use from the command line. On resume
    the run keeps its own configuration; options given on the command line are applied where
    that is safe (see ``resume_config``). Nothing is loaded before the folder is ready. On
    several ranks, rank 0 opens the folder and sends the others its path (or its error) and, on
    resume, the checkpoint; they get a ``RankView`` of the folder.
    """
    ranks = join(args)
    if not ranks.distributed:
        return _open_run(args, model_name, new_config, default_name)
    if not ranks.is_main:
        outcome = ranks.share_json(None)
        if "error" in outcome:
            raise UserError(outcome["error"], echo=False)  # rank 0 reports it
        run = RankView(outcome["path"], ranks)
        if not args.resume:
            return run, new_config(), None
        with tempfile.TemporaryDirectory(prefix="lamina-resume-") as tmp:
            copy = Path(tmp) / "checkpoint.safetensors"
            copy.write_bytes(ranks.share_bytes(None))
            state = load_run_checkpoint(copy, model_name)
        return run, resume_config(args, state["config"]), state
    try:
        run, config, saved = _open_run(args, model_name, new_config, default_name)
    except UserError as e:
        ranks.share_json({"error": str(e)})
        raise
    try:
        run.ranks = ranks
        ranks.share_json({"path": str(run.path)})
        if saved is not None:
            ranks.share_bytes(checkpoint_path(run.path).read_bytes())
    except BaseException:
        run.close()
        raise
    return run, config, saved


def _open_run(args, model_name, new_config, default_name):
    if args.resume:
        p = Path(args.resume)
        run = RunFolder(p if p.is_dir() or not p.suffix else p.parent, resume=True)
        try:
            state = load_run_checkpoint(run.path, model_name)
            config = resume_config(args, state["config"])
        except BaseException:
            run.close()
            raise
        return run, config, state
    config = new_config()
    out = args.out or default_run_path(default_name(config))
    return RunFolder(out, overwrite=args.overwrite), config, None


# Options a resumed run may change: the length of the run (to extend it). ``--lr`` needs
# ``--override-lr``; everything else defines the run and stays as it was.
EXTENDABLE = ("epochs", "max_iters")


def resume_config(args, saved: dict) -> dict:
    config = dict(saved)
    changes = []
    for key, old in saved.items():
        new = getattr(args, key, None)
        if new is None or new == old or key in ("data_dir", "text"):
            continue
        flag = "--" + key.replace("_", "-")
        if key in EXTENDABLE:
            changes.append(f"{key} {old} -> {new}")
            config[key] = new
        elif key == "lr":
            if not getattr(args, "override_lr", False):
                raise UserError(f"{flag} {new}: the run was trained with lr {old}; pass --override-lr too "
                                "to change the learning rate of a resumed run")
            changes.append(f"lr {old} -> {new} (the schedule is scaled by {new / old:.4g})")
            config[key] = new
        else:
            raise UserError(f"{flag} cannot change when resuming: the run was made with {old} "
                            "(start a new run to change it)")
    if getattr(args, "data_dir", None) and args.data_dir != saved.get("data_dir") and "data_dir" in saved:
        changes.append(f"data_dir {saved.get('data_dir')} -> {args.data_dir}")
        config["data_dir"] = args.data_dir
    for change in changes:
        print(f"resume: {change}")
    return config


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


def progress(iterable, total, desc, disable=False, unit="batch"):
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True,
                disable=disable, file=sys.stderr, mininterval=0.5)


# ---------------------------------------------------------------- argument types: checked before anything runs

def _number(kind, text, low, low_ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < low or (value == low and not low_ok):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text):
    return _number(int, text, 0, False, "a positive integer")


def nonneg_int(text):
    return _number(int, text, 0, True, "an integer >= 0")


def positive_float(text):
    return _number(float, text, 0.0, False, "a positive number")


def nonneg_float(text):
    return _number(float, text, 0.0, True, "a number >= 0")


def probability(text):
    value = _number(float, text, 0.0, True, "a number in [0, 1)")
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def existing_dir(text):
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    return text


def existing_file(text):
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def add_threads_option(p, suppress=True):
    p.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS if suppress else None,
                   help="CPU threads for BLAS and compiled kernels (default: the cores idle at start)")


def add_run_options(p, default_out: str, checkpoint_every: int = 200):
    """The options every ``lamina train`` command shares."""
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--out", default=None, help=f"run folder (default {default_out})")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--resume", default=None, metavar="RUN_OR_CKPT",
                   help="continue a run with its own configuration (--epochs/--max-iters may extend it)")
    p.add_argument("--override-lr", action="store_true", help="with --resume: let --lr change the learning rate")
    p.add_argument("--checkpoint-every", type=nonneg_int, default=checkpoint_every, metavar="STEPS",
                   help=f"also checkpoint every N steps (default {checkpoint_every}; 0: only after evaluations)")
    p.add_argument("--on-nan", choices=("stop", "skip"), default="stop",
                   help="a non-finite loss stops the run (default) or skips that step")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of mpiexec -n N python -m mpi4py -m lamina train ... "
                        "(the batch is split across them; rank 0 writes the run folder)")
    add_threads_option(p)
