"""``fit``: the one training loop every ``lamina train`` command runs.

A command describes its run as a ``Training`` (model, optimiser, schedule, where batches come
from, how a batch becomes a loss, how the model is scored); ``fit`` does the rest the same way
for all of them: progress bar, periodic evaluation, checkpoints that resume exactly,
``metrics.json`` and the loss plot, a guard against non-finite losses, and SIGINT/SIGTERM
handling that saves the current step before exiting. On several ranks (``--distributed``, see
``parallel``) the same loop trains a data-parallel replica per rank: each rank computes the loss
of its rows of the global batch, the ranks agree on the loss and on signals every step (so they
skip, stop and checkpoint at the same step), and rank 0 alone writes and prints.

With ``--compile`` the loss, its backward and the gradient clipping of a batch run as one
compiled graph (``lamina.compile``; a batch of a new shape, such as an epoch's last, smaller
one, is traced once more); the optimiser step and the schedule stay eager, so a learning rate
that changes every step never re-traces, and a non-finite loss is still caught before the step.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field

from .. import backend, io
from ..nn.utils import clip_grad_norm_
from ..tensor import Tensor
from .run import RunFolder, UserError, plot_curves, progress, write_json

MAX_SKIPPED = 20  # --on-nan skip: this many non-finite losses in a row stop the run anyway


class Stop(Exception):
    """Ends a run early with an exit code and a one-line message (after the last checkpoint)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Training:
    """What a training command hands to ``fit``.

    ``periods`` is the number of evaluation periods (epochs, or blocks of ``eval_interval``
    iterations) and ``period_batches(p, step)`` the batches still to run in period ``p`` when
    ``step`` steps are done, as ``(iterable, count)``; a batch is a Tensor or a tuple/list of
    Tensors with one row per example. ``loss(model, batch)`` computes the mean loss Tensor of a
    batch (or of a rank's rows of one) with ``model`` (the model, or its data-parallel wrapper);
    ``loss_weight(batch)`` is what that mean is over when that is not the rows (e.g. the tokens
    that are not padding). ``evaluate()`` scores the model after a period (a dict with ``eval_loss``), and
    ``report(entry)`` is the line printed for a finished period. ``parts`` are the objects
    whose state the checkpoint keeps beside model/optimizer/scheduler (loaders, generators);
    ``extra`` is stored as is (a tokenizer's state, ...).
    """

    model_name: str
    config: dict
    model: object
    optimizer: object
    scheduler: object
    periods: int
    period_batches: object
    loss: object
    evaluate: object
    report: object
    period_label: object
    schedule_steps: int | None = None  # the scheduler is stepped only this many times
    grad_clip: float | None = None
    parts: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    unit: str = "batch"
    rate_unit: str = "items/s"
    items_per_batch: object = None  # batch -> number of items, for the rate shown
    loss_weight: object = None  # batch -> what loss() averages over (default: its rows)
    title: str = ""
    score: str | None = None
    score_label: str = ""


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""
    period: int = 0
    step: int = 0
    metrics: dict = field(default_factory=dict)


