"""Keras' core layers in torch: ``Dense`` (on the last axis of any input, as Keras applies it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.activations import activate, activation_of
from lightning_mnist.models.layers.layout import IMAGE_AXES
from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Dense, kernel=WeightMap("weight", (1, 0)), bias=WeightMap("bias"))
class Dense(nn.Module):
    """Kernel (in, out) is torch's (out, in); no row reordering is needed after Flatten, which reads
    (h, w, c) as Keras does. On an (H, W, C) map it works on the channel axis."""

    def __init__(self, spec: keras.Dense, shape: Shape) -> None:
        super().__init__()
        self.activation, self.on_image = activation_of(spec, shape), len(shape) == IMAGE_AXES
        self.weight = nn.Parameter(torch.empty(spec.units, shape[-1]))
        self.bias = nn.Parameter(torch.empty(spec.units)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_image:  # Keras' Dense works on the last (channel) axis of an NHWC map
            return activate(F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2),
                            self.activation)
        return activate(F.linear(x, self.weight, self.bias), self.activation)
