"""Resampling as compositions of primitives: ``interpolate`` (nearest, nearest-exact, linear,
bilinear, bicubic, trilinear, area), ``pixel_shuffle``/``pixel_unshuffle``, ``affine_grid`` and
``grid_sample``, with PyTorch's coordinate conventions.

Linear and cubic interpolation act on one spatial axis at a time (``AxisInterpolate``): forward
gathers the 2 or 4 source rows of each output row and weighs them; the gradient is a matmul with
the small (in, out) weight matrix. Nearest upsampling by whole factors is a primitive
(``NearestUpsample``, one broadcasting copy) whose gradient ``BlockSum`` adds strided slices;
other nearest sizes are ``AxisInterpolate`` with one source row of weight 1.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import backend
from ..tensor import Tensor
from .base import Op, check_float, xp_of
from .elementwise import abs as abs_, clamp, floor_divide, logical_and, where
from .indexing import index_select
from .pool import adaptive_avg_pool1d, adaptive_avg_pool2d
from .shape import stack

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_LINEAR_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


# ---------------------------------------------------------------- pixel shuffle

def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r): each group of r^2 channels becomes an r x r block."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise ValueError(f"pixel_shuffle: expected input of at least 3 dims (*, C, H, W), got shape {input.shape}")
    if r < 1:
        raise ValueError(f"pixel_shuffle: upscale_factor must be positive, got {upscale_factor}")
    *b, c, h, w = input.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle: channels {c} of input shape {input.shape} are not divisible by "
                         f"upscale_factor^2 = {r * r}")
    k = len(b)
    x = input.reshape(*b, c // (r * r), r, r, h, w)
    x = x.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return x.reshape(*b, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of ``pixel_shuffle``."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise ValueError(f"pixel_unshuffle: expected input of at least 3 dims (*, C, H, W), got shape {input.shape}")
    if r < 1:
        raise ValueError(f"pixel_unshuffle: downscale_factor must be positive, got {downscale_factor}")
    *b, c, h, w = input.shape
    if h % r or w % r:
        raise ValueError(f"pixel_unshuffle: height {h} and width {w} of input shape {input.shape} must be "
                         f"divisible by downscale_factor {r}")
    k = len(b)
    x = input.reshape(*b, c, h // r, r, w // r, r)
    x = x.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return x.reshape(*b, c * r * r, h // r, w // r)


# ---------------------------------------------------------------- interpolate

def _output_size(opname, x, size, scale_factor, d):
    """Output sizes and, per axis, the scale PyTorch uses in the coordinate map (None: in/out)."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{opname}: pass exactly one of size and scale_factor, got size={size!r}, "
                         f"scale_factor={scale_factor!r}")
    spatial = x.shape[2:]
    if size is not None:
        out = (size,) * d if isinstance(size, int) else tuple(size)
        if len(out) != d:
            raise ValueError(f"{opname}: size {size!r} has {len(out)} entries for input of shape {x.shape} "
                             f"({d} spatial dims)")
        out = tuple(int(o) for o in out)
        scales = (None,) * d
    else:
        scales = (scale_factor,) * d if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
        if len(scales) != d:
            raise ValueError(f"{opname}: scale_factor {scale_factor!r} has {len(scales)} entries for input of "
                             f"shape {x.shape} ({d} spatial dims)")
        if any(s <= 0 for s in scales):
            raise ValueError(f"{opname}: scale_factor must be positive, got {scale_factor!r}")
        out = tuple(math.floor(n * float(s)) for n, s in zip(spatial, scales))
    if any(o <= 0 for o in out):
        raise ValueError(f"{opname}: output size {out} for input of shape {x.shape} must be positive")
    return out, scales


def _nearest_index(n_in, n_out, scale, exact):
    """Source row of each output row, computed in float32 as PyTorch's kernels do."""
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(n_in) / np.float32(n_out)
    dst = np.arange(n_out, dtype=np.float32)
    if exact:
        src = np.floor((dst + np.float32(0.5)) * s)
    else:
        src = np.floor(dst * s)
    return np.minimum(src.astype(np.int64), n_in - 1)


def _linear_scale(n_in, n_out, scale, align_corners):
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else n_in / n_out


