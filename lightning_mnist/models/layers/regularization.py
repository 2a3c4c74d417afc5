"""Layers that act only in training, in torch: ``Dropout``, ``SpatialDropout2D``, ``SpatialDropout1D``,
``AlphaDropout``, ``GaussianNoise``, ``GaussianDropout``, ``ActivityRegularization`` (the identity: its penalty is the
network's, :meth:`~lightning_mnist.models.network.KerasNetwork.logits_and_activity_penalty`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_mnist.models.layers.layout import torch_shape
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Dropout)
def dropout(spec: keras.Dropout, shape: Shape) -> nn.Module:
    return nn.Dropout(spec.rate) if spec.noise_shape is None else ShapedDropout(spec, shape)


class ShapedDropout(nn.Module):
    """Keras' dropout with a ``noise_shape``: one mask of that shape (a null: the input's size there), in torch's
    layout, broadcast over the axes where it holds 1 (a whole sample or channel dropped), the survivors scaled by
    1 / (1 - rate)."""

    def __init__(self, spec: keras.Dropout, shape: Shape) -> None:
        super().__init__()
        self.rate = spec.rate
        self.mask_shape = torch_shape(tuple(size if noise is None else noise
                                            for noise, size in zip(spec.noise_shape[1:], shape)))
        self.per_batch = spec.noise_shape[0] == 1  # one mask for every sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = torch.rand(1 if self.per_batch else x.shape[0], *self.mask_shape, device=x.device) >= self.rate
        return x * keep.to(x.dtype) / (1.0 - self.rate)


@converter(keras.SpatialDropout2D)
def spatial_dropout_2d(spec: keras.SpatialDropout2D, shape: Shape) -> nn.Module:
    """Keras drops whole channels (noise shape (N, 1, 1, C)) and scales the rest by 1 / (1 - rate): on torch's
    (N, C, H, W), Dropout2d does both."""
    return nn.Dropout2d(spec.rate)


@converter(keras.SpatialDropout1D)
class SpatialDropout1D(nn.Module):
    """Keras drops whole features of a (steps, features) map (noise shape (N, 1, F)) and scales the rest by
    1 / (1 - rate): torch's Dropout1d does both on (N, features, steps), so the steps go last and back."""

    def __init__(self, spec: keras.SpatialDropout1D, shape: Shape) -> None:
        super().__init__()
        self.dropout = nn.Dropout1d(spec.rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x.transpose(1, 2)).transpose(1, 2) if self.training else x


@converter(keras.AlphaDropout)
def alpha_dropout(spec: keras.AlphaDropout, shape: Shape) -> nn.Module:
    """torch's AlphaDropout is Keras' formula: dropped values ``alpha' = -alpha * scale`` of SELU, then ``a * x + b``
    with ``a = ((1 - rate) * (1 + rate * alpha'^2)) ** -0.5`` and ``b = -a * alpha' * rate``."""
    return nn.AlphaDropout(spec.rate)


@converter(keras.GaussianNoise)
class GaussianNoise(nn.Module):
    """``x + N(0, stddev)`` in training, as Keras adds it; the identity otherwise (and in exported files)."""

    def __init__(self, spec: keras.GaussianNoise, shape: Shape) -> None:
        super().__init__()
        self.stddev = spec.stddev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) * self.stddev if self.training and self.stddev > 0 else x


@converter(keras.GaussianDropout)
class GaussianDropout(nn.Module):
    """``x * N(1, sqrt(rate / (1 - rate)))`` in training, as Keras multiplies it; the identity otherwise."""

    def __init__(self, spec: keras.GaussianDropout, shape: Shape) -> None:
        super().__init__()
        self.stddev = math.sqrt(spec.rate / (1.0 - spec.rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + torch.randn_like(x) * self.stddev) if self.training and self.stddev > 0 else x


@converter(keras.ActivityRegularization)
def activity_regularization(spec: keras.ActivityRegularization, shape: Shape) -> nn.Module:
    return nn.Identity()
