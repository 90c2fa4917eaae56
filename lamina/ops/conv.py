"""Convolution over 1, 2 or 3 spatial dims, through strided windows and batched GEMM.

Three ops share one window (im2col) engine and are each other's gradients, so convolutions are
differentiable to any order:
  ConvNd(x, w[, b])            the convolution (cross-correlation, as in PyTorch)
  ConvTransposeNd(x, w[, b])   its adjoint in x: the input gradient of ConvNd, also a layer
  ConvNdWeight(x, g)           its adjoint in w: the weight gradient of ConvNd
"""
from __future__ import annotations

import itertools
import math

from ..tensor import Tensor
from .base import Op, promote, xp_of


def _tuple(v, d, name, opname):
    if isinstance(v, int):
        return (v,) * d
    v = tuple(int(i) for i in v)
    if len(v) != d:
        raise ValueError(f"{opname}: {name} must be an int or a tuple of {d} ints, got {v}")
    return v


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pad(x, padding, extra=None):
    """Zero-pad the spatial dims of x (N, C, *spatial); ``extra`` adds that much more on the right."""
    if not any(padding) and not (extra and any(extra)):
        return x
    xp = xp_of(x)
    extra = extra or (0,) * len(padding)
    shape = x.shape[:2] + tuple(s + 2 * p + e for s, p, e in zip(x.shape[2:], padding, extra))
    out = xp.zeros(shape, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(p, p + s) for s, p in zip(x.shape[2:], padding))] = x
    return out


def _windows(xpad, kernel, stride, dilation, out):
    """A strided view (N, C, *out, *kernel) of every window of the padded input (no copy)."""
    xp = xp_of(xpad)
    st = xpad.strides
    shape = xpad.shape[:2] + tuple(out) + tuple(kernel)
    strides = st[:2] + tuple(st[2 + i] * s for i, s in enumerate(stride)) + \
        tuple(st[2 + i] * d for i, d in enumerate(dilation))
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


