"""Pooling in torch: max and average over windows (Keras' "same" padding mirrored), over the whole map, and over
adaptive bins; the 1D kinds as 2D pooling of a (N, features, 1, steps) view of the (N, steps, features) map.

Max pooling pads with -inf (padding never wins); average pooling with ``"same"`` does not
count the padded cells, as Keras does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.convolution import same_pads
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


class Pooling2D(nn.Module):
    """Window, stride and Keras' "same" padding (None when there is none to add) of a pooling layer."""

    def __init__(self, spec: keras.MaxPooling2D | keras.AveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.kernel, self.stride = spec.pool_size, spec.strides
        pad = same_pads(shape, spec.pool_size, spec.strides) if spec.padding == "same" else (0, 0, 0, 0)
        self.pad = pad if any(pad) else None


@converter(keras.MaxPooling2D)
class MaxPooling2D(Pooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


@converter(keras.AveragePooling2D)
class AveragePooling2D(Pooling2D):
    """With "same" padding, the sum over each window is divided by its count of real (unpadded) cells."""

    def __init__(self, spec: keras.AveragePooling2D, shape: Shape) -> None:
        super().__init__(spec, shape)
        if self.pad is not None:
            cells = F.avg_pool2d(F.pad(torch.ones(1, 1, *shape[:2]), self.pad), self.kernel, self.stride)
            self.register_buffer("rescale", 1.0 / cells, persistent=False)  # window size / real cells

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is None:
            return F.avg_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride) * self.rescale


@converter(keras.GlobalAveragePooling2D)
class GlobalAveragePooling2D(nn.Module):
    def __init__(self, spec: keras.GlobalAveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.keepdims = spec.keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)


@converter(keras.GlobalMaxPooling2D)
class GlobalMaxPooling2D(GlobalAveragePooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3), keepdim=self.keepdims)


class Along1D(nn.Module):
    """A 2D pooling module run on a (steps, features) map: viewed as an image one row high, whose width is the
    steps and whose channels are the features (Keras pads and windows the steps as it does a row)."""

    def __init__(self, pooling: nn.Module) -> None:
        super().__init__()
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooling(x.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)


def as_2d(spec: keras.MaxPooling1D | keras.AveragePooling1D, kind: type) -> keras.MaxPooling2D:
    """The 2D description of a 1D pooling along a row of height 1."""
    return kind(pool_size=(1, *spec.pool_size), strides=(1, *spec.strides), padding=spec.padding)


@converter(keras.MaxPooling1D)
def max_pooling_1d(spec: keras.MaxPooling1D, shape: Shape) -> nn.Module:
    return Along1D(MaxPooling2D(as_2d(spec, keras.MaxPooling2D), (1, shape[0], shape[1])))


@converter(keras.AveragePooling1D)
def average_pooling_1d(spec: keras.AveragePooling1D, shape: Shape) -> nn.Module:
    return Along1D(AveragePooling2D(as_2d(spec, keras.AveragePooling2D), (1, shape[0], shape[1])))


@converter(keras.GlobalAveragePooling1D)
class GlobalAveragePooling1D(GlobalAveragePooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=self.keepdims)


@converter(keras.GlobalMaxPooling1D)
class GlobalMaxPooling1D(GlobalAveragePooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(1, keepdim=self.keepdims)


def adaptive_bins(size: int, count: int) -> list[tuple[int, int]]:
    """The (start, end) of each of ``count`` adaptive bins over ``size`` cells: ``floor(i * size / count)`` to
    ``ceil((i + 1) * size / count)``, PyTorch's and Keras' bins."""
    return [(i * size // count, -(-(i + 1) * size // count)) for i in range(count)]


class AdaptivePooling(nn.Module):
    """Adaptive pooling as Keras computes it, one axis after the other: every bin holds ``k = ceil(size / count)`` or
    ``k + 1`` cells, so a pooling of windows of ``k`` and one of ``k + 1`` (stride 1) along the axis, side by side,
    hold every bin's value, which one gather picks (a bin starting at ``s`` is window ``s`` of its width). Two
    poolings and a gather whatever the count of bins, in operations every export format takes (torch's adaptive
    pooling exports to ONNX only where the bins divide the map). ``axes``: the NCHW axes pooled, 2 and 3 (a 1D
    pooling's steps are the width of :class:`Along1D`'s one-row view, 3)."""

    def __init__(self, spec: keras.AdaptiveAveragePooling2D | keras.AdaptiveMaxPooling2D, shape: Shape,
                 axes: tuple[int, ...]) -> None:
        super().__init__()
        self.pool = F.max_pool2d if isinstance(spec, keras.AdaptiveMaxPooling2D) else F.avg_pool2d
        self.steps = []
        for axis, size, count in zip(axes, shape, spec.output_size):
            small = -(-size // count)
            picks = [start + (size - small + 1 if end - start > small else 0)  # past the small windows' outputs
                     for start, end in adaptive_bins(size, count)]
            self.register_buffer(f"picks_{axis}", torch.tensor(picks), persistent=False)
            self.steps.append((axis, small))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis, small in self.steps:
            windows = [(width, 1) if axis == 2 else (1, width) for width in (small, small + 1)]
            pooled = torch.cat([self.pool(x, window, stride=1) for window in windows], axis)
            x = pooled.index_select(axis, getattr(self, f"picks_{axis}"))
        return x


@converter(keras.AdaptiveAveragePooling2D)
@converter(keras.AdaptiveMaxPooling2D)
def adaptive_pooling_2d(spec: keras.AdaptiveAveragePooling2D, shape: Shape) -> nn.Module:
    return AdaptivePooling(spec, shape, (2, 3))


@converter(keras.AdaptiveAveragePooling1D)
@converter(keras.AdaptiveMaxPooling1D)
def adaptive_pooling_1d(spec: keras.AdaptiveAveragePooling1D, shape: Shape) -> nn.Module:
    return Along1D(AdaptivePooling(spec, shape, (3,)))  # the steps as the width of a one-row image
