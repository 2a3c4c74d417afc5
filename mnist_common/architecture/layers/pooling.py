"""Pooling: max and average over windows, and over the whole map; of images (2D) and of (steps, features) maps
(1D, along the steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    PADDINGS,
    Layer,
    Shape,
    boolean,
    choice,
    int_tuple,
    layer_type,
    require_rank,
    window_output,
)


@dataclass(frozen=True, kw_only=True)
class _Pooling2D(Layer):
    pool_size: tuple[int, ...] = (2, 2)
    strides: tuple[int, ...] | None = None  # Keras: None means pool_size; stored explicitly, as Keras does
    padding: str = "valid"

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}
    WINDOW_AXES: ClassVar[tuple[str, ...]] = ("height", "width")  # what the window slides along

    def __post_init__(self) -> None:
        super().__post_init__()
        set_, rank = object.__setattr__, len(self.WINDOW_AXES)
        set_(self, "pool_size", int_tuple(self.pool_size, "pool_size", rank))
        set_(self, "strides", self.pool_size if self.strides is None else int_tuple(self.strides, "strides", rank))
        set_(self, "padding", choice(self.padding, "padding", PADDINGS))

    def output_shape(self, shape: Shape) -> Shape:
        axes = self.WINDOW_AXES
        require_rank(shape, len(axes) + 1, "pooling works on images" if len(axes) == 2
                     else "a 1D pooling slides along the first axis of (steps, features)")
        return (*(window_output(size, window, stride, self.padding, f"pool {axis}")
                  for size, window, stride, axis in zip(shape, self.pool_size, self.strides, axes)), shape[-1])


@layer_type
@dataclass(frozen=True, kw_only=True)
class MaxPooling2D(_Pooling2D):
    """With ``padding="same"`` the padded cells never win (Keras pads with -inf)."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class AveragePooling2D(_Pooling2D):
    """With ``padding="same"`` the padded cells are not counted in the average."""

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # a mean of channel vectors, padded cells left out


@layer_type
@dataclass(frozen=True, kw_only=True)
class MaxPooling1D(MaxPooling2D):
    """MaxPooling2D along the steps of a (steps, features) map."""

    pool_size: tuple[int] = (2,)
    WINDOW_AXES: ClassVar = ("steps",)


@layer_type
@dataclass(frozen=True, kw_only=True)
class AveragePooling1D(AveragePooling2D):
    """AveragePooling2D along the steps of a (steps, features) map."""

    pool_size: tuple[int] = (2,)
    WINDOW_AXES: ClassVar = ("steps",)


@dataclass(frozen=True, kw_only=True)
class _GlobalPooling2D(Layer):
    keepdims: bool = False

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}
    RANK: ClassVar[int] = 3  # of its input: an (H, W, C) image; 2 for the 1D kinds' (steps, features)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "keepdims", boolean(self.keepdims, "keepdims"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, self.RANK, "global pooling works on images" if self.RANK == 3
                     else "a 1D global pooling takes (steps, features)")
        return (*(1,) * (self.RANK - 1), shape[-1]) if self.keepdims else (shape[-1],)


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling2D(_GlobalPooling2D):
    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the mean of the channel vectors


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling2D(_GlobalPooling2D):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling1D(GlobalAveragePooling2D):
    """The mean over the steps of a (steps, features) map."""

    RANK: ClassVar = 2


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling1D(GlobalMaxPooling2D):
    """The maximum over the steps of a (steps, features) map."""

    RANK: ClassVar = 2
