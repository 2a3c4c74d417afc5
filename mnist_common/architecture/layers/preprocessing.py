"""Preprocessing layers that are part of the network: Rescaling, Normalization, Resizing, CenterCrop."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mnist_common.architecture.layers.base import (
    FLOAT32_MAX,
    MAX_RANK,
    Layer,
    LayerError,
    Shape,
    boolean,
    choice,
    float32_number,
    layer_type,
    positive_int,
    require_rank,
    shape_text,
)


def factor(value: Any, setting: str) -> float | tuple[float, ...]:
    """A number, or a flat list of numbers Keras broadcasts over the last axis (one per channel); a numpy array
    (Keras saves it as ``{"class_name": "__numpy__", "config": {"value": ...}}``) is its values, which Keras casts
    to float32 as the torch side does."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = (value.get("config") or {}).get("value")
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                             for v in values):
        raise LayerError(f"{setting} must be a number or a flat list of numbers (one per channel), got {value!r}")
    for v in values:
        float32_number(v, setting)
    return tuple(map(float, values)) if isinstance(value, (list, tuple)) else float(value)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Rescaling(Layer):
    """``x * scale + offset`` in float32, as Keras computes it (the product rounded, then the sum). A list
    broadcasts over the last axis (channels of an (H, W, C) map) as numpy broadcasts it: one entry per channel,
    or one for all."""

    scale: float | tuple[float, ...]
    offset: float | tuple[float, ...] = 0.0
    TAKES_BYTES: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "scale", factor(self.scale, "scale"))
        object.__setattr__(self, "offset", factor(self.offset, "offset"))

    def output_shape(self, shape: Shape) -> Shape:
        for setting in ("scale", "offset"):
            value = getattr(self, setting)
            if isinstance(value, tuple) and len(value) not in (1, shape[-1]):
                raise LayerError(f"{setting} has {len(value)} entries; an input of {shape_text(shape)} takes "
                                 f"1 or {shape[-1]} (its last axis)")
        return shape

    def input_factor(self) -> float | None:
        return self.scale if isinstance(self.scale, float) else None


