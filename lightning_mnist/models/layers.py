"""One torch module per supported Keras layer kind, built from its description and its input shape.

Tensors are NCHW (torch's layout, channels-last in memory where the classifier asks for
it), descriptions are channels-last (Keras'). What had to be mirrored, not approximated:

* ``padding="same"`` pads ``total // 2`` before and the rest after, so with an odd total
  (stride > 1 or an even kernel) the extra row and column go at the bottom and right;
  torch's symmetric ``padding=`` is used only where the two agree;
* max pooling pads with -inf (padding never wins); average pooling with ``"same"`` does
  not count the padded cells;
* Flatten reads (h, w, c), as Keras does, so Dense kernels need no row reordering;
* a Dense on an (H, W, C) map works on the channel axis;
* activations are Keras' (leaky_relu's slope 0.2, exact gelu, ReLU's threshold/max_value).

:data:`BUILDERS` maps a Keras layer type to the module class (or factory) that takes
``(description, input shape)``. Parameter and buffer names (``weight``, ``bias``,
``running_mean``, ``running_var``) are what ``lightning_mnist.interop.weights`` maps.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape, same_padding
from lightning_mnist.models.initializers import initialize_

# Keras activation name -> torch function on NCHW (softmax over channels) or (N, features) tensors.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "relu6": F.relu6,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),  # Keras' activation default (the layer's is 0.3)
    "elu": F.elu,
    "selu": torch.selu,
    "gelu": F.gelu,  # exact, Keras' default (approximate=False)
    "silu": F.silu,
    "swish": F.silu,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "mish": F.mish,
    "exponential": torch.exp,
    "softmax": lambda x: torch.softmax(x, dim=1),
}


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply a Keras activation to the fresh output of a convolution or a matrix product.

    ReLU runs in place there: those ops do not keep their output for backward, so this saves
    a pass over memory and an allocation per layer (measurable on CPU for small CNNs).
    """
    return torch.relu_(x) if activation == "relu" else ACTIVATIONS[activation](x)


