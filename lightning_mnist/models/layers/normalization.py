"""Normalisation in torch: ``BatchNormalization`` over the channel axis."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


@converter(keras.BatchNormalization, gamma=WeightMap("weight"), beta=WeightMap("bias"),
           moving_mean=WeightMap("running_mean"), moving_variance=WeightMap("running_var"))
class BatchNormalization(nn.Module):
    """Keras' BatchNormalization over channels (the last axis): ``momentum`` here is 1 - Keras' (torch weighs the
    new batch). torch normalises dimension 1, which is the channels of an image or a vector; an (H, W) input's
    last axis is moved there and back."""

    def __init__(self, spec: keras.BatchNormalization, shape: Shape) -> None:
        super().__init__()
        channels = shape[-1]
        self.last_axis_moved = len(shape) == 2
        self.momentum, self.eps = 1.0 - spec.momentum, spec.epsilon
        self.weight = nn.Parameter(torch.empty(channels)) if spec.scale else None
        self.bias = nn.Parameter(torch.empty(channels)) if spec.center else None
        self.register_buffer("running_mean", torch.empty(channels))
        self.register_buffer("running_var", torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.last_axis_moved:
            return self.normalise(x.transpose(1, 2)).transpose(1, 2)
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)
