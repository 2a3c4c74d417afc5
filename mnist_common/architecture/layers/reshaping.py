"""Layers that move values without computing new ones: Flatten."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    Layer,
    Shape,
    layer_type,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Keras flattens channels-last maps in (h, w, c) order."""

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)
