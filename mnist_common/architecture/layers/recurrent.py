"""Keras' recurrent layers: SimpleRNN, LSTM, GRU, over the steps of a (steps, features) sequence; the wrappers
Bidirectional and TimeDistributed (a layer applied to each step).

An MNIST image read as 28 rows of 28 pixels is the classic input ("rows as a sequence"). Each
layer starts from zero states, reads the steps in order (or backwards, ``go_backwards``) and
gives its last output, or every step's (``return_sequences``). Keras keeps the weights in the
layer's cell (``layers/lstm/cell/vars/0`` in ``model.weights.h5``), gates side by side along the
last axis of each kernel in Keras' order: LSTM input, forget, cell, output; GRU update, reset,
candidate. What is not mirrored is refused in one line: several outputs (``return_state``), state
kept between batches (``stateful``), and LSTM's and GRU's ``recurrent_dropout``, with which Keras 3
switches to its first implementation, whose masks are rows of one batch-wide mask shared by every
sample. Keras' ``unroll`` picks how Keras computes the same values: kept for the Keras model written
back, not used by torch; ``use_cudnn`` too, but Keras does not save it; ``zero_output_for_mask`` acts
only with masks, which no supported layer makes: both ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    FLOAT32,
    Layer,
    LayerError,
    Shape,
    activation_name,
    boolean,
    choice,
    initializer,
    layer_type,
    number,
    positive_int,
    require_rank,
    seed_value,
    shape_text,
    wrapped_layer,
)


MAX_STEPS = 4_096  # an MNIST image has 28 rows, or 784 pixels; a crafted file's million steps would run for hours


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
    unroll: bool = False

    GATES: ClassVar[int] = 1  # blocks of ``units`` side by side in each kernel
    KERAS_FIXED: ClassVar = {"return_state": (False, "return_state (the states as extra outputs)"),
                             "stateful": (False, "stateful (states kept from one batch to the next)")}
    KERAS_IGNORED: ClassVar = frozenset({"use_cudnn", "zero_output_for_mask"})

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "units", positive_int(self.units, "units"))
        set_(self, "activation", activation_name(self.activation))
        for flag in ("use_bias", "return_sequences", "go_backwards", "unroll"):
            set_(self, flag, boolean(getattr(self, flag), flag))
        for stem in ("kernel", "recurrent", "bias"):
            set_(self, f"{stem}_initializer", initializer(getattr(self, f"{stem}_initializer"), f"{stem}_initializer"))
        for rate in ("dropout", "recurrent_dropout"):
            set_(self, rate, number(getattr(self, rate), rate, 0.0, 1.0, high_open=True))
        set_(self, "seed", seed_value(self.seed, "seed"))

    def unrolled_steps(self, shape: Shape) -> int:
        return shape[0]

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 2, f"{self.type} reads a sequence of (steps, features)")
        if shape[0] > MAX_STEPS:
            raise LayerError(f"reads {shape[0]:,} steps, more than this bridge runs a recurrent layer over "
                             f"({MAX_STEPS:,}: one small operator group per step)")
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


MERGE_MODES = ("concat", "sum", "mul", "ave")
SIDES = ("forward", "backward")
def recurrent_layer(value: Any, setting: str) -> _Recurrent:
    """A SimpleRNN, LSTM or GRU (:func:`wrapped_layer`): a Bidirectional's layers."""
    return wrapped_layer(value, setting, _Recurrent, "a SimpleRNN, LSTM or GRU")


