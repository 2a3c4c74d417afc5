"""Activation layers: Activation, ReLU, LeakyReLU, ELU, PReLU, Softmax."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mnist_common.architecture.layers.base import (
    Layer,
    MAX_RANK,
    LayerError,
    Shape,
    activation_name,
    initializer,
    layer_type,
    number,
    shape_text,
)


# Activations that give x itself for every x in [0, 1]: probabilities pass through them unchanged.
IDENTITY_ON_PROBABILITIES = ("linear", "relu", "relu6", "leaky_relu", "elu", "celu", "hard_tanh")


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
class ELU(Layer):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "alpha", number(self.alpha, "alpha"))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # x itself for x >= 0


@layer_type
@dataclass(frozen=True, kw_only=True)
class PReLU(Layer):
    """A leaky ReLU whose slopes are learnt: ``relu(x) - alpha * relu(-x)``, one slope per value of the input, or
    one shared along ``shared_axes`` (numbered from 1, the batch axis being 0: ``[1, 2]`` gives one slope per channel
    of an (H, W, C) map)."""

    alpha_initializer: str | dict = "zeros"
    shared_axes: tuple[int, ...] | None = None
    alpha_regularizer: dict | None = None
    alpha_constraint: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "alpha_initializer", initializer(self.alpha_initializer, "alpha_initializer"))
        axes = self.shared_axes
        if axes is not None:
            axes = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
            if not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= MAX_RANK for a in axes):
                raise LayerError(f"shared_axes must be axes from 1 to {MAX_RANK} (the batch axis is 0), got "
                                 f"{self.shared_axes!r}")
        object.__setattr__(self, "shared_axes", axes)

    def output_shape(self, shape: Shape) -> Shape:
        if self.shared_axes and max(self.shared_axes) > len(shape):
            raise LayerError(f"shared_axes {list(self.shared_axes)}: its input {shape_text(shape)} has axes 1 to "
                             f"{len(shape)}")
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        shared = set(self.shared_axes or ())
        return (("alpha", tuple(1 if axis in shared else size for axis, size in enumerate(shape, start=1))),)

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # x itself for x >= 0


def one_axis(value: Any) -> int:
    """A softmax's ``axis``: one non-batch axis, Keras' number (1 the first after the batch, -1 the last)."""
    axis = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
    if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0 or abs(axis) > MAX_RANK:
        raise LayerError(f"axis={value!r}: one axis is supported, from 1 to {MAX_RANK} or -1 to -{MAX_RANK} "
                         f"(0 is the batch axis)")
    return axis


class OverOneAxis:
    """What a softmax over its one ``axis`` (:func:`one_axis`) does with shapes: the ``Softmax`` layer's and
    ``keras.ops.softmax``'s (one torch module computes both)."""

    axis: int

    def output_shape(self, shape: Shape) -> Shape:
        if not -len(shape) <= self.axis <= len(shape):
            raise LayerError(f"axis={self.axis} does not exist on its {shape_text(shape)} input (axes 1 to "
                             f"{len(shape)}, or -1 to -{len(shape)}; 0 is the batch axis)")
        return shape

    def over_last_axis(self, shape: Shape) -> bool:
        """Whether it is a softmax over the last axis of a ``shape`` input."""
        return self.axis in (-1, len(shape))

    def softmax_axis(self) -> int | None:
        return self.axis


@layer_type
@dataclass(frozen=True, kw_only=True)
class Softmax(OverOneAxis, Layer):
    """A softmax along ``axis``: the last (the classes': a distribution a row, which the model's outputs may be), or
    another (the steps or positions of an attention pooling, ``Softmax(axis=1)`` of one score a step: weights that
    sum to 1 along it, no distribution over classes). Keras counts the batch as axis 0."""

    axis: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axis", one_axis(self.axis))


def is_identity(layer: Layer) -> bool:
    """A layer whose output is its input, in training too: a linear ``Activation``. A softmax followed only by
    such layers gives the model's outputs as they are, so its input can stand for them (see ``softmax_node``)."""
    return isinstance(layer, Activation) and layer.activation == "linear"


def applies_softmax(layer: Layer, shape: Shape | None = None) -> bool:
    """True for a layer whose output is a softmax over its last axis (of a ``shape`` input; without one, its axis
    is -1)."""
    axis = layer.softmax_axis()
    return axis is not None and (axis == -1 if shape is None else axis in (-1, len(shape)))


def gives_one_distribution(layer: Layer, shape: Shape) -> bool:
    """True for a layer ending in a softmax over the axis along which all of its ``shape`` output lies (every other
    axis of size 1: ``Softmax(axis=1)`` of a (10, 1) map): one distribution, which a reshape keeps one. (Its output's
    shape: a transposed convolution's softmax of a single step's input gives several steps.)"""
    axis = layer.softmax_axis()
    return axis is not None and math.prod(shape) == shape[axis - 1 if axis > 0 else axis]
