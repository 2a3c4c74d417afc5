"""Layers that act only in training: Dropout, SpatialDropout2D, SpatialDropout1D, AlphaDropout, GaussianNoise,
GaussianDropout, ActivityRegularization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    Layer,
    LayerError,
    Shape,
    float32_number,
    layer_type,
    number,
    require_rank,
    seed_value,
    shape_text,
)


@dataclass(frozen=True, kw_only=True)
class _Dropout(Layer):
    """``seed`` picks Keras' dropout masks; torch draws its own (from the run's seed), so it is kept for the Keras
    side only, and a .keras file comes back with it."""

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    rate: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "rate", number(self.rate, "rate", 0.0, 1.0, high_open=True))
        object.__setattr__(self, "seed", seed_value(self.seed, "seed"))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the identity outside training


@layer_type
@dataclass(frozen=True, kw_only=True)
class Dropout(_Dropout):
    """``noise_shape``: the shape of the mask, batch axis first, broadcast over the axes where it holds 1 (null: the
    input's size): ``(None, 1, 1, 1)`` drops whole samples, the stochastic depth of keras.applications'
    EfficientNets; ``(None, 1, 1, C)`` whole channels."""

    noise_shape: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        shape = self.noise_shape
        if shape is not None:
            if not isinstance(shape, (list, tuple)) or not shape or not all(
                    size is None or (isinstance(size, int) and not isinstance(size, bool) and size > 0)
                    for size in shape):
                raise LayerError(f"noise_shape must be null or a list of positive sizes or nulls (the batch axis "
                                 f"first), got {shape!r}")
            object.__setattr__(self, "noise_shape", tuple(shape))

    def output_shape(self, shape: Shape) -> Shape:
        noise = self.noise_shape
        if noise is not None and (len(noise) != len(shape) + 1 or noise[0] not in (None, 1) or any(
                size not in (None, 1, axis) for size, axis in zip(noise[1:], shape))):
            raise LayerError(f"noise_shape {list(noise)} does not fit its input {shape_text(shape)}: it needs the "
                             f"batch axis (null or 1) and then, for each axis, null, 1 or the axis' size")
        return shape


@layer_type
@dataclass(frozen=True, kw_only=True)
class SpatialDropout2D(_Dropout):
    """Dropout of whole channels of an (H, W, C) map in training (the survivors scaled by 1 / (1 - rate))."""

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "SpatialDropout2D drops whole channels of a map")
        return shape


@layer_type
@dataclass(frozen=True, kw_only=True)
class SpatialDropout1D(_Dropout):
    """Dropout of whole features of a (steps, features) map in training (the survivors scaled by 1 / (1 - rate))."""

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, "SpatialDropout1D drops whole features of a (steps, features) map")
        return shape


@layer_type
@dataclass(frozen=True, kw_only=True)
class AlphaDropout(_Dropout):
    """SELU's dropout (Klambauer et al., 2017) in training: dropped values set to SELU's negative saturation
    ``-alpha * scale``, then all of them scaled and shifted so that the mean and variance stay those of the input;
    the identity otherwise. Its settings are Dropout's (rate, seed)."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class GaussianNoise(Layer):
    """Adds zero-mean Gaussian noise of ``stddev`` in training; the identity otherwise. ``seed`` as for Dropout."""

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    stddev: float
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "stddev", number(self.stddev, "stddev", 0.0))
        object.__setattr__(self, "seed", seed_value(self.seed, "seed"))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the identity outside training


@layer_type
@dataclass(frozen=True, kw_only=True)
class GaussianDropout(_Dropout):
    """Multiplies by Gaussian noise of mean 1 and standard deviation sqrt(rate / (1 - rate)) in training (dropout's
    variance, without zeros); the identity otherwise. Its settings are Dropout's (rate, seed)."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class ActivityRegularization(Layer):
    """The identity, whose outputs Keras penalises with ``L1L2(l1, l2)`` (the loss gains ``l1 * sum(|x|) + l2 *
    sum(x ** 2)`` over the batch, divided by its size; see :meth:`Layer.activity_rule`)."""

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activity_regularizer is not None:  # Keras' own config never holds one: l1 and l2 are it
            raise LayerError("sets activity_regularizer besides l1 and l2, which Keras' layer takes as its own")
        object.__setattr__(self, "l1", float32_number(self.l1, "l1", 0.0))
        object.__setattr__(self, "l2", float32_number(self.l2, "l2", 0.0))

    def activity_rule(self) -> dict[str, Any]:
        return {"class_name": "L1L2", "config": {"l1": self.l1, "l2": self.l2}}

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the identity
