"""Convolutions: Conv2D."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    CHANNELS_LAST,
    PADDINGS,
    Layer,
    Shape,
    activation_name,
    boolean,
    choice,
    initializer,
    int_pair,
    layer_type,
    positive_int,
    require_rank,
    window_output,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Conv2D(Layer):
    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"
    activation: str = "linear"
    use_bias: bool = True
    kernel_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last"),
                             "dilation_rate": ([1, 1], "dilation"), "groups": (1, "grouped convolution")}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "filters", positive_int(self.filters, "filters"))
        set_(self, "kernel_size", int_pair(self.kernel_size, "kernel_size"))
        set_(self, "strides", int_pair(self.strides, "strides"))
        set_(self, "padding", choice(self.padding, "padding", PADDINGS))
        set_(self, "activation", activation_name(self.activation))
        set_(self, "use_bias", boolean(self.use_bias, "use_bias"))
        set_(self, "kernel_initializer", initializer(self.kernel_initializer, "kernel_initializer"))
        set_(self, "bias_initializer", initializer(self.bias_initializer, "bias_initializer"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "flatten or pool to get there")
        h, w, _ = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return (window_output(h, kh, sh, self.padding, "kernel height"),
                window_output(w, kw, sw, self.padding, "kernel width"), self.filters)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        kernel = ("kernel", (*self.kernel_size, shape[-1], self.filters))
        return (kernel, ("bias", (self.filters,))) if self.use_bias else (kernel,)
