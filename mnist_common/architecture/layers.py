"""The supported Keras layers, as framework-free descriptions named and set the way Keras names them.

Each class here is one Keras layer kind: its fields are the settings of its Keras config
(``Conv2D(filters=32, kernel_size=(3, 3), activation="relu")`` means what
``keras.layers.Conv2D(...)`` means), normalised and checked when the object is made. A
class knows three things about its layer, all in Keras' channels-last terms:

* ``output_shape(shape)``: the shape after the layer, or a :class:`LayerError` when the
  layer cannot take that input (a 5x5 kernel on a 3x3 map, a Dense on an image, ...);
* ``weights(shape)``: its weight arrays, in the order Keras stores them
  (``model.weights.h5``'s ``vars/0, vars/1, ...``), as (Keras name, Keras shape);
* ``from_keras(config)``: the layer read from a Keras layer config, refusing any
  setting this bridge does not mirror (dilation, groups, regularizers, another axis...).

Adding a layer kind: a class here (decorated with :func:`layer_type`), a torch builder
in ``lightning_mnist.models.layers`` and, if it has weights, a row in
``lightning_mnist.interop.weights``. The Keras side needs nothing: ``keras_reference``
builds ``getattr(keras.layers, spec.type)(**spec.settings())``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.errors import UserError

Shape = tuple[int, ...]  # without the batch axis, channels last: (H, W, C) or (features,)

# Activation names Keras accepts that the torch side mirrors exactly (checked against Keras in tests).
ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "hard_silu",
               "hard_swish", "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign", "mish", "exponential",
               "softmax")
PADDINGS = ("valid", "same")
CHANNELS_LAST = "channels_last"

# Initializers: Keras' class name -> (snake-case name, settings with their Keras defaults).
INITIALIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Zeros": ("zeros", {}),
    "Ones": ("ones", {}),
    "Constant": ("constant", {"value": 0.0}),
    "RandomNormal": ("random_normal", {"mean": 0.0, "stddev": 0.05}),
    "RandomUniform": ("random_uniform", {"minval": -0.05, "maxval": 0.05}),
    "TruncatedNormal": ("truncated_normal", {"mean": 0.0, "stddev": 0.05}),
    "VarianceScaling": ("variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}),
    "GlorotUniform": ("glorot_uniform", {}),
    "GlorotNormal": ("glorot_normal", {}),
    "HeUniform": ("he_uniform", {}),
    "HeNormal": ("he_normal", {}),
    "LecunUniform": ("lecun_uniform", {}),
    "LecunNormal": ("lecun_normal", {}),
}
# The named initializers are Keras' VarianceScaling with these (scale, mode, distribution).
VARIANCE_SCALING_PRESETS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"), "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"), "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}
INITIALIZER_NAMES = {name: cls for cls, (name, _) in INITIALIZERS.items()}
# Config entries of an initializer that change nothing about its values (seeds, axis hints).
INITIALIZER_IGNORED = {"seed", "input_axes", "output_axes"}
# Config entries every layer has that this bridge reads elsewhere or does not need.
COMMON_IGNORED = {"name", "trainable", "dtype"}
# Training-only extras Keras may attach to a layer; none is mirrored, so each must be unset.
UNSUPPORTED_EXTRAS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                      "bias_constraint", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                      "gamma_constraint", "quantization_config", "lora_rank", "noise_shape", "renorm")


class LayerError(UserError):
    """One layer's settings or input cannot be mirrored; :class:`Architecture` adds which layer it is."""


LAYER_TYPES: dict[str, type[Layer]] = {}


def layer_type(cls: type[Layer]) -> type[Layer]:
    """Register a layer description under its Keras class name."""
    LAYER_TYPES[cls.__name__] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Setting checks: each returns the normalised value or raises LayerError naming the setting.


def _int_pair(value: Any, setting: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)):
        raise LayerError(f"{setting} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _positive_int(value: Any, setting: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LayerError(f"{setting} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, setting: str, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False, high_open: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < low or value > high or (low_open and value == low) or (high_open and value == high)):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise LayerError(f"{setting} must be a number in {bounds}, got {value!r}")
    return float(value)


def _bool(value: Any, setting: str) -> bool:
    if not isinstance(value, bool):
        raise LayerError(f"{setting} must be true or false, got {value!r}")
    return value


