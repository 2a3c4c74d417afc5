"""Keras operations between layers: ``x + y``, ``x * 2.0``, ``1.0 - x``, ``keras.ops.relu(x)``, ``ops.mean(x, [1, 2])``.

Keras 3 records a call of ``keras.ops`` on a Functional model's tensors (Python's ``+``, ``-``,
``*``, ``/`` and ``**`` among them) as a node of the graph beside the layers': an operation,
saved in ``config.json`` with its class (``Add``, ``TrueDivide``, ``Mean``), its module
(``keras.src.ops.numpy`` or ``keras.src.ops.nn``), its own settings (``axis``, ``keepdims``)
and, among its call's arguments, the numbers the code gave it. An operation has no weights and
is not one of ``model.layers``, so it takes no place in the numbering of stored weights; a
``Sequential`` cannot hold one.

Each kind here is one operation, its type named after its ``keras.ops`` function (``ops.add``,
``ops.true_divide``), so it never reads as the layer of the same class name (``Add``); its
settings are its Keras config's, and a number given for an operand is a setting named as the
function's parameter: ``{type: ops.subtract, x1: 1.0}`` is ``1.0 - x``. Its unnamed node gets
Keras' name for it (``add``, ``true_divide``), as Keras names it.

Element-wise operations broadcast as numpy does, the batch axis included, so tensors of
different ranks (which would align one's batch axis with another's data) are refused; a size
of 1 stretches as in the merge layers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.activations import (ELU, IDENTITY_ON_PROBABILITIES, LeakyReLU, OverOneAxis,
                                                          one_axis)
from mnist_common.architecture.layers.base import (
    FLOAT32,
    MAX_RANK,
    Layer,
    LayerError,
    Shape,
    boolean,
    float32_number,
    layer_type,
    plain,
    shape_text,
)
from mnist_common.architecture.layers.merging import Concatenate, broadcast
from mnist_common.architecture.layers.reshaping import is_int, only_the_last_axis

NUMPY, NN, MATH, CORE = ("keras.src.ops.numpy", "keras.src.ops.nn", "keras.src.ops.math",
                         "keras.src.ops.core")  # Keras 3's operations' modules
TENSOR = None  # an operand that is a tensor of the graph, in :meth:`Operation.from_keras_call`'s arguments


@dataclass(frozen=True, kw_only=True)
class Operation(Layer):
    """One ``keras.ops`` call in a Functional graph (see the module docstring)."""

    FUNCTION: ClassVar[str] = ""  # its keras.ops function: ops.<FUNCTION>
    KERAS_MODULE: ClassVar[str] = NUMPY
    KERAS_CLASS: ClassVar[str] = ""  # Keras' class of it, where the description's class is named otherwise
    OPERANDS: ClassVar[tuple[str, ...]] = ("x",)  # the function's tensor parameters, in order
    KEYWORDS: ClassVar[tuple[str, ...]] = ()  # settings Keras' operation takes as keywords of its call, not config

    @classmethod
    def type_name(cls) -> str:
        return f"ops.{cls.FUNCTION}"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.trainable or self.dtype != FLOAT32 or self.activity_regularizer is not None:
            raise LayerError("is an operation, which has no trainable, dtype or activity_regularizer setting")

    def constants(self) -> dict[str, int | float]:
        """The operands given as numbers, by parameter name."""
        return {}

    def settings(self) -> dict[str, Any]:
        return {key: value for key, value in super().settings().items()
                if key not in self.OPERANDS or value is not None}

    def keras_config(self) -> dict[str, Any]:
        """The operation's own config, as Keras serialises it (its name and settings, not its operands)."""
        return {key: value for key, value in self.settings().items()
                if key not in self.OPERANDS and key not in self.KEYWORDS}

    def call_keywords(self) -> dict[str, Any]:
        """The keywords of its call (:attr:`KEYWORDS`) the description sets, as the code gave them."""
        return {key: getattr(self, key) for key in self.KEYWORDS if getattr(self, key) is not None}

    def keras_object(self) -> dict[str, Any]:
        """The operation as ``config.json`` holds it, which ``keras.saving.deserialize_keras_object`` makes."""
        cls = self.keras_class
        return {"module": self.KERAS_MODULE, "class_name": cls, "config": plain(self.keras_config()),
                "registered_name": cls}

    @classmethod
    def keras_class_name(cls) -> str:
        return cls.KERAS_CLASS or cls.__name__

    @property
    def keras_class(self) -> str:
        return self.keras_class_name()

    def call_arguments(self, tensors: list[Any]) -> list[Any]:
        """Its call's positional arguments: ``tensors`` in order, and its numbers where the code had them."""
        given, pending = self.constants(), iter(tensors)
        return [given[operand] if operand in given else next(pending) for operand in self.OPERANDS]

    @classmethod
    def from_keras_call(cls, config: dict[str, Any], arguments: list[Any]) -> Operation:
        """The operation of a graph node: its config and its call's positional arguments (:data:`TENSOR` for each
        tensor of the graph, else the number given)."""
        if len(arguments) != len(cls.OPERANDS):
            raise LayerError(f"is called with {len(arguments)} arguments; {cls.type_name()} takes "
                             f"{', '.join(cls.OPERANDS)}")
        numbers = {name: value for name, value in zip(cls.OPERANDS, arguments) if value is not TENSOR}
        if numbers and set(numbers) - set(cls.setting_names()):
            raise LayerError(f"is given a number for {', '.join(numbers)}; only tensors are supported there")
        described = cls.from_keras(config)
        return cls.from_settings({**described.settings(), **numbers})


