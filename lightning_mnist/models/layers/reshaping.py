"""Layers that move values without computing new ones, in torch: ``Flatten``."""

from __future__ import annotations

import torch
from torch import nn

from lightning_mnist.models.layers.layout import to_keras_layout
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Flatten)
class Flatten(nn.Module):
    """Keras' Flatten: (h, w, c) order out; a free view on channels-last memory."""

    def __init__(self, spec: keras.Flatten, shape: Shape) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_keras_layout(x).flatten(1)
