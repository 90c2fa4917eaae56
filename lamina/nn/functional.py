"""The functional API: every layer's computation as a function of tensors (``F.linear``,
``F.conv2d``, ``F.layer_norm``, losses, ...). Layers in ``lamina.nn`` call these."""
from __future__ import annotations

import warnings

from .. import backend, ops
from ..amp.autocast_mode import _state as _amp_state
from ..ops import (  # noqa: F401  (re-exported: these primitives are the functional API)
    adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, conv1d, conv2d, conv3d,
    conv_transpose1d, conv_transpose2d, dropout, embedding, gelu, layer_norm, leaky_relu, linear,
    log_softmax, max_pool1d, max_pool2d, one_hot, pad, relu, sigmoid, silu, softmax, tanh,
)
from .losses import (  # noqa: F401
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, huber_loss, kl_div, l1_loss,
    mse_loss, nll_loss, smooth_l1_loss,
)


def relu6(x):
    return ops.clamp(x, 0.0, 6.0)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return ops.clamp(x, min_val, max_val)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear above ``threshold`` (as PyTorch)."""
    bx = x * beta if beta != 1.0 else x
    soft = ops.log1p(ops.exp(-ops.abs(bx))) + ops.relu(bx)
    if beta != 1.0:
        soft = soft / beta
    return ops.where(bx > threshold, x, soft)


def elu(x, alpha=1.0):
    return ops.where(x > 0, x, (ops.exp(ops.minimum(x, 0.0)) - 1.0) * alpha)


def logsigmoid(x):
    return -softplus(-x)


def mish(x):
    return x * ops.tanh(softplus(x))


def normalize(x, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along ``dim`` (used for L2-normalised embeddings)."""
    if p == 2.0:
        norm = ops.sqrt((x * x).sum(dim=dim, keepdim=True))
    else:
        norm = ops.pow(ops.pow(ops.abs(x), p).sum(dim=dim, keepdim=True), 1.0 / p)
    return x / ops.clamp(norm, min=eps)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over all dims but the channel dim (dim 1).

    In training the batch statistics normalise and, if running buffers are given, update them in
    place (biased variance to normalise, unbiased for the running estimate, as PyTorch does).
    ``momentum=None`` keeps a cumulative average, which the caller handles by passing 1/n.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of at least 2 dims (N, C, ...), got shape {x.shape}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for input of shape {x.shape}, got {t.shape}")
    dims = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    if training:
        n = x.numel() // c
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel in training, got input shape {x.shape}")
        mean = x.mean(dim=dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dim=dims, keepdim=True)
        if running_mean is not None:
            with _no_grad():
                m = momentum
                running_mean.mul_(1 - m).add_(mean.detach().reshape(c) * m)
                running_var.mul_(1 - m).add_(var.detach().reshape(c) * (m * n / (n - 1)))
        out = centered * ops.rsqrt(var + eps)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed in eval mode")
        out = (x - running_mean.reshape(shape)) * ops.rsqrt(running_var.reshape(shape) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def _no_grad():
    from ..autograd import no_grad
    return no_grad()


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(q k^T * scale + mask) v over the last two dims, as ``torch.nn.functional``'s.

    ``attn_mask`` is a bool mask (True: may attend) or an additive float mask, broadcast against
    (..., L, S); ``is_causal`` masks future positions. Like PyTorch, dropout applies whenever
    ``dropout_p > 0`` (pass 0.0 in eval mode).
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 dims, got "
                         f"{query.shape}, {key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
                         f"{value.shape} do not fit (need q[-1] == k[-1] and k[-2] == v[-2])")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal, not both")
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / (query.shape[-1] ** 0.5) if scale is None else scale
    if (attn_mask is None and dropout_p == 0.0 and not _amp_state.active
            and query.shape[:-2] == key.shape[:-2] == value.shape[:-2]
            and query.dtype == key.dtype == value.dtype and query.dtype in (backend.float32, backend.float64)
            and query.device == key.device == value.device):
        return ops.scaled_dot_product_attention(query, key, value, scale, is_causal)  # one fused op
    scores = (query * scale) @ key.mT
    if is_causal:
        attn_mask = _causal_mask(L, S, query.device)
    if attn_mask is not None:
        if attn_mask.dtype == backend.bool_:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    weights = ops.softmax(scores, -1)
    if dropout_p > 0.0:
        weights = ops.dropout(weights, dropout_p)
    return weights @ value


def _causal_mask(L, S, device):
    """(L, S) bool: query i may attend to keys j <= i (aligned top-left, as PyTorch)."""
    from ..creation import ones
    return ops.tril(ones(L, S, dtype=backend.bool_, device=device))