# How far an ops.clip of probabilities may move their sum and still give probabilities (Clip.keeps_distributions):
# ten classes clipped to Keras' epsilon, [1e-7, 1 - 1e-7], move it by 1e-6 at most
CLIP_GUARD_SUM = 2e-6


def _constant(value: Any, setting: str) -> int | float | None:
    """A number given for an operand, kept as given (an integer stays one, as the file has it)."""
    if value is None:
        return None
    checked = float32_number(value, setting)
    return value if isinstance(value, int) else checked


@dataclass(frozen=True, kw_only=True)
class BinaryOperation(Operation):
    """``x1 <op> x2``: two tensors of one rank, or a tensor and a number (either side)."""

    x1: int | float | None = None
    x2: int | float | None = None

    OPERANDS: ClassVar[tuple[str, ...]] = ("x1", "x2")
    INPUTS: ClassVar[int | None] = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        for operand in self.OPERANDS:
            object.__setattr__(self, operand, _constant(getattr(self, operand), operand))
        if self.x1 is not None and self.x2 is not None:
            raise LayerError("is given numbers for both x1 and x2; one operand must be a tensor of the graph")

    def constants(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in self.OPERANDS if getattr(self, name) is not None}

    def takes_bytes(self) -> bool:
        """Bytes and a float constant (``inputs / 255.0``, ``inputs - 127.5``) or any division make float32 in
        Keras; an int constant keeps bytes, which wrap (``inputs * 2``), where torch computes in float."""
        constants = self.constants()
        return bool(constants) and (self.FUNCTION in ("divide", "true_divide")
                                    or any(isinstance(c, float) for c in constants.values()))

    def input_count(self) -> int:
        return 2 - len(self.constants())

    def output_shape(self, *shapes: Shape) -> Shape:
        if len({len(shape) for shape in shapes}) != 1:
            raise LayerError(f"is called on tensors of different ranks ({', '.join(map(shape_text, shapes))}); "
                             f"numpy's broadcasting would align one's batch axis with the other's data: not "
                             f"supported (a merge layer aligns them after the batch axis)")
        return broadcast(shapes)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Matmul(Operation):
    """``ops.matmul(x1, x2)``: matrix products over the last two axes of each, the axes before them broadcast (each
    example's own product: an attention's ``q @ k^T``, a sequence pooling's weights times its steps). Both operands
    tensors of the graph of one rank, two or three axes besides the batch: a (features,) vector's product would
    be one of the batch's matrix, mixing examples."""

    FUNCTION: ClassVar[str] = "matmul"
    OPERANDS: ClassVar[tuple[str, ...]] = ("x1", "x2")
    INPUTS: ClassVar[int | None] = 2

    def output_shape(self, *shapes: Shape) -> Shape:
        a, b = shapes
        if len(a) != len(b):
            raise LayerError(f"is called on tensors of different ranks ({', '.join(map(shape_text, shapes))}); "
                             f"numpy's broadcasting would align one's batch axis with the other's data")
        if len(a) not in (2, 3):
            raise LayerError(f"multiplies tensors of two or three axes besides the batch, got "
                             f"{', '.join(map(shape_text, shapes))}: the product of (features,) vectors is one of "
                             f"the batch's matrices, mixing its examples (a Dot layer takes each example's)")
        if a[-1] != b[-2]:
            raise LayerError(f"cannot multiply {shape_text(a)} by {shape_text(b)}: the first's last axis ({a[-1]}) "
                             f"must be the second's next to last ({b[-2]})")
        return (*broadcast((a[:-2], b[:-2])), a[-2], b[-1])


@layer_type
@dataclass(frozen=True, kw_only=True)
class Add(BinaryOperation):
    FUNCTION: ClassVar[str] = "add"

    def input_factor(self) -> float | None:
        return 1.0 if self.constants() else None  # x + c


@layer_type
@dataclass(frozen=True, kw_only=True)
class Subtract(BinaryOperation):
    FUNCTION: ClassVar[str] = "subtract"

    def input_factor(self) -> float | None:
        return -1.0 if self.x1 is not None else 1.0 if self.x2 is not None else None  # c - x, x - c


@layer_type
@dataclass(frozen=True, kw_only=True)
class Multiply(BinaryOperation):
    FUNCTION: ClassVar[str] = "multiply"

    def input_factor(self) -> float | None:
        return next(iter(self.constants().values()), None)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Divide(BinaryOperation):
    FUNCTION: ClassVar[str] = "divide"

    def input_factor(self) -> float | None:
        return 1.0 / self.x2 if self.x2 else None


@layer_type
@dataclass(frozen=True, kw_only=True)
class TrueDivide(BinaryOperation):
    """``x / y`` (``keras.ops.true_divide``; ``ops.divide`` is the same division of floats)."""

    FUNCTION: ClassVar[str] = "true_divide"

    def input_factor(self) -> float | None:
        return 1.0 / self.x2 if self.x2 else None


