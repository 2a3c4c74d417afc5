"""Keras' channels-last tensors in torch: how the two lay out the same values.

A Keras tensor of three axes besides the batch (H, W, C) is torch's (N, C, H, W) here, so
torch's convolutions and pooling run in their own layout; tensors of one or two axes are
the same in both. Layers that move values between axes (Reshape, Permute, Flatten,
Concatenate, a merge of different ranks) go through Keras' layout to do exactly what
Keras does.
"""

from __future__ import annotations

import torch

IMAGE_AXES = 3  # (H, W, C) in Keras, (C, H, W) in torch


def to_keras_layout(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == IMAGE_AXES + 1 else x


def to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == IMAGE_AXES + 1 else x


def torch_shape(keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape (no batch axis) of a Keras shape."""
    if len(keras_shape) == IMAGE_AXES:
        h, w, c = keras_shape
        return c, h, w
    return tuple(keras_shape)


def torch_axis(axis: int, rank: int) -> int:
    """The torch dimension (batch = 0) of non-batch Keras axis ``axis`` (0-based) of a ``rank``-axis tensor."""
    if rank == IMAGE_AXES:
        return (2, 3, 1)[axis]
    return axis + 1
