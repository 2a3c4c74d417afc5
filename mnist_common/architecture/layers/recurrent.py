"""Keras' recurrent layers: SimpleRNN, LSTM, GRU, over the steps of a (steps, features) sequence.

An MNIST image read as 28 rows of 28 pixels is the classic input ("rows as a sequence"). Each
layer starts from zero states, reads the steps in order (or backwards, ``go_backwards``) and
gives its last output, or every step's (``return_sequences``). Keras keeps the weights in the
layer's cell (``layers/lstm/cell/vars/0`` in ``model.weights.h5``), gates side by side along the
last axis of each kernel in Keras' order: LSTM input, forget, cell, output; GRU update, reset,
candidate. What is not mirrored is refused in one line: several outputs (``return_state``), state
kept between batches (``stateful``), and LSTM's and GRU's ``recurrent_dropout``, with which Keras 3
switches to its first implementation, whose masks are rows of one batch-wide mask shared by every
sample. Keras' ``unroll`` and ``use_cudnn`` pick how it computes the same values, and
``zero_output_for_mask`` acts only with masks, which no supported layer makes: all three ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    activation_name,
    boolean,
    initializer,
    layer_type,
    number,
    positive_int,
    require_rank,
    seed_value,
)


@dataclass(frozen=True, kw_only=True)
class _Recurrent(Layer):
    """The settings the three share. ``dropout`` masks input features and ``recurrent_dropout`` state units in
    training, one mask per sample for all its steps (survivors scaled by 1 / (1 - rate)); ``seed`` picks Keras' masks
    (torch draws its own)."""

    units: int
    activation: str = "tanh"
    use_bias: bool = True
    kernel_initializer: str | dict = "glorot_uniform"
    recurrent_initializer: str | dict = "orthogonal"
    bias_initializer: str | dict = "zeros"
    kernel_regularizer: dict | None = None
    recurrent_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    kernel_constraint: dict | None = None
    recurrent_constraint: dict | None = None
    bias_constraint: dict | None = None
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    seed: int | None = None
    return_sequences: bool = False
    go_backwards: bool = False

    GATES: ClassVar[int] = 1  # blocks of ``units`` side by side in each kernel
    KERAS_FIXED: ClassVar = {"return_state": (False, "return_state (the states as extra outputs)"),
                             "stateful": (False, "stateful (states kept from one batch to the next)")}
    KERAS_IGNORED: ClassVar = frozenset({"unroll", "use_cudnn", "zero_output_for_mask"})

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "units", positive_int(self.units, "units"))
        set_(self, "activation", activation_name(self.activation))
        for flag in ("use_bias", "return_sequences", "go_backwards"):
            set_(self, flag, boolean(getattr(self, flag), flag))
        for stem in ("kernel", "recurrent", "bias"):
            set_(self, f"{stem}_initializer", initializer(getattr(self, f"{stem}_initializer"), f"{stem}_initializer"))
        for rate in ("dropout", "recurrent_dropout"):
            set_(self, rate, number(getattr(self, rate), rate, 0.0, 1.0, high_open=True))
        set_(self, "seed", seed_value(self.seed, "seed"))

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, f"{self.type} reads a sequence of (steps, features)")
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def bias_shape(self) -> Shape:
        return (self.GATES * self.units,)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        kernels = (("kernel", (shape[-1], self.GATES * self.units)),
                   ("recurrent_kernel", (self.units, self.GATES * self.units)))
        return (*kernels, ("bias", self.bias_shape())) if self.use_bias else kernels

    def weight_path(self, index: int) -> str:
        return f"cell/vars/{index}"  # Keras keeps them in the layer's cell


@dataclass(frozen=True, kw_only=True)
class _Gated(_Recurrent):
    """LSTM's and GRU's gates: ``recurrent_activation`` (sigmoid by default); no ``recurrent_dropout``."""

    recurrent_activation: str = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "recurrent_activation", activation_name(self.recurrent_activation,
                                                                         "recurrent_activation"))
        if self.recurrent_dropout:
            raise LayerError(f"has recurrent_dropout={self.recurrent_dropout:g}, which is not supported: Keras 3 then "
                             f"masks every sample with rows of one batch-wide mask (its implementation 1); use dropout, "
                             f"or a SimpleRNN")


@layer_type
@dataclass(frozen=True, kw_only=True)
class SimpleRNN(_Recurrent):
    """``h = activation(x @ kernel + bias + h @ recurrent_kernel)`` at each step."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class LSTM(_Gated):
    """Gates input, forget, cell, output; ``unit_forget_bias`` starts the forget gate's bias at one (an initial value
    only: the other gates' bias is drawn by ``bias_initializer`` as one vector)."""

    unit_forget_bias: bool = True

    GATES: ClassVar[int] = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "unit_forget_bias", boolean(self.unit_forget_bias, "unit_forget_bias"))

    def finish_initial(self, weight_name: str, value: Any) -> Any:
        if weight_name == "bias" and self.unit_forget_bias:
            value[self.units:2 * self.units] = 1.0
        return value


@layer_type
@dataclass(frozen=True, kw_only=True)
class GRU(_Gated):
    """Gates update, reset, candidate. ``reset_after`` (Keras' default, cuDNN's form) applies the reset gate to the
    state's product with the recurrent kernel, which then has its own bias: the bias is (2, 3 * units), the input's row
    then the state's; without it the gate multiplies the state first, and one bias of 3 * units serves."""

    reset_after: bool = True

    GATES: ClassVar[int] = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "reset_after", boolean(self.reset_after, "reset_after"))

    def bias_shape(self) -> Shape:
        return (2, self.GATES * self.units) if self.reset_after else (self.GATES * self.units,)
