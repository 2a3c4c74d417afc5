"""Keras' weight initializers on torch tensors, so a network built here starts as Keras would start it.

Tensors are filled in Keras' own layout (``lightning_mnist.models.layers.registry.build``
then maps them to torch's), so fans are Keras' ``compute_fans``: a kernel (kh, kw, in, out)
has ``fan_in = in * kh * kw`` and ``fan_out = out * kh * kw``, a Dense kernel (in, out) its
two sizes, a vector its length.
Truncated normals are cut at two standard deviations, as Keras cuts them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mnist_common.architecture.layers import INITIALIZER_NAMES, INITIALIZERS, VARIANCE_SCALING_PRESETS

TRUNCATED_NORMAL_STDDEV = 0.87962566103423978  # stddev of a unit normal truncated to [-2, 2], as Keras uses


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """Keras' ``compute_fans`` of a tensor in Keras' layout."""
    if tensor.dim() < 2:
        n = tensor.numel() if tensor.dim() else 1
        return n, n
    receptive = math.prod(tensor.shape[:-2])
    return tensor.shape[-2] * receptive, tensor.shape[-1] * receptive


def _truncated_normal_(tensor: torch.Tensor, mean: float, stddev: float) -> torch.Tensor:
    return torch.nn.init.trunc_normal_(tensor, mean, stddev, mean - 2 * stddev, mean + 2 * stddev)


def _variance_scaling_(tensor: torch.Tensor, scale: float, mode: str, distribution: str) -> torch.Tensor:
    fan_in, fan_out = fans(tensor)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    scale /= max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale)
        return torch.nn.init.uniform_(tensor, -limit, limit)
    if distribution == "truncated_normal":
        return _truncated_normal_(tensor, 0.0, math.sqrt(scale) / TRUNCATED_NORMAL_STDDEV)
    return torch.nn.init.normal_(tensor, 0.0, math.sqrt(scale))  # "untruncated_normal" / "normal"


def _orthogonal_(tensor: torch.Tensor, gain: float) -> torch.Tensor:
    """Keras' Orthogonal: the weight as a (product of all axes but the last, last) matrix, orthogonal rows or columns
    (QR of a normal draw, signs from R's diagonal, as torch's ``orthogonal_`` does for a matrix) times ``gain``."""
    return torch.nn.init.orthogonal_(tensor.view(-1, tensor.shape[-1]), gain).view(tensor.shape)


def _identity_(tensor: torch.Tensor, gain: float) -> torch.Tensor:
    """Keras' Identity: ``gain`` on the diagonal of a matrix (rectangular ones too), zeros elsewhere."""
    return torch.nn.init.eye_(tensor).mul_(gain)


INITIALIZE = {
    "Zeros": lambda t: torch.nn.init.zeros_(t),
    "Ones": lambda t: torch.nn.init.ones_(t),
    "Constant": lambda t, value: torch.nn.init.constant_(t, value),
    "RandomNormal": lambda t, mean, stddev: torch.nn.init.normal_(t, mean, stddev),
    "RandomUniform": lambda t, minval, maxval: torch.nn.init.uniform_(t, minval, maxval),
    "TruncatedNormal": _truncated_normal_,
    "VarianceScaling": _variance_scaling_,
    "Orthogonal": _orthogonal_,
    "Identity": _identity_,
}


@torch.no_grad()
def initialize_(tensor: torch.Tensor, initializer: str | dict[str, Any]) -> torch.Tensor:
    """Fill ``tensor`` as the Keras ``initializer`` (a name, or ``{"class_name", "config"}``) would."""
    if isinstance(initializer, dict):
        class_name, settings = initializer["class_name"], dict(initializer["config"])
        settings.pop("seed", None)  # Keras' draw; torch's comes from the run's seed
        if INITIALIZERS[class_name][0] in VARIANCE_SCALING_PRESETS:  # a named one with a seed: GlorotUniform(seed=7)
            initializer = INITIALIZERS[class_name][0]
    if isinstance(initializer, str):
        if initializer in VARIANCE_SCALING_PRESETS:
            return _variance_scaling_(tensor, *VARIANCE_SCALING_PRESETS[initializer])
        class_name, settings = INITIALIZER_NAMES[initializer], INITIALIZERS[INITIALIZER_NAMES[initializer]][1]
    return INITIALIZE[class_name](tensor, **settings)