@layer_type
@dataclass(frozen=True, kw_only=True)
class Power(BinaryOperation):
    """``x ** y``."""

    FUNCTION: ClassVar[str] = "power"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Maximum(BinaryOperation):
    FUNCTION: ClassVar[str] = "maximum"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Minimum(BinaryOperation):
    FUNCTION: ClassVar[str] = "minimum"


# --- element-wise functions of one tensor --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UnaryOperation(Operation):
    """An element-wise function of one tensor; ``ACTIVATION``: the Keras activation it computes, where it is one
    (what tells the bridge a softmax or a sigmoid gives the model's outputs)."""

    ACTIVATION: ClassVar[str | None] = None

    @property
    def activation(self) -> str | None:
        return self.ACTIVATION

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return self.ACTIVATION in IDENTITY_ON_PROBABILITIES


def _unary(function: str, keras_class: str, activation: str | None = None, module: str = NUMPY) -> type[Operation]:
    """A registered :class:`UnaryOperation` without settings: ``keras.ops.<function>``, Keras' class ``keras_class``."""
    cls = dataclass(frozen=True, kw_only=True)(type(keras_class, (UnaryOperation,), {
        "__module__": __name__, "__qualname__": keras_class, "__annotations__": {},
        "__doc__": f"``keras.ops.{function}(x)``.",
        "FUNCTION": function, "KERAS_MODULE": module, "ACTIVATION": activation}))
    return layer_type(cls)


Negative = _unary("negative", "Negative")  # -x
Absolute = _unary("absolute", "Absolute")  # ops.abs, ops.absolute
Square = _unary("square", "Square")
Sqrt = _unary("sqrt", "Sqrt")
Exp = _unary("exp", "Exp", "exponential")
Tanh = _unary("tanh", "Tanh", "tanh")
Relu = _unary("relu", "Relu", "relu", NN)
Relu6 = _unary("relu6", "Relu6", "relu6", NN)
Sigmoid = _unary("sigmoid", "Sigmoid", "sigmoid", NN)
Silu = _unary("silu", "Silu", "silu", NN)  # ops.silu, ops.swish
Softplus = _unary("softplus", "Softplus", "softplus", NN)
Softsign = _unary("softsign", "Softsign", "softsign", NN)
Selu = _unary("selu", "Selu", "selu", NN)
HardSigmoid = _unary("hard_sigmoid", "HardSigmoid", "hard_sigmoid", NN)
HardSilu = _unary("hard_silu", "HardSilu", "hard_silu", NN)  # ops.hard_silu, ops.hard_swish
SparseSigmoid = _unary("sparse_sigmoid", "SparseSigmoid", "sparse_sigmoid", NN)
LogSigmoid = _unary("log_sigmoid", "LogSigmoid", "log_sigmoid", NN)
HardTanh = _unary("hard_tanh", "HardTanh", "hard_tanh", NN)
TanhShrink = _unary("tanh_shrink", "TanhShrink", "tanh_shrink", NN)
SparsePlus = _unary("sparse_plus", "SparsePlus", "sparse_plus", NN)
# numpy's and Keras' math functions of one tensor: logarithms, powers, roundings, trigonometry (each NaN or infinite
# where its argument is out of its domain, in both frameworks alike)
Log1p = _unary("log1p", "Log1p")
Log2 = _unary("log2", "Log2")
Log10 = _unary("log10", "Log10")
Expm1 = _unary("expm1", "Expm1")
Exp2 = _unary("exp2", "Exp2")
Reciprocal = _unary("reciprocal", "Reciprocal")
Rsqrt = _unary("rsqrt", "Rsqrt", module=MATH)
Cbrt = _unary("cbrt", "Cbrt")
Sign = _unary("sign", "Sign")
Floor = _unary("floor", "Floor")
Ceil = _unary("ceil", "Ceil")
Trunc = _unary("trunc", "Trunc")
Sin = _unary("sin", "Sin")
Cos = _unary("cos", "Cos")
Tan = _unary("tan", "Tan")
Sinh = _unary("sinh", "Sinh")
Cosh = _unary("cosh", "Cosh")
Arcsin = _unary("arcsin", "Arcsin")
Arccos = _unary("arccos", "Arccos")
Arctan = _unary("arctan", "Arctan")
Arcsinh = _unary("arcsinh", "Arcsinh")
Arccosh = _unary("arccosh", "Arccosh")
Arctanh = _unary("arctanh", "Arctanh")
Erf = _unary("erf", "Erf", module=MATH)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Log(UnaryOperation):
    """``keras.ops.log(x)``, the natural logarithm: of probabilities, log-probabilities (logits)."""

    FUNCTION: ClassVar[str] = "log"

    def logits_of_distributions(self) -> bool:
        return True


@layer_type
@dataclass(frozen=True, kw_only=True)
class Round(UnaryOperation):
    """``keras.ops.round(x, decimals)``: to the nearest multiple of ``10 ** -decimals``, halves to the even one
    (TensorFlow's ``round``); with decimals, Keras multiplies by ``10 ** decimals``, rounds and divides back."""

    decimals: int = 0
    FUNCTION: ClassVar[str] = "round"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_int(self.decimals) or abs(self.decimals) > 38:
            raise LayerError(f"decimals={self.decimals!r}: must be an integer from -38 to 38 (10 ** decimals a "
                             f"float32 number)")