def _im2col(x, kernel, stride, padding, dilation, out, groups):
    """Columns (N, G, Cg*K, L): for each output position, the window it sees, per group."""
    n, c = x.shape[:2]
    d = len(kernel)
    win = _windows(_pad(x, padding), kernel, stride, dilation, out)
    # (N, C, *out, *k) -> (N, C, *k, *out): window elements before output positions
    perm = (0, 1) + tuple(range(2 + d, 2 + 2 * d)) + tuple(range(2, 2 + d))
    cols = win.transpose(perm).reshape(n, groups, (c // groups) * math.prod(kernel), math.prod(out))
    return cols


def _col2im(cols, channels, padded, kernel, stride, dilation, out):
    """Add every window's values back into a padded input of spatial size ``padded`` (the adjoint
    of ``_im2col``). ``cols`` is (N, C, *k, *out)."""
    xp = xp_of(cols)
    n = cols.shape[0]
    res = xp.zeros((n, channels) + tuple(padded), dtype=cols.dtype)
    for kidx in itertools.product(*(range(k) for k in kernel)):
        region = tuple(slice(k * dl, k * dl + s * (o - 1) + 1, s)
                       for k, dl, s, o in zip(kidx, dilation, stride, out))
        res[(slice(None), slice(None)) + region] += cols[(slice(None), slice(None)) + kidx]
    return res


class ConvNd(Op):
    name = "conv"
    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w, b=None):
        n = x.shape[0]
        o, cg = w.shape[:2]
        kernel = w.shape[2:]
        g = self.groups
        out = tuple(_out_size(s, k, st, p, dl) for s, k, st, p, dl in
                    zip(x.shape[2:], kernel, self.stride, self.padding, self.dilation))
        cols = _im2col(x, kernel, self.stride, self.padding, self.dilation, out, g)
        y = w.reshape(1, g, o // g, -1) @ cols  # (N, G, Og, L)
        y = y.reshape((n, o) + out)
        if b is not None:
            y += b.reshape((1, o) + (1,) * len(out))
        return y

    def backward(self, g, x, w, b=None):
        needs = self.needs_input_grad
        gx = gw = gb = None
        kernel = w.shape[2:]
        if needs[0]:
            out_pad = tuple(
                s - ((o - 1) * st - 2 * p + dl * (k - 1) + 1)
                for s, o, k, st, p, dl in zip(x.shape[2:], g.shape[2:], kernel, self.stride,
                                              self.padding, self.dilation))
            gx = ConvTransposeNd(self.stride, self.padding, self.dilation, self.groups, out_pad)(g, w)
        if needs[1]:
            gw = ConvNdWeight(kernel, self.stride, self.padding, self.dilation, self.groups)(x, g)
        if b is not None and needs[2]:
            gb = g.sum(dim=(0,) + tuple(range(2, g.ndim)))
        return (gx, gw) if b is None else (gx, gw, gb)


class ConvTransposeNd(Op):
    name = "conv_transpose"
    def __init__(self, stride, padding, dilation, groups, output_padding):
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.output_padding = groups, output_padding

    def forward(self, x, w, b=None):
        xp = xp_of(x)
        n, cin = x.shape[:2]
        cout_g = w.shape[1]
        kernel = w.shape[2:]
        g = self.groups
        spatial_in = x.shape[2:]
        cols = xp.swapaxes(w.reshape(g, cin // g, cout_g * math.prod(kernel)), 1, 2) @ \
            x.reshape(n, g, cin // g, math.prod(spatial_in))  # (N, G, Cout_g*K, L)
        cols = cols.reshape((n, g * cout_g) + tuple(kernel) + tuple(spatial_in))
        padded = tuple((i - 1) * s + dl * (k - 1) + 1 + op for i, s, dl, k, op in
                       zip(spatial_in, self.stride, self.dilation, kernel, self.output_padding))
        y = _col2im(cols, g * cout_g, padded, kernel, self.stride, self.dilation, spatial_in)
        if any(self.padding):
            y = y[(slice(None), slice(None)) + tuple(slice(p, s - p) for p, s in zip(self.padding, padded))]
            y = xp.ascontiguousarray(y)
        if b is not None:
            y += b.reshape((1, -1) + (1,) * len(kernel))
        return y

    def backward(self, g, x, w, b=None):
        needs = self.needs_input_grad
        gx = gw = gb = None
        if needs[0]:
            gx = ConvNd(self.stride, self.padding, self.dilation, self.groups)(g, w)
        if needs[1]:
            gw = ConvNdWeight(w.shape[2:], self.stride, self.padding, self.dilation, self.groups)(g, x)
        if b is not None and needs[2]:
            gb = g.sum(dim=(0,) + tuple(range(2, g.ndim)))
        return (gx, gw) if b is None else (gx, gw, gb)


class ConvNdWeight(Op):
    """The weight gradient of ConvNd: for input x (N, C, ...) and output gradient h (N, O, ...),
    returns (O, C/groups, *kernel)."""
    name = "conv_weight"

    def __init__(self, kernel, stride, padding, dilation, groups):
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.groups = dilation, groups

    def forward(self, x, h):
        xp = xp_of(x)
        n, c = x.shape[:2]
        o = h.shape[1]
        g = self.groups
        out = h.shape[2:]
        avail = tuple(_out_size(s, k, st, p, dl) for s, k, st, p, dl in
                      zip(x.shape[2:], self.kernel, self.stride, self.padding, self.dilation))
        # output padding of a transposed conv can leave windows that reach past the padded input
        extra = tuple(max(0, (o_ - a) * st) for o_, a, st in zip(out, avail, self.stride))
        win = _windows(_pad(x, self.padding, extra), self.kernel, self.stride, self.dilation, out)
        d = len(self.kernel)
        perm = (0, 1) + tuple(range(2 + d, 2 + 2 * d)) + tuple(range(2, 2 + d))
        cols = win.transpose(perm).reshape(n, g, (c // g) * math.prod(self.kernel), math.prod(out))
        hg = h.reshape(n, g, o // g, math.prod(out))
        # sum over batch and positions: (G, Og, N*L) @ (G, N*L, Cg*K)
        a = xp.ascontiguousarray(hg.transpose(1, 2, 0, 3)).reshape(g, o // g, -1)
        bm = xp.ascontiguousarray(cols.transpose(1, 0, 3, 2)).reshape(g, -1, cols.shape[2])
        return (a @ bm).reshape((o, c // g) + tuple(self.kernel))

    def backward(self, gg, x, h):
        nx, nh = self.needs_input_grad
        gx = gh = None
        if nx:
            out_pad = tuple(
                s - ((o - 1) * st - 2 * p + dl * (k - 1) + 1)
                for s, o, k, st, p, dl in zip(x.shape[2:], h.shape[2:], self.kernel, self.stride,
                                              self.padding, self.dilation))
            gx = ConvTransposeNd(self.stride, self.padding, self.dilation, self.groups, out_pad)(h, gg)
        if nh:
            gh = ConvNd(self.stride, self.padding, self.dilation, self.groups)(x, gg)
            if gh.shape != h.shape:  # windows past the input (from output padding) see only zeros
                from .shape import pad
                widths = []
                for have, want in reversed(list(zip(gh.shape[2:], h.shape[2:]))):
                    widths += [0, want - have]
                gh = pad(gh, widths)
        return gx, gh


# ---------------------------------------------------------------- functions

def _check_conv(opname, x, w, b, d, groups, transposed):
    if not isinstance(x, Tensor) or not isinstance(w, Tensor):
        raise TypeError(f"{opname}: input and weight must be Tensors")
    if w.ndim != d + 2:
        raise ValueError(f"{opname}: weight must have {d + 2} dims, got shape {w.shape}")
    if x.ndim != d + 2:
        raise ValueError(f"{opname}: expected input of {d + 2} dims (N, C, {'spatial, ' * d}), "
                         f"got shape {x.shape}")
    if groups < 1:
        raise ValueError(f"{opname}: groups must be >= 1, got {groups}")
    cin = x.shape[1]
    if transposed:
        if w.shape[0] != cin or cin % groups:
            raise ValueError(f"{opname}: input has {cin} channels but weight of shape {w.shape} expects "
                             f"{w.shape[0]} (groups={groups})")
        cout = w.shape[1] * groups
    else:
        if w.shape[1] * groups != cin or w.shape[0] % groups:
            raise ValueError(f"{opname}: input of shape {x.shape} has {cin} channels but weight of shape "
                             f"{w.shape} with groups={groups} expects {w.shape[1] * groups}")
        cout = w.shape[0]
    if b is not None and (not isinstance(b, Tensor) or b.shape != (cout,)):
        raise ValueError(f"{opname}: bias must have shape ({cout},), got "
                         f"{b.shape if isinstance(b, Tensor) else type(b).__name__}")
    if b is not None and b.device != x.device:
        raise ValueError(f"{opname}: bias on {b.device} but input on {x.device}")


def _unbatched(x, d):
    return x.ndim == d + 1


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, d=2, opname="conv2d"):
    """Convolution over ``d`` spatial dims (used by conv1d/conv2d/conv3d)."""
    if isinstance(x, Tensor) and _unbatched(x, d):
        return conv(x.unsqueeze(0), w, b, stride, padding, dilation, groups, d, opname).squeeze(0)
    _check_conv(opname, x, w, b, d, groups, transposed=False)
    x, w = promote(x, w, opname, broadcast=False)
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    stride = _tuple(stride, d, "stride", opname)
    dilation = _tuple(dilation, d, "dilation", opname)
    kernel = w.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * d
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{opname}: padding='same' needs stride 1, got stride {stride}")
            total = [dl * (k - 1) for dl, k in zip(dilation, kernel)]
            if any(t % 2 for t in total):  # odd total: the extra zero goes on the right, as in PyTorch
                from .shape import pad
                widths = []
                for t in reversed(total):
                    widths += [t // 2, t - t // 2]
                x = pad(x, widths)
                padding = (0,) * d
            else:
                padding = tuple(t // 2 for t in total)
        else:
            raise ValueError(f"{opname}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    padding = _tuple(padding, d, "padding", opname)
    if any(s < 1 for s in stride) or any(p < 0 for p in padding) or any(dl < 1 for dl in dilation):
        raise ValueError(f"{opname}: need stride >= 1, padding >= 0, dilation >= 1; got stride {stride}, "
                         f"padding {padding}, dilation {dilation}")
    for s, k, p, dl in zip(x.shape[2:], kernel, padding, dilation):
        if s + 2 * p < dl * (k - 1) + 1:
            raise ValueError(f"{opname}: kernel of shape {tuple(kernel)} (dilation {dilation}) is larger than "
                             f"the padded input {tuple(s + 2 * p for s, p in zip(x.shape[2:], padding))}")
    op = ConvNd(stride, padding, dilation, groups)
    return op(x, w) if b is None else op(x, w, b)


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, d=2,
                   opname="conv_transpose2d"):
    if isinstance(x, Tensor) and _unbatched(x, d):
        return conv_transpose(x.unsqueeze(0), w, b, stride, padding, output_padding, groups, dilation,
                              d, opname).squeeze(0)
    _check_conv(opname, x, w, b, d, groups, transposed=True)
    x, w = promote(x, w, opname, broadcast=False)
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    stride = _tuple(stride, d, "stride", opname)
    padding = _tuple(padding, d, "padding", opname)
    dilation = _tuple(dilation, d, "dilation", opname)
    output_padding = _tuple(output_padding, d, "output_padding", opname)
    for op_, s, dl in zip(output_padding, stride, dilation):
        if op_ < 0 or op_ >= max(s, dl):
            raise ValueError(f"{opname}: output_padding {output_padding} must be smaller than stride "
                             f"{stride} or dilation {dilation}")
    for i, k, s, p, dl, op_ in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, output_padding):
        if (i - 1) * s - 2 * p + dl * (k - 1) + 1 + op_ <= 0:
            raise ValueError(f"{opname}: padding {padding} leaves no output for input shape {x.shape}")
    op = ConvTransposeNd(stride, padding, dilation, groups, output_padding)
    return op(x, w) if b is None else op(x, w, b)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=1, opname="conv1d")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=2, opname="conv2d")


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=3, opname="conv3d")


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, d=1,
                          opname="conv_transpose1d")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, d=2,
                          opname="conv_transpose2d")


def conv2d_weight(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of conv2d with respect to its weight (as ``torch.nn.grad.conv2d_weight``)."""
    x, grad_output = promote(x, grad_output, "conv2d_weight", broadcast=False)
    kernel = tuple(weight_shape[2:])
    stride = _tuple(stride, 2, "stride", "conv2d_weight")
    padding = _tuple(padding, 2, "padding", "conv2d_weight")
    dilation = _tuple(dilation, 2, "dilation", "conv2d_weight")
    if x.ndim != 4 or grad_output.ndim != 4 or len(weight_shape) != 4:
        raise ValueError(f"conv2d_weight: expected 4-D input, grad_output and weight_shape, got {x.shape}, "
                         f"{grad_output.shape} and {tuple(weight_shape)}")
    out = tuple(_out_size(s, k, st, p, dl) for s, k, st, p, dl in zip(x.shape[2:], kernel, stride, padding, dilation))
    want = (x.shape[0], weight_shape[0]) + out
    if grad_output.shape != want or x.shape[1] != weight_shape[1] * groups:
        raise ValueError(f"conv2d_weight: grad_output of shape {grad_output.shape} and input of shape {x.shape} "
                         f"do not fit weight shape {tuple(weight_shape)} (expected grad_output {want})")
    return ConvNdWeight(kernel, stride, padding, dilation, groups)(x, grad_output)
