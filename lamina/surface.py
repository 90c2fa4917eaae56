"""Lamina's public names and where each one appears: ``L`` the ``lamina`` namespace, ``T`` a
Tensor method, ``F`` ``lamina.nn.functional``.

One table, the same as PyTorch 2.13's for every name Lamina implements (tests/test_surface.py
checks it against torch), so ``lamina.log1p``/``x.log1p()``, ``F.gelu`` (and no ``lamina.gelu``)
or ``lamina.conv3d``/``F.conv3d`` are there exactly where a PyTorch user looks for them.
``install`` fills in every surface a name is missing from with its one implementation: the op
function (in ``lamina.ops`` or beside its Op class), else the ``lamina.nn.functional`` function,
else the Tensor method. Adding an op is then its class and function, its line here, and its
samples in the op table.
Names Lamina adds beyond PyTorch's places are listed in ``EXTRA``.
"""
from __future__ import annotations

SURFACES = {
    "abs": "LT", "abs_": "LT", "adaptive_avg_pool1d": "LF", "adaptive_avg_pool2d": "F", "add": "LT",
    "add_": "T", "addcdiv": "LT", "addcdiv_": "T", "addcmul": "LT", "addcmul_": "T", "affine_grid": "F",
    "all": "LT", "amax": "LT", "amin": "LT", "any": "LT", "argmax": "LT", "argmin": "LT", "argsort": "LT",
    "avg_pool1d": "LF", "avg_pool2d": "F", "backward": "T", "batch_norm": "LF", "bfloat16": "T",
    "binary_cross_entropy": "F", "binary_cross_entropy_with_logits": "LF", "bmm": "LT", "bool": "T",
    "broadcast_shapes": "L", "broadcast_to": "LT", "cat": "L", "celu": "LF", "chunk": "LT", "clamp": "LT",
    "clamp_": "LT", "clip": "LT", "clone": "LT", "concat": "L", "concatenate": "L", "contiguous": "T",
    "conv1d": "LF", "conv2d": "LF", "conv3d": "LF", "conv_transpose1d": "LF", "conv_transpose2d": "LF",
    "copy_": "T", "cos": "LT", "cosine_similarity": "LF", "cpu": "T", "cross_entropy": "F", "cuda": "T",
    "cumsum": "LT", "detach": "LT", "detach_": "LT", "diag": "LT", "diag_embed": "LT", "diagonal": "LT",
    "dim": "T", "div": "LT", "div_": "T", "dot": "LT", "double": "T", "dropout": "LF", "dropout1d": "F",
    "dropout2d": "F", "dropout3d": "F", "element_size": "T", "elu": "F", "embedding": "LF", "eq": "LT",
    "erf": "LT", "exp": "LT", "exp_": "LT", "expand": "T", "expand_as": "T", "fill_": "LT", "flatten": "LT",
    "flip": "LT", "float": "T", "floor_divide": "LT", "gather": "LT", "ge": "LT", "gelu": "F", "glu": "F",
    "grid_sample": "F", "group_norm": "LF", "gt": "LT", "half": "T", "hardshrink": "LTF", "hardsigmoid": "F",
    "hardswish": "F", "hardtanh": "F", "huber_loss": "F", "index_add": "LT", "index_put": "LT",
    "index_put_": "LT", "index_select": "LT", "instance_norm": "LF", "int": "T", "interpolate": "F",
    "is_contiguous": "T", "is_floating_point": "LT", "is_shared": "T", "isfinite": "LT", "isnan": "LT", "item": "T",
    "kl_div": "LF", "l1_loss": "F", "layer_norm": "LF", "le": "LT", "leaky_relu": "F", "lerp": "LT",
    "lerp_": "T", "linear": "F", "log": "LT", "log1p": "LT", "logit": "LT", "log_softmax": "LTF", "logical_and": "LT",
    "logical_not": "LT", "logical_or": "LT", "logical_xor": "LT", "logsigmoid": "F", "logsumexp": "LT",
    "long": "T", "lt": "LT", "masked_fill": "LT", "masked_fill_": "T", "matmul": "LT", "max": "LT",
    "max_pool1d": "LF", "max_pool2d": "LF", "maximum": "LT", "mean": "LT", "min": "LT", "minimum": "LT",
    "mish": "F", "mm": "LT", "mse_loss": "F", "mul": "LT", "mul_": "T", "multinomial": "LT", "narrow": "LT",
    "ne": "LT", "neg": "LT", "neg_": "LT", "new_empty": "T", "new_full": "T", "new_ones": "T",
    "new_tensor": "T", "new_zeros": "T", "nll_loss": "F", "norm": "LT", "normal_": "T", "normalize": "F",
    "numel": "LT", "numpy": "T", "one_hot": "F", "pad": "F", "pairwise_distance": "LF", "permute": "LT",
    "pixel_shuffle": "LF", "pixel_unshuffle": "LF", "pow": "LT", "pow_": "T", "prelu": "LTF", "prod": "LT",
    "reciprocal": "LT", "register_hook": "T", "register_post_accumulate_grad_hook": "T", "relu": "LTF",
    "relu6": "F", "relu_": "LTF", "remainder": "LT", "repeat": "T", "requires_grad_": "T", "reshape": "LT",
    "retain_grad": "T", "rsqrt": "LT", "scaled_dot_product_attention": "F", "scatter_add": "LT", "selu": "LF",
    "sigmoid": "LTF", "sigmoid_": "LT", "sign": "LT", "sign_": "T", "share_memory_": "T", "silu": "F", "sin": "LT", "size": "T",
    "smooth_l1_loss": "F", "softmax": "LTF", "softmin": "F", "softplus": "F", "softshrink": "F",
    "softsign": "F", "sort": "LT", "split": "LT", "sqrt": "LT", "sqrt_": "LT", "square": "LT", "squeeze": "LT",
    "stack": "L", "std": "LT", "sub": "LT", "sub_": "T", "sum": "LT", "t": "LT", "tanh": "LTF", "tanh_": "LT",
    "tanhshrink": "F", "threshold": "LF", "to": "T", "to_dense": "T", "to_sparse": "T", "tolist": "T", "topk": "LT", "transpose": "LT",
    "tril": "LT", "triu": "LT", "type": "T", "type_as": "T", "unbind": "LT", "unflatten": "LT",
    "uniform_": "T", "unsqueeze": "LT", "upsample": "F", "upsample_bilinear": "F", "upsample_nearest": "F",
    "var": "LT", "view": "T", "view_as": "T", "where": "LT", "zero_": "LT",
}

