"""Convolutions in torch: ``Conv2D``.

Keras' ``padding="same"`` pads ``total // 2`` before and the rest after, so with an odd
total (stride > 1 or an even kernel) the extra row and column go at the bottom and right;
torch's symmetric ``padding=`` is used only where the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.activations import activate
from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape, same_padding

# Keras' kernel (kh, kw, in, out) is torch's (out, in, kh, kw).
KERNEL = WeightMap("weight", (3, 2, 0, 1))


def same_pads(shape: Shape, window: tuple[int, int], strides: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for Keras' "same" on an (H, W, C) input."""
    effective = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    (top, bottom), (left, right) = (same_padding(shape[0], effective[0], strides[0]),
                                    same_padding(shape[1], effective[1], strides[1]))
    return left, right, top, bottom


class Padded(nn.Module):
    """Keras' padding for a windowed op: torch's own symmetric ``padding`` where it agrees, F.pad otherwise."""

    def set_padding(self, shape: Shape, padding: str, window: tuple[int, int], strides: tuple[int, int],
                    dilation: tuple[int, int] = (1, 1)) -> None:
        left, right, top, bottom = same_pads(shape, window, strides, dilation) if padding == "same" \
            else (0, 0, 0, 0)
        symmetric = left == right and top == bottom
        self.padding = (top, left) if symmetric else (0, 0)
        self.pad = None if symmetric else (left, right, top, bottom)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pad is None else F.pad(x, self.pad)


@converter(keras.Conv2D, kernel=KERNEL, bias=WeightMap("bias"))
class Conv2D(Padded):
    def __init__(self, spec: keras.Conv2D, shape: Shape) -> None:
        super().__init__()
        self.stride, self.activation = spec.strides, spec.activation
        self.weight = nn.Parameter(torch.empty(spec.filters, shape[-1], *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None
        self.set_padding(shape, spec.padding, spec.kernel_size, spec.strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(F.conv2d(self.padded(x), self.weight, self.bias, self.stride, self.padding), self.activation)
