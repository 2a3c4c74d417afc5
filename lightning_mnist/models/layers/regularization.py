"""Layers that act only in training, in torch: ``Dropout``, ``SpatialDropout2D``."""

from __future__ import annotations

from torch import nn

from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Dropout)
def dropout(spec: keras.Dropout, shape: Shape) -> nn.Module:
    return nn.Dropout(spec.rate)


@converter(keras.SpatialDropout2D)
def spatial_dropout_2d(spec: keras.SpatialDropout2D, shape: Shape) -> nn.Module:
    """Keras drops whole channels (noise shape (N, 1, 1, C)) and scales the rest by 1 / (1 - rate): on torch's
    (N, C, H, W), Dropout2d does both."""
    return nn.Dropout2d(spec.rate)
