"""``lamina train seq2seq``: a T5-style encoder-decoder Transformer on a synthetic task (``reverse``
a digit string, or ``add`` two numbers), scored each epoch by exact match of greedy decoding on a
held-out split whose sources never occur in training."""
from __future__ import annotations

import numpy as np

from .. import Generator, backend, manual_seed, no_grad, optim, tensor
from ..data import DataLoader, TensorDataset
from ..data.synthetic import TASKS, SyntheticSeq2Seq
from ..models.seq2seq import Seq2SeqTransformer
from .fit import Training, add_compile_option, fit, start_job
from .run import (
    UserError,
    add_run_options,
    nonneg_int,
    open_run,
    positive_float,
    positive_int,
    probability,
    ranks_note,
    train_device,
)

MODEL_NAME = "seq2seq"

# Measured on a 2-core CPU: the default run of either task ends at >= 99% held-out exact match
# (reverse: 100%) in about 80 s with one BLAS thread, 2.5 minutes with OpenBLAS's default two
# threads beside a light load. The model is smaller than Seq2SeqTransformer's defaults (0.23M
# parameters, not 1.4M): these tasks need no more, and a step costs a quarter as much.
DEFAULTS = dict(n_train=20000, n_heldout=1000, min_len=1, max_len=10, max_digits=3, epochs=8, batch_size=128,
                lr=3e-3, weight_decay=0.01, warmup=0.1, grad_clip=1.0, d_model=64, nhead=4, num_encoder_layers=2,
                num_decoder_layers=2, dim_feedforward=256, dropout=0.0, seed=0)
OPTIONS = ("epochs", "batch_size", "lr", "n_train", "n_heldout", "min_len", "max_len", "max_digits", "d_model",
           "nhead", "num_encoder_layers", "num_decoder_layers", "dim_feedforward", "dropout", "seed")


def make_task(cfg: dict) -> SyntheticSeq2Seq:
    try:
        return SyntheticSeq2Seq(cfg["task"], cfg["n_train"], cfg["n_heldout"], cfg["seed"], min_len=cfg["min_len"],
                                max_len=cfg["max_len"], max_digits=cfg["max_digits"])
    except ValueError as e:
        raise UserError(str(e)) from None


def make_model(cfg: dict, task: SyntheticSeq2Seq) -> Seq2SeqTransformer:
    try:
        return Seq2SeqTransformer(task.vocab.vocab_size, d_model=cfg["d_model"], nhead=cfg["nhead"],
                                  num_encoder_layers=cfg["num_encoder_layers"],
                                  num_decoder_layers=cfg["num_decoder_layers"],
                                  dim_feedforward=cfg["dim_feedforward"], dropout=cfg["dropout"],
                                  max_len=max(task.src_len, task.tgt_len), pad_id=task.vocab.pad_id)
    except ValueError as e:
        raise UserError(str(e)) from None


@no_grad()
def evaluate(model, split, vocab, device, batch_size=500):
    """Held-out scores: teacher-forced loss and token accuracy, and the exact match of greedy
    decoding (every id up to and including EOS, and nothing after it). Returns (scores, predictions)."""
    model.eval()
    loss_sum, tokens, correct_tokens, exact, preds = 0.0, 0, 0, 0, []
    width = split.tgt_out.shape[1]
    for i in range(0, len(split), batch_size):
        src = tensor(split.src[i:i + batch_size], device=device)
        tgt_in = tensor(split.tgt_in[i:i + batch_size], device=device)
        tgt_out = split.tgt_out[i:i + batch_size]
        logits = model(src, tgt_in)
        real = tgt_out != vocab.pad_id
        n_real = int(real.sum())
        loss_sum += model.loss(logits, tensor(tgt_out, device=device)).item() * n_real
        tokens += n_real
        argmax = backend.to_device(logits.argmax(-1).array, backend.cpu)
        correct_tokens += int(((argmax == tgt_out) & real).sum())
        out = backend.to_device(model.greedy_decode(src, width, vocab.bos_id, vocab.eos_id).array, backend.cpu)
        out = np.pad(out, ((0, 0), (0, width - out.shape[1])), constant_values=vocab.pad_id)
        exact += int((out == tgt_out).all(axis=1).sum())
        preds.extend(vocab.decode(row) for row in out)
    model.train()
    n = max(len(split), 1)
    return {"eval_loss": loss_sum / max(tokens, 1), "heldout_token_accuracy": correct_tokens / max(tokens, 1),
            "heldout_exact_match": exact / n}, preds


def _config(args) -> dict:
    cfg = dict(DEFAULTS, task=args.task or "reverse")
    for key in OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    return cfg


