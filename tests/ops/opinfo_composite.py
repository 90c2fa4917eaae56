"""Samples of the ``lamina.nn.functional`` composites (functions written from primitive ops), so
they get the same PyTorch parity, gradient and second-order checks as the primitives."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

import lamina
import lamina.nn.functional as F
from tests.ops.opinfo import OpInfo, R, Rpos, Sample, unary


def _pairs(rng):
    yield Sample((R(rng, 4, 5), R(rng, 4, 5)))
    yield Sample((R(rng, 2, 3, 4), R(rng, 2, 3, 4)), dict(reduction="sum"))
    yield Sample((R(rng, 3), R(rng, 3)), dict(reduction="none"))


def _probs(rng):
    yield Sample((Rpos(rng, 4, 3, low=0.05, high=0.95), Rpos(rng, 4, 3, low=0.05, high=0.95)))
    yield Sample((Rpos(rng, 5, low=0.05, high=0.95), Rpos(rng, 5, low=0.05, high=0.95)), dict(reduction="sum"))


def _kl(rng):
    p = Rpos(rng, 3, 4)
    q = Rpos(rng, 3, 4)
    yield Sample((np.log(p / p.sum(1, keepdims=True)), q / q.sum(1, keepdims=True)), dict(reduction="batchmean"))
    yield Sample((np.log(p / p.sum(1, keepdims=True)), np.log(q / q.sum(1, keepdims=True))),
                 dict(reduction="sum", log_target=True))


def _nll(rng):
    yield Sample((R(rng, 4, 5), np.array([4, 0, 2, 2])))
    yield Sample((R(rng, 3, 5, 2), np.array([[1, 2], [0, 4], [3, 3]])), dict(reduction="sum"))


def _batch_norm(rng):
    # running statistics are integer samples (constants, not leaves), scaled inside the functions
    x = R(rng, 4, 3, 2)
    yield Sample((x, np.array([0, 0, 0]), np.array([10, 10, 10]), Rpos(rng, 3), R(rng, 3)), dict(training=True),
                 desc="train")
    yield Sample((x, np.array([3, -5, 1]), np.array([7, 12, 20]), Rpos(rng, 3), R(rng, 3)), dict(training=False),
                 desc="eval")


def _batch_norm_lamina(x, mean, var, w, b, training):
    return F.batch_norm(x, mean.to(x.dtype) * 0.1, var.to(x.dtype) * 0.1, w, b, training=training)


def _batch_norm_torch(x, mean, var, w, b, training):
    return TF.batch_norm(x, mean.to(x.dtype) * 0.1, var.to(x.dtype) * 0.1, w, b, training=training)


def _attention(rng):
    # the fused op: (batch, heads, L, D) and other leading dims, causal with more or fewer keys
    # than queries, values wider than keys, an explicit scale
    yield Sample((R(rng, 2, 3, 4, 3), R(rng, 2, 3, 5, 3), R(rng, 2, 3, 5, 2)))
    yield Sample((R(rng, 1, 2, 4, 3), R(rng, 1, 2, 4, 3), R(rng, 1, 2, 4, 3)), dict(is_causal=True))
    yield Sample((R(rng, 2, 5, 4), R(rng, 2, 3, 4), R(rng, 2, 3, 4)), dict(is_causal=True, scale=0.7))
    yield Sample((R(rng, 3, 4), R(rng, 5, 4), R(rng, 5, 6)), dict(is_causal=True))
    yield Sample((R(rng, 2, 1, 2, 3, 4), R(rng, 2, 1, 2, 3, 4), R(rng, 2, 1, 2, 3, 4)))
    # the composition: a boolean mask, broadcast batch dims
    yield Sample((R(rng, 2, 3, 4), R(rng, 2, 5, 4), R(rng, 2, 5, 4)),
                 dict(attn_mask=np.array([[True, False, True, True, False]] * 3)), desc="mask")
    yield Sample((R(rng, 2, 3, 4), R(rng, 1, 5, 4), R(rng, 1, 5, 4)), desc="broadcast")


def _cosine(rng):
    yield Sample((R(rng, 4, 5), R(rng, 4, 5)))
    yield Sample((R(rng, 3, 4), R(rng, 1, 4)), dict(dim=1))
    yield Sample((R(rng, 2, 3, 4), R(rng, 2, 3, 4)), dict(dim=0))


def _normalize(rng):
    yield Sample((R(rng, 4, 5),))
    yield Sample((R(rng, 3, 4),), dict(p=1.0, dim=0))
    yield Sample((R(rng, 2, 3, 4),), dict(dim=-1))


OPS = [
    OpInfo("F.elu", F.elu, TF.elu, unary(alpha=0.7), atol=1e-7),
    OpInfo("F.softplus", F.softplus, TF.softplus, unary(beta=1.5)),
    OpInfo("F.logsigmoid", F.logsigmoid, TF.logsigmoid, unary()),
    OpInfo("F.normalize", F.normalize, TF.normalize, _normalize),
    OpInfo("F.cosine_similarity", F.cosine_similarity, TF.cosine_similarity, _cosine),
    OpInfo("F.mse_loss", F.mse_loss, TF.mse_loss, _pairs),
    OpInfo("F.l1_loss", F.l1_loss, TF.l1_loss, _pairs),
    OpInfo("F.smooth_l1_loss", lambda a, b, **kw: F.smooth_l1_loss(a, b, beta=0.5, **kw),
           lambda a, b, **kw: TF.smooth_l1_loss(a, b, beta=0.5, **kw), _pairs),
    OpInfo("F.huber_loss", lambda a, b, **kw: F.huber_loss(a, b, delta=0.7, **kw),
           lambda a, b, **kw: TF.huber_loss(a, b, delta=0.7, **kw), _pairs),
    OpInfo("F.binary_cross_entropy", F.binary_cross_entropy, TF.binary_cross_entropy, _probs),
    OpInfo("F.binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits,
           TF.binary_cross_entropy_with_logits, _pairs),
    OpInfo("F.kl_div", F.kl_div, TF.kl_div, _kl),
    OpInfo("F.nll_loss", F.nll_loss, TF.nll_loss, _nll),
    OpInfo("F.batch_norm", _batch_norm_lamina, _batch_norm_torch, _batch_norm),
    OpInfo("F.scaled_dot_product_attention", F.scaled_dot_product_attention, TF.scaled_dot_product_attention,
           _attention),
]

del lamina, torch
