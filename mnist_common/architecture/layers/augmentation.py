"""Image augmentation layers, random in training and the identity otherwise: RandomFlip, RandomRotation,
RandomZoom, RandomTranslation, RandomContrast, RandomBrightness (Keras' ``layers/preprocessing/image_preprocessing``).

A Keras model that augments its own inputs (the modern form of the notebook's ``ImageDataGenerator``)
keeps these layers in its file; at inference, and in every exported file, they pass images through.
In training each draws one transformation per image, as Keras does: the three warps move each output
pixel's sampling point by an affine map of pixel coordinates (Keras' ``affine_transform``), read with
``interpolation`` and filled outside the image by ``fill_mode``; the other two change each image's
values and clip them to ``value_range``. Their factors are kept as Keras normalises them: a number
``f`` means the range ``[-|f|, |f|]`` (RandomContrast's ``[0, |f|]``), a pair is sorted. ``seed`` picks
Keras' draws; torch draws its own (from the run's seed), so it is kept for the Keras side only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    Layer,
    LayerError,
    Shape,
    choice,
    float32_number,
    layer_type,
    number,
    require_rank,
    seed_value,
)

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
# Keras' fill modes but "wrap", which torch's grid_sample cannot read
FILL_MODES = ("reflect", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")


def factor_range(value: Any, setting: str, low: float, low_open: bool = False,
                 floor: float = -1.0) -> tuple[float, float]:
    """Keras' factor: a number ``f`` (the range [max(-|f|, floor), |f|]) or a (lower, upper) pair, each within
    [low, 1]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise LayerError(f"{setting} must be a number or a pair of numbers, got {value!r}")
        lower, upper = sorted(number(v, setting, low, 1.0, low_open=low_open) for v in value)
        return lower, upper
    size = abs(number(value, setting, low, 1.0, low_open=low_open))
    return max(-size, floor), size


def value_range(value: Any, setting: str = "value_range") -> tuple[float, float]:
    """The (low, high) pixel values an adjusted image is clipped to."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise LayerError(f"{setting} must be a pair of numbers (low, high), got {value!r}")
    low, high = (float32_number(v, setting) for v in value)
    if low >= high:
        raise LayerError(f"{setting} must be (low, high) with low < high, got {value!r}")
    return low, high


@dataclass(frozen=True, kw_only=True)
class ImageAugmentation(Layer):
    """What the four share: an (H, W, C) image in, the same shape out, the identity outside training."""

    KEEPS_SCALE: ClassVar[bool] = True

    seed: int | None = None

    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {"data_format": (CHANNELS_LAST, "channels_first")}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "seed", seed_value(self.seed, "seed"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, f"{self.type} augments images")
        return shape

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the identity outside training


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomFlip(ImageAugmentation):
    """Flips each image with probability 1/2: left-right, upside down, or (``horizontal_and_vertical``) both at
    once, on one draw per image, as Keras does."""
    TAKES_BYTES: ClassVar[bool] = True

    mode: str = "horizontal_and_vertical"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mode", choice(self.mode, "mode", FLIP_MODES))


@dataclass(frozen=True, kw_only=True)
class ImageWarp(ImageAugmentation):
    """An affine warp of each image: how it reads between pixels and what it reads outside the image."""

    fill_mode: str = "reflect"
    interpolation: str = "bilinear"
    fill_value: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "fill_mode", choice(self.fill_mode, "fill_mode", FILL_MODES))
        object.__setattr__(self, "interpolation", choice(self.interpolation, "interpolation", INTERPOLATIONS))
        object.__setattr__(self, "fill_value", float32_number(self.fill_value, "fill_value"))


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomRotation(ImageWarp):
    """Rotates each image about its centre by an angle drawn from ``factor`` x 360 degrees."""
    TAKES_BYTES: ClassVar[bool] = True

    factor: tuple[float, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "factor", factor_range(self.factor, "factor", -1.0))


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomZoom(ImageWarp):
    """Scales each image about its centre: a factor ``z`` drawn from ``height_factor`` reads ``1 + z`` times the
    height (positive: zoom out); ``width_factor`` likewise, or None for the same draw as the height (the aspect
    kept)."""
    TAKES_BYTES: ClassVar[bool] = True

    height_factor: tuple[float, float]
    width_factor: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "height_factor", factor_range(self.height_factor, "height_factor", -1.0, True))
        if self.width_factor is not None:
            object.__setattr__(self, "width_factor", factor_range(self.width_factor, "width_factor", -1.0, True))


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomTranslation(ImageWarp):
    """Shifts each image by fractions of its height and width drawn from ``height_factor`` and ``width_factor``."""
    TAKES_BYTES: ClassVar[bool] = True

    height_factor: tuple[float, float]
    width_factor: tuple[float, float]

    def __post_init__(self) -> None:
        super().__post_init__()
        for setting in ("height_factor", "width_factor"):
            object.__setattr__(self, setting, factor_range(getattr(self, setting), setting, -1.0))


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomContrast(ImageAugmentation):
    """Moves each image's values away from (or towards) their mean over height and width, per channel, by a factor
    drawn from [1 - factor[0], 1 + factor[1]], then clips them to ``value_range``. A single number ``f`` is the
    range (0, f) in Keras (so the contrast only rises); that is mirrored, as Keras normalises it."""
    TAKES_BYTES: ClassVar[bool] = True

    factor: tuple[float, float]
    value_range: tuple[float, float] = (0.0, 255.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "factor", factor_range(self.factor, "factor", -1.0, floor=0.0))
        object.__setattr__(self, "value_range", value_range(self.value_range))


@layer_type
@dataclass(frozen=True, kw_only=True)
class RandomBrightness(ImageAugmentation):
    """Adds to each image one value drawn from ``factor`` times the width of ``value_range`` (Keras sorts the
    range), then clips to it."""
    TAKES_BYTES: ClassVar[bool] = True

    factor: tuple[float, float]
    value_range: tuple[float, float] = (0.0, 255.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "factor", factor_range(self.factor, "factor", -1.0))
        given = self.value_range
        if isinstance(given, (list, tuple)) and all(isinstance(v, (int, float)) for v in given):
            given = sorted(given)  # as Keras sorts it
        object.__setattr__(self, "value_range", value_range(given))
