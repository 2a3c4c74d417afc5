"""Preprocessing layers in torch: ``Rescaling``."""

from __future__ import annotations

import torch
from torch import nn

from lightning_mnist.models.layers.layout import torch_shape
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.Rescaling)
class Rescaling(nn.Module):
    """``x * scale + offset`` in float32, as Keras computes it. A per-channel list is held in torch's layout of
    Keras' broadcast shape (1, ..., 1, channels): (C, 1, 1) on a map, so it meets the channel axis there too.
    The factors are settings, not weights: their buffers stay out of the state dict."""

    def __init__(self, spec: keras.Rescaling, shape: Shape) -> None:
        super().__init__()
        for setting in ("scale", "offset"):
            value = torch.tensor(getattr(spec, setting), dtype=torch.float32)
            if value.dim():
                value = value.reshape(torch_shape((1,) * (len(shape) - 1) + (len(value),)))
            self.register_buffer(setting, value, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset
