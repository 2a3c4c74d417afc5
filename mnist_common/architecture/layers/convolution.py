"""Convolutions: Conv2D (dilated, grouped), DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, and their 1D kinds
(Conv1D, DepthwiseConv1D, SeparableConv1D, Conv1DTranspose) over the steps of an (H, W) map (a sequence of H steps
of W features), Conv1D's "causal" padding included.

A dilated kernel covers ``(k - 1) * d + 1`` cells, and Keras' output sizes and "same"
padding are those of that effective window. Keras refuses ``strides > 1`` together with
``dilation_rate > 1`` in Conv2D and Conv2DTranspose (TensorFlow cannot compute the pair),
but computes the pair in DepthwiseConv2D and SeparableConv2D (a dilated convolution at
stride 1, subsampled): the descriptions accept what Keras accepts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    PADDINGS,
    Layer,
    LayerError,
    Shape,
    activation_setting,
    boolean,
    choice,
    initializer,
    int_tuple,
    layer_type,
    padded_values,
    positive_int,
    require_rank,
    same_padding,
    window_output,
)


def effective_window(kernel_size: tuple[int, ...], dilation_rate: tuple[int, ...]) -> tuple[int, ...]:
    """The cells a dilated kernel spans along each axis: ``(k - 1) * d + 1``."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation_rate))


class Convolution(Layer):
    """What the convolutions share: their window settings, checked as Keras checks them, and output sizes.

    Subclasses declare the fields (in Keras' order); every ``*_initializer`` field is an initializer.
    """

    # Whether Keras computes strides > 1 together with dilation_rate > 1 for this kind.
    STRIDED_DILATION: ClassVar[bool] = False
    # The axes the window slides along (2: an (H, W, C) image; 1: the steps of a (steps, features) map).
    WINDOW_AXES: ClassVar[tuple[str, ...]] = ("height", "width")
    PADDINGS: ClassVar[tuple[str, ...]] = PADDINGS
    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        for count in ("filters", "depth_multiplier", "groups"):
            if hasattr(self, count):
                set_(self, count, positive_int(getattr(self, count), count))
        for window in ("kernel_size", "strides", "dilation_rate"):
            set_(self, window, int_tuple(getattr(self, window), window, len(self.WINDOW_AXES)))
        set_(self, "padding", choice(self.padding, "padding", self.PADDINGS, lower=True))
        set_(self, "activation", activation_setting(self.activation))
        set_(self, "use_bias", boolean(self.use_bias, "use_bias"))
        for f in dataclasses.fields(self):
            if f.name.endswith("_initializer"):
                set_(self, f.name, initializer(getattr(self, f.name), f.name))
        if not self.STRIDED_DILATION and max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise LayerError(f"strides={list(self.strides)} with dilation_rate={list(self.dilation_rate)}: "
                             f"Keras refuses strides > 1 together with dilation_rate > 1")

    def window_output(self, shape: Shape) -> tuple[int, ...]:
        """The output sizes of the (dilated) window sliding over an (H, W, C) input ((steps, features) for 1D)."""
        axes = self.WINDOW_AXES
        require_rank(shape, len(axes) + 1, "flatten or pool to get there" if len(axes) == 2
                     else f"a {self.type} slides along the first axis of (steps, features)")
        what = "dilated kernel" if max(self.dilation_rate) > 1 else "kernel"
        windows = effective_window(self.kernel_size, self.dilation_rate)
        padding = "same" if self.padding == "causal" else self.padding  # both keep ceil(size / stride) positions
        return tuple(window_output(size, window, stride, padding, f"{what} {axis}")
                     for size, window, stride, axis in zip(shape[:len(axes)], windows, self.strides, axes))

    def working_values(self, shape: Shape) -> int:
        return padded_values(shape, effective_window(self.kernel_size, self.dilation_rate), self.strides, self.padding,
                             self.dilation_rate)

    def with_bias(self, *weights: tuple[str, Shape], units: int) -> tuple[tuple[str, Shape], ...]:
        return (*weights, ("bias", (units,))) if self.use_bias else weights


