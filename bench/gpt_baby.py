"""The "baby GPT" on Shakespeare, trained by Lamina and by PyTorch side by side: the same model
(weights copied from Lamina's initialisation into the PyTorch twin), the same batches in the same
order, the same learning-rate schedule, optimiser and clipping. Prints the validation loss of both
along the way and at the end, wall time and tokens/s.

    python bench/gpt_baby.py [--max-iters 2000] [--threads 2] [--json out.json]

The final validation loss is measured on 200 fixed batches of the validation split (nanoGPT's own
estimate uses 20 random ones); both frameworks see exactly the same batches.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
import time

import math

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` when run as a script


def batches(rng, n_tokens, block, batch, count):
    return rng.integers(0, n_tokens - block, (count, batch))


def nanogpt_lr(it: int, cfg: dict) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr at lr_decay_iters (nanoGPT's get_lr)."""
    if it < cfg["warmup_iters"]:
        return cfg["lr"] * (it + 1) / (cfg["warmup_iters"] + 1)
    if it > cfg["lr_decay_iters"]:
        return cfg["min_lr"]
    ratio = (it - cfg["warmup_iters"]) / (cfg["lr_decay_iters"] - cfg["warmup_iters"])
    return cfg["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg["lr"] - cfg["min_lr"])


def gather(ids, offsets, block):
    idx = offsets[:, None] + np.arange(block)
    return ids[idx], ids[idx + 1]


def train_lamina(cfg, train_ids, val_ids, offsets, eval_offsets, final_offsets):
    import lamina
    from lamina.models import GPT, GPTConfig
    lamina.manual_seed(cfg["seed"])
    model = GPT(GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                          n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=True))
    init = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = lamina.optim.AdamW(model.optimizer_groups(cfg["weight_decay"]), lr=cfg["lr"],
                             betas=(cfg["beta1"], cfg["beta2"]))

    def loss_on(ids, offs):
        x, y = gather(ids, offs, cfg["block_size"])
        return model(lamina.tensor(x), lamina.tensor(y))[1]

    def evaluate(ids, offs_list):
        model.eval()
        with lamina.no_grad():
            value = float(np.mean([loss_on(ids, o).item() for o in offs_list]))
        model.train()
        return value

    curve, start = [], time.perf_counter()
    for it in range(cfg["max_iters"]):
        for g in opt.param_groups:
            g["lr"] = nanogpt_lr(it, cfg)
        loss = loss_on(train_ids, offsets[it])
        opt.zero_grad()
        loss.backward()
        lamina.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        if (it + 1) % cfg["eval_interval"] == 0:
            curve.append((it + 1, evaluate(val_ids, eval_offsets[len(curve)])))
    train_time = time.perf_counter() - start
    return init, curve, evaluate(val_ids, final_offsets), train_time, model


def train_torch(cfg, init, train_ids, val_ids, offsets, eval_offsets, final_offsets):
    import torch

    from bench.nanogpt import TorchGPT
    from lamina.models import GPTConfig
    model = TorchGPT(GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                               n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=0.0, bias=True))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in init.items()})
    opt = torch.optim.AdamW(model.optimizer_groups(cfg["weight_decay"]), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))

    def loss_on(ids, offs):
        x, y = gather(ids, offs, cfg["block_size"])
        return model(torch.from_numpy(x), torch.from_numpy(y))[1]

    def evaluate(ids, offs_list):
        model.eval()
        with torch.no_grad():
            value = float(np.mean([loss_on(ids, o).item() for o in offs_list]))
        model.train()
        return value

    curve, start = [], time.perf_counter()
    for it in range(cfg["max_iters"]):
        for g in opt.param_groups:
            g["lr"] = nanogpt_lr(it, cfg)
        loss = loss_on(train_ids, offsets[it])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        if (it + 1) % cfg["eval_interval"] == 0:
            curve.append((it + 1, evaluate(val_ids, eval_offsets[len(curve)])))
    train_time = time.perf_counter() - start
    return curve, evaluate(val_ids, final_offsets), train_time


def main(argv=None):
    from lamina.cli.textlm import BABY
    from lamina.data import CharTokenizer, shakespeare_text, split_tokens
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-iters", type=int, default=BABY["max_iters"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--final-batches", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    cfg = dict(BABY, max_iters=args.max_iters, lr_decay_iters=args.max_iters)
    text = shakespeare_text("baby")
    tok = CharTokenizer.from_text(text)
    cfg["vocab_size"] = tok.vocab_size
    train_ids, val_ids = split_tokens(tok.encode(text), 0.1)
    rng = np.random.default_rng(cfg["seed"])
    offsets = batches(rng, len(train_ids), cfg["block_size"], cfg["batch_size"], cfg["max_iters"])
    n_evals = cfg["max_iters"] // cfg["eval_interval"]
    eval_offsets = [batches(rng, len(val_ids), cfg["block_size"], cfg["batch_size"], cfg["eval_iters"])
                    for _ in range(n_evals)]
    final_offsets = batches(rng, len(val_ids), cfg["block_size"], cfg["batch_size"], args.final_batches)
    tokens = cfg["max_iters"] * cfg["batch_size"] * cfg["block_size"]

    init, lcurve, lfinal, ltime, model = train_lamina(cfg, train_ids, val_ids, offsets, eval_offsets, final_offsets)
    tcurve, tfinal, ttime = train_torch(cfg, init, train_ids, val_ids, offsets, eval_offsets, final_offsets)
    print(f"{'iter':>6} {'lamina val':>11} {'pytorch val':>12}")
    for (it, lv), (_, tv) in zip(lcurve, tcurve):
        print(f"{it:>6} {lv:>11.4f} {tv:>12.4f}")
    print(f"final val loss ({args.final_batches} batches): lamina {lfinal:.4f}, pytorch {tfinal:.4f}, "
          f"difference {lfinal - tfinal:+.4f}")
    print(f"training time: lamina {ltime:.1f} s ({tokens / ltime:.0f} tokens/s), pytorch {ttime:.1f} s "
          f"({tokens / ttime:.0f} tokens/s); throughput ratio lamina/pytorch {ttime / ltime:.2f}x")
    import lamina
    sample = model.generate(lamina.tensor(tok.encode("ROMEO:")[None]), 300, generator=lamina.Generator(seed=0))
    print("lamina sample:\n" + tok.decode(sample[0]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cfg, "lamina": {"curve": lcurve, "final_val": lfinal, "seconds": ltime},
                       "pytorch": {"curve": tcurve, "final_val": tfinal, "seconds": ttime},
                       "sample": tok.decode(sample[0])}, f, indent=2)


if __name__ == "__main__":
    main()