class _Signals:
    """SIGINT and SIGTERM set a flag the loop reads between steps instead of killing it mid-write."""

    def __init__(self):
        self.received = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def fit(run: RunFolder, job: Training, state: Progress, args) -> int:
    """Train ``job`` from ``state`` to the end of its last period; return the exit code."""
    ranks = run.ranks
    main = ranks.is_main
    quiet = getattr(args, "quiet", False) or not main
    checkpoint_every = getattr(args, "checkpoint_every", 0) or 0
    on_nan = getattr(args, "on_nan", "stop")
    metrics = state.metrics

    def checkpoint():
        bad = _non_finite_parameters(job.model)  # on every rank: all of them stop together
        if bad:
            raise Stop(1, f"non-finite values in parameter {bad} at step {state.step}; not saving them "
                          f"over the last good checkpoint in {run.path}")
        if main:
            run.save_checkpoint({
                "model_name": job.model_name, "config": job.config, "model": job.model.state_dict(),
                "optimizer": job.optimizer.state_dict(),
                "scheduler": job.scheduler.state_dict() if job.scheduler is not None else None,
                **{k: (v.state_dict() if hasattr(v, "state_dict") else v.get_state()) for k, v in job.parts.items()},
                **job.extra, "epoch": state.period, "step": state.step, "metrics": metrics})

    def save_metrics():
        if main:
            write_json(run.path / "metrics.json", metrics)

    net = ranks.wrap(job.model)  # after any restore: a replica starts from rank 0's weights
    compiled = None
    if getattr(args, "compile", False):
        if ranks.distributed:
            raise UserError("--compile does not combine with --distributed yet (the gradients' all-reduce runs "
                            "inside the backward, which a compiled graph does not hold); drop one of them")
        compiled = CompiledStep(job, net)
    if ranks.distributed:
        first = next(iter(job.model.parameters()), None)
        if first is not None:
            ranks.seed_streams(backend.device_of(first.array), state.step)
    start_step = state.step
    skipped_in_a_row = 0
    try:
        with _Signals() as signals:
            while state.period < job.periods:
                batches, count = job.period_batches(state.period, state.step)
                bar = progress(batches, count, job.period_label(state.period), disable=quiet, unit=job.unit)
                start, seen, running = time.perf_counter(), 0, None
                for batch in bar:
                    part, share = ranks.split(batch, job.loss_weight)
                    if compiled is not None:  # loss, backward and clipping at once: the gradients are set
                        job.optimizer.zero_grad()
                        loss = compiled(part)
                    else:
                        loss = job.loss(net, part)
                    value = ranks.total(loss.item() * share)
                    if not math.isfinite(value):
                        if on_nan == "stop":
                            raise Stop(1, f"non-finite loss ({value}) at step {state.step + 1} "
                                          f"({job.period_label(state.period)}); stopping. The last checkpoint in "
                                          f"{run.path} is kept; resume it with a lower --lr, or pass --on-nan skip")
                        skipped_in_a_row += 1
                        metrics.setdefault("skipped_steps", []).append(state.step + 1)
                        if main:
                            bar.write(f"lamina: non-finite loss ({value}) at step {state.step + 1}: step skipped",
                                      file=sys.stderr)
                        if skipped_in_a_row >= MAX_SKIPPED:
                            raise Stop(1, f"{MAX_SKIPPED} non-finite losses in a row up to step {state.step + 1}; "
                                          f"stopping. The last checkpoint in {run.path} is kept")
                        job.optimizer.zero_grad()
                    else:
                        skipped_in_a_row = 0
                        if compiled is None:
                            job.optimizer.zero_grad()
                            scale = share * ranks.size  # the ranks' gradients are averaged: weight them by share
                            (loss if scale == 1.0 else loss * scale).backward()
                            if job.grad_clip:
                                clip_grad_norm_(job.model.parameters(), job.grad_clip)
                        job.optimizer.step()
                    if job.scheduler is not None and (job.schedule_steps is None or state.step < job.schedule_steps):
                        job.scheduler.step()
                    state.step += 1
                    seen += job.items_per_batch(batch) if job.items_per_batch else 1
                    if math.isfinite(value):
                        running = value if running is None else 0.95 * running + 0.05 * value
                    if state.step % 10 == 0 and running is not None:
                        metrics["steps"].append([state.step, running])
                        rate = seen / max(time.perf_counter() - start, 1e-9)
                        bar.set_postfix(loss=f"{running:.4f}", rate=f"{rate:.0f} {job.rate_unit}", refresh=False)
                    if checkpoint_every and state.step % checkpoint_every == 0:
                        checkpoint()
                    received = ranks.signal(signals.received)
                    if received is not None:
                        bar.close()
                        _interrupted(run, args, state, received, checkpoint, save_metrics)
                bar.close()
                elapsed = time.perf_counter() - start
                scores = job.evaluate()
                state.period += 1
                entry = {"epoch": state.period, "step": state.step, "train_loss": running, **scores,
                         "elapsed_s": elapsed, job.rate_unit.replace("/", "_per_"): seen / elapsed if elapsed else 0.0}
                metrics["epochs"].append(entry)
                print(job.report(entry), flush=True)
                checkpoint()
                save_metrics()
                received = ranks.signal(signals.received)
                if received is not None:
                    _interrupted(run, args, state, received, checkpoint, save_metrics)
    except Stop as e:  # every rank stops at the same step (their decisions rest on agreed values)
        save_metrics()
        if main:
            print(f"lamina: {e}", file=sys.stderr)
        ranks.barrier()  # the others end the job only once rank 0's files are written
        return e.code
    if main:
        plot_curves(run.path, metrics, job.title, score=job.score or "test_accuracy",
                    score_label=job.score_label)
    if state.step > start_step:
        print(f"checkpoint, metrics and plot in {run.path}")
    return 0


