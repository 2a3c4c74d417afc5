"""Preprocessing layers in torch: ``Rescaling``, ``Normalization``."""

from __future__ import annotations

import torch
from torch import nn

from lightning_mnist.models.layers.layout import to_torch_layout, torch_shape
from lightning_mnist.models.layers.registry import WeightMap, converter
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


@converter(keras.Normalization, mean=WeightMap("mean"), variance=WeightMap("variance"), count=WeightMap("count"))
class Normalization(nn.Module):
    """Keras' Normalization: ``(x - mean) / max(sqrt(variance), epsilon)`` as Keras computes it, the mean and
    variance reshaped into Keras' broadcast shape (as Keras reshapes them), then moved into torch's layout. Adapted
    values are buffers of the state dict in Keras' shape (the kept axes' sizes; ``count`` an int64 scalar, kept only
    to give it back); values given as settings are buffers outside it, already broadcast. None of them trains."""

    def __init__(self, spec: keras.Normalization, shape: Shape) -> None:
        super().__init__()
        self.keras_broadcast = spec.broadcast_shape(shape)
        self.invert = spec.invert
        if spec.mean is None:
            size = dict(spec.weights(shape))["mean"]
            self.register_buffer("mean", torch.empty(size))
            self.register_buffer("variance", torch.empty(size))
            self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        else:
            for name, value in zip(("mean", "variance"), spec.given_values(shape)):
                self.register_buffer(name, torch.tensor(value), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = to_torch_layout(self.mean.reshape(self.keras_broadcast))
        scale = torch.clamp_min(torch.sqrt(to_torch_layout(self.variance.reshape(self.keras_broadcast))),
                                keras.Normalization.EPSILON)
        return mean + x * scale if self.invert else (x - mean) / scale