@layer_type
@dataclass(frozen=True, kw_only=True)
class Celu(UnaryOperation):
    """``keras.ops.celu(x, alpha)``: ``max(x, 0) + alpha * expm1(min(x, 0) / alpha)`` (the ``celu`` activation's
    alpha is 1)."""

    alpha: float = 1.0
    FUNCTION: ClassVar[str] = "celu"
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        alpha = float32_number(self.alpha, "alpha")
        if alpha == 0:
            raise LayerError("alpha must be a non-zero number (it divides), got 0")
        object.__setattr__(self, "alpha", alpha)

    @property
    def activation(self) -> str | None:
        return "celu" if self.alpha == 1.0 else None

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True  # x itself for x >= 0


@dataclass(frozen=True, kw_only=True)
class Shrink(UnaryOperation):
    """Values within ``threshold`` (>= 0) of 0 made 0 (the activation of the same name has threshold 0.5)."""

    threshold: float = 0.5
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "threshold", float32_number(self.threshold, "threshold", 0.0))

    @property
    def activation(self) -> str | None:
        return self.FUNCTION if self.threshold == 0.5 else None


@layer_type
@dataclass(frozen=True, kw_only=True)
class HardShrink(Shrink):
    """``keras.ops.hard_shrink(x, threshold)``: x where ``|x| > threshold``, else 0."""

    FUNCTION: ClassVar[str] = "hard_shrink"


@layer_type
@dataclass(frozen=True, kw_only=True)
class SoftShrink(Shrink):
    """``keras.ops.soft_shrink(x, threshold)``: x moved ``threshold`` towards 0, 0 within ``threshold`` of it."""

    FUNCTION: ClassVar[str] = "soft_shrink"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Squareplus(UnaryOperation):
    """``keras.ops.squareplus(x, b)``: ``(x + sqrt(x**2 + b)) / 2``, b >= 0 (the activation's b is 4, an integer as
    Keras gives it)."""

    b: float = 4
    FUNCTION: ClassVar[str] = "squareplus"
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        b = float32_number(self.b, "b", 0.0)  # under a square root with x**2
        object.__setattr__(self, "b", self.b if isinstance(self.b, int) else b)

    @property
    def activation(self) -> str | None:
        return "squareplus" if self.b == 4 else None


@layer_type
@dataclass(frozen=True, kw_only=True)
class LeakyRelu(UnaryOperation, LeakyReLU):
    """``keras.ops.leaky_relu(x, negative_slope)``: the ``LeakyReLU`` layer's computation, with the operation's
    default slope (0.2; the layer's is 0.3)."""

    negative_slope: float = 0.2
    FUNCTION: ClassVar[str] = "leaky_relu"
    KERAS_MODULE: ClassVar[str] = NN

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return LeakyReLU.keeps_distributions(self, *shapes)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Elu(UnaryOperation, ELU):
    """``keras.ops.elu(x, alpha)``: the ``ELU`` layer's computation."""

    FUNCTION: ClassVar[str] = "elu"
    KERAS_MODULE: ClassVar[str] = NN

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return ELU.keeps_distributions(self, *shapes)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Gelu(UnaryOperation):
    """``keras.ops.gelu(x, approximate)``: unlike the ``gelu`` activation (exact), the operation's default is
    the tanh approximation."""

    approximate: bool = True
    FUNCTION: ClassVar[str] = "gelu"
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        boolean(self.approximate, "approximate")

    @property
    def activation(self) -> str | None:
        return None if self.approximate else "gelu"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Softmax(OverOneAxis, UnaryOperation):
    """``keras.ops.softmax(x, axis=-1)``, over any one axis: the ``Softmax`` layer's checks, and its torch module."""

    axis: int = -1
    FUNCTION: ClassVar[str] = "softmax"
    ACTIVATION: ClassVar[str | None] = "softmax"
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axis", one_axis(self.axis))

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return False  # a softmax of probabilities is not them (applies_softmax says it gives a distribution)


@layer_type
@dataclass(frozen=True, kw_only=True)
class LogSoftmax(OverOneAxis, UnaryOperation):
    """``keras.ops.log_softmax(x, axis=-1)``, over any one axis (a (10, 1) map's 10 as the ``Softmax`` layer's): the
    logarithm of the softmax, log-probabilities, which a softmax turns back into the probabilities; so the model's
    outputs are read as logits, not as a softmax's."""

    axis: int = -1
    FUNCTION: ClassVar[str] = "log_softmax"
    ACTIVATION: ClassVar[str | None] = "log_softmax"
    KERAS_MODULE: ClassVar[str] = NN

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "axis", one_axis(self.axis))

    def softmax_axis(self) -> int | None:
        return None  # log-probabilities: no softmax's values


