"""Keras' core layers: Dense."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_common.architecture.layers.base import (
    Layer,
    Shape,
    activation_setting,
    boolean,
    initializer,
    layer_type,
    positive_int,
)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """On a flat input as usual; on an (H, W, C) or (H, W) input Keras applies it to the last axis."""

    units: int
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
        set_ = object.__setattr__
        set_(self, "units", positive_int(self.units, "units"))
        set_(self, "activation", activation_setting(self.activation))
        set_(self, "use_bias", boolean(self.use_bias, "use_bias"))
        set_(self, "kernel_initializer", initializer(self.kernel_initializer, "kernel_initializer"))
        set_(self, "bias_initializer", initializer(self.bias_initializer, "bias_initializer"))

    def output_shape(self, shape: Shape) -> Shape:
        return (*shape[:-1], self.units)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        kernel = ("kernel", (shape[-1], self.units))
        return (kernel, ("bias", (self.units,))) if self.use_bias else (kernel,)