def train(args) -> int:
    device = train_device(args)
    run, cfg, saved = open_run(args, MODEL_NAME, lambda: _config(args), lambda c: f"seq2seq-{c['task']}")
    with run:
        task = make_task(cfg)
        manual_seed(cfg["seed"])
        model = make_model(cfg, task).to(device)
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opt = optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.98))
        data = TensorDataset(*(tensor(a, device=device)
                               for a in (task.train.src, task.train.tgt_in, task.train.tgt_out)))
        loader = DataLoader(data, batch_size=cfg["batch_size"], shuffle=True, generator=Generator(seed=cfg["seed"]))
        steps_per_epoch = len(loader)
        first = saved["config"] if saved else cfg
        sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=first["lr"], epochs=first["epochs"],
                                              steps_per_epoch=steps_per_epoch, pct_start=float(cfg["warmup"]),
                                              cycle_momentum=False)
        last_preds = []

        def evaluate_():
            scores, preds = evaluate(model, task.heldout, task.vocab, device)
            last_preds[:] = preds
            return scores

        job = Training(
            model_name=MODEL_NAME, config=cfg, model=model, optimizer=opt, scheduler=sched, periods=cfg["epochs"],
            schedule_steps=first["epochs"] * steps_per_epoch, grad_clip=cfg["grad_clip"],
            period_batches=lambda e, step: (loader, steps_per_epoch - loader.state_dict()["batches_consumed"]),
            loss=lambda net, b: model.loss(net(b[0], b[1]), b[2]), evaluate=evaluate_,
            loss_weight=lambda b: int((b[2] != task.vocab.pad_id).sum().item()),
            period_label=lambda e: f"epoch {e + 1}/{cfg['epochs']}",
            report=lambda r: (f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}, held-out loss "
                              f"{r['eval_loss']:.4f}, token accuracy {100 * r['heldout_token_accuracy']:.2f}%, "
                              f"exact match {100 * r['heldout_exact_match']:.2f}% ({r['elapsed_s']:.1f} s)"),
            parts={"loader": loader}, rate_unit="examples/s", items_per_batch=lambda b: b[0].shape[0],
            title=f"Seq2SeqTransformer on {cfg['task']}", score="heldout_exact_match",
            score_label="held-out exact match (%)")
        state = start_job(saved, job, run)
        if state is None:  # a finished run: nothing to do
            return 0
        n_params = sum(p.numel() for p in model.parameters())
        print(f"training Seq2SeqTransformer ({n_params / 1e6:.2f}M parameters) on task {cfg['task']!r}: "
              f"{len(task.train)} training / {len(task.heldout)} held-out examples on {device}{ranks_note(run)}; "
              f"run folder {run.path}")
        code = fit(run, job, state, args)
        if code or not run.ranks.is_main:  # the closing summary is rank 0's to print
            return code
        if not last_preds:
            evaluate_()
        final = state.metrics["epochs"][-1]["heldout_exact_match"] if state.metrics["epochs"] else 0.0
        print(f"held-out exact match: {100 * final:.2f}%")
        print("held-out examples (source -> prediction, target):")
        for (src, tgt), pred in list(zip(task.heldout.pairs, last_preds))[:args.examples]:
            print(f"  {src:>12} -> {pred:<12} {'ok' if pred == tgt else f'WRONG, want {tgt}'}")
        return 0


def add_train_parser(sub):
    p = sub.add_parser("seq2seq", help="T5-style encoder-decoder on a synthetic task (reverse digits, add numbers)")
    p.add_argument("--task", choices=TASKS, default=None, help="default reverse")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--n-train", type=positive_int, default=None, help="training examples")
    p.add_argument("--n-heldout", type=positive_int, default=None, help="held-out examples (distinct, unseen sources)")
    p.add_argument("--min-len", type=positive_int, default=None, help="reverse: shortest digit string")
    p.add_argument("--max-len", type=positive_int, default=None, help="reverse: longest digit string")
    p.add_argument("--max-digits", type=positive_int, default=None, help="add: most digits per operand")
    p.add_argument("--d-model", type=positive_int, default=None)
    p.add_argument("--nhead", type=positive_int, default=None)
    p.add_argument("--num-encoder-layers", type=positive_int, default=None)
    p.add_argument("--num-decoder-layers", type=positive_int, default=None)
    p.add_argument("--dim-feedforward", type=positive_int, default=None)
    p.add_argument("--dropout", type=probability, default=None)
    p.add_argument("--seed", type=nonneg_int, default=None)
    p.add_argument("--examples", type=nonneg_int, default=8, help="held-out examples to print at the end")
    add_run_options(p, "runs/seq2seq-<task>-<time>", checkpoint_every=0)
    add_compile_option(p)
    p.set_defaults(func=train)
