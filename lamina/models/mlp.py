"""A multi-layer perceptron: Linear layers with an activation between them."""
from __future__ import annotations

from .. import nn


class MLP(nn.Module):
    """``sizes = (784, 1024, 1024, 10)`` gives 784 -> 1024 -> 1024 -> 10 with ReLU between."""

    def __init__(self, sizes, activation=nn.ReLU, dropout: float = 0.0):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLP: need at least an input and an output size, got {tuple(sizes)}")
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
                if dropout:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x.flatten(1) if x.ndim > 2 else x)