@layer_type
@dataclass(frozen=True, kw_only=True)
class Bidirectional(Layer):
    """A recurrent ``layer`` reading the steps forwards and a ``backward_layer`` reading them backwards (by default
    the layer's own settings with ``go_backwards``, as Keras makes it), their outputs merged by ``merge_mode``; with
    ``return_sequences`` the backward outputs are put back in the steps' order first. Keras keeps the two layers'
    weights under ``forward_layer/cell`` and ``backward_layer/cell``; here they are the forward's then the
    backward's, named ``forward_kernel``, ..., ``backward_bias``. ``merge_mode=None`` (two outputs) is refused."""

    layer: Any
    merge_mode: str = "concat"
    backward_layer: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        if self.merge_mode is None:
            raise LayerError("has merge_mode=None (the two directions as two outputs), which is not supported; "
                             f"give one of {', '.join(MERGE_MODES)}")
        set_(self, "merge_mode", choice(self.merge_mode, "merge_mode", MERGE_MODES))
        forward = recurrent_layer(self.layer, "layer")
        set_(self, "layer", forward)
        if self.backward_layer is None:
            name = forward.name and "backward_" + forward.name.removeprefix("forward_").removeprefix("backward_")
            set_(self, "backward_layer", dataclasses.replace(forward, go_backwards=True, name=name))
        else:
            set_(self, "backward_layer", recurrent_layer(self.backward_layer, "backward_layer"))
        backward = self.backward_layer
        for setting, side in (("layer", forward), ("backward_layer", backward)):
            if side.activity_regularizer is not None:
                raise LayerError(f"{setting} sets activity_regularizer, which is not supported inside a Bidirectional "
                                 f"(set it on the Bidirectional)")
        if forward.go_backwards == backward.go_backwards:
            raise LayerError(f"reads the steps {'backwards' if forward.go_backwards else 'forwards'} in both layers "
                             f"(go_backwards={forward.go_backwards} in each); Keras needs the two to differ")
        if forward.return_sequences != backward.return_sequences:
            raise LayerError(f"return_sequences is {forward.return_sequences} in the layer but "
                             f"{backward.return_sequences} in the backward_layer; Keras needs them the same")

    def sides(self) -> tuple[tuple[str, _Recurrent], ...]:
        return ("forward", self.layer), ("backward", self.backward_layer)

    def unrolled_steps(self, shape: Shape) -> int:
        return sum(side.unrolled_steps(shape) for _, side in self.sides())

    def output_shape(self, shape: Shape) -> Shape:
        forward, backward = self.layer.output_shape(shape), self.backward_layer.output_shape(shape)
        if forward != backward:  # Keras declares the forward layer's shape for both, so its model would not run
            raise LayerError(f"needs both directions of one size (Keras assumes the layer's for both); the layer "
                             f"gives {shape_text(forward)} and the backward_layer {shape_text(backward)}")
        return (*forward[:-1], 2 * forward[-1]) if self.merge_mode == "concat" else forward

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return tuple((f"{side}_{name}", size) for side, layer in self.sides() for name, size in layer.weights(shape))

    def weight_path(self, index: int) -> str:
        count = len(self.layer.weights((1, 1)))  # how many weights the forward layer has (any shape)
        side, layer = self.sides()[index >= count]
        return f"{side}_layer/{layer.weight_path(index - count if index >= count else index)}"

    def side_of(self, weight_name: str) -> tuple[_Recurrent, str]:
        """The layer that holds a weight and its name there: ``backward_kernel`` is the backward layer's ``kernel``."""
        side, _, name = weight_name.partition("_")
        return dict(self.sides())[side], name

    def initializer_of(self, weight_name: str) -> str | dict[str, Any]:
        layer, name = self.side_of(weight_name)
        return layer.initializer_of(name)

    def trains(self, weight_name: str) -> bool:
        """As that side's layer says: Keras gathers a Bidirectional's trainable weights from its two layers, so its own
        flag alone (``Bidirectional(..., trainable=False)``) freezes nothing, and ``bidirectional.trainable = False``
        writes False into both layers' configs too."""
        layer, name = self.side_of(weight_name)
        return layer.trains(name)

    def regularizer_of(self, weight_name: str) -> dict[str, Any] | None:
        layer, name = self.side_of(weight_name)
        return layer.regularizer_of(name)

    def constraint_of(self, weight_name: str) -> dict[str, Any] | None:
        layer, name = self.side_of(weight_name)
        return layer.constraint_of(name)

    def finish_initial(self, weight_name: str, value: Any) -> Any:
        layer, name = self.side_of(weight_name)
        return layer.finish_initial(name, value)

    def check_weight_settings(self, *shapes: Shape) -> None:
        for side, layer in self.sides():
            try:
                layer.check_weight_settings(*shapes)
            except LayerError as err:
                raise LayerError(f"{'layer' if side == 'forward' else 'backward_layer'}: {err}") from None

    def policies(self) -> set[str]:
        return {self.dtype, self.layer.dtype, self.backward_layer.dtype}

    def in_float32(self) -> Bidirectional:
        return dataclasses.replace(self, dtype=FLOAT32, layer=self.layer.in_float32(),
                                   backward_layer=self.backward_layer.in_float32())


# Kinds Keras' TimeDistributed would run otherwise than torch: it calls the layer on each step's slice of the batch
# in turn, so a BatchNormalization would normalise each step by its own statistics and update them once a step
NOT_TIME_DISTRIBUTED = {"BatchNormalization": "Keras normalises each step by that step's batch statistics there",
                        "Normalization": "its adapted statistics are kept only outside a wrapper"}