@layer_type
@dataclass(frozen=True, kw_only=True)
class Conv2D(Convolution):
    """Keras' grouped convolution splits the input channels into ``groups`` runs, each seen by
    ``filters // groups`` consecutive filters (torch's ``groups=`` does the same)."""

    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    dilation_rate: tuple[int, int] = (1, 1)
    groups: int = 1
    activation: str | Layer = "linear"  # a name, or a layer object (activation_setting)
    use_bias: bool = True
    kernel_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"
    kernel_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    kernel_constraint: dict | None = None
    bias_constraint: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.filters % self.groups:
            raise LayerError(f"filters={self.filters} is not a multiple of groups={self.groups}")

    def output_shape(self, shape: Shape) -> Shape:
        size = self.window_output(shape)
        if shape[-1] % self.groups:
            raise LayerError(f"groups={self.groups} does not divide the input's {shape[-1]} channels")
        return (*size, self.filters)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return self.with_bias(("kernel", (*self.kernel_size, shape[-1] // self.groups, self.filters)),
                              units=self.filters)


class AlongSteps:
    """What the 1D kinds add to their 2D twins: the window slides along the steps of a (steps, features) input,
    padded as Keras pads (:func:`steps_padding`)."""

    WINDOW_AXES: ClassVar = ("steps",)

    def padding_amounts(self, steps: int) -> tuple[int, int]:
        return steps_padding(self, steps)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Conv1D(AlongSteps, Conv2D):
    """Conv2D's settings along one axis, over a (steps, features) input: a kernel (k, features / groups, filters).
    ``padding="causal"`` pads only before, ``(k - 1) * d`` steps, so no output sees a later step."""

    kernel_size: tuple[int]
    strides: tuple[int] = (1,)
    dilation_rate: tuple[int] = (1,)

    PADDINGS: ClassVar = (*PADDINGS, "causal")


def steps_padding(layer: Convolution, steps: int) -> tuple[int, int]:
    """Keras' padding (before, after) along the steps of a 1D convolution of ``steps`` steps."""
    window = effective_window(layer.kernel_size, layer.dilation_rate)[0]
    if layer.padding == "causal":
        return window - 1, 0
    return same_padding(steps, window, layer.strides[0]) if layer.padding == "same" else (0, 0)


@layer_type
@dataclass(frozen=True, kw_only=True)
class DepthwiseConv2D(Convolution):
    """Each input channel c gets its own ``depth_multiplier`` filters: output channel ``c * m + j``
    is channel c under the kernel's ``[:, :, c, j]``. Keras names the kernel ``kernel``."""

    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    dilation_rate: tuple[int, int] = (1, 1)
    activation: str | Layer = "linear"  # a name, or a layer object (activation_setting)
    use_bias: bool = True
    depthwise_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"
    depthwise_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    depthwise_constraint: dict | None = None
    bias_constraint: dict | None = None

    STRIDED_DILATION: ClassVar[bool] = True

    def output_shape(self, shape: Shape) -> Shape:
        return (*self.window_output(shape), shape[-1] * self.depth_multiplier)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return self.with_bias(("kernel", (*self.kernel_size, shape[-1], self.depth_multiplier)),
                              units=shape[-1] * self.depth_multiplier)

    def setting_stem(self, weight_name: str) -> str:
        return "depthwise" if weight_name == "kernel" else weight_name  # Keras: depthwise_initializer for "kernel"


@layer_type
@dataclass(frozen=True, kw_only=True)
class SeparableConv2D(Convolution):
    """A depthwise convolution (channel ``c * m + j`` as in DepthwiseConv2D, no bias) then a 1x1 one."""

    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    dilation_rate: tuple[int, int] = (1, 1)
    activation: str | Layer = "linear"  # a name, or a layer object (activation_setting)
    use_bias: bool = True
    depthwise_initializer: str | dict = "glorot_uniform"
    pointwise_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"
    depthwise_regularizer: dict | None = None
    pointwise_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    depthwise_constraint: dict | None = None
    pointwise_constraint: dict | None = None
    bias_constraint: dict | None = None

    STRIDED_DILATION: ClassVar[bool] = True

    def output_shape(self, shape: Shape) -> Shape:
        return (*self.window_output(shape), self.filters)

    def working_values(self, shape: Shape) -> int:
        """The padded input, and the depthwise result both frameworks hold before the pointwise product: the output's
        positions times ``channels * depth_multiplier`` (a multiplier of 10**6 on one channel held 1.6e11 values)."""
        return super().working_values(shape) + math.prod(self.window_output(shape)) * shape[-1] * self.depth_multiplier

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        depth = shape[-1] * self.depth_multiplier
        return self.with_bias(("depthwise_kernel", (*self.kernel_size, shape[-1], self.depth_multiplier)),
                              ("pointwise_kernel", (1, 1, depth, self.filters)), units=self.filters)


@layer_type
@dataclass(frozen=True, kw_only=True)
class DepthwiseConv1D(AlongSteps, DepthwiseConv2D):
    """DepthwiseConv2D along the steps of a (steps, features) input: a kernel (k, features, depth_multiplier)."""

    kernel_size: tuple[int]
    strides: tuple[int] = (1,)
    dilation_rate: tuple[int] = (1,)


@layer_type
@dataclass(frozen=True, kw_only=True)
class SeparableConv1D(AlongSteps, SeparableConv2D):
    """SeparableConv2D along the steps: a depthwise kernel (k, features, depth_multiplier), then a pointwise one
    (1, features * depth_multiplier, filters)."""

    kernel_size: tuple[int]
    strides: tuple[int] = (1,)
    dilation_rate: tuple[int] = (1,)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        depth = shape[-1] * self.depth_multiplier
        return self.with_bias(("depthwise_kernel", (*self.kernel_size, shape[-1], self.depth_multiplier)),
                              ("pointwise_kernel", (1, depth, self.filters)), units=self.filters)


def output_padding_tuple(value: Any, length: int = 2) -> tuple[int, ...] | None:
    """None (Keras chooses), or ``length`` non-negative integers (one per axis; a single one for all)."""
    return None if value is None else int_tuple(value, "output_padding", length, least=0, also="null, ")


@layer_type
@dataclass(frozen=True, kw_only=True)
class Conv2DTranspose(Convolution):
    """The gradient of a Conv2D with respect to its input: each input cell spreads the kernel over
    the output, ``strides`` apart. Keras (TensorFlow) fixes the output size first
    (:meth:`output_size`), then places the full result of ``(n - 1) * s + k`` cells in it
    (:meth:`placement`), cutting or zero-filling at the end."""

    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    output_padding: tuple[int, int] | None = None
    dilation_rate: tuple[int, int] = (1, 1)
    activation: str | Layer = "linear"  # a name, or a layer object (activation_setting)
    use_bias: bool = True
    kernel_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"
    kernel_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    kernel_constraint: dict | None = None
    bias_constraint: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "output_padding", output_padding_tuple(self.output_padding, len(self.WINDOW_AXES)))
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise LayerError(f"output_padding={list(self.output_padding)} must be less than "
                             f"strides={list(self.strides)} on each axis")

    def output_size(self, size: int, axis: int) -> int:
        """Keras' output length along ``axis`` (0: height, 1: width) for an input of ``size``."""
        kernel = effective_window(self.kernel_size, self.dilation_rate)[axis]
        stride, extra = self.strides[axis], None if self.output_padding is None else self.output_padding[axis]
        if self.padding == "valid":
            return (size - 1) * stride + kernel + (max(kernel, stride) - kernel if extra is None else extra)
        return size * stride if extra is None else (size - 1) * stride + kernel % 2 + extra

    def working_values(self, shape: Shape) -> int:
        """torch's full transposed convolution, ``(n - 1) * s + k`` cells an axis before it is cut to Keras' output
        (a dilation of 10**6 made it 10**12 cells)."""
        windows = effective_window(self.kernel_size, self.dilation_rate)
        return math.prod((size - 1) * stride + window for size, stride, window in zip(shape, self.strides, windows)) \
            * self.filters

    def placement(self, size: int, axis: int) -> tuple[int, int]:
        """Where the full result of ``(n - 1) * s + k`` cells sits in the output along ``axis``: how many of
        its cells fall before the output ("same" padding's share before, as TensorFlow pads), and how many
        cells the output has past its end (output_padding's zeros; negative: cells of it that fall after)."""
        full = (size - 1) * self.strides[axis] + effective_window(self.kernel_size, self.dilation_rate)[axis]
        out = self.output_size(size, axis)
        before = max(full - out, 0) // 2 if self.padding == "same" else 0
        return before, out - (full - before)

    def output_shape(self, shape: Shape) -> Shape:
        axes = self.WINDOW_AXES
        require_rank(shape, len(axes) + 1, "flatten or pool to get there" if len(axes) == 2
                     else "a Conv1DTranspose works along the first axis of (steps, features)")
        sizes = tuple(self.output_size(size, axis) for axis, size in enumerate(shape[:len(axes)]))
        for axis, (size, out) in enumerate(zip(shape[:len(axes)], sizes)):
            # TensorFlow computes it as the gradient of a "same" Conv2D from the output back to the
            # input, so that Conv2D must give the input's size; Keras' size fails for some pairs.
            if self.padding == "same" and -(-out // self.strides[axis]) != size:
                raise LayerError(f"output_padding={list(self.output_padding)} with kernel_size="
                                 f"{list(self.kernel_size)} and padding='same' gives a {axes[axis]} "
                                 f"of {out} from {size}, which TensorFlow cannot compute")
        return (*sizes, self.filters)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return self.with_bias(("kernel", (*self.kernel_size, self.filters, shape[-1])), units=self.filters)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Conv1DTranspose(AlongSteps, Conv2DTranspose):
    """Conv2DTranspose along the steps of a (steps, features) input: a kernel (k, filters, features)."""

    kernel_size: tuple[int]
    strides: tuple[int] = (1,)
    output_padding: tuple[int] | None = None
    dilation_rate: tuple[int] = (1,)