def _choice(value: Any, setting: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise LayerError(f"{setting} must be one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _activation(value: Any, setting: str = "activation") -> str:
    if value is None:
        return "linear"
    if isinstance(value, dict):  # Keras' serialised form of a built-in activation function
        if value.get("module") in (None, "keras.activations") and not value.get("registered_name"):
            value = value.get("config", value.get("class_name"))
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise LayerError(f"{setting} {value!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    return value


def initializer(value: Any, setting: str) -> str | dict[str, Any]:
    """A Keras initializer as a snake-case name, or ``{"class_name": ..., "config": {...}}`` with settings.

    Accepts what Keras accepts (a name, or its serialised dict) for the initializers in
    :data:`INITIALIZERS`; seeds are dropped (they only pick the random draw).
    """
    if isinstance(value, str):
        if value in INITIALIZER_NAMES:
            return value
        if value in INITIALIZERS:
            return INITIALIZERS[value][0]
    elif isinstance(value, dict) and value.get("class_name") in INITIALIZERS:
        cls = value["class_name"]
        if value.get("module") not in (None, "keras.initializers") or value.get("registered_name") not in (None, cls):
            raise LayerError(f"{setting} is a custom initializer ({value.get('registered_name') or cls}); "
                             f"only Keras' own are supported")
        name, defaults = INITIALIZERS[cls]
        config = dict(value.get("config") or {})
        unknown = sorted(k for k, v in config.items() if k not in defaults and k not in INITIALIZER_IGNORED
                         and v is not None)
        if unknown:
            raise LayerError(f"{setting} {cls} sets {', '.join(unknown)}, which is not supported")
        settings = {key: config.get(key, default) for key, default in defaults.items()}
        for key, default in defaults.items():
            if isinstance(default, float):
                settings[key] = _number(settings[key], f"{setting} {key}")
        if cls == "VarianceScaling":
            _choice(settings["mode"], f"{setting} mode", ("fan_in", "fan_out", "fan_avg"))
            _choice(settings["distribution"], f"{setting} distribution",
                    ("truncated_normal", "untruncated_normal", "normal", "uniform"))
        if settings == defaults and cls not in ("Constant",):
            return name
        return {"class_name": cls, "config": settings}
    names = ", ".join(INITIALIZER_NAMES)
    raise LayerError(f"{setting} {value!r} is not supported (supported: {names}, or their Keras configs)")


# ---------------------------------------------------------------------------------------------
# The layer descriptions


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Settings of one Keras layer. Subclasses are named like the Keras class they describe."""

    name: str | None = None  # the Keras layer's name, kept for the Keras side; None lets Keras choose

    # Keras config entries that must keep their default (value) for the layer to be mirrored,
    # each with the words that say what is not supported.
    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {}
    # Keras config entries of this layer that change nothing this bridge mirrors.
    KERAS_IGNORED: ClassVar[frozenset[str]] = frozenset()

    @property
    def type(self) -> str:
        return type(self).__name__

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise LayerError(f"name must be a non-empty string, got {self.name!r}")

    # --- what a layer does to shapes and which weights it has -----------------------------
    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        """(Keras weight name, Keras shape) in Keras' storage order, for input ``shape``."""
        return ()

    # --- settings in and out --------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The Keras constructor arguments (every setting, tuples as lists); ``name`` only when set."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name" and value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, **self.settings()}

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Layer:
        unknown = sorted(set(settings) - set(cls.setting_names()))
        if unknown:
            raise LayerError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                             f"({cls.__name__} takes {', '.join(cls.setting_names())})")
        return cls(**settings)

    @classmethod
    def from_keras(cls, config: dict[str, Any]) -> Layer:
        """The layer from its Keras config (``layer["config"]`` of a saved model)."""
        if config.get("trainable") is False:
            raise LayerError("is frozen (trainable=False), which is not supported")
        dtype = config.get("dtype")
        dtype_name = (dtype.get("config") or {}).get("name") if isinstance(dtype, dict) else dtype
        if dtype_name not in (None, "float32"):
            raise LayerError(f"computes in {dtype_name}; only float32 is supported")
        for key in UNSUPPORTED_EXTRAS:
            if config.get(key):
                raise LayerError(f"sets {key}, which is not supported")
        for key, (default, what) in cls.KERAS_FIXED.items():
            value = config.get(key, default)
            if _as_tuple(value) != _as_tuple(default):
                raise LayerError(f"has {key}={value!r}: {what} is not supported")
        own = set(cls.setting_names())
        settings = {k: v for k, v in config.items() if k in own}
        ignored = own | COMMON_IGNORED | cls.KERAS_IGNORED | set(cls.KERAS_FIXED) | set(UNSUPPORTED_EXTRAS)
        unknown = sorted(k for k, v in config.items() if k not in ignored and v not in (None, False))
        if unknown:
            raise LayerError(f"sets {', '.join(unknown)}, which this bridge does not know")
        return cls.from_settings(settings)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _rank(shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        got = "x".join(map(str, shape))
        raise LayerError(f"needs {'an (H, W, C) image' if rank == 3 else 'a flat vector'} input, got {got}; {what}")


def _window_output(size: int, window: int, stride: int, padding: str, what: str) -> int:
    if padding == "same":
        return -(-size // stride)
    if window > size:
        raise LayerError(f"{what} {window} is larger than its input ({size}) with padding='valid'")
    return (size - window) // stride + 1


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """Keras' ``padding="same"`` along one axis: (before, after); odd totals put the extra after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


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
        set_(self, "filters", _positive_int(self.filters, "filters"))
        set_(self, "kernel_size", _int_pair(self.kernel_size, "kernel_size"))
        set_(self, "strides", _int_pair(self.strides, "strides"))
        set_(self, "padding", _choice(self.padding, "padding", PADDINGS))
        set_(self, "activation", _activation(self.activation))
        set_(self, "use_bias", _bool(self.use_bias, "use_bias"))
        set_(self, "kernel_initializer", initializer(self.kernel_initializer, "kernel_initializer"))
        set_(self, "bias_initializer", initializer(self.bias_initializer, "bias_initializer"))

    def output_shape(self, shape: Shape) -> Shape:
        _rank(shape, 3, "flatten or pool to get there")
        h, w, _ = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return (_window_output(h, kh, sh, self.padding, "kernel height"),
                _window_output(w, kw, sw, self.padding, "kernel width"), self.filters)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        kernel = ("kernel", (*self.kernel_size, shape[-1], self.filters))
        return (kernel, ("bias", (self.filters,))) if self.use_bias else (kernel,)


@dataclass(frozen=True, kw_only=True)
class _Pooling2D(Layer):
    pool_size: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None  # Keras: None means pool_size; stored explicitly, as Keras does
    padding: str = "valid"

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "pool_size", _int_pair(self.pool_size, "pool_size"))
        set_(self, "strides", self.pool_size if self.strides is None else _int_pair(self.strides, "strides"))
        set_(self, "padding", _choice(self.padding, "padding", PADDINGS))

    def output_shape(self, shape: Shape) -> Shape:
        _rank(shape, 3, "pooling works on images")
        h, w, c = shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return (_window_output(h, ph, sh, self.padding, "pool height"),
                _window_output(w, pw, sw, self.padding, "pool width"), c)


@layer_type
@dataclass(frozen=True, kw_only=True)
class MaxPooling2D(_Pooling2D):
    """With ``padding="same"`` the padded cells never win (Keras pads with -inf)."""


@layer_type
@dataclass(frozen=True, kw_only=True)
class AveragePooling2D(_Pooling2D):
    """With ``padding="same"`` the padded cells are not counted in the average."""


@dataclass(frozen=True, kw_only=True)
class _GlobalPooling2D(Layer):
    keepdims: bool = False

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "keepdims", _bool(self.keepdims, "keepdims"))

    def output_shape(self, shape: Shape) -> Shape:
        _rank(shape, 3, "global pooling works on images")
        return (1, 1, shape[-1]) if self.keepdims else (shape[-1],)


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling2D(_GlobalPooling2D):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling2D(_GlobalPooling2D):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class BatchNormalization(Layer):
    """Over the channel (last) axis; ``momentum`` is Keras' (the weight of the old moving value)."""

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: str | dict = "zeros"
    gamma_initializer: str | dict = "ones"
    moving_mean_initializer: str | dict = "zeros"
    moving_variance_initializer: str | dict = "ones"

    # renorm itself must be off (UNSUPPORTED_EXTRAS); its settings are then unused. Synchronised
    # statistics only matter across devices.
    KERAS_IGNORED: ClassVar = frozenset({"renorm_clipping", "renorm_momentum", "synchronized"})

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        axis = self.axis[0] if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1 else self.axis
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise LayerError(f"axis must be an integer, got {self.axis!r}")
        set_(self, "axis", axis)
        set_(self, "momentum", _number(self.momentum, "momentum", 0.0, 1.0))
        set_(self, "epsilon", _number(self.epsilon, "epsilon", 0.0, math.inf, low_open=True))
        set_(self, "center", _bool(self.center, "center"))
        set_(self, "scale", _bool(self.scale, "scale"))
        for name in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                     "moving_variance_initializer"):
            set_(self, name, initializer(getattr(self, name), name))

    def output_shape(self, shape: Shape) -> Shape:
        if self.axis not in (-1, len(shape)):
            raise LayerError(f"normalises axis {self.axis} of a {len(shape) + 1}-D input; only the channel "
                             f"(last) axis, -1, is supported")
        return shape

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        names = (("gamma",) if self.scale else ()) + (("beta",) if self.center else ()) \
            + ("moving_mean", "moving_variance")
        return tuple((name, (shape[-1],)) for name in names)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Keras flattens channels-last maps in (h, w, c) order."""

    KERAS_FIXED: ClassVar = {"data_format": (CHANNELS_LAST, "data_format other than channels_last")}

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """On a flat input as usual; on an (H, W, C) input Keras applies it to the channel axis."""

    units: int
    activation: str = "linear"
    use_bias: bool = True
    kernel_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "units", _positive_int(self.units, "units"))
        set_(self, "activation", _activation(self.activation))
        set_(self, "use_bias", _bool(self.use_bias, "use_bias"))
        set_(self, "kernel_initializer", initializer(self.kernel_initializer, "kernel_initializer"))
        set_(self, "bias_initializer", initializer(self.bias_initializer, "bias_initializer"))

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) not in (1, 3):
            raise LayerError(f"needs a flat or an (H, W, C) input, got {'x'.join(map(str, shape))}")
        return (*shape[:-1], self.units)

    def weights(self, shape: Shape) -> tuple[tuple[str, Shape], ...]:
        kernel = ("kernel", (shape[-1], self.units))
        return (kernel, ("bias", (self.units,))) if self.use_bias else (kernel,)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    rate: float = 0.5

    KERAS_IGNORED: ClassVar = frozenset({"seed"})  # the random draw differs between frameworks anyway

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "rate", _number(self.rate, "rate", 0.0, 1.0, high_open=True))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Activation(Layer):
    activation: str = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "activation", _activation(self.activation))


@layer_type
@dataclass(frozen=True, kw_only=True)
class ReLU(Layer):
    """``max_value`` if x >= max_value, x if x >= threshold, else negative_slope * (x - threshold)."""

    max_value: float | None = None
    negative_slope: float = 0.0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_value is not None:
            object.__setattr__(self, "max_value", _number(self.max_value, "max_value", 0.0))
        object.__setattr__(self, "negative_slope", _number(self.negative_slope, "negative_slope", 0.0))
        object.__setattr__(self, "threshold", _number(self.threshold, "threshold", 0.0))


@layer_type
@dataclass(frozen=True, kw_only=True)
class LeakyReLU(Layer):
    negative_slope: float = 0.3  # the layer's Keras default (the leaky_relu activation's is 0.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "negative_slope", _number(self.negative_slope, "negative_slope", 0.0))


@layer_type
@dataclass(frozen=True, kw_only=True)
class Softmax(Layer):
    axis: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        axis = self.axis[0] if isinstance(self.axis, (list, tuple)) and len(self.axis) == 1 else self.axis
        if axis != -1:
            raise LayerError(f"axis={self.axis!r}: only the last (channel) axis, -1, is supported")
        object.__setattr__(self, "axis", -1)


def applies_softmax(layer: Layer) -> bool:
    """True for a layer whose output is a softmax over its last axis."""
    return getattr(layer, "activation", None) == "softmax" or isinstance(layer, Softmax)


__all__ = ["ACTIVATIONS", "INITIALIZERS", "VARIANCE_SCALING_PRESETS", "LAYER_TYPES", "Layer", "LayerError", "Shape", "applies_softmax",
           "initializer", "layer_type", "same_padding", *LAYER_TYPES]
