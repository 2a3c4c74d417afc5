"""Preprocessing layers in torch: ``Rescaling``, ``Normalization``, ``Resizing``, ``CenterCrop``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.layout import to_torch_layout, torch_shape
from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape
from mnist_common.architecture.layers.preprocessing import aspect_crop, aspect_padding


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


def resize(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear",
           antialias: bool = False) -> torch.Tensor:
    """``tf.image.resize`` of (N, C, H, W) maps: half-pixel centres, which are torch's ``align_corners=False``
    bilinear and its ``nearest-exact`` (torch's plain ``nearest`` rounds another way).

    Antialiased, one axis after the other (the kernel is separable, so this is the same resize): torch's kernel
    that does both at once is wrong for a one-channel map resized to one column (0.05-0.36 off TensorFlow's, where
    two passes agree within 2e-7)."""
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if antialias:
        x = F.interpolate(x, size=(size[0], x.shape[-1]), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def crop(x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, height, width = box
    return x[:, :, top:top + height, left:left + width]


@converter(keras.Resizing)
class Resizing(nn.Module):
    """Keras' Resizing: the aspect-ratio crop or padding the settings ask for (sizes from the description, as Keras
    computes them), then :func:`resize`."""

    def __init__(self, spec: keras.Resizing, shape: Shape) -> None:
        super().__init__()
        self.size, self.interpolation, self.antialias = spec.size, spec.interpolation, spec.antialias
        self.box = aspect_crop(shape[:2], spec.size) if spec.crop_to_aspect_ratio else None
        rows, columns = aspect_padding(shape[:2], spec.size) if spec.pad_to_aspect_ratio else (0, 0)
        self.padding, self.fill_value = (columns, columns, rows, rows), spec.fill_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.box is not None:
            x = crop(x, self.box)
        if any(self.padding):
            x = F.pad(x, self.padding, value=self.fill_value)
        return resize(x, self.size, self.interpolation, self.antialias)


@converter(keras.CenterCrop)
class CenterCrop(nn.Module):
    """Keras' CenterCrop: a slice where the image is large enough, else Keras' ``smart_resize`` (the aspect-ratio
    crop, then a bilinear resize)."""

    def __init__(self, spec: keras.CenterCrop, shape: Shape) -> None:
        super().__init__()
        self.size, height, width = spec.size, shape[0], shape[1]
        if spec.fits(shape):
            self.box, self.resized = ((height - spec.height) // 2, (width - spec.width) // 2, *spec.size), False
        else:
            self.box, self.resized = aspect_crop((height, width), spec.size), True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = crop(x, self.box)
        return resize(x, self.size) if self.resized else x
