"""Pooling: max and average over windows, and over the whole map; of images (2D) and of (steps, features) maps
(1D, along the steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    PADDINGS,
    Layer,
    LayerError,
    Shape,
    boolean,
    choice,
    int_tuple,
    layer_type,
    padded_values,
    require_rank,
    window_output,
)


@dataclass(frozen=True, kw_only=True)
class _Pooling2D(Layer):
    KEEPS_SCALE: ClassVar[bool] = True  # maxima and means of its input's values

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
        set_(self, "padding", choice(self.padding, "padding", PADDINGS, lower=True))

    def output_shape(self, shape: Shape) -> Shape:
        axes = self.WINDOW_AXES
        require_rank(shape, len(axes) + 1, "pooling works on images" if len(axes) == 2
                     else "a 1D pooling slides along the first axis of (steps, features)")
        return (*(window_output(size, window, stride, self.padding, f"pool {axis}")
                  for size, window, stride, axis in zip(shape, self.pool_size, self.strides, axes)), shape[-1])

    def working_values(self, shape: Shape) -> int:
        return padded_values(shape, self.pool_size, self.strides, self.padding)


@layer_type
@dataclass(frozen=True, kw_only=True)
class MaxPooling2D(_Pooling2D):
    """With ``padding="same"`` the padded cells never win (Keras pads with -inf)."""
    PASSES_BYTES: ClassVar[bool] = True


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
    KEEPS_SCALE: ClassVar[bool] = True  # maxima and means of its input's values

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
    TAKES_BYTES: ClassVar[bool] = True
    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the mean of the channel vectors


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling2D(_GlobalPooling2D):
    PASSES_BYTES: ClassVar[bool] = True
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


@dataclass(frozen=True, kw_only=True)
class _AdaptivePooling2D(Layer):
    """Keras 3's adaptive pooling, PyTorch's ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` (Keras computes the same
    bins): the map cut into ``output_size`` bins along each axis whatever its size, bin ``i`` of ``n`` over a side of
    ``s`` cells spanning ``floor(i * s / n)`` to ``ceil((i + 1) * s / n)`` (bins overlap where ``n`` does not divide
    ``s``, and repeat cells where ``n > s``).

    Refused where a side is 1 cell in or out: Keras' kernel (TensorFlow's, Keras 3.15) pools windows one cell wider
    than the widest bin, wider than such a side, which a traced model (``predict``, ``fit``) refuses and which kills
    the process with a floating-point exception in an eager max pooling: no Keras model of it runs."""

    KEEPS_SCALE: ClassVar[bool] = True  # maxima and means of its input's values

    output_size: tuple[int, ...]

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}
    WINDOW_AXES: ClassVar[tuple[str, ...]] = ("height", "width")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "output_size", int_tuple(self.output_size, "output_size", len(self.WINDOW_AXES)))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, len(self.WINDOW_AXES) + 1, "pooling works on images" if len(self.WINDOW_AXES) == 2
                     else "a 1D pooling works along the first axis of (steps, features)")
        for axis, size, count in zip(self.WINDOW_AXES, shape, self.output_size):
            if size == 1 or count == 1:
                raise LayerError(f"output_size {list(self.output_size)}: Keras' adaptive pooling cannot run where a "
                                 f"side it pools from or to is 1 (here the {axis}, {size} to {count}): its window is "
                                 f"then wider than the side (a traced model refuses it; a max pooling kills the "
                                 f"process); a global or a plain pooling layer computes it")
        return (*self.output_size, shape[-1])


@layer_type
@dataclass(frozen=True, kw_only=True)
class AdaptiveAveragePooling2D(_AdaptivePooling2D):
    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # means of channel vectors


@layer_type
@dataclass(frozen=True, kw_only=True)
class AdaptiveMaxPooling2D(_AdaptivePooling2D):
    PASSES_BYTES: ClassVar[bool] = True
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class AdaptiveAveragePooling1D(AdaptiveAveragePooling2D):
    """AdaptiveAveragePooling2D along the steps of a (steps, features) map."""

    WINDOW_AXES: ClassVar = ("steps",)


@layer_type
@dataclass(frozen=True, kw_only=True)
class AdaptiveMaxPooling1D(AdaptiveMaxPooling2D):
    """AdaptiveMaxPooling2D along the steps of a (steps, features) map."""

    WINDOW_AXES: ClassVar = ("steps",)
