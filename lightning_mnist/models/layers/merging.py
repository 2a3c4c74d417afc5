"""Merge layers in torch: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Concatenate``;
and ``Dot``.

Inputs of one rank broadcast in torch's layout as they do in Keras' (the same axes,
permuted alike). Inputs of different ranks are aligned first as Keras aligns them: in
Keras' layout, with size-1 axes added after the batch axis. Each merge folds its inputs
left to right, as Keras does (an average is their sum divided by their number).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from lightning_mnist.models.layers.layout import (
    to_keras_layout,
    to_torch_layout,
    torch_axis,
)
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


def aligned(x: torch.Tensor, rank: int) -> torch.Tensor:
    """``x`` with size-1 axes added after the batch axis, in Keras' layout, up to ``rank`` non-batch axes.

    Added one ``unsqueeze`` at a time, not by a reshape to ``len(x)``: that would fix the batch size
    in a traced or exported graph (``torch.export`` refused the dynamic batch of a ``.pt2``).
    """
    keras_x = to_keras_layout(x)
    for _ in range(rank + 1 - keras_x.dim()):
        keras_x = keras_x.unsqueeze(1)
    return to_torch_layout(keras_x)


class ElementwiseMerge(nn.Module):
    operation = staticmethod(torch.add)

    def __init__(self, spec: keras.Layer, *shapes: Shape) -> None:
        super().__init__()
        ranks = {len(shape) for shape in shapes}
        self.rank = None if len(ranks) == 1 else max(ranks)  # None: no alignment needed

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.rank is not None:
            xs = tuple(aligned(x, self.rank) for x in xs)
        return functools.reduce(self.operation, xs)


@converter(keras.Add)
class Add(ElementwiseMerge):
    operation = staticmethod(torch.add)


@converter(keras.Subtract)
class Subtract(ElementwiseMerge):
    operation = staticmethod(torch.sub)


@converter(keras.Multiply)
class Multiply(ElementwiseMerge):
    operation = staticmethod(torch.mul)


@converter(keras.Maximum)
class Maximum(ElementwiseMerge):
    operation = staticmethod(torch.maximum)


@converter(keras.Minimum)
class Minimum(ElementwiseMerge):
    operation = staticmethod(torch.minimum)


@converter(keras.Average)
class Average(ElementwiseMerge):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return super().forward(*xs) / len(xs)


@converter(keras.Concatenate)
class Concatenate(nn.Module):
    def __init__(self, spec: keras.Concatenate, *shapes: Shape) -> None:
        super().__init__()
        rank = len(shapes[0])
        self.dim = torch_axis(spec.tensor_axis(rank), rank)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


@converter(keras.Dot)
class Dot(nn.Module):
    """Keras' ``batch_dot`` of two (features,) or (steps, features) inputs (laid out alike in both frameworks): the
    contracted axis of each moved last, one matrix product an example, a vector's axis of 1 dropped again."""

    INVERSE_EPSILON = 1e7  # Keras' normalize: x * min(rsqrt(sum(x ** 2)), 1 / epsilon), its backend's epsilon 1e-7

    def __init__(self, spec: keras.Dot, *shapes: Shape) -> None:
        super().__init__()
        first, second = spec.contracted(*shapes)
        self.axes = (first + 1, second + 1)  # after the batch axis
        self.vectors = (len(shapes[0]) == 1, len(shapes[1]) == 1)
        self.normalize = spec.normalize

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x, y = (t * torch.rsqrt(t.square().sum(axis, keepdim=True)).clamp(max=self.INVERSE_EPSILON)
                    for t, axis in zip((x, y), self.axes))
        x, y = x.movedim(self.axes[0], -1), y.movedim(self.axes[1], -1)
        x = x.unsqueeze(1) if self.vectors[0] else x  # (N, s, d)
        y = y.unsqueeze(1) if self.vectors[1] else y  # (N, t, d)
        out = torch.matmul(x, y.transpose(1, 2))  # (N, s, t)
        if self.vectors[1]:
            return out.squeeze(-1)  # (N, s), or (N, 1) for two vectors
        return out.squeeze(1) if self.vectors[0] else out