# --- reductions and joins ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reduction(Operation):
    """``keras.ops.<function>(x, axis, keepdims)`` over non-batch axes (Keras counts the batch as axis 0)."""

    axis: int | tuple[int, ...] | None = None
    keepdims: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        axes = self.axis if isinstance(self.axis, (list, tuple)) else (self.axis,)
        if self.axis is None or not axes or any(isinstance(a, bool) or not isinstance(a, int) or a == 0 for a in axes):
            raise LayerError(f"axis={self.axis!r}: only non-batch axes are supported, an integer or a list of them "
                             f"(0 and null take in the batch axis)")
        object.__setattr__(self, "axis", tuple(axes) if isinstance(self.axis, (list, tuple)) else self.axis)
        boolean(self.keepdims, "keepdims")

    def reduced_axes(self, rank: int) -> tuple[int, ...]:
        """The axes it reduces among the ``rank`` non-batch axes of its input, 0-based and sorted."""
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        found = sorted({a - 1 if a > 0 else rank + a for a in axes})
        if any(not 0 <= a < rank for a in found) or len(found) != len(axes):
            raise LayerError(f"axis={self.axis!r} does not name distinct axes of its input of {rank} axes besides "
                             f"the batch (1 to {rank}, or -1 to -{rank})")
        return tuple(found)

    def output_shape(self, shape: Shape) -> Shape:
        reduced = self.reduced_axes(len(shape))
        if len(reduced) == len(shape) and not self.keepdims:
            raise LayerError(f"reduces every axis of its {shape_text(shape)} input to one number per example; not "
                             f"supported (keepdims, or fewer axes)")
        return tuple(1 if i in reduced else size for i, size in enumerate(shape) if self.keepdims or i not in reduced)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Mean(Reduction):
    FUNCTION: ClassVar[str] = "mean"

    def keeps_distributions(self, shape: Shape) -> bool:
        return len(shape) - 1 not in self.reduced_axes(len(shape))  # a mean of distributions over the last axis


@layer_type
@dataclass(frozen=True, kw_only=True)
class Sum(Reduction):
    FUNCTION: ClassVar[str] = "sum"


@dataclass(frozen=True, kw_only=True)
class Extreme(Reduction):
    """``keras.ops.max``/``min``: also take ``initial``, which must be unset (null)."""

    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {"initial": (None, "an initial value")}

    def keras_config(self) -> dict[str, Any]:
        return {**super().keras_config(), "initial": None}


@layer_type
@dataclass(frozen=True, kw_only=True)
class Max(Extreme):
    FUNCTION: ClassVar[str] = "max"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Min(Extreme):
    FUNCTION: ClassVar[str] = "min"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Var(Reduction):
    """``keras.ops.var``: the variance over the axes, around their mean (numpy's, dividing by the count)."""

    FUNCTION: ClassVar[str] = "var"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Std(Reduction):
    """``keras.ops.std``: the square root of :class:`Var`."""

    FUNCTION: ClassVar[str] = "std"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Prod(Reduction):
    """``keras.ops.prod``: also takes ``dtype``, which must be unset (null: its input's, float32)."""

    FUNCTION: ClassVar[str] = "prod"
    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {"dtype": (None, "a dtype")}

    def keras_config(self) -> dict[str, Any]:
        return {**super().keras_config(), "dtype": None}


@layer_type
@dataclass(frozen=True, kw_only=True)
class Logsumexp(Reduction):
    """``keras.ops.logsumexp``: ``log(sum(exp(x)))`` over the axes, computed without overflow."""

    FUNCTION: ClassVar[str] = "logsumexp"
    KERAS_MODULE: ClassVar[str] = MATH


@layer_type
@dataclass(frozen=True, kw_only=True)
class ConcatenateOperation(Operation, Concatenate):
    """``keras.ops.concatenate([x, y, ...], axis)``: what the ``Concatenate`` layer computes."""

    FUNCTION: ClassVar[str] = "concatenate"
    KERAS_CLASS: ClassVar[str] = "Concatenate"
    OPERANDS: ClassVar[tuple[str, ...]] = ("xs",)

    def call_arguments(self, tensors: list[Any]) -> list[Any]:
        return [list(tensors)]

    @classmethod
    def from_keras_call(cls, config: dict[str, Any], arguments: list[Any]) -> Operation:
        if len(arguments) != 1 or not isinstance(arguments[0], list) or TENSOR not in arguments[0] \
                or any(a is not TENSOR for a in arguments[0]):
            raise LayerError("is called on something other than a list of tensors of the graph")
        return cls.from_keras(config)


# --- shapes and values -------------------------------------------------------------------------------


def _non_batch_axes(value: Any, setting: str) -> tuple[int, ...]:
    """Axes Keras counts with the batch as 0: an integer or a list of them, none the batch axis (0)."""
    axes = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not axes or not all(is_int(a) and a != 0 for a in axes):
        raise LayerError(f"{setting}={value!r}: only non-batch axes are supported, an integer or a list of them "
                         f"(0 and null take in the batch axis)")
    return axes


def _zero_based(axes: tuple[int, ...], rank: int, setting: str) -> list[int]:
    """``axes`` (batch 0; negative from the end) as 0-based non-batch axes of a tensor of ``rank`` such axes."""
    found = [a - 1 if a > 0 else rank + a for a in axes]
    if any(not 0 <= a < rank for a in found) or len(set(found)) != len(found):
        raise LayerError(f"{setting}={list(axes) if len(axes) > 1 else axes[0]} does not name distinct axes of a "
                         f"tensor of {rank} axes besides the batch (1 to {rank}, or -1 to -{rank})")
    return found


