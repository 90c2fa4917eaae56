"""``lamina train gpt``, ``lamina train char-rnn`` and ``lamina generate``: character-level language
models on Shakespeare (or any text file), trained with nanoGPT's recipe, and sampling from a run."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import Generator, manual_seed, no_grad, optim, tensor
from ..data import CharTokenizer, load_text, random_blocks, shakespeare_text, split_tokens
from ..models import GPT, CharRNN, CharRNNConfig, GPTConfig
from ..nn.utils import clip_grad_norm_
from .run import (UserError, load_run_checkpoint, pick_device, plot_curves, progress, restore_run,
                  save_run_checkpoint, start_run, write_json)

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


def nanogpt_lr(it: int, cfg: dict) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr at lr_decay_iters (nanoGPT's get_lr)."""
    if it < cfg["warmup_iters"]:
        return cfg["lr"] * (it + 1) / (cfg["warmup_iters"] + 1)
    if it > cfg["lr_decay_iters"]:
        return cfg["min_lr"]
    ratio = (it - cfg["warmup_iters"]) / (cfg["lr_decay_iters"] - cfg["warmup_iters"])
    return cfg["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg["lr"] - cfg["min_lr"])


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


def train(args) -> int:
    name = args.recipe
    device = pick_device(args.device)

    def new_config():
        cfg = dict(RECIPES[name])
        for key in ("max_iters", "lr", "batch_size", "block_size", "n_layer", "n_head", "n_embd", "hidden_size",
                    "dropout", "eval_interval", "seed"):
            value = getattr(args, key, None)
            if value is not None:
                cfg[key] = value
        cfg["lr_decay_iters"] = cfg["max_iters"]
        cfg["text"] = args.text
        return cfg

    cfg, run_dir, resume = start_run(args, name, new_config, lambda c: name.replace("_", "-"), device)
    text = load_corpus(cfg["text"])
    tok = CharTokenizer.from_text(text) if resume is None else CharTokenizer.from_state_dict(resume["tokenizer"])
    ids = tensor(tok.encode(text), device=device)
    train_ids, val_ids = split_tokens(ids, 0.1)
    splits = {"train": tensor(train_ids, device=device), "val": tensor(val_ids, device=device)}

    manual_seed(cfg["seed"])
    model = _build(name, cfg, tok.vocab_size).to(device)
    groups = model.optimizer_groups(cfg["weight_decay"]) if name == "gpt" else model.parameters()
    opt = optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["weight_decay"])
    batches = Generator(device, seed=cfg["seed"])
    evals = Generator(device, seed=cfg["seed"] + 1)
    metrics = {"config": cfg, "epochs": [], "steps": []}
    it = 0
    if resume is not None:
        restore_run(resume, model=model, optimizer=opt, batches=batches, evals=evals)
        metrics, it = resume["metrics"], resume["iter"]
        print(f"resuming {run_dir} at iteration {it}")

    def checkpoint(done):
        save_run_checkpoint(run_dir, {
            "model_name": name, "config": cfg, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "tokenizer": tok.state_dict(), "batches": batches.get_state(), "evals": evals.get_state(),
            "iter": done, "metrics": metrics})

    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {name} ({n_params / 1e6:.2f}M parameters, vocab {tok.vocab_size}) on "
          f"{len(train_ids):,} training characters on {device}; run folder {run_dir}")
    tokens_per_iter = cfg["batch_size"] * cfg["block_size"]
    first = it
    bar = progress(range(it, cfg["max_iters"]), cfg["max_iters"] - it, name, disable=args.quiet)
    start, running = time.perf_counter(), None
    for it in bar:
        for group in opt.param_groups:
            group["lr"] = nanogpt_lr(it, cfg)
        x, y = random_blocks(splits["train"], cfg["block_size"], cfg["batch_size"], batches)
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        value = loss.item()
        running = value if running is None else 0.9 * running + 0.1 * value
        done = it + 1
        if done % 10 == 0:
            metrics["steps"].append([done, running])
            rate = (done - first) * tokens_per_iter / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{running:.3f}", tok_s=f"{rate:.0f}", refresh=False)
        if done % cfg["eval_interval"] == 0 or done == cfg["max_iters"]:
            losses = estimate_loss(model, splits, cfg, evals, device)
            metrics["epochs"].append({"step": done, "train_loss": losses["train"], "eval_loss": losses["val"],
                                      "elapsed_s": time.perf_counter() - start})
            bar.write(f"iter {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            checkpoint(done)
            write_json(run_dir / "metrics.json", metrics)
    elapsed = time.perf_counter() - start
    plot_curves(run_dir, metrics, f"{name} on {Path(cfg['text']).name if cfg['text'] else 'Shakespeare'} (characters)")
    if metrics["epochs"]:
        print(f"final val loss: {metrics['epochs'][-1]['eval_loss']:.4f} ({elapsed:.0f} s, "
              f"{(cfg['max_iters'] - first) * tokens_per_iter / max(elapsed, 1e-9):.0f} tokens/s)")
    sample = model.generate(tensor(tok.encode("\n")[None], device=device), 200, generator=Generator(device, seed=0))
    print("sample:\n" + tok.decode(sample[0]))
    print(f"checkpoint, metrics and plot in {run_dir}")
    return 0


def generate(args) -> int:
    device = pick_device(args.device)
    state = load_run_checkpoint(args.run, tuple(RECIPES), device)
    cfg, tok = state["config"], CharTokenizer.from_state_dict(state["tokenizer"])
    model = _build(state["model_name"], dict(cfg, dropout=0.0), tok.vocab_size).to(device)
    model.load_state_dict(state["model"])
    try:
        prompt = tok.encode(args.prompt or "\n")
    except ValueError as e:
        raise UserError(str(e)) from None
    out = model.generate(tensor(prompt[None], device=device), args.tokens, temperature=args.temperature,
                         top_k=args.top_k, generator=Generator(device, seed=args.seed))
    print(tok.decode(out[0]))
    return 0


def add_train_parsers(sub):
    for name, help_text in (("gpt", "character-level GPT on Shakespeare (nanoGPT's baby configuration)"),
                            ("char-rnn", "character-level LSTM language model on Shakespeare")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--text", default=None, help="train on this UTF-8 text file instead of Shakespeare")
        p.add_argument("--max-iters", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--block-size", type=int, default=None)
        p.add_argument("--n-layer", type=int, default=None)
        p.add_argument("--n-embd", type=int, default=None)
        if name == "gpt":
            p.add_argument("--n-head", type=int, default=None)
        else:
            p.add_argument("--hidden-size", type=int, default=None)
        p.add_argument("--dropout", type=float, default=None)
        p.add_argument("--eval-interval", type=int, default=None)
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--device", default="auto")
        p.add_argument("--out", default=None, help=f"run folder (default runs/{name}-<time>)")
        p.add_argument("--resume", default=None, metavar="RUN_OR_CKPT")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=train, recipe=name.replace("-", "_"))


def add_generate_parser(sub):
    p = sub.add_parser("generate", help="sample text from a trained GPT or char-RNN run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=generate)