def _values(value: Any, setting: str) -> float | tuple | None:
    """A Normalization mean or variance as Keras' config holds it: null, a number, or nested lists of numbers
    (a numpy array's values), kept as nested tuples of floats."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = (value.get("config") or {}).get("value")
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float64) if _numbers_only(value) else None
    except ValueError:  # lists of different lengths
        array = None
    if array is None or not np.isfinite(array).all() or array.ndim > MAX_RANK or 0 in array.shape:
        raise LayerError(f"{setting} must be a number or a nested list of numbers, got {value!r}")
    if (np.abs(array) > FLOAT32_MAX).any():
        raise LayerError(f"{setting} must be within float32's range (at most {FLOAT32_MAX:.4g} in size)")
    return float(array) if array.ndim == 0 else _nested(array.tolist())


def _numbers_only(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_numbers_only, value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nested(value: Any) -> Any:
    return tuple(map(_nested, value)) if isinstance(value, list) else float(value)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Normalization(Layer):
    """``(x - mean) / max(sqrt(variance), 1e-7)`` (``invert``: ``mean + x * max(sqrt(variance), 1e-7)``), as Keras
    computes it, with Keras' ``backend.epsilon()`` default.

    ``axis`` names the axes that keep their own mean and variance, Keras counting the batch as axis 0 (-1, the
    default, is the channels of an image; ``None``, saved as ``[]``, one mean and variance for all). The values are
    either the layer's weights, which ``adapt`` sets (``mean`` and ``variance`` of the kept axes' sizes, and an int64
    ``count`` that Keras 3 keeps at 0), or settings (``mean=0.1307, variance=0.0953``), broadcast from the last kept
    axis backwards as Keras broadcasts them; the layer then has no weights. Neither changes in training."""

    axis: int | tuple[int, ...] | None = -1
    mean: float | tuple | None = None
    variance: float | tuple | None = None
    invert: bool = False

    NON_TRAINABLE: ClassVar = frozenset({"mean", "variance", "count"})
    WEIGHT_DTYPES: ClassVar = {"count": "int64"}
    EPSILON: ClassVar[float] = 1e-7  # keras.config.epsilon()'s default: the least standard deviation Keras divides by
    TAKES_BYTES: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        axes = () if self.axis is None else self.axis if isinstance(self.axis, (list, tuple)) else (self.axis,)
        if any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
            raise LayerError(f"axis must be an integer, a list of integers or null, got {self.axis!r}")
        set_(self, "axis", tuple(axes))
        set_(self, "mean", _values(self.mean, "mean"))
        set_(self, "variance", _values(self.variance, "variance"))
        set_(self, "invert", boolean(self.invert, "invert"))
        if (self.mean is None) != (self.variance is None):
            raise LayerError("mean and variance must be given together (or neither, for adapted weights)")
        if self.mean is not None:
            if np.shape(self.mean) != np.shape(self.variance):
                raise LayerError(f"mean has shape {np.shape(self.mean)} and variance {np.shape(self.variance)}; "
                                 f"they must be the same")
            if np.ndim(self.mean) > len(self.axis):
                raise LayerError(f"mean has {np.ndim(self.mean)} axes, more than the {len(self.axis)} axis "
                                 f"{list(self.axis)} keeps")
            if (np.asarray(self.variance) < 0).any():
                raise LayerError("variance holds negative values")

    def kept_axes(self, shape: Shape) -> tuple[int, ...]:
        """The kept axes of an input of ``shape`` as Keras numbers them (the batch is 0), sorted."""
        rank = len(shape) + 1
        kept = []
        for axis in self.axis:
            if not -rank <= axis < rank:
                raise LayerError(f"axis {axis} is not an axis of a {shape_text(shape)} input: Keras counts the "
                                 f"batch as axis 0, so its axes are 1..{rank - 1} or -{rank - 1}..-1")
            kept.append(axis % rank)
        if 0 in kept:
            raise LayerError(f"axis {list(self.axis)} keeps the batch axis (0), whose size a model does not know")
        if len(set(kept)) != len(kept):
            raise LayerError(f"axis {list(self.axis)} names an axis of a {shape_text(shape)} input twice")
        return tuple(sorted(kept))

    def broadcast_shape(self, shape: Shape) -> Shape:
        """Keras' shape of the mean and variance as they meet an input of ``shape`` (batch axis first, as 1)."""
        kept = self.kept_axes(shape)
        return tuple(size if axis in kept else 1 for axis, size in enumerate((1, *shape)))

    def given_values(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """The ``mean`` and ``variance`` settings as Keras' ``build`` shapes them for ``shape`` (float32, in
        :meth:`broadcast_shape`): a number everywhere, else its axes on the last kept axes."""
        kept, target = self.kept_axes(shape), self.broadcast_shape(shape)
        out = []
        for value in (self.mean, self.variance):
            array = np.asarray(value, dtype=np.float32)
            expanded = [1] * len(target)
            for i in range(1, array.ndim + 1):
                expanded[kept[-i]] = array.shape[-i]
            try:
                out.append(np.broadcast_to(array.reshape(expanded), target))
            except ValueError:
                raise LayerError(f"mean and variance of shape {array.shape} do not broadcast to the kept axes "
                                 f"{list(self.axis)} of a {shape_text(shape)} input "
                                 f"({shape_text(tuple(shape[a - 1] for a in kept))})") from None
        return out[0], out[1]

    def output_shape(self, shape: Shape) -> Shape:
        if self.mean is not None:
            self.given_values(shape)
        else:
            self.kept_axes(shape)
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        if self.mean is not None:
            return ()
        size = tuple(shape[a - 1] for a in self.kept_axes(shape))
        return (("mean", size), ("variance", size), ("count", ()))

    def initializer_of(self, weight_name: str) -> str:
        return "ones" if weight_name == "variance" else "zeros"  # Keras' build: an adapt-less layer is the identity

    def with_adapted(self, arrays: list[Any]) -> Layer:
        """Adapted weights ``[mean, variance, count]`` as the ``mean`` and ``variance`` settings (the same float32
        values, in the kept axes' shape, which Keras' build broadcasts as the weights); ``count`` is dropped."""
        if self.mean is not None:
            return self
        mean, variance = (np.asarray(value, dtype=np.float32) for value in arrays[:2])
        return dataclasses.replace(self, mean=mean.tolist(), variance=variance.tolist())


def aspect_crop(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """Keras' crop of an image of ``size`` (H, W) to the aspect ratio of ``target`` (h, w), centred, as its
    ``crop_to_aspect_ratio`` and ``smart_resize`` take it: (top, left, height, width), sizes truncated, at least 1."""
    (height, width), (to_height, to_width) = size, target
    crop_height = max(min(height, width * to_height // to_width), 1)
    crop_width = max(min(width, height * to_width // to_height), 1)
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def aspect_padding(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Keras' ``pad_to_aspect_ratio`` padding of an image of ``size`` for the ratio of ``target``: (rows, columns)
    added on *each* side (Keras pads both sides by half the shortfall, rounded down)."""
    (height, width), (to_height, to_width) = size, target
    padded_height = max(height, width * to_height // to_width)
    padded_width = max(width, height * to_width // to_height)
    return (padded_height - height) // 2, (padded_width - width) // 2


@dataclass(frozen=True, kw_only=True)
class _ImageSize(Layer):
    """A layer that makes an (H, W, C) image ``height`` x ``width`` (Keras' Resizing and CenterCrop). Keras reads
    any three-axis input as one image (a batch of (H, W) maps would be resized as one image of H channels): only
    (H, W, C) inputs are taken."""

    KEEPS_SCALE: ClassVar[bool] = True  # weighted means of its input's values

    height: int
    width: int

    KERAS_FIXED: ClassVar = {"data_format": ("channels_last", "another data format (channels_first)")}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "height", positive_int(self.height, "height"))
        object.__setattr__(self, "width", positive_int(self.width, "width"))

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "Keras reads any other input's last three axes as one image")
        return self.height, self.width, shape[-1]


@layer_type
@dataclass(frozen=True, kw_only=True)
class Resizing(_ImageSize):
    """``tf.image.resize`` to ``height`` x ``width``: half-pixel centres; ``bilinear`` (``antialias`` widens its
    kernel when shrinking) or ``nearest``; first cropped to the target's aspect ratio (``crop_to_aspect_ratio``,
    :func:`aspect_crop`) or padded to it with ``fill_value`` (``pad_to_aspect_ratio``, :func:`aspect_padding`)."""
    TAKES_BYTES: ClassVar[bool] = True

    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    fill_mode: str = "constant"
    fill_value: float = 0.0
    antialias: bool = False

    INTERPOLATIONS: ClassVar = ("bilinear", "nearest")  # bicubic, area and lanczos have no torch twin that agrees

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "interpolation", choice(self.interpolation, "interpolation", self.INTERPOLATIONS))
        set_(self, "crop_to_aspect_ratio", boolean(self.crop_to_aspect_ratio, "crop_to_aspect_ratio"))
        set_(self, "pad_to_aspect_ratio", boolean(self.pad_to_aspect_ratio, "pad_to_aspect_ratio"))
        set_(self, "fill_mode", choice(self.fill_mode, "fill_mode", ("constant",)))
        set_(self, "fill_value", float32_number(self.fill_value, "fill_value"))
        set_(self, "antialias", boolean(self.antialias, "antialias"))
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise LayerError("crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be true (Keras refuses it too)")

    def working_values(self, shape: Shape) -> int:
        """The image padded to the target's aspect ratio, before it is resized (a 1 x 20,000 target made a 28x28
        image 28 x 560,000 first: hostile round 12)."""
        if not self.pad_to_aspect_ratio:
            return 0
        rows, columns = aspect_padding(shape[:2], (self.height, self.width))
        return (shape[0] + 2 * rows) * (shape[1] + 2 * columns) * math.prod(shape[2:])


@layer_type
@dataclass(frozen=True, kw_only=True)
class CenterCrop(_ImageSize):
    """The central ``height`` x ``width`` of the image (an odd surplus cut from the bottom and the right); an image
    smaller than that on either axis is cropped to the target's aspect ratio and resized bilinearly, as Keras'
    ``smart_resize`` does."""
    TAKES_BYTES: ClassVar[bool] = True

    def fits(self, shape: Shape) -> bool:
        """Whether the crop is a plain slice of an input of ``shape`` (at least the target on both axes)."""
        return shape[0] >= self.height and shape[1] >= self.width