@layer_type
@dataclass(frozen=True, kw_only=True)
class ReshapeOperation(Operation):
    """``keras.ops.reshape(x, newshape)``: ``newshape`` counts the batch first (-1), then 1 to 3 positive sizes (a
    -1 among them would leave Keras a size it does not know, so no layer after it could be built). A batch of null
    (what Keras saves for ``ops.shape(x)[0]``) is refused: Keras itself cannot run the file it saved (TensorFlow
    refuses a None size), so nothing could prove a conversion. A reshape that would move values into or out of the
    batch axis is refused. What the ``Reshape`` layer computes."""

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True
    PASSES_BYTES: ClassVar[bool] = True

    newshape: tuple[int, ...]
    FUNCTION: ClassVar[str] = "reshape"
    KERAS_CLASS: ClassVar[str] = "Reshape"

    def __post_init__(self) -> None:
        super().__post_init__()
        value = self.newshape
        sizes = tuple(value) if isinstance(value, (list, tuple)) else ()
        rest = sizes[1:]
        if sizes and sizes[0] is None:
            raise LayerError(f"newshape {list(sizes)} has a null batch (ops.shape(x)[0] when saved), which Keras "
                             f"itself cannot run from the file; write -1 for the batch")
        if not 2 <= len(sizes) <= MAX_RANK + 1 or sizes[0] != -1 or not all(is_int(n) and n >= 1 for n in rest):
            raise LayerError(f"newshape must be the batch (-1) then 1 to {MAX_RANK} positive sizes, got {value!r}")
        object.__setattr__(self, "newshape", sizes)

    def output_shape(self, shape: Shape) -> Shape:
        rest = self.newshape[1:]
        if math.prod(rest) != math.prod(shape):
            raise LayerError(f"cannot reshape {shape_text(shape)} ({math.prod(shape)} values) to "
                             f"{list(self.newshape)} without moving values into or out of the batch axis")
        return rest

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class ExpandDims(Operation):
    """``keras.ops.expand_dims(x, axis)``: a new axis of size 1 (``axis`` counts the batch as 0, -1 the new last)."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    axis: int
    FUNCTION: ClassVar[str] = "expand_dims"

    def __post_init__(self) -> None:
        super().__post_init__()
        axis = self.axis[0] if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1 else self.axis
        if isinstance(axis, (list, tuple)):
            raise LayerError(f"axis={self.axis!r}: one new axis only is supported")
        object.__setattr__(self, "axis", _non_batch_axes(axis, "axis")[0])

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) + 1 > MAX_RANK:
            raise LayerError(f"gives {len(shape) + 1} axes besides the batch; at most {MAX_RANK} are supported")
        [at] = _zero_based((self.axis,), len(shape) + 1, "axis")
        return (*shape[:at], 1, *shape[at:])

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Squeeze(Operation):
    """``keras.ops.squeeze(x, axis)``: the named axes of size 1 removed (``axis`` required: null would also remove
    the batch axis of a batch of one)."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    axis: int | tuple[int, ...] | None = None
    FUNCTION: ClassVar[str] = "squeeze"

    def __post_init__(self) -> None:
        super().__post_init__()
        axes = _non_batch_axes(self.axis, "axis")
        object.__setattr__(self, "axis", axes if isinstance(self.axis, (list, tuple)) else axes[0])

    def output_shape(self, shape: Shape) -> Shape:
        axes = _zero_based(self.axis if isinstance(self.axis, tuple) else (self.axis,), len(shape), "axis")
        if any(shape[a] != 1 for a in axes) or len(axes) == len(shape):
            raise LayerError(f"axis={self.axis!r}: squeezes axes of size 1 and leaves at least one; its input is "
                             f"{shape_text(shape)}")
        return tuple(size for i, size in enumerate(shape) if i not in axes)

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Transpose(Operation):
    """``keras.ops.transpose(x, axes)``: ``axes`` a permutation of every axis, the batch (0) staying first; what
    the ``Permute`` layer computes with ``dims = axes[1:]``."""
    PASSES_BYTES: ClassVar[bool] = True

    REARRANGES: ClassVar[bool] = True
    KEEPS_SCALE: ClassVar[bool] = True

    axes: tuple[int, ...] | None = None
    FUNCTION: ClassVar[str] = "transpose"

    def __post_init__(self) -> None:
        super().__post_init__()
        axes = tuple(self.axes) if isinstance(self.axes, (list, tuple)) else None
        if axes is None or not all(is_int(a) for a in axes) or sorted(axes) != list(range(len(axes))) \
                or axes[0] != 0 or len(axes) < 2:
            raise LayerError(f"axes must be a permutation of 0..rank that keeps the batch axis 0 first, got "
                             f"{self.axes!r} (null reverses every axis, the batch's too)")
        object.__setattr__(self, "axes", axes)

    @property
    def dims(self) -> tuple[int, ...]:
        """The ``Permute`` layer's ``dims``: the non-batch axes, counted from 1."""
        return self.axes[1:]

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) + 1 != len(self.axes):
            raise LayerError(f"axes {list(self.axes)} permute {len(self.axes)} axes, but the input {shape_text(shape)} "
                             f"has {len(shape) + 1} with the batch")
        return tuple(shape[d - 1] for d in self.dims)


PAD_MODES = ("constant", "reflect", "symmetric")


