"""Normalisation: BatchNormalization."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    boolean,
    initializer,
    layer_type,
    number,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class BatchNormalization(Layer):
    """Over the channel (last) axis; ``momentum`` is Keras' (the weight of the old moving value)."""

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: str | dict = "zeros"
    gamma_initializer: str | dict = "ones"
    moving_mean_initializer: str | dict = "zeros"
    moving_variance_initializer: str | dict = "ones"

    # renorm itself must be off (UNSUPPORTED_EXTRAS); its settings are then unused. Synchronised
    # statistics only matter across devices.
    KERAS_IGNORED: ClassVar = frozenset({"renorm_clipping", "renorm_momentum", "synchronized"})

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        axis = self.axis[0] if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1 else self.axis
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise LayerError(f"axis must be an integer, got {self.axis!r}")
        set_(self, "axis", axis)
        set_(self, "momentum", number(self.momentum, "momentum", 0.0, 1.0))
        set_(self, "epsilon", number(self.epsilon, "epsilon", 0.0, math.inf, low_open=True))
        set_(self, "center", boolean(self.center, "center"))
        set_(self, "scale", boolean(self.scale, "scale"))
        for name in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                     "moving_variance_initializer"):
            set_(self, name, initializer(getattr(self, name), name))

    def output_shape(self, shape: Shape) -> Shape:
        if self.axis not in (-1, len(shape)):
            raise LayerError(f"normalises axis {self.axis} of a {len(shape) + 1}-D input; only the channel "
                             f"(last) axis, -1, is supported")
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        names = (("gamma",) if self.scale else ()) + (("beta",) if self.center else ()) \
            + ("moving_mean", "moving_variance")
        return tuple((name, (shape[-1],)) for name in names)
