"""Convolutions in torch: ``Conv2D`` (dilated, grouped), ``DepthwiseConv2D``, ``SeparableConv2D``, ``Conv2DTranspose``,
``Conv1D``, ``DepthwiseConv1D``, ``SeparableConv1D``, ``Conv1DTranspose``.

Keras' ``padding="same"`` pads ``total // 2`` before and the rest after, so with an odd
total (stride > 1 or an even kernel) the extra row and column go at the bottom and right;
torch's symmetric ``padding=`` is used only where the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.activations import activate, activation_of
from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape, same_padding
from mnist_common.architecture.layers.convolution import Convolution as ConvolutionSpec
from mnist_common.architecture.layers.convolution import effective_window

# Keras' kernel (kh, kw, in, out) is torch's (out, in, kh, kw); so is a grouped one's (kh, kw, in / groups, out).
KERNEL = WeightMap("weight", (3, 2, 0, 1))
# Keras' depthwise kernel (kh, kw, in, m) feeds output channel c * m + j from [:, :, c, j]: torch's grouped
# weight (in * m, 1, kh, kw) with groups=in, whose output channel c * m + j is in group c.
DEPTHWISE = WeightMap("depthwise", (2, 3, 0, 1), lambda s: (s[0] * s[1], 1, s[2], s[3]))
# Keras' transposed kernel (kh, kw, out, in) is torch's conv_transpose2d weight (in, out, kh, kw).
TRANSPOSED = WeightMap("weight", (3, 2, 0, 1))


def same_pads(shape: Shape, window: tuple[int, int], strides: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for Keras' "same" on an (H, W, C) input."""
    effective = effective_window(window, dilation)
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


class Convolution(Padded):
    """Stride, dilation, Keras' padding and activation of a description of the Convolution family."""

    def __init__(self, spec: ConvolutionSpec, shape: Shape) -> None:
        super().__init__()
        self.stride, self.dilation, self.activation = spec.strides, spec.dilation_rate, activation_of(spec, shape)
        self.set_padding(shape, spec.padding, spec.kernel_size, spec.strides, spec.dilation_rate)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
        return F.conv2d(self.padded(x), weight, bias, self.stride, self.padding, self.dilation, groups)


