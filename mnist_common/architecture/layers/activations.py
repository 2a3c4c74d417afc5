"""Activation layers: Activation, ReLU, LeakyReLU, Softmax."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_common.architecture.layers.base import (
    Layer,
    MAX_RANK,
    LayerError,
    Shape,
    activation_name,
    layer_type,
    number,
    shape_text,
)


# Activations that give x itself for every x in [0, 1]: probabilities pass through them unchanged.
IDENTITY_ON_PROBABILITIES = ("linear", "relu", "relu6", "leaky_relu", "elu")


@layer_type
@dataclass(frozen=True, kw_only=True)
class Activation(Layer):
    activation: str = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "activation", activation_name(self.activation))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return self.activation in IDENTITY_ON_PROBABILITIES


@layer_type
@dataclass(frozen=True, kw_only=True)
class ReLU(Layer):
    """``max_value`` if x >= max_value, x if x >= threshold, else negative_slope * (x - threshold)."""

    max_value: float | None = None
    negative_slope: float = 0.0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_value is not None:
            object.__setattr__(self, "max_value", number(self.max_value, "max_value", 0.0))
        object.__setattr__(self, "negative_slope", number(self.negative_slope, "negative_slope", 0.0))
        object.__setattr__(self, "threshold", number(self.threshold, "threshold", 0.0))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return self.threshold == 0 and (self.max_value is None or self.max_value >= 1)  # x itself on [0, 1]


@layer_type
@dataclass(frozen=True, kw_only=True)
class LeakyReLU(Layer):
    negative_slope: float = 0.3  # the layer's Keras default (the leaky_relu activation's is 0.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "negative_slope", number(self.negative_slope, "negative_slope", 0.0))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # x itself for x >= 0


@layer_type
@dataclass(frozen=True, kw_only=True)
class Softmax(Layer):
    axis: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        axis = self.axis[0] if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1 else self.axis
        if isinstance(axis, bool) or not isinstance(axis, int) or not (axis == -1 or 1 <= axis <= MAX_RANK):
            raise LayerError(f"axis={self.axis!r}: only the last (channel) axis, -1, is supported")
        object.__setattr__(self, "axis", axis)

    def output_shape(self, shape: Shape) -> Shape:
        if self.axis not in (-1, len(shape)):  # Keras counts the batch axis: 1 is the last of (batch, features)
            raise LayerError(f"axis={self.axis}: only the last (channel) axis is supported, -1 (or {len(shape)} "
                             f"for its {shape_text(shape)} input)")
        return shape


def is_identity(layer: Layer) -> bool:
    """A layer whose output is its input, in training too: a linear ``Activation``. A softmax followed only by
    such layers gives the model's outputs as they are, so its input can stand for them (see ``softmax_node``)."""
    return isinstance(layer, Activation) and layer.activation == "linear"


def applies_softmax(layer: Layer) -> bool:
    """True for a layer whose output is a softmax over its last axis."""
    return getattr(layer, "activation", None) == "softmax" or isinstance(layer, Softmax)
