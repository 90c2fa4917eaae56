"""Pooling: max pooling as a primitive (windows view + argmax, gradient by scatter-add), average
pooling and adaptive average pooling as compositions of convolution and matmul.

2-D max pooling of CPU float32/float64 arrays runs the compiled kernels
(``lamina.kernels.max_pool_blocks_*`` for non-overlapping windows, ``max_pool2d_*`` for the
others), which keep the same saved indices as the NumPy/CuPy path below."""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import backend
from .. import kernels as _kernels
from ..tensor import Tensor, _wrap
from .base import Op, xp_of
from .conv import _tuple, _windows, conv
from .indexing import scatter_add
from .shape import pad


def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input or left pad
        out -= 1
    return out


def _blocked(x, kernel, out):
    """The window-major copy (K, N, C, *out) of x's non-overlapping windows (kernel == stride)."""
    d = len(kernel)
    crop = x[(Ellipsis,) + tuple(slice(0, o * k) for o, k in zip(out, kernel))]
    split = crop.reshape(x.shape[:2] + tuple(v for o, k in zip(out, kernel) for v in (o, k)))
    win_axes = tuple(3 + 2 * i for i in range(d))
    out_axes = tuple(2 + 2 * i for i in range(d))
    perm = win_axes + (0, 1) + out_axes
    return xp_of(x).ascontiguousarray(split.transpose(perm)).reshape((math.prod(kernel),) + x.shape[:2] + tuple(out))


