"""Layers that move values without computing new ones: Identity, Flatten, Reshape, Permute, ZeroPadding2D,
Cropping2D, UpSampling2D, and their 1D kinds on (steps, features) maps: ZeroPadding1D, Cropping1D, UpSampling1D.

Each moves values as Keras moves them in its own (channels-last, row-major) layout, which
is what the torch side mirrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    MAX_RANK,
    Layer,
    LayerError,
    Shape,
    choice,
    int_pair,
    layer_type,
    positive_int,
    require_rank,
    shape_text,
)

DATA_FORMAT: dict[str, tuple[Any, str]] = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}
INTERPOLATIONS = ("nearest", "bilinear")  # of Keras' UpSampling2D interpolations, those mirrored


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_tuple(value: Any, setting: str, what: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(is_int(v) for v in value):
        raise LayerError(f"{setting} must be a list of {what}, got {value!r}")
    return tuple(value)


def only_the_last_axis(shape: Shape, output: Shape) -> bool:
    """Both shapes hold one vector, the same last axis ((1, 1, 10) -> (10,)): a reshape keeping each row as it is."""
    return math.prod(shape[:-1]) == 1 and math.prod(output[:-1]) == 1 and shape[-1] == output[-1]


@layer_type
@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Keras flattens channels-last maps in (h, w, c) order."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    KERAS_FIXED: ClassVar = DATA_FORMAT

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    """Keras' reshape of its channels-last values in row-major order (an (H, W, C) map read as (h, w, c), as
    Flatten reads it); one size may be -1, inferred from the input's size, and Keras keeps the -1 in its config."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    target_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        target = int_tuple(self.target_shape, "target_shape", "positive sizes (one may be -1)")
        if not 1 <= len(target) <= MAX_RANK:
            raise LayerError(f"target_shape {list(target)} has {len(target)} axes; 1 to {MAX_RANK} are supported")
        if any(size < 1 and size != -1 for size in target) or target.count(-1) > 1:
            raise LayerError(f"target_shape must be positive sizes with at most one -1, got {list(target)}")
        object.__setattr__(self, "target_shape", target)

    def output_shape(self, shape: Shape) -> Shape:
        size, known = math.prod(shape), math.prod(s for s in self.target_shape if s != -1)
        if -1 not in self.target_shape:
            if known != size:
                raise LayerError(f"cannot reshape {shape_text(shape)} ({size} values) to "
                                 f"{shape_text(self.target_shape)} ({known} values)")
            return self.target_shape
        if size % known:
            raise LayerError(f"cannot reshape {shape_text(shape)} ({size} values) to {list(self.target_shape)}: "
                             f"{size} is not a multiple of {known}")
        return tuple(size // known if s == -1 else s for s in self.target_shape)

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Permute(Layer):
    """Keras' transpose of the non-batch axes, numbered from 1 (the batch axis stays first)."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        dims = int_tuple(self.dims, "dims", "axes 1..rank")
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise LayerError(f"dims must be a permutation of 1..{len(dims)} (Keras counts from 1), got {list(dims)}")
        object.__setattr__(self, "dims", dims)

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != len(self.dims):
            raise LayerError(f"dims {list(self.dims)} permute {len(self.dims)} axes, but the input "
                             f"{shape_text(shape)} has {len(shape)}")
        return tuple(shape[d - 1] for d in self.dims)


@layer_type
@dataclass(frozen=True, kw_only=True)
class RepeatVector(Layer):
    """A flat vector repeated ``n`` times: ``n`` steps of the same features (what a sequence decoder reads, an
    LSTM after an image's encoding)."""

    KEEPS_SCALE: ClassVar[bool] = True  # its input's values, repeated

    n: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "n", positive_int(self.n, "n"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 1, "RepeatVector repeats a (features,) vector")
        return self.n, shape[0]

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # each step the input's distribution


def side_pairs(value: Any, setting: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras' forms of a padding or cropping: n, (rows, columns), or ((top, bottom), (left, right)); each entry
    an int or a pair (Keras' ``standardize_tuple``), none negative."""
    entries = (value, value) if is_int(value) else value
    if isinstance(entries, (list, tuple)) and len(entries) == 2:
        pairs = tuple((v, v) if is_int(v) else tuple(v) if isinstance(v, (list, tuple)) else None for v in entries)
        if all(p is not None and len(p) == 2 and all(is_int(n) and n >= 0 for n in p) for p in pairs):
            return pairs
    raise LayerError(f"{setting} must be a non-negative integer, a pair of them (rows, columns), or "
                     f"((top, bottom), (left, right)), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class _Sides2D(Layer):
    """What ZeroPadding2D and Cropping2D share: rows and columns at each side of an (H, W, C) map."""
    PASSES_BYTES: ClassVar[bool] = True

    KEEPS_SCALE: ClassVar[bool] = True

    SETTING: ClassVar[str]
    KERAS_FIXED: ClassVar = DATA_FORMAT

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, self.SETTING, side_pairs(getattr(self, self.SETTING), self.SETTING))

    def settings(self) -> dict[str, Any]:
        """Pairs of pairs as lists of lists, as Keras' config.json spells them (and YAML can write)."""
        return {**super().settings(), self.SETTING: [list(pair) for pair in getattr(self, self.SETTING)]}


@layer_type
@dataclass(frozen=True, kw_only=True)
class ZeroPadding2D(_Sides2D):
    """Zeros added at each side; Keras' default pads one row and one column everywhere."""

    padding: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (1, 1))

    SETTING: ClassVar[str] = "padding"

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "padding works on images")
        (top, bottom), (left, right) = self.padding
        return shape[0] + top + bottom, shape[1] + left + right, shape[2]


@layer_type
@dataclass(frozen=True, kw_only=True)
class Cropping2D(_Sides2D):
    """Rows and columns removed at each side; Keras refuses a crop that leaves nothing."""

    cropping: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    SETTING: ClassVar[str] = "cropping"

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "cropping works on images")
        out = tuple(size - sum(crop) for size, crop in zip(shape[:2], self.cropping))
        for axis, size, crop, left in zip(("height", "width"), shape, self.cropping, out):
            if left < 1:
                raise LayerError(f"cropping {list(crop)} leaves nothing of the input's {axis} ({size})")
        return (*out, shape[2])


@layer_type
@dataclass(frozen=True, kw_only=True)
class UpSampling2D(Layer):
    """Keras repeats rows and columns ("nearest"), or resizes bilinearly with half-pixel centres, edges clamped and
    no antialiasing (``tf.image.resize``: torch's ``align_corners=False``); its other interpolations are refused."""
    PASSES_BYTES: ClassVar[bool] = True

    KEEPS_SCALE: ClassVar[bool] = True  # its input's values repeated, or weighted means

    size: tuple[int, int] = (2, 2)
    interpolation: str = "nearest"

    KERAS_FIXED: ClassVar = DATA_FORMAT

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "size", int_pair(self.size, "size"))
        object.__setattr__(self, "interpolation",
                           choice(self.interpolation, "interpolation", INTERPOLATIONS, lower=True))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "upsampling works on images")
        return shape[0] * self.size[0], shape[1] * self.size[1], shape[2]