@converter(keras.Conv2D, kernel=KERNEL, bias=WeightMap("bias"))
class Conv2D(Convolution):
    def __init__(self, spec: keras.Conv2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.groups = spec.groups
        self.weight = nn.Parameter(torch.empty(spec.filters, shape[-1] // spec.groups, *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.conv(x, self.weight, self.bias, self.groups), self.activation)


class Depthwise(Convolution):
    """The depthwise weight (one group per input channel) that DepthwiseConv2D and SeparableConv2D share."""

    def __init__(self, spec: keras.DepthwiseConv2D | keras.SeparableConv2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.groups = shape[-1]
        self.depthwise = nn.Parameter(torch.empty(shape[-1] * spec.depth_multiplier, 1, *spec.kernel_size))


@converter(keras.DepthwiseConv2D, kernel=DEPTHWISE, bias=WeightMap("bias"))
class DepthwiseConv2D(Depthwise):
    def __init__(self, spec: keras.DepthwiseConv2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.bias = nn.Parameter(torch.empty(shape[-1] * spec.depth_multiplier)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activate(self.conv(x, self.depthwise, self.bias, self.groups), self.activation)


@converter(keras.SeparableConv2D, depthwise_kernel=DEPTHWISE, pointwise_kernel=WeightMap("pointwise", (3, 2, 0, 1)),
           bias=WeightMap("bias"))
class SeparableConv2D(Depthwise):
    def __init__(self, spec: keras.SeparableConv2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.pointwise = nn.Parameter(torch.empty(spec.filters, shape[-1] * spec.depth_multiplier, 1, 1))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depthwise = self.conv(x, self.depthwise, None, self.groups)
        return activate(F.conv2d(depthwise, self.pointwise, self.bias), self.activation)


@converter(keras.Conv2DTranspose, kernel=TRANSPOSED, bias=WeightMap("bias"))
class Conv2DTranspose(nn.Module):
    """torch's full transposed convolution ((n - 1) * s + k cells), placed in Keras' output: F.pad with
    negative amounts cuts "same" padding's share before and whatever passes the end, positive ones add
    the zeros Keras' ``output_padding`` asks for; the bias comes after, on every cell, as in Keras."""

    def __init__(self, spec: keras.Conv2DTranspose, shape: Shape) -> None:
        super().__init__()
        self.stride, self.dilation, self.activation = spec.strides, spec.dilation_rate, activation_of(spec, shape)
        self.weight = nn.Parameter(torch.empty(shape[-1], spec.filters, *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None
        (top, bottom), (left, right) = (spec.placement(size, axis) for axis, size in enumerate(shape[:2]))
        self.pad = (-left, right, -top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(F.conv_transpose2d(x, self.weight, None, self.stride, dilation=self.dilation), self.pad)
        return activate(x if self.bias is None else x + self.bias[:, None, None], self.activation)


# Keras' 1D depthwise kernel (k, in, m) is torch's grouped conv1d weight (in * m, 1, k), channel c * m + j from
# [:, c, j] as in 2D; the pointwise kernel (1, in * m, filters) is torch's (filters, in * m, 1).
DEPTHWISE_1D = WeightMap("depthwise", (1, 2, 0), lambda s: (s[0] * s[1], 1, s[2]))


class Steps(nn.Module):
    """The steps of a (N, steps, features) map moved last for ``F.conv1d`` (and back), padded as Keras pads them."""

    def __init__(self, spec: keras.Conv1D | keras.DepthwiseConv1D | keras.SeparableConv1D, shape: Shape) -> None:
        super().__init__()
        self.stride, self.dilation, self.activation = spec.strides, spec.dilation_rate, activation_of(spec, shape)
        self.pad = spec.padding_amounts(shape[0])

    def steps_last(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x.transpose(1, 2), self.pad) if any(self.pad) else x.transpose(1, 2)


@converter(keras.Conv1D, kernel=WeightMap("weight", (2, 1, 0)), bias=WeightMap("bias"))
class Conv1D(Steps):
    """Keras' (steps, features) map is torch's (N, steps, features) here, as every two-axis tensor: the steps go to
    the last axis for ``F.conv1d`` and back; Keras' kernel (k, in / groups, filters) is torch's (filters, in /
    groups, k). Padding as Keras pads, "causal" only before."""

    def __init__(self, spec: keras.Conv1D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.groups = spec.groups
        self.weight = nn.Parameter(torch.empty(spec.filters, shape[-1] // spec.groups, *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(self.steps_last(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return activate(x.transpose(1, 2), self.activation)


@converter(keras.DepthwiseConv1D, kernel=DEPTHWISE_1D, bias=WeightMap("bias"))
class DepthwiseConv1D(Steps):
    def __init__(self, spec: keras.DepthwiseConv1D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.groups = shape[-1]
        self.depthwise = nn.Parameter(torch.empty(shape[-1] * spec.depth_multiplier, 1, *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(shape[-1] * spec.depth_multiplier)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(self.steps_last(x), self.depthwise, self.bias, self.stride, 0, self.dilation, self.groups)
        return activate(x.transpose(1, 2), self.activation)


@converter(keras.SeparableConv1D, depthwise_kernel=DEPTHWISE_1D, pointwise_kernel=WeightMap("pointwise", (2, 1, 0)),
           bias=WeightMap("bias"))
class SeparableConv1D(Steps):
    def __init__(self, spec: keras.SeparableConv1D, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.groups = shape[-1]
        self.depthwise = nn.Parameter(torch.empty(shape[-1] * spec.depth_multiplier, 1, *spec.kernel_size))
        self.pointwise = nn.Parameter(torch.empty(spec.filters, shape[-1] * spec.depth_multiplier, 1))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(self.steps_last(x), self.depthwise, None, self.stride, 0, self.dilation, self.groups)
        return activate(F.conv1d(x, self.pointwise, self.bias).transpose(1, 2), self.activation)


@converter(keras.Conv1DTranspose, kernel=WeightMap("weight", (2, 1, 0)), bias=WeightMap("bias"))
class Conv1DTranspose(nn.Module):
    """Conv2DTranspose's placement along the steps: Keras' kernel (k, filters, in) is torch's conv_transpose1d weight
    (in, filters, k)."""

    def __init__(self, spec: keras.Conv1DTranspose, shape: Shape) -> None:
        super().__init__()
        self.stride, self.dilation, self.activation = spec.strides, spec.dilation_rate, activation_of(spec, shape)
        self.weight = nn.Parameter(torch.empty(shape[-1], spec.filters, *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None
        before, after = spec.placement(shape[0], 0)
        self.pad = (-before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(F.conv_transpose1d(x.transpose(1, 2), self.weight, None, self.stride, dilation=self.dilation),
                  self.pad)
        return activate((x if self.bias is None else x + self.bias[:, None]).transpose(1, 2), self.activation)
