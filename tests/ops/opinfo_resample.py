"""Samples of the diagonal ops (lamina/ops/diagonals.py), resampling (lamina/ops/resample.py),
group/instance normalisation (lamina/ops/normalization.py) and the activations and distances composed in
lamina.nn.functional. Composites are in the table too: they get the same parity, finite-difference
and second-order checks as primitives."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

import lamina
import lamina.nn.functional as F
from lamina import ops
from lamina.ops import resample
from tests.ops.opinfo import OpInfo, R, Raway, Sample


def diagonal_samples(rng):
    yield Sample((R(rng, 4, 5),))
    yield Sample((R(rng, 4, 5), 2))
    yield Sample((R(rng, 3, 4, 5), -1, 2, 0), desc="dims reversed")
    yield Sample((R(rng, 2, 3, 3), 0, -1, -2))
    yield Sample((R(rng, 3, 2), 4), desc="empty")


def diag_samples(rng):
    yield Sample((R(rng, 4),))
    yield Sample((R(rng, 3), -2))
    yield Sample((R(rng, 3, 5), 1))
    yield Sample((R(rng, 4, 3), -1))


def diag_embed_samples(rng):
    yield Sample((R(rng, 2, 3),))
    yield Sample((R(rng, 2, 3), 1, 0, 2))
    yield Sample((R(rng, 3), -2, 1, 0))


def pixel_shuffle_samples(rng):
    yield Sample((R(rng, 2, 8, 2, 3), 2))
    yield Sample((R(rng, 9, 1, 2), 3), desc="unbatched")


def pixel_unshuffle_samples(rng):
    yield Sample((R(rng, 1, 2, 4, 6), 2))
    yield Sample((R(rng, 2, 1, 3, 3, 6), 3), desc="two batch dims")


def interpolate_samples(rng):
    x = R(rng, 1, 2, 3, 4)
    yield Sample((x,), dict(size=(5, 7), mode="nearest"))
    yield Sample((x,), dict(scale_factor=2), desc="nearest whole factor")
    yield Sample((x,), dict(scale_factor=(0.5, 1.5), mode="nearest-exact"))
    yield Sample((x,), dict(size=(5, 3), mode="bilinear"))
    yield Sample((x,), dict(size=(5, 3), mode="bilinear", align_corners=True))
    yield Sample((x,), dict(scale_factor=1.5, mode="bilinear"), desc="scale used in the coordinate map")
    yield Sample((x,), dict(size=(4, 6), mode="bicubic", align_corners=True))
    yield Sample((x,), dict(scale_factor=1.7, mode="bicubic"))
    yield Sample((R(rng, 2, 2, 5),), dict(scale_factor=1.6, mode="linear"))
    yield Sample((R(rng, 2, 2, 5),), dict(size=3, mode="nearest"))
    yield Sample((R(rng, 1, 1, 2, 3, 2),), dict(scale_factor=2, mode="trilinear"))
    yield Sample((R(rng, 1, 2, 6, 5),), dict(size=(3, 2), mode="area"))
    yield Sample((R(rng, 1, 2, 7, 5),), dict(size=(3, 2), mode="bilinear", antialias=True), desc="antialias")
    yield Sample((R(rng, 1, 1, 6, 4),), dict(size=(2, 6), mode="bicubic", antialias=True, align_corners=True),
                 desc="antialias bicubic")


def nearest_upsample_samples(rng):
    yield Sample((R(rng, 2, 3, 2, 3), (2, 3)))
    yield Sample((R(rng, 1, 2, 3), (4,)), desc="1-D")
    yield Sample((R(rng, 1, 1, 2, 2, 1), (1, 2, 3)), desc="3-D, a factor of 1")


def nearest_upsample_ref(x, factors):
    return TF.interpolate(x, scale_factor=factors, mode="nearest")


def block_sum_samples(rng):
    yield Sample((R(rng, 2, 3, 4, 6), (2, 3)))
    yield Sample((R(rng, 1, 2, 6), (3,)), desc="1-D")
    yield Sample((R(rng, 1, 1, 2, 4, 3), (1, 2, 3)), desc="3-D")


def block_sum_ref(x, factors):
    n, c = x.shape[:2]
    split = [v for s, f in zip(x.shape[2:], factors) for v in (s // f, f)]
    return x.reshape(n, c, *split).sum(dim=tuple(3 + 2 * i for i in range(len(factors))))


def affine_grid_samples(rng):
    yield Sample((R(rng, 2, 2, 3), (2, 1, 3, 4)), dict(align_corners=False))
    yield Sample((R(rng, 1, 2, 3), (1, 3, 2, 5)), dict(align_corners=True))
    yield Sample((R(rng, 1, 3, 4), (1, 1, 2, 3, 2)), dict(align_corners=False), desc="3-D")


def grid_sample_samples(rng):
    x = R(rng, 1, 2, 3, 4)
    for mode, padding, align in (("bilinear", "zeros", False), ("bilinear", "zeros", True),
                                 ("bilinear", "border", False), ("bilinear", "reflection", True),
                                 ("bilinear", "reflection", False), ("nearest", "zeros", False)):
        grid = R(rng, 1, 3, 2, 2, low=-1.3, high=1.3)
        yield Sample((x, grid), dict(mode=mode, padding_mode=padding, align_corners=align),
                     desc=f"{mode} {padding} align={align}")
    x3 = R(rng, 1, 2, 2, 3, 2)
    for mode, padding in (("bilinear", "zeros"), ("bilinear", "reflection"), ("nearest", "border")):
        yield Sample((x3, R(rng, 1, 2, 1, 2, 3, low=-1.3, high=1.3)),
                     dict(mode=mode, padding_mode=padding, align_corners=False), desc=f"5-D {mode} {padding}")


def group_norm_samples(rng):
    yield Sample((R(rng, 2, 6, 3), 3, R(rng, 6), R(rng, 6)))
    yield Sample((R(rng, 2, 4, 2, 2), 2), desc="no affine")
    yield Sample((R(rng, 3, 4), 4, R(rng, 4), R(rng, 4)), desc="a group per channel, no spatial dims")


RUNNING_MEAN = np.array([0.3, -0.2, 0.1])
RUNNING_VAR = np.array([0.8, 1.5, 0.6])


def _instance_norm(lib, x, weight=None, bias=None, use_input_stats=True):
    """instance_norm with running statistics made here, so they are not differentiated inputs
    (PyTorch does not differentiate them); in training mode they are updated too."""
    mean, var = (lamina.tensor(RUNNING_MEAN.copy()), lamina.tensor(RUNNING_VAR.copy())) if lib == "lamina" else \
        (torch.tensor(RUNNING_MEAN.copy()), torch.tensor(RUNNING_VAR.copy()))
    fn = ops.instance_norm if lib == "lamina" else TF.instance_norm
    return fn(x, mean, var, weight, bias, use_input_stats, 0.1, 1e-5)


def instance_norm_samples(rng):
    yield Sample((R(rng, 2, 3, 4), R(rng, 3), R(rng, 3)))
    yield Sample((R(rng, 1, 3, 2, 3),), desc="no affine, 2-D")
    yield Sample((R(rng, 2, 3, 2),), dict(use_input_stats=False), desc="running statistics")


def prelu_samples(rng):
    yield Sample((Raway(rng, 2, 3, 4), R(rng, 3)))
    yield Sample((Raway(rng, 2, 3), R(rng, 1)), desc="one shared weight")
    yield Sample((Raway(rng, 4), R(rng, 1)), desc="1-D")


def pairwise_samples(rng):
    yield Sample((R(rng, 3, 4), R(rng, 3, 4)))
    yield Sample((R(rng, 3, 4), R(rng, 4)), dict(p=1.0, keepdim=True))
    yield Sample((R(rng, 2, 5), R(rng, 2, 5)), dict(p=3.0))


def _away(*points):
    """Random inputs away from the kinks of piecewise activations."""
    def gen(rng, *shape):
        v = R(rng, *shape, low=-5.0, high=5.0)
        for p in points:
            v = np.where(np.abs(v - p) < 0.2, p + 0.3, v)
        return v
    return gen


def activation_samples(gen=R, **kwargs):
    def samples(rng):
        for shape in ((5,), (3, 4), (0, 3)):
            yield Sample((gen(rng, *shape),), dict(kwargs))
    return samples


def glu_samples(rng):
    yield Sample((R(rng, 3, 4),))
    yield Sample((R(rng, 4, 3), 0))


OPS = [
    OpInfo("diagonal", ops.diagonal, torch.diagonal, diagonal_samples),
    OpInfo("diag", ops.diag, torch.diag, diag_samples),
    OpInfo("diag_embed", ops.diag_embed, torch.diag_embed, diag_embed_samples),
    OpInfo("pixel_shuffle", ops.pixel_shuffle, TF.pixel_shuffle, pixel_shuffle_samples),
    OpInfo("pixel_unshuffle", ops.pixel_unshuffle, TF.pixel_unshuffle, pixel_unshuffle_samples),
    OpInfo("interpolate", ops.interpolate, TF.interpolate, interpolate_samples, atol=1e-12, rtol=1e-10),
    OpInfo("nearest_upsample", resample.nearest_upsample, nearest_upsample_ref, nearest_upsample_samples),
    OpInfo("block_sum", resample.block_sum, block_sum_ref, block_sum_samples),
    OpInfo("affine_grid", ops.affine_grid, TF.affine_grid, affine_grid_samples),
    OpInfo("grid_sample", ops.grid_sample, TF.grid_sample, grid_sample_samples),
    OpInfo("group_norm", ops.group_norm, TF.group_norm, group_norm_samples),
    OpInfo("instance_norm", lambda *a, **k: _instance_norm("lamina", *a, **k),
           lambda *a, **k: _instance_norm("torch", *a, **k), instance_norm_samples),
    OpInfo("hardsigmoid", F.hardsigmoid, TF.hardsigmoid, activation_samples(_away(-3.0, 3.0))),
    OpInfo("hardswish", F.hardswish, TF.hardswish, activation_samples(_away(-3.0, 3.0))),
    OpInfo("hardtanh", F.hardtanh, TF.hardtanh, activation_samples(_away(-1.0, 1.0))),
    OpInfo("relu6", F.relu6, TF.relu6, activation_samples(_away(0.0, 6.0))),
    OpInfo("mish", F.mish, TF.mish, activation_samples()),
    OpInfo("selu", F.selu, TF.selu, activation_samples(_away(0.0))),
    OpInfo("celu", F.celu, TF.celu, activation_samples(_away(0.0), alpha=0.7)),
    OpInfo("softsign", F.softsign, TF.softsign, activation_samples(_away(0.0))),
    OpInfo("tanhshrink", F.tanhshrink, TF.tanhshrink, activation_samples()),
    OpInfo("threshold", F.threshold, TF.threshold, activation_samples(_away(0.5), threshold=0.5, value=-2.0)),
    OpInfo("softmin", F.softmin, TF.softmin, activation_samples(dim=-1)),
    OpInfo("glu", F.glu, TF.glu, glu_samples),
    OpInfo("hardshrink", F.hardshrink, TF.hardshrink, activation_samples(_away(-0.7, 0.7), lambd=0.7)),
    OpInfo("softshrink", F.softshrink, TF.softshrink, activation_samples(_away(-0.5, 0.5))),
    OpInfo("prelu", F.prelu, TF.prelu, prelu_samples),
    OpInfo("pairwise_distance", F.pairwise_distance, TF.pairwise_distance, pairwise_samples),
]
