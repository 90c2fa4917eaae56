"""Pieces the vision models share: the ``weights=`` check, ``ReLU6`` and ``Conv2dNormActivation``."""
from __future__ import annotations

from ... import nn
from ...nn import functional as F


def check_weights(name: str, weights, kwargs: dict) -> None:
    """Raise ValueError unless no pretrained weights are asked for: Lamina ships architectures only."""
    pretrained = kwargs.pop("pretrained", False)
    if weights is None and not pretrained:
        return
    asked = f"weights={weights!r}" if weights is not None else "pretrained=True"
    raise ValueError(f"{name}: pretrained weights are not shipped with Lamina ({asked}); build it with "
                     f"weights=None and load a state dict you have, e.g. model.load_state_dict(state)")


class ReLU6(nn.Module):
    """min(max(x, 0), 6), as ``torch.nn.ReLU6``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu6(x)


class Conv2dNormActivation(nn.Sequential):
    """Conv2d -> norm -> activation as one ``Sequential`` (children ``0``, ``1``, ``2``), with
    torchvision's defaults: "same" padding ``(kernel_size - 1) // 2 * dilation`` and a conv bias
    only when there is no norm layer."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                            groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=inplace) if inplace is not None else activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels
