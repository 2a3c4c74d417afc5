"""The notebook's CNN as a plain ``nn.Module``, layer for layer and default for default.

Keras defaults are mirrored where they differ from PyTorch's (see REFERENCE.md):
glorot-uniform kernels and zero biases, BatchNorm epsilon 1e-3 and momentum 0.01
(Keras' 0.99 weighs the old value), ReLU *before* BatchNorm, valid padding, and a
Flatten in Keras' (h, w, c) order so the first Dense layer's kernel is Keras' own,
transposed. The network returns logits; softmax is applied where users see
probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.01  # = 1 - Keras' momentum of 0.99


class FlattenChannelsLast(nn.Module):
    """Keras' Flatten: (N, C, H, W) -> (N, H*W*C) in (h, w, c) order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On a channels_last tensor this permute is a free view.
        return x.permute(0, 2, 3, 1).flatten(1)


class MnistCNN(nn.Module):
    """Conv32-BN-Pool, Conv64-BN-Pool, Flatten, Dense128, Dropout, Dense10 (logits)."""

    def __init__(self, dropout: float = 0.5, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.bn1 = nn.BatchNorm2d(32, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.bn2 = nn.BatchNorm2d(64, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)
        self.pool = nn.MaxPool2d(2)
        self.flatten = FlattenChannelsLast()
        self.dense1 = nn.Linear(5 * 5 * 64, 128)
        self.dropout = nn.Dropout(dropout)
        self.dense2 = nn.Linear(128, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' initialisers: glorot_uniform kernels, zero biases, BN gamma 1 / beta 0."""
        for layer in (self.conv1, self.conv2, self.dense1, self.dense2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        for bn in (self.bn1, self.bn2):
            bn.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU in place: convolution and dense layers do not keep their output for backward,
        # so overwriting it saves a pass over memory and an allocation per layer.
        x = self.pool(self.bn1(torch.relu_(self.conv1(x))))
        x = self.pool(self.bn2(torch.relu_(self.conv2(x))))
        x = self.dropout(torch.relu_(self.dense1(self.flatten(x))))
        return self.dense2(x)


def keras_parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) counted as Keras does: BN moving statistics are weights.

    For :class:`MnistCNN`: (225226, 192), 225,418 in all.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    moving = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, frozen + moving
