"""The PyTorch twin of ``lamina.models.GPT`` (nanoGPT's model): the same modules, parameter names,
initialisation scheme and loss, so the two can be compared weight for weight and trained side by
side. Benchmarks and tests use it; Lamina itself never imports torch."""
from __future__ import annotations

import math

import torch
import torch.nn as tnn
import torch.nn.functional as TF


class CausalSelfAttention(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = tnn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = tnn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = tnn.Dropout(cfg.dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = TF.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class MLP(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = tnn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = tnn.GELU()
        self.c_proj = tnn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = tnn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.transformer = tnn.ModuleDict(dict(
            wte=tnn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=tnn.Embedding(cfg.block_size, cfg.n_embd),
            drop=tnn.Dropout(cfg.dropout),
            h=tnn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=tnn.LayerNorm(cfg.n_embd, bias=cfg.bias),
        ))
        self.lm_head = tnn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, tnn.Linear):
                tnn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    tnn.init.zeros_(m.bias)
            elif isinstance(m, tnn.Embedding):
                tnn.init.normal_(m.weight, 0.0, 0.02)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                tnn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(self, idx, targets=None):
        b, t = idx.shape
        pos = torch.arange(t, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = TF.cross_entropy(logits.reshape(b * t, -1), targets.reshape(b * t), ignore_index=-1)
        return logits, loss

    def optimizer_groups(self, weight_decay):
        params = list(self.parameters())
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
