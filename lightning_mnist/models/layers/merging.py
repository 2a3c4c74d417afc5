"""Merge layers in torch: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Concatenate``.

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