def flatten(x, start_dim=1, end_dim=-1):
    return ops.flatten(x, start_dim, end_dim)


def cosine_similarity(a, b, dim=1, eps=1e-8):
    """a.b / sqrt(max(|a|^2 |b|^2, eps^2)) along ``dim``."""
    dot = (a * b).sum(dim=dim)
    return dot / ops.sqrt(ops.clamp((a * a).sum(dim=dim) * (b * b).sum(dim=dim), min=eps * eps))


# ---------------------------------------------------------------- resampling, norms, channel dropout, more activations
from ..ops import (  # noqa: F401,E402  (re-exported primitives and compositions of lamina.ops)
    affine_grid, dropout1d, dropout3d, grid_sample, group_norm, instance_norm, interpolate,
    pixel_shuffle, pixel_unshuffle,
)
from ..ops import dropout2d as _channel_dropout2d  # noqa: E402


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) input (a 3-D input is taken as (N, C, L)). A 2-D input
    has no channels to drop: PyTorch warns that this is deprecated and drops single elements, as
    ``dropout`` does, and programs rely on it (pytorch/examples' mnist_rnn), so this does too."""
    if getattr(input, "ndim", None) == 2:
        warnings.warn("dropout2d: received a 2-D input, which PyTorch deprecates; it drops single elements "
                      "as dropout does (use dropout to keep this and silence the warning)", stacklevel=2)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout2d: p must be in [0, 1], got {p}")
        return dropout(input, p, training)
    return _channel_dropout2d(input, p, training, inplace)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """``interpolate`` under its older name."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, "nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Bilinear with ``align_corners=True``, as PyTorch's deprecated function."""
    return interpolate(input, size, scale_factor, "bilinear", True)


def hardsigmoid(x, inplace=False):
    """0 below -3, 1 above 3, x/6 + 1/2 between."""
    return ops.clamp(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def hardswish(x, inplace=False):
    """x * hardsigmoid(x)."""
    return x * hardsigmoid(x)


def prelu(x, weight):
    """max(0, x) + weight * min(0, x), one weight per channel (dim 1) or one shared weight (the
    only choice for inputs of fewer than 2 dims, which have one channel, as in PyTorch)."""
    if weight.ndim > 1:
        raise ValueError(f"prelu: weight must be 1-D, got shape {weight.shape}")
    if weight.numel() == 1:
        w = weight.reshape(())
    else:
        if x.ndim < 2 or x.shape[1] != weight.numel():
            raise ValueError(f"prelu: weight of {weight.numel()} elements must match the channels (dim 1) of "
                             f"input shape {x.shape}, or be a single weight")
        shape = [1] * x.ndim
        shape[1] = weight.numel()
        w = weight.reshape(shape)
    return ops.where(x > 0, x, w * x)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x, inplace=False):
    return elu(x, _SELU_ALPHA) * _SELU_SCALE


def celu(x, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1))."""
    return ops.where(x > 0, x, (ops.exp(ops.minimum(x, 0.0) * (1.0 / alpha)) - 1.0) * alpha)


def softsign(x):
    return x / (ops.abs(x) + 1.0)


def tanhshrink(x):
    return x - ops.tanh(x)


def softmin(x, dim):
    return ops.softmax(-x, dim)


def threshold(x, threshold, value, inplace=False):
    """x where x > threshold, else value."""
    return ops.where(x > threshold, x, value)


def glu(x, dim=-1):
    """a * sigmoid(b) for the two halves a, b of ``dim``."""
    if x.shape[dim] % 2:
        raise ValueError(f"glu: dim {dim} of input shape {x.shape} must have an even size")
    a, b = ops.chunk(x, 2, dim)
    return a * ops.sigmoid(b)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """||x1 - x2 + eps||_p along the last dim, as PyTorch."""
    if p <= 0:
        raise ValueError(f"pairwise_distance: p must be positive, got {p}")
    d = x1 - x2 + eps
    if p == 2.0:
        return ops.sqrt((d * d).sum(dim=-1, keepdim=keepdim))
    if p == 1.0:
        return ops.abs(d).sum(dim=-1, keepdim=keepdim)
    return ops.pow(ops.pow(ops.abs(d), p).sum(dim=-1, keepdim=keepdim), 1.0 / p)


def hardshrink(x, lambd=0.5):
    """x where |x| > lambd, else 0."""
    return ops.where(ops.abs(x) > lambd, x, 0.0)


def softshrink(x, lambd=0.5):
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    return ops.where(x > lambd, x - lambd, ops.where(x < -lambd, x + lambd, 0.0))
