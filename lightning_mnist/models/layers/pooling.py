"""Pooling in torch: max and average over windows (Keras' "same" padding mirrored), and over the whole map.

Max pooling pads with -inf (padding never wins); average pooling with ``"same"`` does not
count the padded cells, as Keras does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.convolution import same_pads
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


class Pooling2D(nn.Module):
    """Window, stride and Keras' "same" padding (None when there is none to add) of a pooling layer."""

    def __init__(self, spec: keras.MaxPooling2D | keras.AveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.kernel, self.stride = spec.pool_size, spec.strides
        pad = same_pads(shape, spec.pool_size, spec.strides) if spec.padding == "same" else (0, 0, 0, 0)
        self.pad = pad if any(pad) else None


@converter(keras.MaxPooling2D)
class MaxPooling2D(Pooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


@converter(keras.AveragePooling2D)
class AveragePooling2D(Pooling2D):
    """With "same" padding, the sum over each window is divided by its count of real (unpadded) cells."""

    def __init__(self, spec: keras.AveragePooling2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        if self.pad is not None:
            cells = F.avg_pool2d(F.pad(torch.ones(1, 1, *shape[:2]), self.pad), self.kernel, self.stride)
            self.register_buffer("rescale", 1.0 / cells, persistent=False)  # window size / real cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is None:
            return F.avg_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride) * self.rescale


@converter(keras.GlobalAveragePooling2D)
class GlobalAveragePooling2D(nn.Module):
    def __init__(self, spec: keras.GlobalAveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.keepdims = spec.keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)


@converter(keras.GlobalMaxPooling2D)
class GlobalMaxPooling2D(GlobalAveragePooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3), keepdim=self.keepdims)
