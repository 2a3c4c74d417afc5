"""Preprocessing layers that are part of the network: Rescaling, Normalization."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mnist_common.architecture.layers.base import (
    MAX_RANK,
    Layer,
    LayerError,
    Shape,
    boolean,
    layer_type,
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
    return tuple(map(float, values)) if isinstance(value, (list, tuple)) else float(value)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Rescaling(Layer):
    """``x * scale + offset`` in float32, as Keras computes it (the product rounded, then the sum). A list
    broadcasts over the last axis (channels of an (H, W, C) map) as numpy broadcasts it: one entry per channel,
    or one for all."""

    scale: float | tuple[float, ...]
    offset: float | tuple[float, ...] = 0.0

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
    EPSILON: ClassVar[float] = 1e-7  # keras.config.epsilon()'s default: the smallest standard deviation divided by

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
