"""Preprocessing layers that are part of the network: Rescaling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    layer_type,
    number,
    shape_text,
)


def factor(value: Any, setting: str) -> float | tuple[float, ...]:
    """A number, or a flat list of numbers Keras broadcasts over the last axis (one per channel)."""
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (list, tuple)) for v in value):
            raise LayerError(f"{setting} must be a number or a flat list of numbers (one per channel), got {value!r}")
        return tuple(number(v, setting) for v in value)
    return number(value, setting)


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