def _linear_taps(n_in, n_out, scale, align_corners):
    """Source rows (2, n_out) and weights (2, n_out) of linear interpolation along one axis."""
    s = _linear_scale(n_in, n_out, scale, align_corners)
    dst = np.arange(n_out, dtype=np.float64)
    src = dst * s if align_corners else np.maximum(s * (dst + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    return np.stack([i0, i1]), np.stack([1.0 - w1, w1])


def _cubic_taps(n_in, n_out, scale, align_corners, a=-0.75):
    """Source rows and weights (4, n_out) of Keys' cubic convolution (A = -0.75) with edge rows
    repeated, as PyTorch's bicubic."""
    s = _linear_scale(n_in, n_out, scale, align_corners)
    dst = np.arange(n_out, dtype=np.float64)
    src = dst * s if align_corners else s * (dst + 0.5) - 0.5
    i = np.floor(src).astype(np.int64)
    t = src - i

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    idx = np.stack([np.clip(i - 1 + k, 0, n_in - 1) for k in range(4)])
    return idx, np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])


def _antialias_taps(n_in, n_out, scale, align_corners, mode):
    """Source rows and weights of PyTorch's antialiased resize (PIL's): when shrinking, the filter
    (triangle for bilinear, Keys' cubic with A = -0.5 for bicubic) widens by the scale, so every
    source pixel contributes; weights are normalised per output pixel. Unused taps get weight 0."""
    if align_corners:
        s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        s = 1.0 / scale if scale is not None and scale > 0 else n_in / n_out
    half = 1.0 if mode == "bilinear" else 2.0  # the filter's support at scale 1
    support = half * s if s >= 1.0 else half
    inv = 1.0 / s if s >= 1.0 else 1.0

    def filt(x):
        x = np.abs(x)
        if mode == "bilinear":
            return np.maximum(1.0 - x, 0.0)
        a = -0.5
        return np.where(x < 1.0, ((a + 2) * x - (a + 3)) * x * x + 1,
                        np.where(x < 2.0, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))
    rows, weights = [], []
    for i in range(n_out):
        center = s * (i + 0.5)
        lo = max(math.floor(center - support + 0.5), 0)
        hi = min(math.floor(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = filt((j - center + 0.5) * inv)
        total = w.sum()
        rows.append(j)
        weights.append(w / total if total != 0.0 else w)
    k = max(len(r) for r in rows)
    idx = np.zeros((k, n_out), dtype=np.int64)
    wts = np.zeros((k, n_out))
    for i, (r, w) in enumerate(zip(rows, weights)):
        idx[:len(r), i], wts[:len(w), i] = r, w
    return idx, wts


def _apply_axis(x, m, axis):
    """Multiply spatial axis ``axis`` of x by the (out, in) matrix m."""
    mt = Tensor(m.T, dtype=x.dtype, device=x.device)
    if axis == x.ndim - 1:
        return x @ mt
    moved = x.transpose(axis, -1)
    return (moved @ mt).transpose(axis, -1)


class AxisInterpolate(Op):
    """Along one axis, each output row is a weighted sum of K source rows (K = 2 for linear, 4 for
    cubic): ``out[.., j, ..] = sum_k w[k, j] x[.., idx[k, j], ..]``. Forward gathers, so an output
    reads only its own sources (a NaN stays local, as in PyTorch); backward multiplies by the
    (in, out) weight matrix, one BLAS call."""
    needs_inputs = False

    def __init__(self, axis, idx, weights, n_in):
        self.axis, self.idx, self.weights, self.n_in = axis, idx, weights, n_in

    def forward(self, x):
        xp = xp_of(x)
        shape = [1] * x.ndim
        shape[self.axis] = self.idx.shape[1]
        out = None
        for idx, w in zip(self.idx, self.weights):
            term = xp.take(x, xp.asarray(idx), axis=self.axis)
            term *= xp.asarray(w.reshape(shape), dtype=x.dtype)
            if out is None:
                out = term
            else:
                out += term
        return out

    def backward(self, g, x):
        m = np.zeros((self.idx.shape[1], self.n_in))
        rows = np.arange(self.idx.shape[1])
        for idx, w in zip(self.idx, self.weights):
            np.add.at(m, (rows, idx), w)
        return _apply_axis(g, m.T, self.axis)

    def onnx(self, g, x):
        # the same sum of weighted gathers as forward, with the taps as constants
        shape = [1] * len(g.in_shape(0))
        shape[self.axis] = self.idx.shape[1]
        out = None
        for idx, w in zip(self.idx, self.weights):
            term = g.op("Gather", [x, g.const(np.asarray(idx, dtype=np.int64), "taps")], axis=self.axis)
            term = g.op("Mul", [term, g.const(np.asarray(w, dtype=g.out_dtype()).reshape(shape), "weights")])
            out = term if out is None else g.op("Add", [out, term])
        return out


def _blocks_shape(lead, spatial, factors):
    """(N, C, s1, f1, s2, f2, ...): each spatial dim split into (size, factor)."""
    return tuple(lead) + tuple(v for s, f in zip(spatial, factors) for v in (s, f))


class NearestUpsample(Op):
    """Each element of an (N, C, *spatial) input repeated ``factors[i]`` times along spatial dim i
    (nearest upsampling by whole factors), in one broadcasting copy."""
    needs_inputs = False

    def __init__(self, factors):
        self.factors = tuple(factors)

    def forward(self, x):
        xp = xp_of(x)
        lead, spatial = x.shape[:2], x.shape[2:]
        out = xp.empty(_blocks_shape(lead, spatial, self.factors), dtype=x.dtype)
        out[...] = x.reshape(_blocks_shape(lead, spatial, (1,) * len(spatial)))
        return out.reshape(tuple(lead) + tuple(s * f for s, f in zip(spatial, self.factors)))

    def backward(self, g, x):
        return BlockSum(self.factors)(g)

    def onnx(self, g, x):
        # asymmetric coordinates with floor: output i reads input floor(i / factor), as forward
        scales = g.const(np.array([1, 1] + list(self.factors), dtype=np.float32), "scales")
        return g.op("Resize", [x, None, scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")


class BlockSum(Op):
    """The sum of each f1 x f2 x ... block of the spatial dims (the gradient of NearestUpsample),
    as a few strided adds rather than a reduction over short axes, which NumPy does slowly."""
    needs_inputs = False

    def __init__(self, factors):
        self.factors = tuple(factors)

    def forward(self, g):
        lead = g.shape[:2]
        spatial = tuple(n // f for n, f in zip(g.shape[2:], self.factors))
        v = g.reshape(_blocks_shape(lead, spatial, self.factors))
        out = None
        for offsets in itertools.product(*(range(f) for f in self.factors)):
            part = v[(slice(None), slice(None)) + tuple(x for o in offsets for x in (slice(None), o))]
            if out is None:
                out = part.copy()
            else:
                out += part
        return out

    def backward(self, gg, g):
        return NearestUpsample(self.factors)(gg)


def _check_factors(opname, x, factors):
    factors = tuple(int(f) for f in factors)
    if x.ndim < 3 or len(factors) != x.ndim - 2 or any(f < 1 for f in factors):
        raise ValueError(f"{opname}: expected one positive factor per spatial dim of input shape {x.shape}, "
                         f"got {factors}")
    return factors


def nearest_upsample(x, factors):
    """Repeat each element of (N, C, *spatial) ``factors[i]`` times along spatial dim i."""
    return NearestUpsample(_check_factors("nearest_upsample", x, factors))(x)


def block_sum(x, factors):
    """Sum each block of ``factors`` elements of the spatial dims of (N, C, *spatial)."""
    factors = _check_factors("block_sum", x, factors)
    if any(n % f for n, f in zip(x.shape[2:], factors)):
        raise ValueError(f"block_sum: spatial dims of input shape {x.shape} must be multiples of {factors}")
    return BlockSum(factors)(x)


def _whole_factor(idx, n_in):
    """The factor f if ``idx`` repeats each of n_in source rows f times in order, else None."""
    n_out = len(idx)
    if n_out % n_in == 0 and np.array_equal(idx, np.arange(n_out) // (n_out // n_in)):
        return n_out // n_in
    return None


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of an (N, C, *spatial) input, as ``torch.nn.functional.interpolate``.

    ``nearest`` picks floor(dst * in/out) (``nearest-exact``: floor((dst + 0.5) * in/out));
    ``linear``/``bilinear``/``trilinear`` and ``bicubic`` interpolate between source pixels whose
    centres (or corners, with ``align_corners=True``) line up with the output's. With
    ``scale_factor`` the coordinate map uses 1/scale_factor, unless ``recompute_scale_factor``.
    ``area`` is adaptive average pooling. ``antialias=True`` (bilinear, bicubic) widens the
    filter when shrinking so every source pixel counts, as PyTorch's (and PIL's) resize.
    """
    opname = "interpolate"
    if not isinstance(input, Tensor):
        raise TypeError(f"{opname}: expected a Tensor input, got {type(input).__name__}")
    if mode not in _MODES:
        raise ValueError(f"{opname}: unknown mode {mode!r}; expected one of {', '.join(_MODES)}")
    if input.ndim not in (3, 4, 5):
        raise ValueError(f"{opname}: expected a 3-D, 4-D or 5-D input (N, C, *spatial), got shape {input.shape}")
    d = input.ndim - 2
    if mode in _LINEAR_DIMS and _LINEAR_DIMS[mode] != d:
        want = _LINEAR_DIMS[mode] + 2
        raise ValueError(f"{opname}: mode {mode!r} needs a {want}-D input, got shape {input.shape}")
    if align_corners is not None and mode not in _LINEAR_DIMS:
        raise ValueError(f"{opname}: align_corners can only be set with the interpolating modes linear, bilinear, "
                         f"bicubic and trilinear, not {mode!r}")
    if antialias and mode not in ("bilinear", "bicubic"):
        raise ValueError(f"{opname}: antialias=True needs mode 'bilinear' or 'bicubic', got {mode!r}")
    out, scales = _output_size(opname, input, size, scale_factor, d)
    if recompute_scale_factor:
        scales = (None,) * d
    x = input
    if mode in ("nearest", "nearest-exact"):  # any dtype: it only moves values
        return _nearest(x, out, scales, mode == "nearest-exact")
    check_float(input, opname)
    if mode == "area":
        if d == 1:
            return adaptive_avg_pool1d(x, out[0])
        if d == 2:
            return adaptive_avg_pool2d(x, out)
        raise ValueError(f"{opname}: mode 'area' supports 3-D and 4-D inputs, got shape {input.shape}")
    for k in range(d):
        axis = 2 + k
        n_in, n_out = x.shape[axis], out[k]
        if antialias:
            x = AxisInterpolate(axis, *_antialias_taps(n_in, n_out, scales[k], bool(align_corners), mode), n_in)(x)
        elif mode == "bicubic":
            x = AxisInterpolate(axis, *_cubic_taps(n_in, n_out, scales[k], bool(align_corners)), n_in)(x)
        elif n_in != n_out or scales[k] not in (None, 1, 1.0):
            x = AxisInterpolate(axis, *_linear_taps(n_in, n_out, scales[k], bool(align_corners)), n_in)(x)
    return x


def _nearest(x, out, scales, exact):
    """Whole-factor axes in one NearestUpsample; any other axis gathers its source rows."""
    factors, gathers = [], []
    for k, n_out in enumerate(out):
        n_in = x.shape[2 + k]
        idx = np.arange(n_in) if n_in == n_out else _nearest_index(n_in, n_out, scales[k], exact)
        f = _whole_factor(idx, n_in)
        factors.append(f or 1)
        if f is None:
            gathers.append((2 + k, idx))
    for axis, idx in gathers:
        x = AxisInterpolate(axis, idx[None], np.ones((1, len(idx))), x.shape[axis])(x)
    if any(f > 1 for f in factors):
        x = NearestUpsample(factors)(x)
    return x


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


# ---------------------------------------------------------------- affine_grid / grid_sample

def _base_coords(n, align_corners):
    """Normalised [-1, 1] coordinates of n pixel centres (or corners with align_corners)."""
    c = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return c if align_corners else c * (n - 1) / n


def affine_grid(theta, size, align_corners=False):
    """Sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) of ``theta`` (N, 2, 3) (or (N, 3, 4)) applied
    to the normalised output coordinates, for ``grid_sample``."""
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise ValueError(f"affine_grid: size must be (N, C, H, W) or (N, C, D, H, W), got {size}")
    d = len(size) - 2
    if theta.ndim != 3 or theta.shape != (size[0], d, d + 1):
        raise ValueError(f"affine_grid: expected theta of shape ({size[0]}, {d}, {d + 1}) for size {size}, "
                         f"got {theta.shape}")
    check_float(theta, "affine_grid")
    spatial = size[2:]
    axes = [_base_coords(n, align_corners) for n in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")
    # the last coordinate component is x (the width axis), as PyTorch orders them
    base = np.stack([m for m in reversed(mesh)] + [np.ones(spatial)], axis=-1).reshape(-1, d + 1)
    b = Tensor(base, dtype=theta.dtype, device=theta.device)
    grid = b @ theta.transpose(1, 2)  # (N, prod(spatial), d)
    return grid.reshape(size[0], *spatial, d)


def _unnormalize(coord, n, align_corners):
    if align_corners:
        return (coord + 1.0) * ((n - 1) / 2.0)
    return ((coord + 1.0) * n - 1.0) / 2.0


def _reflect(coord, lo, hi):
    """Reflect coordinates into [lo, hi] (twice the span is the period)."""
    span = hi - lo
    if span <= 0:
        return coord * 0.0
    c = abs_(coord - lo)
    flips = floor_divide(c.detach(), span)
    extra = c - flips * span
    odd = (flips.to(backend.int64) % 2) == 1
    return where(odd, span - extra + lo, extra + lo)


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample input (N, C, H, W) at the normalised (x, y) points of grid (N, H_out, W_out, 2), or
    input (N, C, D, H, W) at the (x, y, z) points of grid (N, D_out, H_out, W_out, 3), as
    ``torch.nn.functional.grid_sample``. Modes bilinear (trilinear for 5-D) and nearest; padding
    zeros, border and reflection. Gradients flow to both the input and the grid."""
    opname = "grid_sample"
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"{opname}: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"{opname}: padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
    d = input.ndim - 2
    if d not in (2, 3) or grid.ndim != input.ndim or grid.shape[-1] != d or grid.shape[0] != input.shape[0]:
        raise ValueError(f"{opname}: expected input (N, C, H, W) with grid (N, H_out, W_out, 2), or input "
                         f"(N, C, D, H, W) with grid (N, D_out, H_out, W_out, 3); got {input.shape} and {grid.shape}")
    if grid.dtype != input.dtype:
        raise TypeError(f"{opname}: grid dtype {grid.dtype} does not match the input's {input.dtype}")
    check_float(input, opname)
    align = bool(align_corners)
    n, c = input.shape[:2]
    sizes = input.shape[2:]
    out_spatial = grid.shape[1:-1]
    points = math.prod(out_spatial)
    coords = []  # one per input spatial axis; the grid lists them last axis first (x, y[, z])
    for a, size in enumerate(sizes):
        i = _unnormalize(grid[..., d - 1 - a], size, align)
        if padding_mode == "reflection":
            i = _reflect(i, 0.0, size - 1.0) if align else _reflect(i, -0.5, size - 0.5)
        if padding_mode in ("border", "reflection"):
            i = clamp(i, 0.0, size - 1.0)
        coords.append(i)
    volume = math.prod(sizes)
    flat = input.reshape(-1)
    # where each (sample, channel) plane starts in the flattened input
    plane = Tensor((np.arange(n * c, dtype=np.int64) * volume).reshape(n, c, 1), device=input.device)

    def taps(corners):
        """Input values (N, C, K, *out_spatial) at K integer positions per point (each a list of
        one tensor per axis), gathered at once; zero outside the input."""
        inside, pos = [], []
        for idx in corners:
            ok, p = None, None
            for i, size in zip(idx, sizes):
                inb = logical_and(i >= 0, i <= size - 1)
                ok = inb if ok is None else logical_and(ok, inb)
                ic = clamp(i, 0, size - 1)
                p = ic if p is None else p * size + ic
            inside.append(ok)
            pos.append(p)
        k = len(corners)
        pos = stack(pos, 1).reshape(n, 1, k * points)
        vals = index_select(flat, 0, (pos + plane).reshape(-1)).reshape(n, c, k, *out_spatial)
        return where(stack(inside, 1).unsqueeze(1), vals, 0.0)

    if mode == "nearest":  # round half to even, as PyTorch's nearbyint
        return taps([[_round_half_even(i.detach()) for i in coords]]).squeeze(2)
    lows = [floor_divide(i.detach(), 1.0) for i in coords]
    upper = [i - lo for i, lo in zip(coords, lows)]  # the weight of the upper neighbour per axis
    lower = [1.0 - u for u in upper]
    lows = [lo.to(backend.int64) for lo in lows]
    corners, weights = [], []
    for corner in itertools.product((0, 1), repeat=d):
        weight = None
        for a, bit in enumerate(corner):
            w = upper[a] if bit else lower[a]
            weight = w if weight is None else weight * w
        corners.append([lo + bit for lo, bit in zip(lows, corner)])
        weights.append(weight)
    out = (taps(corners) * stack(weights, 1).unsqueeze(1)).sum(dim=2)
    return out


def _round_half_even(t):
    f = floor_divide(t, 1.0)
    frac = t - f
    up = (frac > 0.5) | ((frac == 0.5) & ((f.to(backend.int64) % 2) == 1))
    return where(up, f + 1.0, f).to(backend.int64)
