"""Pooling: max and average over windows, and over the whole map."""

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
    int_pair,
    layer_type,
    require_rank,
    window_output,
)


@dataclass(frozen=True, kw_only=True)
class _Pooling2D(Layer):
    pool_size: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None  # Keras: None means pool_size; stored explicitly, as Keras does
    padding: str = "valid"

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "pool_size", int_pair(self.pool_size, "pool_size"))
        set_(self, "strides", self.pool_size if self.strides is None else int_pair(self.strides, "strides"))
        set_(self, "padding", choice(self.padding, "padding", PADDINGS))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "pooling works on images")
        h, w, c = shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return (window_output(h, ph, sh, self.padding, "pool height"),
                window_output(w, pw, sw, self.padding, "pool width"), c)


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


@dataclass(frozen=True, kw_only=True)
class _GlobalPooling2D(Layer):
    keepdims: bool = False

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "keepdims", boolean(self.keepdims, "keepdims"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "global pooling works on images")
        return (1, 1, shape[-1]) if self.keepdims else (shape[-1],)


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling2D(_GlobalPooling2D):
    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the mean of the channel vectors


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling2D(_GlobalPooling2D):
    pass
