"""Image augmentation layers in torch: ``RandomFlip``, ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``,
``RandomContrast``, ``RandomBrightness``.

Each is the identity outside training (so in every exported file). In training it draws one
transformation per image from torch's generator, as Keras draws its own: the same distribution,
not the same numbers. The warps are Keras' ``affine_transform``: an output pixel at integer
coordinates (x, y) reads the input at ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, with the matrices
Keras' layers build. ``grid_sample`` reads there without aligning corners, which puts pixel centres
where Keras has them and reflects about the image's edges as Keras' ``reflect`` does (d c b a | a b
c d); ``nearest`` clamps, and ``constant`` reads ``fill_value`` outside (zeros around the image,
shifted by it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape

PADDING_MODES = {"reflect": "reflection", "constant": "zeros", "nearest": "border"}


def uniform(bounds: tuple[float, float], count: int, device: torch.device) -> torch.Tensor:
    """``count`` draws from [lower, upper] (exactly ``lower`` when the two are equal), float32."""
    lower, upper = bounds
    return lower + (upper - lower) * torch.rand(count, device=device)


@converter(keras.RandomFlip)
class RandomFlip(nn.Module):
    """Each image flipped with probability 1/2 (one draw per image, also for ``horizontal_and_vertical``)."""

    def __init__(self, spec: keras.RandomFlip, shape: Shape) -> None:
        super().__init__()
        # torch's (N, C, H, W): width is dimension 3, height 2
        self.dims = {"horizontal": (3,), "vertical": (2,), "horizontal_and_vertical": (2, 3)}[spec.mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        flips = torch.rand(x.shape[0], 1, 1, 1, device=x.device) <= 0.5
        return torch.where(flips, x.flip(self.dims), x)


class ImageWarp(nn.Module):
    """Keras' ``affine_transform`` of each image in training by the matrices :meth:`matrices` draws."""

    def __init__(self, spec: keras.ImageWarp, shape: Shape) -> None:
        super().__init__()
        self.spec = spec
        self.padding_mode = PADDING_MODES[spec.fill_mode]
        self.fill_value = spec.fill_value if spec.fill_mode == "constant" else 0.0

    def matrices(self, count: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(count, 2, 3): output pixel (x, y, 1) -> the input pixel it reads, Keras' (a0 a1 a2; b0 b1 b2)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        # in float32 whatever x is (bfloat16 under autocast): coordinates need its precision, as in Keras
        n, _, height, width = x.shape
        m = self.matrices(n, height, width, x.device).float()
        ys, xs = torch.meshgrid(torch.arange(height, device=x.device, dtype=torch.float32),
                                torch.arange(width, device=x.device, dtype=torch.float32), indexing="ij")
        points = torch.stack((xs, ys, torch.ones_like(xs)), dim=-1).reshape(1, -1, 3)  # (1, H*W, 3)
        read = (points @ m.transpose(1, 2)).reshape(n, height, width, 2)  # input (x, y) of each output pixel
        # pixel coordinates -> grid_sample's [-1, 1], corners not aligned: pixel i's centre is (2i + 1) / size - 1
        grid = (2 * read + 1) / torch.tensor([width, height], device=x.device, dtype=torch.float32) - 1
        out = F.grid_sample(x.float() - self.fill_value, grid, mode=self.spec.interpolation,
                            padding_mode=self.padding_mode, align_corners=False)
        return (out + self.fill_value).to(x.dtype)


def _affine(a0, a1, a2, b0, b1, b2) -> torch.Tensor:
    return torch.stack((torch.stack((a0, a1, a2), dim=-1), torch.stack((b0, b1, b2), dim=-1)), dim=1)


@converter(keras.RandomRotation)
class RandomRotation(ImageWarp):
    """An angle of ``factor`` x 360 degrees about the centre ((W - 1) / 2, (H - 1) / 2), Keras' matrix."""

    def matrices(self, count, height, width, device):
        angle = uniform(self.spec.factor, count, device) * (2 * math.pi)
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        return _affine(cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)


@converter(keras.RandomZoom)
class RandomZoom(ImageWarp):
    """Reads ``1 + z`` times the height and width about the centre (z drawn per axis, or once for both)."""

    def matrices(self, count, height, width, device):
        zoom_y = 1 + uniform(self.spec.height_factor, count, device)
        zoom_x = zoom_y if self.spec.width_factor is None else 1 + uniform(self.spec.width_factor, count, device)
        zero = torch.zeros_like(zoom_y)
        return _affine(zoom_x, zero, (width - 1) / 2 * (1 - zoom_x), zero, zoom_y, (height - 1) / 2 * (1 - zoom_y))


@converter(keras.RandomTranslation)
class RandomTranslation(ImageWarp):
    """Moves each image by fractions of its height and width: the output at (x, y) reads (x - dx, y - dy)."""

    def matrices(self, count, height, width, device):
        dy = uniform(self.spec.height_factor, count, device) * height
        dx = uniform(self.spec.width_factor, count, device) * width
        one, zero = torch.ones_like(dx), torch.zeros_like(dx)
        return _affine(one, zero, -dx, zero, one, -dy)


@converter(keras.RandomContrast)
class RandomContrast(nn.Module):
    """``(x - mean) * c + mean`` per image and channel (the mean over height and width), c drawn from
    [1 - factor[0], 1 + factor[1]], clipped to ``value_range``, as Keras computes it."""

    def __init__(self, spec: keras.RandomContrast, shape: Shape) -> None:
        super().__init__()
        self.bounds = (1.0 - spec.factor[0], 1.0 + spec.factor[1])
        self.value_range = spec.value_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        contrast = uniform(self.bounds, x.shape[0], x.device).to(x.dtype).view(-1, 1, 1, 1)
        mean = x.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)  # Keras' order: height, then width
        return ((x - mean) * contrast + mean).clamp(*self.value_range)


@converter(keras.RandomBrightness)
class RandomBrightness(nn.Module):
    """``x + d`` per image, d drawn from ``factor`` times the width of ``value_range``, clipped to it."""

    def __init__(self, spec: keras.RandomBrightness, shape: Shape) -> None:
        super().__init__()
        self.factor, self.value_range = spec.factor, spec.value_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        low, high = self.value_range
        delta = uniform(self.factor, x.shape[0], x.device).to(x.dtype).view(-1, 1, 1, 1) * (high - low)
        return (x + delta).clamp(low, high)
