"""Layers that move values without computing new ones, in torch: ``Flatten``, ``Reshape``, ``Permute``,
``RepeatVector``, ``ZeroPadding2D``, ``Cropping2D``, ``UpSampling2D``; ``Identity``; and the 1D kinds ``ZeroPadding1D``,
``Cropping1D``, ``UpSampling1D`` along the steps of a (N, steps, features) map, the same layout in both.

Reshape and Permute work in Keras' layout (:mod:`.layout`), so every value lands where Keras
puts it whatever the ranks before and after; the image layers work on torch's (N, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.layout import to_keras_layout, to_torch_layout
from lightning_mnist.models.layers.preprocessing import resize
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


@converter(keras.Reshape)
class Reshape(nn.Module):
    """Keras' row-major reshape of its channels-last values, then back to torch's layout."""

    def __init__(self, spec: keras.Reshape, shape: Shape) -> None:
        super().__init__()
        self.target = spec.output_shape(shape)  # Keras' -1 resolved, so the batch axis can be torch's -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch_layout(to_keras_layout(x).reshape(-1, *self.target))


@converter(keras.Permute)
class Permute(nn.Module):
    """Keras' transpose of its axes (``dims`` counts them from 1, so the batch axis 0 stays first)."""

    def __init__(self, spec: keras.Permute, shape: Shape) -> None:
        super().__init__()
        self.dims = (0, *spec.dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch_layout(to_keras_layout(x).permute(self.dims))


@converter(keras.RepeatVector)
class RepeatVector(nn.Module):
    """(N, features) to (N, n, features): the steps of a map, in the layout both frameworks share."""

    def __init__(self, spec: keras.RepeatVector, shape: Shape) -> None:
        super().__init__()
        self.n = spec.n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1).expand(-1, self.n, -1)


@converter(keras.ZeroPadding2D)
class ZeroPadding2D(nn.Module):
    def __init__(self, spec: keras.ZeroPadding2D, shape: Shape) -> None:
        super().__init__()
        (top, bottom), (left, right) = spec.padding
        self.pad = (left, right, top, bottom)  # F.pad lists the last axis (width) first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)


@converter(keras.Cropping2D)
class Cropping2D(nn.Module):
    def __init__(self, spec: keras.Cropping2D, shape: Shape) -> None:
        super().__init__()
        (top, bottom), (left, right) = spec.cropping
        self.rows, self.columns = slice(top, shape[0] - bottom), slice(left, shape[1] - right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.rows, self.columns]


@converter(keras.UpSampling2D)
class UpSampling2D(nn.Module):
    """"nearest" repeats each row and column (Keras' ``ops.repeat``); "bilinear" is ``tf.image.resize``'s:
    half-pixel centres with the edges clamped (``align_corners=False``), no antialiasing."""

    def __init__(self, spec: keras.UpSampling2D, shape: Shape) -> None:
        super().__init__()
        self.size, self.bilinear = spec.size, spec.interpolation == "bilinear"
        self.out = spec.output_shape(shape)[:2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            return resize(x, self.out)
        return x.repeat_interleave(self.size[0], dim=2).repeat_interleave(self.size[1], dim=3)


@converter(keras.Identity)
def identity(spec: keras.Identity, shape: Shape) -> nn.Module:
    return nn.Identity()


@converter(keras.ZeroPadding1D)
class ZeroPadding1D(nn.Module):
    def __init__(self, spec: keras.ZeroPadding1D, shape: Shape) -> None:
        super().__init__()
        self.pad = (0, 0, *spec.padding)  # F.pad lists the last axis (features) first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)


@converter(keras.Cropping1D)
class Cropping1D(nn.Module):
    def __init__(self, spec: keras.Cropping1D, shape: Shape) -> None:
        super().__init__()
        before, after = spec.cropping
        self.steps = slice(before, shape[0] - after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.steps]


@converter(keras.UpSampling1D)
class UpSampling1D(nn.Module):
    def __init__(self, spec: keras.UpSampling1D, shape: Shape) -> None:
        super().__init__()
        self.size = spec.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.size, dim=1)