@layer_type
@dataclass(frozen=True, kw_only=True)
class Pad(Operation):
    """``keras.ops.pad(x, pad_width, mode, constant_values=c)``: a border around the non-batch axes, ``pad_width``
    one ``[before, after]`` pair per axis, the batch's ``[0, 0]`` first. ``constant``: of ``c`` (0 by default;
    what a ResNet's "option A" shortcut does to its channels, or LeNet-5 to MNIST's 28x28); ``reflect``: the
    values mirrored about the edge value (d c b | a b c d, at most the axis' size less one on a side) and
    ``symmetric``: about the edge (c b a | a b c d, at most its size): the modes TensorFlow pads with."""

    pad_width: tuple[tuple[int, int], ...]
    mode: str = "constant"
    constant_values: int | float | None = None
    FUNCTION: ClassVar[str] = "pad"
    KEYWORDS: ClassVar[tuple[str, ...]] = ("constant_values",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in PAD_MODES:
            raise LayerError(f"mode={self.mode!r}: only {', '.join(PAD_MODES)} padding is supported (TensorFlow's)")
        if self.mode != "constant" and self.constant_values is not None:
            raise LayerError(f"constant_values is only for mode='constant'; Keras refuses it with mode={self.mode!r}")
        value = self.pad_width
        pairs = tuple(tuple(p) for p in value) if isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) for p in value) else ()
        if not 2 <= len(pairs) <= MAX_RANK + 1 or not all(len(p) == 2 and all(is_int(n) and n >= 0 for n in p)
                                                          for p in pairs):
            raise LayerError(f"pad_width must be one [before, after] pair of sizes of 0 or more per axis, the "
                             f"batch's first, got {value!r}")
        if pairs[0] != (0, 0):
            raise LayerError(f"pad_width {[list(p) for p in pairs]} pads the batch axis; its pair must be [0, 0]")
        object.__setattr__(self, "pad_width", pairs)
        object.__setattr__(self, "constant_values", _constant(self.constant_values, "constant_values"))

    def output_shape(self, shape: Shape) -> Shape:
        if len(self.pad_width) != len(shape) + 1:
            raise LayerError(f"pad_width has {len(self.pad_width)} pairs; its input {shape_text(shape)} has "
                             f"{len(shape) + 1} axes with the batch")
        if self.mode != "constant":
            inside = 1 if self.mode == "reflect" else 0  # reflect leaves out the edge value it mirrors about
            for axis, (size, pair) in enumerate(zip(shape, self.pad_width[1:]), start=1):
                if max(pair) > size - inside:
                    raise LayerError(f"pad_width {list(pair)} on axis {axis} of its input {shape_text(shape)}: "
                                     f"{self.mode} padding takes at most {size - inside} a side there")
        return tuple(size + before + after for size, (before, after) in zip(shape, self.pad_width[1:]))


# --- indexing ------------------------------------------------------------------------------------------------

ELLIPSIS = "..."
_SLICE_TEXT = re.compile(r"(-?\d+)?:(-?\d+)?(?::(-?\d+)?)?")


def index_item(item: Any) -> int | slice | type(Ellipsis):
    """One item of an index key, as Python has it: an integer, ``"..."``, or a slice as its text (``":"``, ``"1:"``,
    ``":4"``, ``"::2"``; a step of 1 or more)."""
    if is_int(item):
        return int(item)
    if item == ELLIPSIS:
        return Ellipsis
    found = _SLICE_TEXT.fullmatch(item) if isinstance(item, str) else None
    if found is None:
        refused = "None (a new axis: use ops.expand_dims)" if item is None else repr(item)
        raise LayerError(f"key item {refused} is not supported; items are integers, \"...\" and slices written "
                         f"\"start:stop:step\" (\":\", \"1:\", \"::2\")")
    start, stop, step = (None if text is None else int(text) for text in found.groups())
    if step is not None and step < 1:
        raise LayerError(f"key item {item!r}: a slice's step must be 1 or more, got {step}")
    return slice(start, stop, step)


def _whole(item: Any) -> bool:
    """A slice taking every element of its axis (``:``, ``0:``, ``::1``)."""
    return isinstance(item, slice) and item.start in (None, 0) and item.stop is None and item.step in (None, 1)


def slice_text(start: int | None, stop: int | None, step: int | None) -> str:
    """A slice as the description writes it: ``slice(1, None, 2)`` -> ``"1::2"``, ``slice(None, None, None)`` ->
    ``":"``."""
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text if step is None else f"{text}:{step}"


