"""Layers that act only in training: Dropout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    layer_type,
    number,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    rate: float = 0.5

    KERAS_IGNORED: ClassVar = frozenset({"seed"})  # the random draw differs between frameworks anyway

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "rate", number(self.rate, "rate", 0.0, 1.0, high_open=True))
