"""Normalisation in torch: ``BatchNormalization`` over the channel axis, ``LayerNormalization``, ``RMSNormalization``,
``GroupNormalization``, ``UnitNormalization``.

Layer and group normalisation compute as Keras does, not with torch's fused kernels: the
moments as ``tf.nn.moments`` takes them (the mean, then the mean squared difference from it),
then ``x * inv + (beta - mean * inv)`` with ``inv = gamma / sqrt(variance + epsilon)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.layout import to_torch_layout, torch_axis
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
        self.frozen = not spec.trainable  # Keras normalises a frozen layer with its moving statistics in training too
        self.weight = nn.Parameter(torch.empty(channels)) if spec.scale else None
        self.bias = nn.Parameter(torch.empty(channels)) if spec.center else None
        self.register_buffer("running_mean", torch.empty(channels))
        self.register_buffer("running_var", torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.last_axis_moved:
            return self.normalise(x.transpose(1, 2)).transpose(1, 2)
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.frozen:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        # Keras moves its statistics towards the batch's variance as the batch has it (torch's running_var takes the
        # unbiased one: 3 % larger for a Dense layer's batch of 32), so they are moved here, outside autograd, from
        # the statistics the normalisation computed (its inverse deviation: 1 / sqrt(variance + eps)); computing
        # them again doubled the layer's time, and the notebook's epoch took 75 % longer
        out, mean, inverse = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
        with torch.no_grad():
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_((inverse.double().pow(-2) - self.eps).to(self.running_var.dtype), self.momentum)
        return out


def keras_normalise(x: torch.Tensor, dims: tuple[int, ...], gamma: torch.Tensor | None, beta: torch.Tensor | None,
                    epsilon: float) -> torch.Tensor:
    """Keras' ``(x - mean) / sqrt(variance + epsilon) * gamma + beta`` over ``dims``, in Keras' order of operations."""
    mean = x.mean(dims, keepdim=True)
    inv = torch.rsqrt((x - mean).square().mean(dims, keepdim=True) + epsilon)
    if gamma is not None:
        inv = inv * gamma
    shift = -mean * inv
    if beta is not None:
        shift = shift + beta
    return x * inv + shift


@converter(keras.UnitNormalization)
class UnitNormalization(nn.Module):
    """Keras' ``ops.normalize(x, order=2, epsilon=1e-12)``: ``x * min(rsqrt(sum(x ** 2)), 1 / epsilon)`` over its
    axes (an all-zero example stays zero)."""

    INVERSE_EPSILON = 1e12

    def __init__(self, spec: keras.UnitNormalization, shape: Shape) -> None:
        super().__init__()
        self.dims = tuple(torch_axis(p, len(shape)) for p in spec.positions(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().sum(self.dims, keepdim=True)).clamp(max=self.INVERSE_EPSILON)


@converter(keras.LayerNormalization, gamma=WeightMap("weight"), beta=WeightMap("bias"))
class LayerNormalization(nn.Module):
    """Keras' LayerNormalization over any of its axes: gamma and beta keep Keras' shape and are reshaped into
    Keras' layout (as Keras reshapes them), then moved into torch's."""

    def __init__(self, spec: keras.LayerNormalization, shape: Shape) -> None:
        super().__init__()
        rank, positions = len(shape), spec.positions(shape)
        self.dims = tuple(torch_axis(p, rank) for p in positions)
        self.keras_broadcast = tuple(shape[p - 1] if p - 1 in positions else 1 for p in range(rank + 1))
        self.eps, self.rms_scaling = spec.epsilon, spec.rms_scaling
        size = tuple(shape[p] for p in positions)
        names = dict(spec.weights(shape))
        self.weight = nn.Parameter(torch.empty(size)) if "gamma" in names else None
        self.bias = nn.Parameter(torch.empty(size)) if "beta" in names else None

    def broadcast(self, value: torch.Tensor | None) -> torch.Tensor | None:
        return None if value is None else to_torch_layout(value.reshape(self.keras_broadcast))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.broadcast(self.weight), self.broadcast(self.bias)
        if self.rms_scaling:  # Keras' deprecated option: the variance about the mean, but the mean is kept
            return x * torch.rsqrt(x.var(self.dims, correction=0, keepdim=True) + self.eps) * gamma
        return keras_normalise(x, self.dims, gamma, beta, self.eps)


@converter(keras.RMSNormalization, scale=WeightMap("weight"))
class RMSNormalization(nn.Module):
    """Keras' ``x * rsqrt(mean(x ** 2) + epsilon) * scale`` over its (last) axes; the scale, in Keras' shape, is
    broadcast over Keras' layout (its last axes) and moved into torch's."""

    def __init__(self, spec: keras.RMSNormalization, shape: Shape) -> None:
        super().__init__()
        rank, positions = len(shape), spec.positions(shape)
        self.dims = tuple(torch_axis(p, rank) for p in positions)
        size = tuple(shape[p] for p in positions)
        self.keras_broadcast = (1,) * (rank + 1 - len(size)) + size
        self.eps = spec.epsilon
        self.weight = nn.Parameter(torch.empty(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = to_torch_layout(self.weight.reshape(self.keras_broadcast))
        return x * torch.rsqrt(x.square().mean(self.dims, keepdim=True) + self.eps) * scale


@converter(keras.GroupNormalization, gamma=WeightMap("weight"), beta=WeightMap("bias"))
class GroupNormalization(nn.Module):
    """Keras' GroupNormalization: the channel axis split into (groups, channels per group), as Keras splits it
    (consecutive channels form a group, as in torch's group_norm), normalised over all but the batch and groups."""

    def __init__(self, spec: keras.GroupNormalization, shape: Shape) -> None:
        super().__init__()
        rank, channels, self.groups = len(shape), shape[-1], spec.groups_of(shape)
        self.channel_dim = torch_axis(rank - 1, rank)  # 1 on a map, the last axis otherwise
        self.dims = tuple(d for d in range(1, rank + 2) if d != self.channel_dim)
        self.grouped = [1] * (rank + 2)  # how gamma and beta broadcast over the grouped input
        self.grouped[self.channel_dim:self.channel_dim + 2] = [self.groups, channels // self.groups]
        self.eps = spec.epsilon
        self.weight = nn.Parameter(torch.empty(channels)) if spec.scale else None
        self.bias = nn.Parameter(torch.empty(channels)) if spec.center else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.unflatten(self.channel_dim, (self.groups, -1))
        gamma = None if self.weight is None else self.weight.view(self.grouped)
        beta = None if self.bias is None else self.bias.view(self.grouped)
        return keras_normalise(grouped, self.dims, gamma, beta, self.eps).flatten(self.channel_dim,
                                                                                  self.channel_dim + 1)