@layer_type
@dataclass(frozen=True, kw_only=True)
class GetItem(Operation):
    """``x[key]`` (``keras.ops.get_item``): integers, ``...`` and slices of step 1 or more, the batch axis whole
    (``x[:, 1:, ::2]``, ``x[..., :16]``, ``x[:, :, :, 0]``). ``key`` reads as the code does: ``[":", "1:", "::2"]``.
    A key of one item (``x[0]``, ``x[1:]``) would index the batch, new axes (``None``) are ``ops.expand_dims``'s
    work, and a key leaving no axis besides the batch gives no features: each refused in one line."""

    key: tuple[int | str, ...]
    FUNCTION: ClassVar[str] = "get_item"
    OPERANDS: ClassVar[tuple[str, ...]] = ("x", "key")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.key, (list, tuple)):
            raise LayerError(f"key {self.key!r} indexes the batch axis; index the axes after it (x[:, ...])")
        items = [index_item(item) for item in self.key]
        if items.count(Ellipsis) > 1:
            raise LayerError(f"key {list(self.key)!r} holds \"...\" more than once")
        if items and items[0] is not Ellipsis and not _whole(items[0]):
            raise LayerError(f"key {list(self.key)!r} indexes the batch axis; begin it with \":\" or \"...\"")
        object.__setattr__(self, "key", tuple(slice_text(i.start, i.stop, i.step) if isinstance(i, slice)
                                              else ELLIPSIS if i is Ellipsis else i for i in items))

    @classmethod
    def from_keras_call(cls, config: dict[str, Any], arguments: list[Any]) -> Operation:
        if len(arguments) != 2 or arguments[0] is not TENSOR or arguments[1] is TENSOR:
            raise LayerError("is called on something other than a tensor of the graph and a key")
        unknown = sorted(set(config) - {"name"})
        if unknown:
            raise LayerError(f"has settings {', '.join(unknown)}, which Keras' GetItem has not")
        return cls.from_settings({"name": config.get("name"), "key": arguments[1]})

    def index(self) -> tuple[int | slice | type(Ellipsis), ...]:
        """``key`` as Python indexes with it (the batch axis first)."""
        return tuple(index_item(item) for item in self.key)

    def constants(self) -> dict[str, Any]:
        return {"key": self.index()}

    def output_shape(self, shape: Shape) -> Shape:
        items = list(self.index())
        explicit = len(items) - items.count(Ellipsis)
        if explicit > len(shape) + 1:
            raise LayerError(f"key {list(self.key)!r} indexes {explicit} axes; its input {shape_text(shape)} has "
                             f"{len(shape) + 1} with the batch")
        at = items.index(Ellipsis) if Ellipsis in items else len(items)
        whole = [slice(None)] * (len(shape) + 1 - explicit)
        items = items[:at] + whole + items[at + 1:]
        if not _whole(items[0]):  # x[..., 0, 0, 0, 0] of an 8x8x3 input: the ... stood for no axis
            raise LayerError(f"key {list(self.key)!r} indexes the batch axis of its {shape_text(shape)} input; leave "
                             f"the batch whole")
        sizes = []
        for size, item in zip(shape, items[1:]):
            if isinstance(item, int):
                if not -size <= item < size:
                    raise LayerError(f"key {list(self.key)!r}: index {item} is out of range for an axis of {size}")
            elif len(range(*item.indices(size))) == 0:
                raise LayerError(f"key {list(self.key)!r}: {slice_text(item.start, item.stop, item.step)!r} selects "
                                 f"nothing from an axis of {size}")
            else:
                sizes.append(len(range(*item.indices(size))))
        if not sizes:
            raise LayerError(f"key {list(self.key)!r} leaves no axis besides the batch; keep one (x[:, i:i + 1])")
        return tuple(sizes)

    def keeps_distributions(self, shape: Shape) -> bool:
        return only_the_last_axis(shape, self.output_shape(shape))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Clip(Operation):
    """``keras.ops.clip(x, x_min, x_max)``."""

    x_min: float
    x_max: float
    FUNCTION: ClassVar[str] = "clip"
    DISTRIBUTION_ADVICE: ClassVar[str] = (f", or clip them by at most {CLIP_GUARD_SUM:g} over all the classes, "
                                          f"[1e-7, 1 - 1e-7] for ten, which leaves them probabilities")

    def __post_init__(self) -> None:
        super().__post_init__()
        for bound in ("x_min", "x_max"):
            object.__setattr__(self, bound, _constant(getattr(self, bound), bound))
        if self.x_min is None or self.x_max is None or self.x_min > self.x_max:
            raise LayerError(f"needs numbers x_min <= x_max, got {self.x_min!r} and {self.x_max!r}")

    def keeps_distributions(self, *shapes: Shape) -> bool:
        """x itself on [0, 1], or probabilities kept off 0 and 1 by a guard as small as Keras' epsilon, as people
        clip them before a log (``ops.clip(p, 1e-7, 1 - 1e-7)``; Keras' cross-entropy clips them so itself): read
        as probabilities where the guard moves their sum by at most :data:`CLIP_GUARD_SUM` (their log is then
        the logits, whose softmax is the clipped values over their sum, within a fifth of the 1e-5 that every
        conversion proves)."""
        raised = max(self.x_min, 0.0) * ((shapes[0][-1] or 1) - 1)  # every class but one lifted to x_min
        return raised + max(1.0 - self.x_max, 0.0) <= CLIP_GUARD_SUM


@layer_type
@dataclass(frozen=True, kw_only=True)
class Cast(Operation):
    """``keras.ops.cast(x, "float32")``: the identity on the float32 values of these models; other dtypes refused."""

    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {"dtype": (FLOAT32, "a cast to another dtype than float32")}
    FUNCTION: ClassVar[str] = "cast"
    TAKES_BYTES: ClassVar[bool] = True
    KERAS_MODULE: ClassVar[str] = CORE

    def keras_config(self) -> dict[str, Any]:
        return {**super().keras_config(), "dtype": FLOAT32}

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return True