class BlockGather(Op):
    """For non-overlapping windows (kernel == stride): element ``index`` (a window offset) of every
    window of x. The gradient of BlockScatter, and it of this."""
    needs_inputs = False

    def __init__(self, kernel):
        self.kernel = kernel

    def forward(self, x, index):
        out = tuple(n // k for n, k in zip(x.shape[2:], self.kernel))
        blocks = _blocked(x, self.kernel, out)
        return xp_of(x).take_along_axis(blocks, index[None].astype(backend.int64), axis=0)[0]

    def backward(self, g, x, index):
        return BlockScatter(self.kernel, x.shape[2:])(g, index), None


class BlockScatter(Op):
    """Place each element of g at offset ``index`` of its non-overlapping window in a zero tensor of
    spatial size ``spatial`` (the gradient of a max-pool whose windows do not overlap)."""
    needs_inputs = False

    def __init__(self, kernel, spatial):
        self.kernel, self.spatial = kernel, tuple(spatial)

    def forward(self, g, index):
        if len(self.kernel) == 2:
            res = _kernels.max_pool_blocks_backward(g, index, self.kernel, g.shape[:2] + self.spatial)
            if res is not None:
                return res
        xp = xp_of(g)
        kernel = self.kernel
        out = g.shape[2:]
        res = xp.zeros(g.shape[:2] + self.spatial, dtype=g.dtype)
        # Rows along the last dim stay contiguous: repeat each value and index k_last times, then
        # copy the values whose index names this column's offset (NumPy is slow on 2-wide loops); the
        # rest stay exact zeros, as in PyTorch, whatever g holds.
        k_last = kernel[-1]
        g_rep = xp.repeat(g, k_last, axis=-1)
        i_rep = xp.repeat(index, k_last, axis=-1)
        col = (xp.arange(out[-1] * k_last) % k_last).astype(index.dtype)
        for outer in itertools.product(*(range(k) for k in kernel[:-1])):
            base = 0
            for k_i, o_i in zip(kernel[:-1], outer):
                base = base * k_i + o_i
            base *= k_last
            region = tuple(slice(o_i, o * k_i, k_i) for o_i, o, k_i in zip(outer, out[:-1], kernel[:-1]))
            region += (slice(0, out[-1] * k_last),)
            xp.copyto(res[(slice(None), slice(None)) + region], g_rep,
                      where=i_rep == (col + base) if base else i_rep == col)
        return res

    def backward(self, gg, g, index):
        return BlockGather(self.kernel)(gg, index), None


class MaxPoolNd(Op):
    name = "max_pool"
    needs_inputs = False

    def __init__(self, kernel, stride, padding, dilation, ceil_mode, return_indices):
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.n_outputs = 2 if return_indices else 1
        # windows that tile the input without overlap or padding take a faster path
        self.blocks = (stride == kernel and not any(padding) and all(d == 1 for d in dilation)
                       and not ceil_mode)

    def forward(self, x):
        out = tuple(_pool_out(s, k, st, p, dl, self.ceil_mode) for s, k, st, p, dl in
                    zip(x.shape[2:], self.kernel, self.stride, self.padding, self.dilation))
        if self.blocks:
            return self._forward_blocks(x, out)
        return self._forward_windows(x, out)

    def _forward_blocks(self, x, out):
        if len(self.kernel) == 2:
            res = _kernels.max_pool_blocks_forward(x, self.kernel)
            if res is not None:
                values, self.saved = res
                if self.n_outputs == 2:
                    return values, self._flat_index(self.saved, x.shape[2:], out)
                return values
        xp = xp_of(x)
        blocks = _blocked(x, self.kernel, out)
        values = blocks[0].copy()
        want_index = self.needs_input_grad is not None or self.n_outputs == 2
        itype = xp.int8 if len(blocks) < 128 else xp.int16
        index = xp.zeros(values.shape, dtype=itype) if want_index else None
        for i in range(1, len(blocks)):
            if want_index:
                # strictly greater: the first maximum in the window wins, as in PyTorch; the update
                # is arithmetic because NumPy's masked writes are slow
                index += (blocks[i] > values).view(xp.int8).astype(itype, copy=False) * (itype(i) - index)
            xp.maximum(values, blocks[i], out=values)
        if want_index and values.dtype.kind == "f":
            nan = xp.isnan(values)
            if nan.any():  # a NaN window's index is its last NaN, as in PyTorch
                last = len(blocks) - 1 - xp.isnan(blocks[::-1]).argmax(axis=0)
                index[nan] = last[nan].astype(itype)
        self.saved = index
        if self.n_outputs == 2:
            return values, self._flat_index(index, x.shape[2:], out)
        return values

    def _flat_index(self, index, spatial, out):
        """Window offsets -> flat indices into each input plane (PyTorch's return_indices)."""
        xp = xp_of(index)
        flat = xp.zeros(index.shape, dtype=backend.int64)
        rest = index.astype(backend.int64)
        for i in range(len(self.kernel) - 1, -1, -1):
            k_i = rest % self.kernel[i]
            rest = rest // self.kernel[i]
            shape = [1] * index.ndim
            shape[2 + i] = out[i]
            coord = (xp.arange(out[i]) * self.kernel[i]).reshape(shape) + k_i
            flat += coord * math.prod(spatial[i + 1:])
        return flat

    def _forward_windows(self, x, out):
        if len(self.kernel) == 2:
            res = _kernels.max_pool2d_forward(x, self.kernel, self.stride, self.padding, self.dilation,
                                              self.ceil_mode)
            if res is not None:
                values, self.saved = res
                return (values, self.saved) if self.n_outputs == 2 else values
        xp = xp_of(x)
        d = len(self.kernel)
        spatial = x.shape[2:]
        xpad = x
        need = [(o - 1) * st + dl * (k - 1) + 1 for o, st, dl, k in zip(out, self.stride, self.dilation, self.kernel)]
        right = [max(p, n - s - p) for n, s, p in zip(need, spatial, self.padding)]
        if any(self.padding) or any(r > 0 for r in right):
            low = -np.inf if x.dtype.kind == "f" or x.dtype == backend.bfloat16 else np.iinfo(x.dtype).min
            xpad = xp.full(x.shape[:2] + tuple(s + p + r for s, p, r in zip(spatial, self.padding, right)),
                           low, dtype=x.dtype)
            xpad[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(self.padding, spatial))] = x
        win = _windows(xpad, self.kernel, self.stride, self.dilation, out)
        k_axes = tuple(range(2 + d, 2 + 2 * d))
        if self.needs_input_grad is None and self.n_outputs == 1:
            return win.max(axis=k_axes)
        flat = win.reshape(x.shape[:2] + out + (-1,))
        arg = flat.argmax(axis=-1)
        if flat.dtype.kind == "f":
            nan = xp.isnan(flat)
            if nan.any():  # a NaN window's index is its last NaN, as in PyTorch
                last = flat.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1)
                arg = xp.where(nan.any(axis=-1), last, arg)
        values = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        # window offset -> flat index into the (unpadded) input plane
        index = xp.zeros(arg.shape, dtype=backend.int64)
        rest = arg
        for i in range(d - 1, -1, -1):
            k_i = rest % self.kernel[i]
            rest = rest // self.kernel[i]
            pos_shape = [1] * (2 + d)
            pos_shape[2 + i] = out[i]
            start = (xp.arange(out[i]) * self.stride[i] - self.padding[i]).reshape(pos_shape)
            index += (start + k_i * self.dilation[i]) * math.prod(spatial[i + 1:])
        self.saved = index
        return (values, index) if self.n_outputs == 2 else values

    def backward(self, grads, x):
        g = grads[0] if self.n_outputs == 2 else grads
        if self.blocks:
            return BlockScatter(self.kernel, x.shape[2:])(g, _wrap(self.saved))
        n, c = x.shape[:2]
        idx = _wrap(self.saved).reshape(n, c, -1)
        base = g.new_zeros((n, c, math.prod(x.shape[2:])))
        return scatter_add(base, 2, idx, g.reshape(n, c, -1)).reshape(x.shape)

    def onnx(self, g, x):
        if self.n_outputs == 2:
            g.unsupported("max-pool indices (return_indices=True) differ in layout from ONNX MaxPool's")
        return g.op("MaxPool", [x], kernel_shape=list(self.kernel), strides=list(self.stride),
                    pads=list(self.padding) * 2, dilations=list(self.dilation), ceil_mode=int(self.ceil_mode))


