"""Preprocessing layers that are part of the network: Rescaling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    layer_type,
    shape_text,
)


def factor(value: Any, setting: str) -> float | tuple[float, ...]:
    """A number, or a flat list of numbers Keras broadcasts over the last axis (one per channel); a numpy array
    (Keras saves it as ``{"class_name": "__numpy__", "config": {"value": ...}}``) is its values, which Keras casts
    to float32 as the torch side does."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = (value.get("config") or {}).get("value")
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                             for v in values):
        raise LayerError(f"{setting} must be a number or a flat list of numbers (one per channel), got {value!r}")
    return tuple(map(float, values)) if isinstance(value, (list, tuple)) else float(value)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Rescaling(Layer):
    """``x * scale + offset`` in float32, as Keras computes it (the product rounded, then the sum). A list
    broadcasts over the last axis (channels of an (H, W, C) map) as numpy broadcasts it: one entry per channel,
    or one for all."""

    scale: float | tuple[float, ...]
    offset: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "scale", factor(self.scale, "scale"))
        object.__setattr__(self, "offset", factor(self.offset, "offset"))

    def output_shape(self, shape: Shape) -> Shape:
        for setting in ("scale", "offset"):
            value = getattr(self, setting)
            if isinstance(value, tuple) and len(value) not in (1, shape[-1]):
                raise LayerError(f"{setting} has {len(value)} entries; an input of {shape_text(shape)} takes "
                                 f"1 or {shape[-1]} (its last axis)")
        return shape
