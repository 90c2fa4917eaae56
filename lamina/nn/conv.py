"""Convolution layers: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``."""
from __future__ import annotations


from .. import creation
from ..ops import conv as C, pad
from . import init
from .module import Module
from .parameter import Parameter


class _ConvNd(Module):
    d = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", output_padding=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"{name}: unknown padding_mode {padding_mode!r}")
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported for transposed convolution")
        d = self.d
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = C._tuple(kernel_size, d, "kernel_size", name)
        self.stride = C._tuple(stride, d, "stride", name)
        self.padding = padding if isinstance(padding, str) else C._tuple(padding, d, "padding", name)
        self.dilation = C._tuple(dilation, d, "dilation", name)
        self.output_padding = C._tuple(output_padding, d, "output_padding", name)
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self.transposed else
                 (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(creation.empty(*shape, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(creation.empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x):
        name = type(self).__name__
        if self.transposed:
            return C.conv_transpose(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                    self.groups, self.dilation, d=self.d, opname=name)
        padding = self.padding
        if self.padding_mode != "zeros" and not isinstance(padding, str):
            widths = []
            for p in reversed(padding):
                widths += [p, p]
            x = pad(x, widths, mode=self.padding_mode)
            padding = 0
        return C.conv(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                      d=self.d, opname=name)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.d:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.d:
            s += f", dilation={self.dilation}"
        if self.transposed and self.output_padding != (0,) * self.d:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class Conv1d(_ConvNd):
    d = 1


class Conv2d(_ConvNd):
    d = 2


class ConvTranspose1d(_ConvNd):
    d = 1
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)


class ConvTranspose2d(ConvTranspose1d):
    d = 2