@layer_type
@dataclass(frozen=True, kw_only=True)
class TimeDistributed(Layer):
    """``layer`` applied to each step of its input alone, the same weights at every step: the steps are the first
    axis after the batch (an image's rows: ``TimeDistributed(LSTM(16))`` over a 28x28x1 image reads each row as a
    sequence of 28 pixels, the hierarchical RNN of Keras' MNIST examples). Keras keeps the layer's weights under
    ``layer/vars/i``; their names, shapes and settings are the layer's for one step's shape. Keras calls the layer's
    ``call`` directly, so an activity regularizer on it would never act: refused, as is a kind whose result over a
    batch depends on the batch (BatchNormalization)."""

    layer: Any

    def __post_init__(self) -> None:
        super().__post_init__()
        inner = wrapped_layer(self.layer, "layer")
        if inner.type in NOT_TIME_DISTRIBUTED:
            raise LayerError(f"wraps a {inner.type}, which is not supported here: {NOT_TIME_DISTRIBUTED[inner.type]}")
        if inner.activity_regularizer is not None:
            raise LayerError("layer sets activity_regularizer, which Keras never applies inside a TimeDistributed "
                             "(set it on the TimeDistributed)")
        object.__setattr__(self, "layer", inner)

    @staticmethod
    def step_shape(shape: Shape) -> Shape:
        """One step's shape: ``shape`` without its first axis (the steps)."""
        if len(shape) < 2:
            raise LayerError(f"needs steps of at least one axis each ((steps, features) or (steps, ..., channels)), "
                             f"got {shape_text(shape)}")
        return shape[1:]

    def unrolled_steps(self, shape: Shape) -> int:
        return self.layer.unrolled_steps(self.step_shape(shape))  # Keras runs its layer once, on all steps' rows

    def output_shape(self, shape: Shape) -> Shape:
        step = self.step_shape(shape)
        try:
            out = self.layer.output_shape(step)
        except LayerError as err:
            raise LayerError(f"layer ({self.layer.type}) on each step of {shape_text(step)}: {err}") from None
        if not out:
            raise LayerError(f"its layer gives one number a step ({self.layer.type}); Keras needs at least one axis")
        return (shape[0], *out)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        return self.layer.weights(self.step_shape(shape))

    def working_values(self, shape: Shape) -> int:
        return shape[0] * self.layer.working_values(self.step_shape(shape))

    def weight_path(self, index: int) -> str:
        return f"layer/{self.layer.weight_path(index)}"

    def weight_dtype(self, weight_name: str) -> str:
        return self.layer.weight_dtype(weight_name)

    def initial_shape(self, weight_name: str, shape: Shape) -> Shape:
        return self.layer.initial_shape(weight_name, shape)

    def finish_initial(self, weight_name: str, value: Any) -> Any:
        return self.layer.finish_initial(weight_name, value)

    def initializer_of(self, weight_name: str) -> str | dict[str, Any]:
        return self.layer.initializer_of(weight_name)

    def regularizer_of(self, weight_name: str) -> dict[str, Any] | None:
        return self.layer.regularizer_of(weight_name)

    def constraint_of(self, weight_name: str) -> dict[str, Any] | None:
        return self.layer.constraint_of(weight_name)

    def trains(self, weight_name: str) -> bool:
        """As its layer says: Keras gathers the weights' trainable flags from the layer that holds them, so the
        wrapper's own flag alone (``TimeDistributed(..., trainable=False)``) freezes nothing, as for Bidirectional."""
        return self.layer.trains(weight_name)

    def check_weight_settings(self, shape: Shape) -> None:
        try:
            self.layer.check_weight_settings(self.step_shape(shape))
        except LayerError as err:
            raise LayerError(f"layer: {err}") from None

    def policies(self) -> set[str]:
        return {self.dtype, *self.layer.policies()}

    def in_float32(self) -> TimeDistributed:
        return dataclasses.replace(self, dtype=FLOAT32, layer=self.layer.in_float32())

    # What its outputs are, read from its layer's on each step (zoo round 7: a TimeDistributed(Dense(10,
    # activation="softmax")) output was read as logits and softmaxed again, its sigmoid was taken for logits)

    def softmax_axis(self) -> int | None:
        """Its layer's, counted in its output: a step's axis a (the batch 0) is a + 1 here, the steps being 1."""
        axis = self.layer.softmax_axis()
        return axis + 1 if axis is not None and axis > 0 else axis

    def output_activation(self) -> str | None:
        return self.layer.output_activation()

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return self.layer.keeps_distributions(self.step_shape(shapes[0]))

    @property
    def REARRANGES(self) -> bool:  # (the class constant of the other kinds, read from its layer here)
        return self.layer.REARRANGES
