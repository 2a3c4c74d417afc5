"""Normalisation: BatchNormalization, LayerNormalization, RMSNormalization, GroupNormalization, UnitNormalization."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    boolean,
    initializer,
    layer_type,
    number,
    shape_text,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class BatchNormalization(Layer):
    """Over the channel (last) axis; ``momentum`` is Keras' (the weight of the old moving value).

    ``synchronized`` (Keras: the batch statistics are gathered across devices under a distribution strategy) is
    kept for the Keras side; one torch process computes the same, and Lightning's ``--trainer.sync_batchnorm true``
    is its counterpart across devices."""

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: str | dict = "zeros"
    gamma_initializer: str | dict = "ones"
    moving_mean_initializer: str | dict = "zeros"
    moving_variance_initializer: str | dict = "ones"
    beta_regularizer: dict | None = None
    gamma_regularizer: dict | None = None
    beta_constraint: dict | None = None
    gamma_constraint: dict | None = None
    synchronized: bool = False

    NON_TRAINABLE: ClassVar = frozenset({"moving_mean", "moving_variance"})
    # renorm itself must be off (UNSUPPORTED_EXTRAS); its settings are then unused.
    KERAS_IGNORED: ClassVar = frozenset({"renorm_clipping", "renorm_momentum"})

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
        set_(self, "synchronized", boolean(self.synchronized, "synchronized"))
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


def _gamma_beta(spec: Any) -> None:
    """The settings LayerNormalization and GroupNormalization share with Keras: epsilon, center, scale, initializers."""
    set_ = object.__setattr__
    set_(spec, "epsilon", number(spec.epsilon, "epsilon", 0.0, math.inf, low_open=True))
    set_(spec, "center", boolean(spec.center, "center"))
    set_(spec, "scale", boolean(spec.scale, "scale"))
    for name in ("beta_initializer", "gamma_initializer"):
        set_(spec, name, initializer(getattr(spec, name), name))


def _axes(value: Any) -> int | tuple[int, ...]:
    """Keras' ``axis`` of LayerNormalization and UnitNormalization: one integer, or several, sorted as plain
    integers (as LayerNormalization sorts them; UnitNormalization's sum is the same in any order)."""
    axes = list(value) if isinstance(value, (list, tuple)) else [value]
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        raise LayerError(f"axis must be an integer or a list of integers, got {value!r}")
    if len(set(axes)) != len(axes):
        raise LayerError(f"axis {value!r} names an axis twice")
    return axes[0] if len(axes) == 1 else tuple(sorted(axes))


@dataclass(frozen=True, kw_only=True)
class _OverAxes(Layer):
    """A layer that works over ``axis`` of each example, as Keras numbers it (the batch is axis 0; -1 the last)."""

    axis: int | tuple[int, ...] = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axis", _axes(self.axis))

    @property
    def keras_axes(self) -> tuple[int, ...]:
        """The axes in Keras' (sorted) order, as Keras numbers them (the batch is 0)."""
        return self.axis if isinstance(self.axis, tuple) else (self.axis,)

    def positions(self, shape: Shape) -> tuple[int, ...]:
        """The axes of an input of ``shape`` worked over (0-based, no batch axis), in Keras' order."""
        rank = len(shape)
        out = []
        for axis in self.keras_axes:
            if not -rank <= axis <= rank or axis in (0, -rank - 1):
                raise LayerError(f"axis {axis} is not an axis of a {shape_text(shape)} input: Keras counts the "
                                 f"batch as axis 0, so its axes are 1..{rank} or -{rank}..-1")
            out.append(axis % (rank + 1) - 1)
        if len(set(out)) != len(out):
            raise LayerError(f"axis {list(self.keras_axes)} names an axis of a {shape_text(shape)} input twice")
        return tuple(out)

    def output_shape(self, shape: Shape) -> Shape:
        self.positions(shape)
        return shape


@layer_type
@dataclass(frozen=True, kw_only=True)
class UnitNormalization(_OverAxes):
    """Each example scaled to unit L2 norm over ``axis``: Keras' ``x * min(rsqrt(sum(x ** 2)), 1e12)``."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class LayerNormalization(_OverAxes):
    """Each example normalised over ``axis`` (Keras counts the batch as axis 0; -1 is the last).

    Keras sorts the axes as plain integers (so [-1, 1] stays in that order), gives gamma and beta
    the sizes of the axes in that order, and *reshapes* them (no transpose) to broadcast them over
    the input: mirrored as it is. Keras computes ``x * inv + (beta - mean * inv)`` with
    ``inv = gamma / sqrt(variance + epsilon)``; its deprecated ``rms_scaling`` divides by
    ``sqrt(variance + epsilon)`` without subtracting the mean, keeps gamma even when ``scale`` is
    off, and has no beta.
    """

    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    rms_scaling: bool = False
    beta_initializer: str | dict = "zeros"
    gamma_initializer: str | dict = "ones"
    beta_regularizer: dict | None = None
    gamma_regularizer: dict | None = None
    beta_constraint: dict | None = None
    gamma_constraint: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "rms_scaling", boolean(self.rms_scaling, "rms_scaling"))
        _gamma_beta(self)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        names = (("gamma",) if self.scale or self.rms_scaling else ()) \
            + (("beta",) if self.center and not self.rms_scaling else ())
        size = tuple(shape[p] for p in self.positions(shape))
        return tuple((name, size) for name in names)


@layer_type
@dataclass(frozen=True, kw_only=True)
class RMSNormalization(_OverAxes):
    """Each example divided by its root mean square over ``axis``, times a learnt ``scale`` (Keras 3.9's layer):
    Keras' ``x * rsqrt(mean(x ** 2) + epsilon) * scale``, no mean subtracted, no shift.

    The scale has the sizes of the axes in Keras' (sorted) order and Keras multiplies by it as it is,
    so numpy's broadcasting lines it up with the input's *last* axes: the axes must be the last ones
    (-1, [-2, -1], [1, 2, 3] of an image), where that is what normalising over them means; others are
    refused (Keras fails on them, or lines the scale up with other axes where the sizes happen to agree).
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "epsilon", number(self.epsilon, "epsilon", 0.0, math.inf, low_open=True))

    def output_shape(self, shape: Shape) -> Shape:
        positions = self.positions(shape)
        if tuple(shape[p] for p in positions) != shape[len(shape) - len(positions):]:
            raise LayerError(f"normalises axis {list(self.keras_axes)} of a {shape_text(shape)} input; Keras lines "
                             f"its scale up with the last axes, so only the last axis or axes are supported")
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return (("scale", tuple(shape[p] for p in self.positions(shape))),)

    def initializer_of(self, weight_name: str) -> str:
        return "ones"  # Keras' layer has no setting for it


@layer_type
@dataclass(frozen=True, kw_only=True)
class GroupNormalization(Layer):
    """Each example normalised over groups of ``channels / groups`` consecutive channels (and all positions).

    ``groups=-1`` is Keras' instance normalisation (one group per channel; Keras then saves the
    number of channels). Keras computes ``x * inv + (beta - mean * inv)`` with
    ``inv = gamma / sqrt(variance + epsilon)``.
    """

    groups: int = 32
    axis: int = -1
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: str | dict = "zeros"
    gamma_initializer: str | dict = "ones"
    beta_regularizer: dict | None = None
    gamma_regularizer: dict | None = None
    beta_constraint: dict | None = None
    gamma_constraint: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.groups != -1 and (isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1):
            raise LayerError(f"groups must be a positive integer or -1 (one group per channel), got {self.groups!r}")
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise LayerError(f"axis must be an integer, got {self.axis!r}")
        _gamma_beta(self)

    def groups_of(self, shape: Shape) -> int:
        """The number of groups for an input of ``shape``, refusing channels that do not split into them."""
        channels = shape[-1]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise LayerError(f"groups={groups} does not divide the {channels} channels of its "
                             f"{shape_text(shape)} input")
        return groups

    def output_shape(self, shape: Shape) -> Shape:
        if self.axis not in (-1, len(shape)):  # Keras numbers the batch 0: the last axis is also len(shape)
            raise LayerError(f"normalises axis {self.axis} of a {len(shape) + 1}-D input; only the channel (last) "
                             f"axis, -1, is supported")
        self.groups_of(shape)
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        names = (("gamma",) if self.scale else ()) + (("beta",) if self.center else ())
        return tuple((name, (shape[-1],)) for name in names)
