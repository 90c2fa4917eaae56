"""Primitive operators. ``REGISTRY`` lists every ``Op`` class; the functions here are the
public way to call them (``lamina.add``, ``lamina.conv2d``, ...)."""
from .base import REGISTRY, Op, normalize_dim, normalize_dims, unbroadcast  # noqa: F401
from .elementwise import (  # noqa: F401
    abs, add, clamp, cos, div, eq, erf, exp, floor_divide, ge, gelu, gt, isfinite, isnan, le,
    leaky_relu, log, log1p, logical_and, logical_not, logical_or, logical_xor, lt, masked_fill, maximum,
    minimum, mul, ne, neg, pow, relu, remainder, rsqrt, sigmoid, sign, silu, sin, sqrt, sub, tanh,
    where,
)
from .reduction import (  # noqa: F401
    all, amax, amin, any, argmax, argmin, logsumexp, max, mean, min, prod, std, sum, var,
)
from .shape import (  # noqa: F401
    broadcast_shapes, broadcast_to, cast, cat, chunk, clone, concat, concatenate, expand, flatten,
    flip, pad, permute, repeat, reshape, split, squeeze, stack, to_device, transpose, tril, triu,
    unbind, unflatten, unsqueeze, view,
)
from .indexing import gather, getitem, index_add, index_put, index_select, one_hot, scatter_add  # noqa: F401
from .linalg import bmm, linear, matmul, mm  # noqa: F401
from .conv import (  # noqa: F401
    conv1d, conv2d, conv2d_weight, conv3d, conv_transpose1d, conv_transpose2d,
)
from .pool import (  # noqa: F401
    adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d,
)
from .nn import dropout, embedding, layer_norm, log_softmax, scaled_dot_product_attention, softmax  # noqa: F401
from .sorting import argsort, cumsum, multinomial, sort, topk  # noqa: F401
from . import loss, rnn  # noqa: F401,E402  (fused ops used by lamina.nn; imported so they register)
from .diagonals import diag, diag_embed, diagonal  # noqa: F401,E402
from .resample import affine_grid, grid_sample, interpolate, pixel_shuffle, pixel_unshuffle  # noqa: F401,E402
from .normalization import group_norm, instance_norm  # noqa: F401,E402
from .feature_dropout import dropout1d, dropout2d, dropout3d  # noqa: F401,E402