def _same_pads(shape: Shape, window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for Keras' "same" on an (H, W, C) input."""
    (top, bottom), (left, right) = (same_padding(shape[0], window[0], strides[0]),
                                    same_padding(shape[1], window[1], strides[1]))
    return left, right, top, bottom


class Conv2D(nn.Module):
    def __init__(self, spec: keras.Conv2D, shape: Shape) -> None:
        super().__init__()
        self.stride, self.activation = spec.strides, spec.activation
        self.weight = nn.Parameter(torch.empty(spec.filters, shape[-1], *spec.kernel_size))
        self.bias = nn.Parameter(torch.empty(spec.filters)) if spec.use_bias else None
        left, right, top, bottom = _same_pads(shape, spec.kernel_size, spec.strides) if spec.padding == "same" \
            else (0, 0, 0, 0)
        symmetric = left == right and top == bottom
        self.padding = (top, left) if symmetric else (0, 0)
        self.pad = None if symmetric else (left, right, top, bottom)
        initialize_(self.weight, spec.kernel_initializer)
        if self.bias is not None:
            initialize_(self.bias, spec.bias_initializer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return activate(F.conv2d(x, self.weight, self.bias, self.stride, self.padding), self.activation)


class Dense(nn.Module):
    def __init__(self, spec: keras.Dense, shape: Shape) -> None:
        super().__init__()
        self.activation, self.on_image = spec.activation, len(shape) == 3
        self.weight = nn.Parameter(torch.empty(spec.units, shape[-1]))
        self.bias = nn.Parameter(torch.empty(spec.units)) if spec.use_bias else None
        initialize_(self.weight, spec.kernel_initializer)
        if self.bias is not None:
            initialize_(self.bias, spec.bias_initializer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_image:  # Keras' Dense works on the last (channel) axis of an NHWC map
            return activate(F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2),
                            self.activation)
        return activate(F.linear(x, self.weight, self.bias), self.activation)


class BatchNormalization(nn.Module):
    """Keras' BatchNormalization over channels: ``momentum`` here is 1 - Keras' (torch weighs the new batch)."""

    def __init__(self, spec: keras.BatchNormalization, shape: Shape) -> None:
        super().__init__()
        channels = shape[-1]
        self.momentum, self.eps = 1.0 - spec.momentum, spec.epsilon
        self.weight = nn.Parameter(torch.empty(channels)) if spec.scale else None
        self.bias = nn.Parameter(torch.empty(channels)) if spec.center else None
        self.register_buffer("running_mean", torch.empty(channels))
        self.register_buffer("running_var", torch.empty(channels))
        for tensor, init in ((self.weight, spec.gamma_initializer), (self.bias, spec.beta_initializer),
                             (self.running_mean, spec.moving_mean_initializer),
                             (self.running_var, spec.moving_variance_initializer)):
            if tensor is not None:
                initialize_(tensor, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)


class _Pooling2D(nn.Module):
    """Window, stride and Keras' "same" padding (None when there is none to add) of a pooling layer."""

    def __init__(self, spec: keras.MaxPooling2D | keras.AveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.kernel, self.stride = spec.pool_size, spec.strides
        pad = _same_pads(shape, spec.pool_size, spec.strides) if spec.padding == "same" else (0, 0, 0, 0)
        self.pad = pad if any(pad) else None


class MaxPooling2D(_Pooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class AveragePooling2D(_Pooling2D):
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


class GlobalAveragePooling2D(nn.Module):
    def __init__(self, spec: keras.GlobalAveragePooling2D, shape: Shape) -> None:
        super().__init__()
        self.keepdims = spec.keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)


class GlobalMaxPooling2D(GlobalAveragePooling2D):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3), keepdim=self.keepdims)


class Flatten(nn.Module):
    """Keras' Flatten: NCHW in, (h, w, c) order out; a free view on channels-last memory."""

    def __init__(self, spec: keras.Flatten, shape: Shape) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)


class Activation(nn.Module):
    def __init__(self, spec: keras.Activation, shape: Shape) -> None:
        super().__init__()
        self.activation = spec.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](x)


class ReLU(nn.Module):
    """Keras' ``ReLU`` layer, term for term as ``keras.activations.relu`` computes it."""

    def __init__(self, spec: keras.ReLU, shape: Shape) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = spec.max_value, spec.negative_slope, spec.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope, threshold, top = self.negative_slope, self.threshold, self.max_value
        if slope and top is None and not threshold:
            return F.leaky_relu(x, slope)
        y = x * (x > threshold) if threshold else torch.relu(x)
        if top is not None:
            y = y.clamp(0.0, top)
        return y - slope * torch.relu(threshold - x) if slope else y


class LeakyReLU(nn.Module):
    def __init__(self, spec: keras.LeakyReLU, shape: Shape) -> None:
        super().__init__()
        self.negative_slope = spec.negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


class Softmax(nn.Module):
    def __init__(self, spec: keras.Softmax, shape: Shape) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


# Keras layer type -> builder of (description, input shape). One row per supported kind.
BUILDERS: dict[str, Callable[[keras.Layer, Shape], nn.Module]] = {
    "Conv2D": Conv2D,
    "Dense": Dense,
    "BatchNormalization": BatchNormalization,
    "MaxPooling2D": MaxPooling2D,
    "AveragePooling2D": AveragePooling2D,
    "GlobalAveragePooling2D": GlobalAveragePooling2D,
    "GlobalMaxPooling2D": GlobalMaxPooling2D,
    "Flatten": Flatten,
    "Dropout": lambda spec, shape: nn.Dropout(spec.rate),
    "Activation": Activation,
    "ReLU": ReLU,
    "LeakyReLU": LeakyReLU,
    "Softmax": Softmax,
}
