"""Convolution over 1, 2 or 3 spatial dims: im2col columns and batched GEMM.

Three ops share one column engine (``_Plan``) and are each other's gradients, so convolutions are
differentiable to any order:
  ConvNd(x, w[, b])            the convolution (cross-correlation, as in PyTorch)
  ConvTransposeNd(x, w[, b])   its adjoint in x: the input gradient of ConvNd, also a layer
  ConvNdWeight(x, g)           its adjoint in w: the weight gradient of ConvNd

ConvNd also runs the compiled CPU kernels (``lamina.kernels.conv2d_forward``/``_backward``:
direct SIMD loops for layers with few channels, channels-last columns around one GEMM per
direction for wider ones) for 2-D float32/float64 C-contiguous NumPy
inputs with groups=1, in its forward and its array-level backward; everything else, and any
gradient of a gradient, takes the column engine below, which stays the reference.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import kernels as _kernels
from ..tensor import Tensor
from .base import Op, promote, xp_of
from ..amp.autocast_mode import autocast_op
from .shape import pad


def _tuple(v, d, name, opname):
    if isinstance(v, int):
        return (v,) * d
    v = tuple(int(i) for i in v)
    if len(v) != d:
        raise ValueError(f"{opname}: {name} must be an int or a tuple of {d} ints, got {v}")
    return v


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _windows(xpad, kernel, stride, dilation, out):
    """A strided view (N, C, *out, *kernel) of every window of a padded input (no copy)."""
    st = xpad.strides
    shape = xpad.shape[:2] + tuple(out) + tuple(kernel)
    strides = st[:2] + tuple(st[2 + i] * s for i, s in enumerate(stride)) + \
        tuple(st[2 + i] * d for i, d in enumerate(dilation))
    return xp_of(xpad).lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


class _Plan:
    """Where every window of a convolution sits, and how its columns are laid out.

    Columns are (N, C, K, P): for each channel and kernel offset, the input value each of the P
    output positions sees. With stride 1 the input is zero-padded and flattened, and the columns
    of one kernel offset are a contiguous slice of that flat plane ("shifted" layout): P then
    counts positions over the full padded width, the ones past the output's width are garbage
    that ``positions`` crops away. Strided convolutions use a strided view of the windows.
    """

    def __init__(self, spatial, kernel, stride, padding, dilation, out=None):
        self.spatial, self.kernel, self.stride = tuple(spatial), tuple(kernel), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.out = tuple(out) if out is not None else tuple(
            _out_size(n, k, s, p, d) for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation))
        need = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(self.out, stride, dilation, kernel)]
        # right padding: the requested padding, or more when windows reach further (output padding)
        self.right = tuple(max(p, nd - n - p) for nd, n, p in zip(need, spatial, padding))
        self.padded = tuple(n + p + r for n, p, r in zip(spatial, padding, self.right))
        self.K = math.prod(kernel)
        self.flat = all(s == 1 for s in stride)
        if self.flat:
            self.row = tuple(math.prod(self.padded[i + 1:]) for i in range(len(spatial)))
            self.P = self.out[0] * self.row[0]
            self.offsets = [sum(k * d * r for k, d, r in zip(kidx, dilation, self.row))
                            for kidx in itertools.product(*(range(k) for k in kernel))]
            self.length = max(math.prod(self.padded), self.offsets[-1] + self.P)
        else:
            self.P = math.prod(self.out)

    def _inner(self):
        return tuple(slice(p, p + n) for p, n in zip(self.padding, self.spatial))

    def im2col(self, x):
        """(N, C, *spatial) -> columns (N, C, K, P) (a new array)."""
        xp = xp_of(x)
        n, c = x.shape[:2]
        if self.flat:
            plane = xp.zeros((n, c, self.length), dtype=x.dtype)
            plane[:, :, :math.prod(self.padded)].reshape((n, c) + self.padded)[(Ellipsis,) + self._inner()] = x
            st = plane.strides
            steps = tuple(d * r * st[2] for d, r in zip(self.dilation, self.row))
            view = xp.lib.stride_tricks.as_strided(plane, (n, c) + self.kernel + (self.P,), st[:2] + steps + (st[2],))
            return view.reshape(n, c, self.K, self.P)
        xpad = xp.zeros((n, c) + self.padded, dtype=x.dtype)
        xpad[(Ellipsis,) + self._inner()] = x
        win = _windows(xpad, self.kernel, self.stride, self.dilation, self.out)
        d = len(self.kernel)
        perm = (0, 1) + tuple(range(2 + d, 2 + 2 * d)) + tuple(range(2, 2 + d))
        return win.transpose(perm).reshape(n, c, self.K, self.P)

    def positions(self, y):
        """(N, O, P) -> (N, O, *out), dropping the garbage positions of the shifted layout."""
        n, o = y.shape[:2]
        if not self.flat:
            return y.reshape((n, o) + self.out)
        full = y.reshape((n, o, self.out[0]) + self.padded[1:])
        if self.padded[1:] == self.out[1:]:
            return full
        return xp_of(y).ascontiguousarray(full[(Ellipsis,) + tuple(slice(0, m) for m in self.out[1:])])

    def from_positions(self, g):
        """(N, O, *out) -> (N, O, P), zeros at the garbage positions (the adjoint of ``positions``)."""
        n, o = g.shape[:2]
        if not self.flat or self.padded[1:] == self.out[1:]:
            return g.reshape(n, o, self.P)
        full = xp_of(g).zeros((n, o, self.out[0]) + self.padded[1:], dtype=g.dtype)
        full[(Ellipsis,) + tuple(slice(0, m) for m in self.out[1:])] = g
        return full.reshape(n, o, self.P)

    def col2im(self, cols):
        """Columns (N, C, K, P) -> (N, C, *spatial): every window's values added back where they
        came from (the adjoint of ``im2col``)."""
        xp = xp_of(cols)
        n, c = cols.shape[:2]
        if self.flat:
            plane = xp.zeros((n, c, self.length), dtype=cols.dtype)
            for k, off in enumerate(self.offsets):
                plane[:, :, off:off + self.P] += cols[:, :, k]
            full = plane[:, :, :math.prod(self.padded)].reshape((n, c) + self.padded)
        else:
            full = xp.zeros((n, c) + self.padded, dtype=cols.dtype)
            cols = cols.reshape((n, c) + self.kernel + self.out)
            for kidx in itertools.product(*(range(k) for k in self.kernel)):
                region = tuple(slice(k * dl, k * dl + s * (o - 1) + 1, s)
                               for k, dl, s, o in zip(kidx, self.dilation, self.stride, self.out))
                full[(slice(None), slice(None)) + region] += cols[(slice(None), slice(None)) + kidx]
        if self.padded == self.spatial:
            return full
        return xp.ascontiguousarray(full[(Ellipsis,) + self._inner()])


class ConvNd(Op):
    name = "conv"

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def _kernel_takes(self, x, w):
        return type(x) is np.ndarray and x.ndim == 4 and self.groups == 1

    def forward(self, x, w, b=None):
        if self._kernel_takes(x, w):
            # the packed columns are kept for the weight gradient (when the batch fits one block)
            keep = self.needs_input_grad is not None and self.needs_input_grad[1]
            res = _kernels.conv2d_forward(x, w, b, self.stride, self.padding, self.dilation,
                                          keep_columns=keep)
            if res is not None:
                if keep:
                    res, self.saved = res
                return res
        n, o, g = x.shape[0], w.shape[0], self.groups
        plan = _Plan(x.shape[2:], w.shape[2:], self.stride, self.padding, self.dilation)
        cols = plan.im2col(x).reshape(n, g, -1, plan.P)
        y = plan.positions((w.reshape(1, g, o // g, -1) @ cols).reshape(n, o, plan.P))
        if b is not None:
            y += b.reshape((1, o) + (1,) * len(plan.out))
        return y

    def _output_padding(self, x, g, kernel):
        """The output padding that makes the transposed convolution of g as large as x."""
        return tuple(s - ((o - 1) * st - 2 * p + dl * (k - 1) + 1)
                     for s, o, k, st, p, dl in zip(x.shape[2:], g.shape[2:], kernel, self.stride,
                                                   self.padding, self.dilation))

    def backward(self, g, x, w, b=None):
        needs = self.needs_input_grad
        gx = gw = gb = None
        kernel = w.shape[2:]
        if needs[0]:
            out_pad = self._output_padding(x, g, kernel)
            gx = ConvTransposeNd(self.stride, self.padding, self.dilation, self.groups, out_pad)(g, w)
        if needs[1]:
            gw = ConvNdWeight(kernel, self.stride, self.padding, self.dilation, self.groups)(x, g)
        if b is not None and needs[2]:
            gb = g.sum(dim=(0,) + tuple(range(2, g.ndim)))
        return (gx, gw) if b is None else (gx, gw, gb)

    def backward_arrays(self, g, x, w, b=None):
        needs = self.needs_input_grad
        columns, self.saved = self.saved, None
        need_bias = b is not None and needs[2]
        if self._kernel_takes(x, w) and type(g) is np.ndarray:
            res = _kernels.conv2d_backward(np.ascontiguousarray(g), x, w, self.stride, self.padding,
                                           self.dilation, need_input=needs[0], need_weight=needs[1],
                                           need_bias=need_bias, columns=columns)
            if res is not None:
                return res if b is not None else res[:2]
        kernel = w.shape[2:]
        gx = gw = gb = None
        if needs[0]:
            gx = ConvTransposeNd(self.stride, self.padding, self.dilation, self.groups,
                                 self._output_padding(x, g, kernel)).forward(g, w)
        if needs[1]:
            gw = ConvNdWeight(kernel, self.stride, self.padding, self.dilation, self.groups).forward(x, g)
        if need_bias:
            gb = g.sum(axis=(0,) + tuple(range(2, g.ndim)))
        return (gx, gw) if b is None else (gx, gw, gb)

    def onnx(self, g, x, w, b=None):
        return g.op("Conv", [x, w] + ([b] if b is not None else []), strides=list(self.stride),
                    pads=list(self.padding) * 2, dilations=list(self.dilation), group=self.groups)


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
        spatial = tuple((i - 1) * s - 2 * p + dl * (k - 1) + 1 + op for i, s, p, dl, k, op in
                        zip(x.shape[2:], self.stride, self.padding, self.dilation, kernel, self.output_padding))
        plan = _Plan(spatial, kernel, self.stride, self.padding, self.dilation, out=x.shape[2:])
        xs = plan.from_positions(x).reshape(n, g, cin // g, plan.P)
        wt = xp.swapaxes(w.reshape(g, cin // g, cout_g * plan.K), 1, 2)  # (G, Cout_g*K, Cin_g)
        cols = (wt @ xs).reshape(n, g * cout_g, plan.K, plan.P)
        y = plan.col2im(cols)
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

    def onnx(self, g, x, w, b=None):
        return g.op("ConvTranspose", [x, w] + ([b] if b is not None else []), strides=list(self.stride),
                    pads=list(self.padding) * 2, dilations=list(self.dilation), group=self.groups,
                    output_padding=list(self.output_padding))


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
        o, g = h.shape[1], self.groups
        plan = _Plan(x.shape[2:], self.kernel, self.stride, self.padding, self.dilation, out=h.shape[2:])
        cols = plan.im2col(x).reshape(n, g, (c // g) * plan.K, plan.P)
        hs = plan.from_positions(h).reshape(n, g, o // g, plan.P)
        # sum over the batch of (Og, P) @ (P, Cg*K): one small GEMM per sample and group
        gw = (hs @ xp.swapaxes(cols, -1, -2)).sum(axis=0)
        return gw.reshape((o, c // g) + tuple(self.kernel))

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


@autocast_op("conv1d")
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=1, opname="conv1d")


@autocast_op("conv2d")
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=2, opname="conv2d")


@autocast_op("conv3d")
def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return conv(x, weight, bias, stride, padding, dilation, groups, d=3, opname="conv3d")


@autocast_op("conv_transpose1d")
def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, d=1,
                          opname="conv_transpose1d")


@autocast_op("conv_transpose2d")
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
