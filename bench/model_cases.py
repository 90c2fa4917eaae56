"""The ``models`` suite: whole training steps (forward, loss, zero_grad, backward, optimiser step)
and inference passes, reported as images/s or tokens/s.

Both sides start from the same weights (the Lamina model's ``state_dict`` is loaded into its
PyTorch twin from ``bench/torch_models.py`` or ``bench/nanogpt.py``), use the same optimiser settings and see the same
random batch every step. Before timing, the two models' logits on that batch are
compared, so that a mismatch between the twins shows up in the notes instead of in a ratio.
The GPT case is skipped, with a note, in a checkout without ``lamina.models.GPT``.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as TF

import lamina
from lamina.nn import functional as F

from . import torch_models
from .harness import Case, Pair, Skip
from .nanogpt import TorchGPT


def _twin(ctx, lamina_model, torch_model, x, logits=lambda out: out):
    """Load the Lamina weights into the torch model, compare the two models' logits on ``x`` (on the
    CPU), then move both to the device. Returns a warning for the notes, or ""."""
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in lamina_model.state_dict().items()}
    torch_model.load_state_dict(state)
    with lamina.no_grad(), torch.no_grad():
        ours = logits(lamina_model(lamina.tensor(x))).numpy()
        theirs = logits(torch_model(torch.from_numpy(x))).numpy()
    diff = np.abs(ours - theirs).max()
    lamina_model.to(ctx.device)
    torch_model.to(ctx.torch_device)
    return "" if diff < 1e-3 else f"WARNING: logits differ by {diff:.2g}"


def _train_steps(ctx, lmodel, tmodel, x, y, make_opt):
    lx, ly, tx, ty = ctx.lt(x), ctx.lt(y), ctx.tt(x), ctx.tt(y)
    lopt, topt = make_opt(lamina.optim, lmodel), make_opt(torch.optim, tmodel)

    def lamina_step():
        loss = F.cross_entropy(lmodel(lx), ly)
        lopt.zero_grad()
        loss.backward()
        lopt.step()

    def torch_step():
        loss = TF.cross_entropy(tmodel(tx), ty)
        topt.zero_grad()
        loss.backward()
        topt.step()
    return lamina_step, torch_step


def _adam(optim, model):
    return optim.Adam(model.parameters(), lr=1e-3)


def _flops(layers, train):
    """Forward FLOPs ``f`` per layer; training adds the weight gradient (f) and, where the layer's
    input needs a gradient, the input gradient (f)."""
    return sum(f * ((3 if input_grad else 2) if train else 1) for f, input_grad in layers)


def _lenet_layers(batch):
    return [(2.0 * batch * 6 * 1 * 25 * 28 * 28, False), (2.0 * batch * 16 * 6 * 25 * 10 * 10, True),
            (2.0 * batch * 400 * 120, True), (2.0 * batch * 120 * 84, True), (2.0 * batch * 84 * 10, True)]


def lenet(ctx, batch, train):
    from lamina.models import LeNet5
    batch = ctx.pick(batch, 8)
    lamina.manual_seed(ctx.seed)
    lmodel, tmodel = LeNet5(), torch_models.LeNet5()
    x, y = ctx.randn(batch, 1, 28, 28), ctx.randint(10, batch)
    note = _twin(ctx, lmodel, tmodel, x)
    if train:
        lamina_step, torch_step = _train_steps(ctx, lmodel, tmodel, x, y, _adam)
    else:
        lmodel.eval()
        tmodel.eval()
        lx, tx = ctx.lt(x), ctx.tt(x)

        def lamina_step():
            with lamina.no_grad():
                lmodel(lx)

        def torch_step():
            with torch.no_grad():
                tmodel(tx)
    return Pair(lamina_step, torch_step, items=batch, flops=_flops(_lenet_layers(batch), train),
                shape=f"batch {batch}", note=note or ("Adam" if train else "eval, no_grad"))


def mlp(ctx, batch, sizes):
    from lamina.models import MLP
    batch = ctx.pick(batch, 8)
    lamina.manual_seed(ctx.seed)
    lmodel, tmodel = MLP(sizes), torch_models.MLP(sizes)
    x, y = ctx.randn(batch, sizes[0]), ctx.randint(sizes[-1], batch)
    note = _twin(ctx, lmodel, tmodel, x)
    lamina_step, torch_step = _train_steps(ctx, lmodel, tmodel, x, y, _adam)
    layers = [(2.0 * batch * a * b, i > 0) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return Pair(lamina_step, torch_step, items=batch, flops=_flops(layers, True),
                shape=f"batch {batch}, {'-'.join(map(str, sizes))}", note=note or "Adam")


# ---------------------------------------------------------------- GPT
def _adamw(optim, model):
    return optim.AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.95))


def gpt(ctx, batch, block_size, n_layer, n_head, n_embd, vocab_size):
    if not hasattr(lamina.models, "GPT"):
        raise Skip("lamina.models.GPT does not exist yet")
    batch, T = ctx.pick(batch, 2), ctx.pick(block_size, 16)
    config = lamina.models.GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                                     n_head=n_head, n_embd=n_embd, dropout=0.0, bias=True)
    lamina.manual_seed(ctx.seed)
    lmodel, tmodel = lamina.models.GPT(config), TorchGPT(config)
    x, y = ctx.randint(vocab_size, batch, T), ctx.randint(vocab_size, batch, T)
    note = _twin(ctx, lmodel, tmodel, x, logits=lambda out: out[0])
    lx, ly, tx, ty = ctx.lt(x), ctx.lt(y), ctx.tt(x), ctx.tt(y)
    lopt, topt = _adamw(lamina.optim, lmodel), _adamw(torch.optim, tmodel)

    def lamina_step():
        _, loss = lmodel(lx, ly)
        lopt.zero_grad()
        loss.backward()
        lopt.step()

    def torch_step():
        _, loss = tmodel(tx, ty)
        topt.zero_grad()
        loss.backward()
        topt.step()
    # nanoGPT's estimate: 6 FLOPs per weight per token (position embeddings excluded) plus attention
    n_weights = sum(p.numel() for p in tmodel.parameters()) - tmodel.transformer.wpe.weight.numel()
    flops = batch * T * (6.0 * n_weights + 12.0 * n_layer * n_embd * T)
    return Pair(lamina_step, torch_step, items=batch * T, flops=flops,
                shape=f"batch {batch}, block {T}, {n_layer}L {n_head}H {n_embd}d, vocab {vocab_size}",
                note=note or "AdamW, decay on matrices only")


CASES = [
    Case("lenet5 train b64", "models", partial(lenet, batch=64, train=True), unit="images"),
    Case("lenet5 train b256", "models", partial(lenet, batch=256, train=True), unit="images"),
    Case("lenet5 infer b1000", "models", partial(lenet, batch=1000, train=False), unit="images"),
    Case("mlp 784-1024-1024-10 train b128", "models", partial(mlp, batch=128, sizes=(784, 1024, 1024, 10)),
         unit="images"),
    Case("gpt baby train", "models", partial(gpt, batch=12, block_size=64, n_layer=4, n_head=4, n_embd=128,
                                             vocab_size=65), unit="tokens"),
]