class CompiledStep:
    """``job.loss`` of a batch, its backward and the gradient clipping as one ``lamina.compile``d
    function of the batch's tensors (call it after ``zero_grad()``; it returns the loss and leaves
    the gradients on the parameters)."""

    def __init__(self, job, net):
        from ..graph import compile
        model, loss_fn, clip = job.model, job.loss, job.grad_clip

        def train_step(*tensors):
            loss = loss_fn(net, tensors)
            loss.backward()
            if clip:
                clip_grad_norm_(model.parameters(), clip)
            return loss

        def train_step_one(tensor):
            loss = loss_fn(net, tensor)
            loss.backward()
            if clip:
                clip_grad_norm_(model.parameters(), clip)
            return loss
        self.many = compile(train_step)
        self.one = compile(train_step_one)

    def __call__(self, batch):
        if isinstance(batch, Tensor):
            return self.one(batch)
        return self.many(*batch)


def add_compile_option(p) -> None:
    """``--compile``, for the training commands whose loss ``lamina.compile`` can trace."""
    p.add_argument("--compile", action="store_true",
                   help="run each batch's loss, backward and gradient clipping as one compiled graph "
                        "(lamina.compile); the optimiser step stays eager")


def _interrupted(run, args, state, signum, checkpoint, save_metrics):
    name = signal.Signals(signum).name
    checkpoint()
    save_metrics()
    raise Stop(128 + signum, f"{name} received at step {state.step}: checkpoint saved; continue with "
                             f"lamina train {args.model} --resume {run.path}")


def _non_finite_parameters(model) -> str | None:
    for name, p in model.named_parameters():
        a = p.array
        if not bool(backend.xp_of(a).isfinite(a).all()):
            return name
    return None


def restore(state: dict, job: Training) -> Progress:
    """Put a checkpoint's state back into ``job``'s parts; return where the run stands."""
    try:
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        if job.scheduler is not None and state.get("scheduler") is not None:
            job.scheduler.load_state_dict(state["scheduler"])
        for key, obj in job.parts.items():
            if hasattr(obj, "load_state_dict"):
                obj.load_state_dict(state[key])
            else:
                obj.set_state(state[key])
        io.set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"the checkpoint does not fit this run: {e}") from None
    return Progress(period=int(state["epoch"]), step=int(state["step"]), metrics=state["metrics"])


def start_job(saved: dict | None, job: Training, run: RunFolder) -> Progress | None:
    """Where the run starts: from nothing, or from its checkpoint ``saved`` (None when that run
    is already finished)."""
    if saved is None:
        return Progress(metrics={"config": job.config, "epochs": [], "steps": []})
    return resume_job(saved, job, run)


def resume_job(saved: dict, job: Training, run: RunFolder) -> Progress | None:
    """Restore ``job`` from its checkpoint and say what the resumed run will do; None when the run
    is already finished (nothing to do)."""
    state = restore(saved, job)
    state.metrics["config"] = job.config
    old = saved["config"]
    length = "epochs" if "epochs" in old else "max_iters"
    if state.period >= job.periods:
        done = state.metrics["epochs"][-1] if state.metrics.get("epochs") else {}
        key = job.score or "eval_loss"
        score = f", {key.replace('_', ' ')} {done[key]:.4g}" if key in done else ""
        print(f"{run.path} is already finished ({state.period} of {job.periods} "
              f"{'epochs' if length == 'epochs' else 'evaluation periods'}{score}); pass a larger "
              f"--{length.replace('_', '-')} with --resume to train further")
        return None
    if job.config.get("lr") != old.get("lr"):
        scale_lr(job.optimizer, job.scheduler, job.config["lr"] / old["lr"])
    if job.schedule_steps is not None and job.config[length] > old[length]:
        print(f"resume: the learning-rate schedule ends at step {job.schedule_steps}; later steps keep its "
              "final learning rate")
    print(f"resuming {run.path} at {job.period_label(state.period)}, step {state.step}")
    return state


def scale_lr(optimizer, scheduler, factor: float) -> None:
    """Scale every learning rate of the run, the schedule's included, by ``factor`` (``--lr`` on
    resume with ``--override-lr``): the schedule keeps its shape around the new peak."""
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if isinstance(group.get(key), (int, float)):
                group[key] = group[key] * factor
    stack = [scheduler] if scheduler is not None else []
    while stack:
        s = stack.pop()
        if hasattr(s, "base_lrs"):
            s.base_lrs = [lr * factor for lr in s.base_lrs]
        if isinstance(getattr(s, "eta_min", None), (int, float)):
            s.eta_min = s.eta_min * factor
        stack.extend(getattr(s, "_schedulers", ()))