@layer_type
@dataclass(frozen=True, kw_only=True)
class Identity(Layer):
    """Its input, unchanged (Keras' placeholder layer, e.g. a residual block's shortcut)."""
    PASSES_BYTES: ClassVar[bool] = True

    KEEPS_SCALE: ClassVar[bool] = True

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True


def side_pair(value: Any, setting: str) -> tuple[int, int]:
    """Keras' forms of a 1D padding or cropping: n, or (before, after) steps; none negative."""
    pair = (value, value) if is_int(value) else tuple(value) if isinstance(value, (list, tuple)) else None
    if pair is None or len(pair) != 2 or not all(is_int(n) and n >= 0 for n in pair):
        raise LayerError(f"{setting} must be a non-negative integer or a pair of them (before, after), got {value!r}")
    return pair


@dataclass(frozen=True, kw_only=True)
class _Sides1D(Layer):
    """What ZeroPadding1D and Cropping1D share: steps at each end of a (steps, features) map."""
    PASSES_BYTES: ClassVar[bool] = True

    KEEPS_SCALE: ClassVar[bool] = True

    SETTING: ClassVar[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, self.SETTING, side_pair(getattr(self, self.SETTING), self.SETTING))

    def settings(self) -> dict[str, Any]:
        """The pair as a list, as Keras' config.json spells it (and YAML can write)."""
        return {**super().settings(), self.SETTING: list(getattr(self, self.SETTING))}


@layer_type
@dataclass(frozen=True, kw_only=True)
class ZeroPadding1D(_Sides1D):
    """Zero steps added before and after; Keras' default pads one at each end."""

    padding: tuple[int, int] = (1, 1)

    SETTING: ClassVar[str] = "padding"
    KERAS_FIXED: ClassVar = DATA_FORMAT

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, "1D padding works on (steps, features) maps")
        return shape[0] + sum(self.padding), shape[1]


@layer_type
@dataclass(frozen=True, kw_only=True)
class Cropping1D(_Sides1D):
    """Steps removed at each end (Keras' default: one); Keras refuses a crop that leaves nothing."""

    cropping: tuple[int, int] = (1, 1)

    SETTING: ClassVar[str] = "cropping"

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, "1D cropping works on (steps, features) maps")
        left = shape[0] - sum(self.cropping)
        if left < 1:
            raise LayerError(f"cropping {list(self.cropping)} leaves nothing of the input's {shape[0]} steps")
        return left, shape[1]

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # whole steps kept or dropped


@layer_type
@dataclass(frozen=True, kw_only=True)
class UpSampling1D(Layer):
    """Each step repeated ``size`` times (Keras' ``ops.repeat`` along the steps)."""
    PASSES_BYTES: ClassVar[bool] = True

    KEEPS_SCALE: ClassVar[bool] = True  # its input's values repeated, or weighted means

    size: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "size", positive_int(self.size, "size"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, "1D upsampling works on (steps, features) maps")
        return shape[0] * self.size, shape[1]

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # the same steps, repeated
