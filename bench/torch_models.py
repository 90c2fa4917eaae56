"""PyTorch twins of Lamina's LeNet-5 and MLP with the same parameter names, so that a Lamina
``state_dict`` loads into them unchanged (GPT's twin is ``bench/nanogpt.py``)."""
from __future__ import annotations

import torch.nn as tnn


class LeNet5(tnn.Module):
    """``lamina.models.LeNet5``, layer for layer."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2),
        )
        self.classifier = tnn.Sequential(
            tnn.Flatten(),
            tnn.Linear(16 * 5 * 5, 120), tnn.ReLU(),
            tnn.Linear(120, 84), tnn.ReLU(),
            tnn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP(tnn.Module):
    """``lamina.models.MLP(sizes)``: Linear layers with ReLU between, under ``layers``."""

    def __init__(self, sizes):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(tnn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(tnn.ReLU())
        self.layers = tnn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x.flatten(1) if x.ndim > 2 else x)
