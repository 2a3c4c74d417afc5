"""Layers that act only in training, in torch: ``Dropout``."""

from __future__ import annotations

from torch import nn

from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Dropout)
def dropout(spec: keras.Dropout, shape: Shape) -> nn.Module:
    return nn.Dropout(spec.rate)
