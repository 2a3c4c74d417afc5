"""Keras' activations in torch, and the activation layers: ``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``PReLU``,
``Softmax``.

Each is Keras' function, not an approximation: leaky_relu's slope is 0.2 (the layer's 0.3),
gelu is exact, ReLU's threshold and max_value are computed term for term as
``keras.activations.relu`` does. A softmax works on Keras' last axis (channels: torch's
dimension 1 on a map).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.layout import torch_axis
from lightning_mnist.models.layers.registry import WeightMap, build, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape


def _last_keras_axis(x: torch.Tensor) -> int:
    """Keras' last axis in torch's layout: the channels (dimension 1) of a map, else the last."""
    return 1 if x.dim() == 4 else -1


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=_last_keras_axis(x))


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, dim=_last_keras_axis(x))


def celu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Keras' ``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``, term for term."""
    return torch.relu(x) + alpha * torch.expm1(torch.clamp_max(x, 0.0) / alpha)


def _sparse_plus(x: torch.Tensor) -> torch.Tensor:
    """0 up to -1, ``(x + 1)**2 / 4`` below 1, then x."""
    return torch.where(x <= -1, torch.zeros_like(x), torch.where(x < 1, 0.25 * (x + 1) ** 2, x))


def _sparse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """0 up to -1, ``(x + 1) / 2`` below 1, then 1."""
    return torch.where(x <= -1, torch.zeros_like(x), torch.where(x >= 1, torch.ones_like(x), 0.5 * (x + 1)))


def squareplus(x: torch.Tensor, b: float = 4.0) -> torch.Tensor:
    return (x + torch.sqrt(torch.square(x) + b)) / 2


# Keras activation name -> torch function on torch-layout tensors.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),  # Keras' activation default (the layer's is 0.3)
    "elu": F.elu,
    "selu": torch.selu,
    "celu": celu,
    "gelu": F.gelu,  # exact, Keras' default (approximate=False)
    "silu": F.silu,
    "swish": F.silu,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "sparse_sigmoid": _sparse_sigmoid,
    "log_sigmoid": F.logsigmoid,
    "tanh": torch.tanh,
    "hard_tanh": F.hardtanh,  # clipped to [-1, 1]
    "tanh_shrink": F.tanhshrink,  # x - tanh(x)
    "hard_shrink": lambda x: F.hardshrink(x, 0.5),  # x where |x| > 0.5, else 0 (Keras' default threshold)
    "soft_shrink": lambda x: F.softshrink(x, 0.5),  # x moved 0.5 towards 0, 0 within 0.5 of it
    "softplus": F.softplus,
    "sparse_plus": _sparse_plus,
    "squareplus": squareplus,  # Keras' default b=4
    "softsign": F.softsign,
    "mish": F.mish,
    "exponential": torch.exp,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
}


def activate(x: torch.Tensor, activation: str | nn.Module) -> torch.Tensor:
    """Apply a Keras activation (:func:`activation_of`) to the fresh output of a convolution or a matrix product.

    ReLU runs in place there: those ops do not keep their output for backward, so this saves
    a pass over memory and an allocation per layer (measurable on CPU for small CNNs).
    """
    if not isinstance(activation, str):  # an activation layer's module
        return activation(x)
    return torch.relu_(x) if activation == "relu" else ACTIVATIONS[activation](x)


def activation_of(spec: keras.Layer, shape: Shape) -> str | nn.Module:
    """The activation of a convolution's or a Dense layer's description on a ``shape`` input: the Keras activation's
    name, or the torch module of the activation layer it was given as (``Conv2D(..., activation=LeakyReLU(0.1))``),
    built for the layer's output."""
    activation = spec.activation
    return activation if isinstance(activation, str) else build(activation, spec.output_shape(shape))


@converter(keras.Activation)
class Activation(nn.Module):
    def __init__(self, spec: keras.Activation, shape: Shape) -> None:
        super().__init__()
        self.activation = spec.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](x)


@converter(keras.ReLU)
class ReLU(nn.Module):
    """Keras' ``ReLU`` layer, term for term as ``keras.activations.relu`` computes it."""

    def __init__(self, spec: keras.ReLU, shape: Shape) -> None:
        super().__init__()
        # as floats: a whole number (``ReLU(max_value=6)``, which Keras keeps as written) failed torch's ONNX export
        self.max_value, self.negative_slope, self.threshold = (None if value is None else float(value) for value in (
            spec.max_value, spec.negative_slope, spec.threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope, threshold, top = self.negative_slope, self.threshold, self.max_value
        if slope and top is None and not threshold:
            return F.leaky_relu(x, slope)
        y = x * (x > threshold) if threshold else torch.relu(x)
        if top is not None:
            y = y.clamp(0.0, top)
        return y - slope * torch.relu(threshold - x) if slope else y


@converter(keras.LeakyReLU)
class LeakyReLU(nn.Module):
    def __init__(self, spec: keras.LeakyReLU, shape: Shape) -> None:
        super().__init__()
        self.negative_slope = spec.negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


@converter(keras.ELU)
class ELU(nn.Module):
    def __init__(self, spec: keras.ELU, shape: Shape) -> None:
        super().__init__()
        self.alpha = spec.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x, self.alpha)


@converter(keras.PReLU, alpha=WeightMap("alpha"))
class PReLU(nn.Module):
    """Keras' ``relu(x) - alpha * relu(-x)``, term for term. ``alpha`` is kept in Keras' layout (H, W, C) and moved to
    torch's (C, H, W) on an image, where its shared axes are 1s that broadcast."""

    def __init__(self, spec: keras.PReLU, shape: Shape) -> None:
        super().__init__()
        [(_, alpha_shape)] = spec.weights(shape)
        self.alpha = nn.Parameter(torch.empty(alpha_shape))
        self.on_image = len(shape) == 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.permute(2, 0, 1) if self.on_image else self.alpha
        return torch.relu(x) - alpha * torch.relu(-x)


@converter(keras.Softmax)
class Softmax(nn.Module):
    """Over the last Keras axis (an image's channels: torch's dimension 1), or over the one ``axis`` names."""

    OVER_LAST, OVER_DIM = staticmethod(_softmax), staticmethod(torch.softmax)

    def __init__(self, spec: keras.Softmax, shape: Shape) -> None:
        super().__init__()
        axis = spec.axis % (len(shape) + 1) - 1  # Keras' (batch = 0) as a non-batch axis, 0-based
        self.dim = None if spec.over_last_axis(shape) else torch_axis(axis, len(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.OVER_LAST(x) if self.dim is None else self.OVER_DIM(x, dim=self.dim)


class LogSoftmax(Softmax):
    """``keras.ops.log_softmax`` over its one axis, as :class:`Softmax` finds it."""

    OVER_LAST, OVER_DIM = staticmethod(_log_softmax), staticmethod(torch.log_softmax)
