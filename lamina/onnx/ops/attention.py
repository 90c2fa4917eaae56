"""ONNX Attention (opset 23 and later) on Lamina ops: scaled dot-product attention over 3-d
(batch, seq, hidden) or 4-d (batch, heads, seq, head_size) inputs, with a boolean or additive
mask, causal masking aligned to the end of a KV cache (past_key/past_value), grouped-query
heads, softcap, sliding windows, padded KV lengths and the optional QK output.

The masks become one additive bias computed on the host; the data path (matmuls, softmax) is
Lamina ops, so gradients flow to Q, K and V.
"""
from __future__ import annotations

import numpy as np

import lamina
import lamina.nn.functional as F

from . import onnx_op
from ._util import fail, host, is_float, wrap


def _heads(t, n):
    b, s, hidden = t.shape
    if hidden % n:
        raise ValueError(f"hidden size {hidden} is not a multiple of {n} heads")
    return lamina.permute(lamina.reshape(t, (b, s, n, hidden // n)), (0, 2, 1, 3))


def _bias(node, q_len, kv_len, mask, past_len, nonpad, dtype, batch):
    bias = np.zeros((q_len, kv_len), dtype)
    if mask is not None:
        m = host(mask)
        if m.shape[-1] < kv_len:  # a shorter mask leaves the rest of the keys masked out
            pad = [(0, 0)] * (m.ndim - 1) + [(0, kv_len - m.shape[-1])]
            m = np.pad(m, pad, constant_values=False if m.dtype == np.bool_ else -np.inf)
        m = np.where(m, 0, -np.inf).astype(dtype) if m.dtype == np.bool_ else m.astype(dtype)
        bias = bias + m
    offset = (nonpad.reshape(-1, 1, 1, 1) - q_len) if nonpad is not None else past_len
    i = np.arange(q_len)[:, None]
    j = np.arange(kv_len)[None, :]
    if node.attr("is_causal", 0):
        bias = bias + np.where(j <= i + offset, 0, -np.inf).astype(dtype)
    left, right = node.attr("left_window_size", -1), node.attr("right_window_size", -1)
    if left >= 0 or right >= 0:
        diff = (i + offset) - j
        ok = np.ones(np.shape(diff), bool)
        if left >= 0:
            ok &= diff <= left
        if right >= 0:
            ok &= -diff <= right
        bias = bias + np.where(ok, 0, -np.inf).astype(dtype)
    if nonpad is not None:
        bias = bias + np.where(j[None, None] < nonpad.reshape(-1, 1, 1, 1), 0, -np.inf).astype(dtype)
    return bias


def _matmul(a, b):
    out = lamina.matmul(a, b)
    return out.to(a.dtype) if out.dtype != a.dtype else out  # Lamina multiplies bfloat16 in float32


@onnx_op("Attention")
def attention(node, q, k, v, mask=None, past_k=None, past_v=None, nonpad=None):
    three_d = q.ndim == 3
    qh, kvh = node.attr("q_num_heads"), node.attr("kv_num_heads")
    if three_d:
        if not qh or not kvh:
            fail(node, "3-d inputs need the q_num_heads and kv_num_heads attributes")
        q, k, v = _heads(q, qh), _heads(k, kvh), _heads(v, kvh)
    elif q.ndim != 4:
        fail(node, f"Q must have 3 or 4 dims, got shape {q.shape}")
    scale = node.attr("scale")
    scale = 1 / np.sqrt(q.shape[3]) if scale is None else scale
    root = float(np.sqrt(scale))  # split between Q and K, as the reference, for the same rounding
    if (past_k is None) != (past_v is None):
        fail(node, "past_key and past_value must be given together")
    present_k = lamina.cat([past_k, k], 2) if past_k is not None else k
    present_v = lamina.cat([past_v, v], 2) if past_v is not None else v
    q_len, kv_len = q.shape[2], present_k.shape[2]
    dtype = np.dtype(q.dtype) if is_float(q) else np.dtype(np.float32)
    nonpad_np = None if nonpad is None else host(nonpad).astype(np.int64)
    bias = _bias(node, q_len, kv_len, mask, past_k.shape[2] if past_k is not None else 0, nonpad_np, dtype,
                 q.shape[0])
    kk, vv = present_k, present_v
    hq, hk = q.shape[1], kk.shape[1]
    if hq != hk:
        if hq % hk:
            fail(node, f"{hq} query heads are not a multiple of {hk} key/value heads")
        r = hq // hk

        def rep(t):
            b, h, s, d = t.shape
            return lamina.reshape(lamina.broadcast_to(lamina.unsqueeze(t, 2), (b, h, r, s, d)), (b, h * r, s, d))
        kk, vv = rep(kk), rep(vv)
    qk = _matmul(q * root, kk.mT * root)
    cap = node.attr("softcap", 0.0)
    if cap and cap > 0:
        qk = lamina.tanh(qk / cap) * cap
    with_bias = qk + wrap(bias, qk)
    mode = node.attr("qk_matmul_output_mode", 0)
    qk_out = with_bias if mode == 2 else qk
    precision = node.attr("softmax_precision")
    scores = with_bias
    if precision is not None:
        from ..proto import np_dtype
        scores = scores.to(np_dtype(precision, f"{node.where()} softmax_precision"))
    # a row whose every key is masked gives zeros, not NaN
    dead = np.isneginf(np.max(bias, axis=-1, keepdims=True)) if bias.size else np.zeros(bias.shape[:-1] + (1,), bool)
    if dead.any():
        zero = wrap(np.zeros((), scores.dtype), scores)
        scores = lamina.where(wrap(dead, scores), zero, scores)
    p = F.softmax(scores, -1)
    if dead.any():
        p = lamina.where(wrap(dead, p), wrap(np.zeros((), p.dtype), p), p)
    if mode == 3:
        qk_out = p
    if p.dtype != q.dtype:
        p = p.to(q.dtype)
    if qk_out.dtype != q.dtype:
        qk_out = qk_out.to(q.dtype)
    y = _matmul(p, vv)
    if three_d:
        b, h, s, d = y.shape
        y = lamina.reshape(lamina.permute(y, (0, 2, 1, 3)), (b, s, h * d))
    return (y, present_k, present_v, qk_out)[:max(len(node.outputs), 1)]


@onnx_op("RotaryEmbedding")
def rotary_embedding(node, x, cos, sin, pos=None):
    """Rotate pairs of features by position-dependent angles (cos/sin caches, optional position ids):
    halves of the rotated part, or even/odd features when ``interleaved``."""
    four_d = x.ndim == 4
    shape = x.shape
    t = lamina.permute(x, (0, 2, 1, 3)) if four_d else x
    if not four_d:
        heads = node.attr("num_heads")
        if not heads:
            fail(node, "3-d input needs the num_heads attribute")
        t = lamina.reshape(t, (shape[0], shape[1], heads, shape[2] // heads))
    head = t.shape[3]
    dim = node.attr("rotary_embedding_dim", 0) or head
    if pos is not None:
        idx = wrap(host(pos).astype(np.int64).reshape(-1), cos)
        cos = lamina.reshape(lamina.index_select(cos, 0, idx), tuple(pos.shape) + (cos.shape[-1],))
        sin = lamina.reshape(lamina.index_select(sin, 0, idx), tuple(pos.shape) + (sin.shape[-1],))
    if cos.shape[-1] != dim // 2:
        fail(node, f"cos cache of shape {cos.shape} does not fit rotary_embedding_dim {dim}")
    cos, sin = lamina.unsqueeze(cos, 2), lamina.unsqueeze(sin, 2)
    rot, keep = t[..., :dim], t[..., dim:]
    if node.attr("interleaved", 0):
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., :dim // 2], rot[..., dim // 2:]
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if node.attr("interleaved", 0):
        rot = lamina.reshape(lamina.stack([real, imag], -1), rot.shape)
    else:
        rot = lamina.cat([real, imag], -1)
    out = lamina.cat([rot, keep], -1) if dim < head else rot
    return lamina.permute(out, (0, 2, 1, 3)) if four_d else lamina.reshape(out, shape)