# Places Lamina offers a name that PyTorch does not (kept for existing users; each is the same
# function as on PyTorch's surfaces).
EXTRA = {
    "adaptive_avg_pool2d": "L", "avg_pool2d": "L", "expand": "L", "flatten": "F", "one_hot": "L", "pad": "L",
    "repeat": "L", "layer_norm": "", "max_pool2d": "L",
}


def _implementation(name, sources, tensor_cls):
    for source in sources:
        fn = getattr(source, name, None)
        if callable(fn) and not isinstance(fn, type):
            return fn
    return getattr(tensor_cls, name, None)


def _sources(ops, functional):
    """Where implementations are looked for: ``lamina.ops``, then the module of every registered
    op (so a new op function is found beside its class, with no export to add), then ``F``."""
    import sys
    modules = sorted({cls.__module__ for cls in ops.REGISTRY.values()})
    return [ops, *(sys.modules[m] for m in modules), functional]


def install(lamina, ops, functional, tensor_cls) -> None:
    """Attach every name of ``SURFACES`` to the surfaces it is missing from."""
    targets = {"L": lamina, "F": functional, "T": tensor_cls}
    sources = _sources(ops, functional)
    for name, where in SURFACES.items():
        fn = _implementation(name, sources, tensor_cls)
        if fn is None:
            continue
        for place in where:
            target = targets[place]
            if name not in vars(target):
                setattr(target, name, fn)
