"""Keras' weight constraints in torch: what Keras' optimizers apply to a constrained weight after every step.

Each works on the weight in Keras' layout (its ``axis`` is Keras'), as Keras computes it:
``MaxNorm`` and ``MinMaxNorm`` scale each slice along ``axis`` to the norm they allow,
``UnitNorm`` to norm 1, ``NonNeg`` clips at zero; ``epsilon`` is Keras' ``backend.epsilon()``.
"""

from __future__ import annotations

from typing import Any

import torch

EPSILON = 1e-7  # keras.config.epsilon()'s default


def norms(w: torch.Tensor, axis: int | tuple[int, ...]) -> torch.Tensor:
    return torch.sqrt(torch.sum(torch.square(w), dim=axis, keepdim=True))


def constrained(w: torch.Tensor, rule: dict[str, Any]) -> torch.Tensor:
    """``w`` (Keras' layout) under the constraint ``rule`` (``mnist_common.architecture.layers.base.constraint``)."""
    kind, config = rule["class_name"], rule["config"]
    if kind == "NonNeg":
        return torch.clamp_min(w, 0.0)
    size = norms(w, config["axis"])
    if kind == "UnitNorm":
        return w / (EPSILON + size)
    desired = torch.clamp(size, 0.0, config["max_value"])
    if kind == "MinMaxNorm":
        desired = config["rate"] * torch.clamp(size, config["min_value"], config["max_value"]) \
            + (1 - config["rate"]) * size
    return w * (desired / (EPSILON + size))
