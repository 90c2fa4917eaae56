"""``MultiheadAttention``: scaled dot-product attention over ``num_heads`` projected subspaces, with
PyTorch's parameters, masks and shapes, so a ``torch.nn.MultiheadAttention`` state dict loads by name.

Masks follow PyTorch's ``MultiheadAttention`` (not its ``scaled_dot_product_attention``): a bool
``attn_mask`` or ``key_padding_mask`` marks with True the positions that may *not* be attended; a
float mask is added to the attention scores.
"""
from __future__ import annotations

from .. import backend, creation, ops
from . import functional as F, init
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    """Multi-head attention ``concat(head_1..head_h) W_o`` with ``head_i = attention(q W_q_i, k W_k_i, v W_v_i)``.

    Inputs are (L, N, E) — or (N, L, E) with ``batch_first`` — or unbatched (L, E). The q, k, v
    projections live in one ``in_proj_weight`` (3E, E) when key and value have the query's size, else
    in ``q_proj_weight``, ``k_proj_weight`` (E, kdim) and ``v_proj_weight`` (E, vdim); self-attention
    (``query is key is value``) projects all three with a single matmul.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got embed_dim="
                             f"{embed_dim} and num_heads={num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        kw = dict(device=device, dtype=dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(creation.empty(3 * embed_dim, embed_dim, **kw))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(creation.empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(creation.empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(creation.empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(creation.empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(creation.empty(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(creation.empty(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def extra_repr(self):
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if not self._qkv_same_embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.bias_k is not None:
            s += ", add_bias_kv=True"
        if self.add_zero_attn:
            s += ", add_zero_attn=True"
        return s + (", batch_first=True" if self.batch_first else "")

    # ------------------------------------------------------------ forward
    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        """Attention output of the query's shape and, if ``need_weights``, the attention weights:
        (N, L, S) averaged over heads or (N, num_heads, L, S) (unbatched: without N).

        ``attn_mask``: (L, S) or (N*num_heads, L, S); ``key_padding_mask``: (N, S). ``is_causal`` is
        PyTorch's hint that ``attn_mask`` is the causal mask; unlike PyTorch, the mask may be omitted
        then, and the causal mask is applied.
        """
        batched = self._check_inputs(query, key, value, key_padding_mask, attn_mask)
        if not batched:  # a batch of one, batch first; keeps `query is key` for the fused projection
            q1 = query.unsqueeze(0)
            k1 = q1 if key is query else key.unsqueeze(0)
            value = q1 if value is query else k1 if value is key else value.unsqueeze(0)
            query, key = q1, k1
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        bf = self.batch_first or not batched
        q, k, v = self._project(query, key, value, bf)
        n, _, L, _ = q.shape
        if self.bias_k is not None:
            hd = (1, self.num_heads, 1, self.head_dim)
            k = ops.cat([k, self.bias_k.reshape(hd).expand(n, -1, -1, -1)], 2)
            v = ops.cat([v, self.bias_v.reshape(hd).expand(n, -1, -1, -1)], 2)
        if self.add_zero_attn:
            zeros = creation.zeros(n, self.num_heads, 1, self.head_dim, dtype=k.dtype, device=k.device)
            k, v = ops.cat([k, zeros], 2), ops.cat([v, zeros], 2)
        S = k.shape[2]
        extra = S - (key.shape[1] if bf else key.shape[0])  # key columns added by bias_kv / zero_attn
        dropout_p = self.dropout if self.training else 0.0

        # PyTorch's hint: with nothing else to mask and no weights wanted, attention may skip attn_mask
        causal_hint = is_causal and key_padding_mask is None and not need_weights
        if is_causal and attn_mask is None and not causal_hint:
            attn_mask = _future(L, S - extra, q.device)
        mask = None if causal_hint else self._merged_mask(attn_mask, key_padding_mask, n, L, extra, q.dtype)

        if need_weights:
            scores = (q * (1.0 / self.head_dim ** 0.5)) @ k.mT
            if mask is not None:
                scores = scores + mask
            weights = ops.dropout(ops.softmax(scores, -1), dropout_p)
            out = weights @ v
        else:
            weights = None
            if causal_hint and L < S:  # PyTorch's causal mask is top-left aligned, lamina's SDPA bottom-right
                out = F.scaled_dot_product_attention(q, k, v, ~_future(L, S, q.device), dropout_p)
            else:
                out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal=causal_hint)

        out = out.permute(0, 2, 1, 3) if bf else out.permute(2, 0, 1, 3)  # (N, L, H, hd) or (L, N, H, hd)
        out = self.out_proj(out.reshape(*out.shape[:2], self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def _project(self, query, key, value, bf):
        """q (N, H, L, hd), k and v (N, H, S, hd) from the inputs, in as few matmuls as the sharing allows."""
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        heads = (0, 2, 1, 3) if bf else (1, 2, 0, 3)  # (N, L, H, hd) or (L, N, H, hd) -> (N, H, L, hd)
        packed = (2, 0, 3, 1, 4) if bf else (2, 1, 3, 0, 4)  # the same with a leading q/k/v dim
        W, b = self.in_proj_weight, self.in_proj_bias
        if self._qkv_same_embed_dim and query is key and key is value:
            qkv = F.linear(query, W, b)
            return ops.unbind(qkv.reshape(*qkv.shape[:2], 3, H, hd).permute(*packed), 0)
        if self._qkv_same_embed_dim and key is value:
            w_q, w_kv = ops.split(W, [E, 2 * E])
            b_q, b_kv = ops.split(b, [E, 2 * E]) if b is not None else (None, None)
            kv = F.linear(key, w_kv, b_kv)
            k, v = ops.unbind(kv.reshape(*kv.shape[:2], 2, H, hd).permute(*packed), 0)
        else:
            if self._qkv_same_embed_dim:
                w_q, w_k, w_v = ops.split(W, E)
            else:
                w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
            b_q, b_k, b_v = ops.split(b, E) if b is not None else (None, None, None)
            k = F.linear(key, w_k, b_k).reshape(*key.shape[:2], H, hd).permute(*heads)
            v = F.linear(value, w_v, b_v).reshape(*value.shape[:2], H, hd).permute(*heads)
        q = F.linear(query, w_q, b_q).reshape(*query.shape[:2], H, hd).permute(*heads)
        return q, k, v

    def _merged_mask(self, attn_mask, key_padding_mask, n, L, extra, dtype):
        """One additive float mask broadcastable to (N, H, L, S), or None."""
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            if mask.ndim == 3:
                mask = mask.reshape(n, self.num_heads, L, mask.shape[-1])
        if key_padding_mask is not None:
            kpm = _additive(key_padding_mask, dtype)
            kpm = kpm.reshape(n, 1, 1, kpm.shape[-1])
            mask = kpm if mask is None else mask + kpm
        if mask is not None and extra:
            mask = ops.pad(mask, (0, extra))
        return mask

    def _check_inputs(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        name = "MultiheadAttention"
        if query.ndim not in (2, 3):
            raise ValueError(f"{name}: query must be batched 3-D or unbatched 2-D, got shape {query.shape}")
        batched = query.ndim == 3
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"{name}: key and value must have query's {query.ndim} dims, got query {query.shape}, "
                             f"key {key.shape}, value {value.shape}")
        for what, t, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != size:
                raise ValueError(f"{name}: {what} must end in {size} features, got shape {t.shape}")
        seq, batch = (1, 0) if self.batch_first and batched else (0, 1)
        if key.shape[seq] != value.shape[seq]:
            raise ValueError(f"{name}: key {key.shape} and value {value.shape} must have the same sequence length")
        if batched and not (query.shape[batch] == key.shape[batch] == value.shape[batch]):
            raise ValueError(f"{name}: query {query.shape}, key {key.shape} and value {value.shape} must have the "
                             f"same batch size (dim {batch}, batch_first={self.batch_first})")
        L, S = query.shape[seq], key.shape[seq]
        N = query.shape[batch] if batched else 1
        if key_padding_mask is not None:
            _check_mask_dtype(name, "key_padding_mask", key_padding_mask)
            want = (N, S) if batched else (S,)
            if tuple(key_padding_mask.shape) != want:
                raise ValueError(f"{name}: key_padding_mask must have shape {want} (batch, source length), got "
                                 f"{key_padding_mask.shape} for query {query.shape} and key {key.shape}")
        if attn_mask is not None:
            _check_mask_dtype(name, "attn_mask", attn_mask)
            ok = ((L, S), (N * self.num_heads, L, S))
            if tuple(attn_mask.shape) not in ok:
                raise ValueError(f"{name}: attn_mask must have shape {ok[0]} or {ok[1]} (batch*num_heads, target "
                                 f"length, source length), got {attn_mask.shape} for query {query.shape} and key "
                                 f"{key.shape}")
        return batched


def _check_mask_dtype(layer, what, mask):
    if mask.dtype != backend.bool_ and not backend.is_floating(mask.dtype):
        raise TypeError(f"{layer}: {what} must be a bool or floating-point tensor, got {mask.dtype}")


def _additive(mask, dtype):
    """A bool mask (True: masked out) as 0 / -inf in ``dtype``; a float mask as it is."""
    if mask.dtype != backend.bool_:
        return mask
    return creation.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


def _future(L, S, device):
    """(L, S) bool, True where key j lies after query i (j > i): what a causal mask hides."""
    return ops.triu(creation.ones(L, S, dtype=backend.bool_, device=device), 1)