def block_gather(x, index, kernel_size):
    """Element ``index`` (an offset inside the window) of every non-overlapping window of x."""
    kernel = _tuple(kernel_size, x.ndim - 2, "kernel_size", "block_gather")
    return BlockGather(kernel)(x, index)


def block_scatter(g, index, kernel_size, spatial):
    """Zeros of spatial size ``spatial`` with each element of g at offset ``index`` of its window."""
    kernel = _tuple(kernel_size, g.ndim - 2, "kernel_size", "block_scatter")
    return BlockScatter(kernel, tuple(spatial))(g, index)


def _pool_args(opname, x, kernel_size, stride, padding, dilation, d):
    if not isinstance(x, Tensor):
        raise TypeError(f"{opname}: expected a Tensor input, got {type(x).__name__}")
    if x.ndim not in (d + 1, d + 2):
        raise ValueError(f"{opname}: expected input of {d + 1} or {d + 2} dims, got shape {x.shape}")
    kernel = _tuple(kernel_size, d, "kernel_size", opname)
    stride = kernel if stride is None or stride == () else _tuple(stride, d, "stride", opname)
    padding = _tuple(padding, d, "padding", opname)
    dilation = _tuple(dilation, d, "dilation", opname)
    if any(k < 1 for k in kernel) or any(s < 1 for s in stride) or any(dl < 1 for dl in dilation):
        raise ValueError(f"{opname}: kernel_size, stride and dilation must be positive; got {kernel}, "
                         f"{stride}, {dilation}")
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{opname}: padding {padding} must be at most half the kernel size {kernel}")
    for s, k, p, dl in zip(x.shape[-d:], kernel, padding, dilation):
        if s + 2 * p < dl * (k - 1) + 1:
            raise ValueError(f"{opname}: kernel {kernel} (dilation {dilation}) is larger than the padded "
                             f"input {tuple(s + 2 * p for s, p in zip(x.shape[-d:], padding))}")
    return kernel, stride, padding, dilation


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
             d=2, opname="max_pool2d"):
    kernel, stride, padding, dilation = _pool_args(opname, x, kernel_size, stride, padding, dilation, d)
    if x.ndim == d + 1:
        res = max_pool(x.unsqueeze(0), kernel, stride, padding, dilation, ceil_mode, return_indices, d, opname)
        return tuple(r.squeeze(0) for r in res) if return_indices else res.squeeze(0)
    return MaxPoolNd(kernel, stride, padding, dilation, ceil_mode, return_indices)(x)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, d=2, opname="avg_pool2d"):
    """Average pooling as a convolution of each channel with a constant kernel."""
    kernel, stride, padding, _ = _pool_args(opname, x, kernel_size, stride, padding, 1, d)
    if x.ndim == d + 1:
        return avg_pool(x.unsqueeze(0), kernel, stride, padding, ceil_mode, count_include_pad,
                        divisor_override, d, opname).squeeze(0)
    if not backend.is_floating(x.dtype):
        raise TypeError(f"{opname}: expected a floating-point input, got {x.dtype}")
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    out = tuple(_pool_out(s, k, st, p, 1, ceil_mode) for s, k, st, p in zip(spatial, kernel, stride, padding))
    right = tuple(max(p, (o - 1) * st + k - s - p) for o, st, k, s, p in zip(out, stride, kernel, spatial, padding))
    widths = []
    for p, r in reversed(list(zip(padding, right))):
        widths += [p, r]
    planes = pad(x.reshape((n * c, 1) + spatial), widths)
    ones = x.new_ones((1, 1) + kernel)
    y = conv(planes, ones, stride=stride, d=d, opname=opname)
    if divisor_override:
        return (y * (1.0 / divisor_override)).reshape((n, c) + out)
    # How many elements each window averages: padding counts only with count_include_pad, and
    # never the extra right margin that ceil_mode adds.
    counted = np.zeros(tuple(p + s + r for p, s, r in zip(padding, spatial, right)), dtype=np.float64)
    lo = tuple(0 if count_include_pad else p for p in padding)
    hi = tuple(p + s + (p if count_include_pad else 0) for p, s in zip(padding, spatial))
    counted[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    win = np.lib.stride_tricks.as_strided(
        counted, shape=out + kernel,
        strides=tuple(st * s for st, s in zip(counted.strides, stride)) + counted.strides)
    counts = win.sum(axis=tuple(range(d, 2 * d)))
    inv = Tensor(1.0 / counts, dtype=x.dtype, device=x.device)
    return (y.reshape((n, c) + out)) * inv


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                    "avg_pool2d")


def _adaptive_matrix(n_in, n_out):
    """(n_out, n_in) matrix averaging PyTorch's adaptive windows [floor(i*in/out), ceil((i+1)*in/out))."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size: each axis is a matmul with an averaging matrix."""
    if x.ndim not in (3, 4):
        raise ValueError(f"adaptive_avg_pool2d: expected input of 3 or 4 dims, got shape {x.shape}")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    oh = x.shape[-2] if oh is None else oh
    ow = x.shape[-1] if ow is None else ow
    mh = Tensor(_adaptive_matrix(x.shape[-2], oh), dtype=x.dtype, device=x.device)
    mw = Tensor(_adaptive_matrix(x.shape[-1], ow), dtype=x.dtype, device=x.device)
    return mh @ x @ mw.mT


def adaptive_avg_pool1d(x, output_size):
    if x.ndim not in (2, 3):
        raise ValueError(f"adaptive_avg_pool1d: expected input of 2 or 3 dims, got shape {x.shape}")
    m = Tensor(_adaptive_matrix(x.shape[-1], int(output_size)), dtype=x.dtype, device=x.device)
    return x @ m.mT
