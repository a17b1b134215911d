"""The course's small architectures: ``SmallCNN``, ``MLP``, ``LogisticRegression``, and
``Normalized`` (an ImageNet model taking inputs in [0, 1]).

Models keep every ReLU as its own ``nn.ReLU`` module (captum's GuidedBackprop and our hooks need
that) and expose ``features(x)`` (penultimate layer) and ``head`` (the last linear layer) for the
data-attribution lectures.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "MLP", "LogisticRegression", "Normalized"]


class SmallCNN(nn.Module):
    """(x − 0.5) → conv1 → relu1 → pool1 → conv2 → relu2 → pool2 → conv3 → relu3 → global max
    pool → fc1 → relu4 → fc2 (logits).

    Works on any image size ≥ 4. Named layers: ``conv1``, ``conv2``, ``conv3`` (inner units
    for feature visualisation; ``conv3`` is the last conv layer, for Grad-CAM), ``fc1``,
    ``fc2`` (= ``head``). Inputs are expected in [0, 1]; the model centres them itself.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, hidden: int = 64):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, width=width, hidden=hidden)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Linear(4 * width, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.fc2

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of ``relu3`` (the last conv block), shape (N, 4·width, H/4, W/4)."""
        x = self.pool1(self.relu1(self.conv1(x - 0.5)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.relu3(self.conv3(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after fc1's ReLU), shape (N, hidden)."""
        return self.relu4(self.fc1(self.gmp(self.conv_features(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


class MLP(nn.Module):
    """flatten → fc1 → relu1 → fc2 → relu2 → fc3 (logits)."""

    def __init__(self, in_features: int = 64, n_classes: int = 10, hidden: int = 64):
        super().__init__()
        self.config = dict(in_features=in_features, n_classes=n_classes, hidden=hidden)
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.fc3

    def features(self, x):
        return self.relu2(self.fc2(self.relu1(self.fc1(x.flatten(1)))))

    def forward(self, x):
        return self.fc3(self.features(x))


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer on the flattened input."""

    def __init__(self, in_features: int = 64, n_classes: int = 10):
        super().__init__()
        self.config = dict(in_features=in_features, n_classes=n_classes)
        self.linear = nn.Linear(in_features, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.linear

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.linear(x.flatten(1))


class Normalized(nn.Module):
    """Wrap an ImageNet model so that it takes inputs in [0, 1]: (x − mean)/std → model."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)
