"""What every layer description shares: the base class, the registry, and the checks of settings.

Each description class is one Keras layer kind: its fields are the settings of its Keras
config (``Conv2D(filters=32, kernel_size=(3, 3), activation="relu")`` means what
``keras.layers.Conv2D(...)`` means), normalised and checked when the object is made. A
class knows three things about its layer, all in Keras' channels-last terms:

* ``output_shape(*shapes)``: the shape after the layer for its input shapes (one, or
  several for a merge), or a :class:`LayerError` when the layer cannot take them (a 5x5
  kernel on a 3x3 map, a Conv2D on a flat vector, two maps of different sizes, ...);
* ``weights(*shapes)``: its weight arrays, in the order Keras stores them
  (``model.weights.h5``'s ``vars/0, vars/1, ...``), as (Keras name, Keras shape);
* ``from_keras(config)``: the layer read from a Keras layer config, refusing any
  setting this bridge does not mirror (regularizers, another data format, ...).

Shapes have no batch axis and are Keras' (channels last): (H, W, C), (H, W) or (N,).
The classes live by family in the modules beside this one, as Keras' own ``layers/``
folder groups them; each is registered with :func:`layer_type`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.documents import beyond_float_range
from mnist_common.errors import UserError, escaped

Shape = tuple[int, ...]  # without the batch axis, channels last: (H, W, C), (H, W) or (features,)
MAX_RANK = 3  # tensors of the bridge have at most three axes besides the batch

# Activation names Keras accepts that the torch side mirrors exactly (checked against Keras in tests).
ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish", "hard_silu",
               "hard_swish", "sigmoid", "hard_sigmoid", "sparse_sigmoid", "log_sigmoid", "tanh", "hard_tanh",
               "tanh_shrink", "hard_shrink", "soft_shrink", "softplus", "sparse_plus", "squareplus", "softsign",
               "mish", "exponential", "softmax", "log_softmax")
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
    "Orthogonal": ("orthogonal", {"gain": 1.0}),  # recurrent layers' default for their recurrent kernel
    "Identity": ("identity", {"gain": 1.0}),  # the IRNN's recurrent kernel (Keras' own config.json drops its gain)
}
# Initializers that only fill some weights (Keras raises on others): the ranks each takes, as (fewest, most) axes.
MATRIX_INITIALIZERS = {"Orthogonal": (2, MAX_RANK + 1), "Identity": (2, 2)}
# The named initializers are Keras' VarianceScaling with these (scale, mode, distribution).
VARIANCE_SCALING_PRESETS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"), "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"), "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}
INITIALIZER_NAMES = {name: cls for cls, (name, _) in INITIALIZERS.items()}
# Config entries of an initializer that change nothing about its values (axis hints). Its seed is kept for the
# Keras side (it picks Keras' random draw; torch draws its own), so a .keras file comes back as it was.
INITIALIZER_IGNORED = {"input_axes", "output_axes"}
# Weight regularizers: Keras' class name -> its factors with their defaults (``L1L2()`` penalises nothing).
REGULARIZERS: dict[str, dict[str, float]] = {"L1": {"l1": 0.01}, "L2": {"l2": 0.01}, "L1L2": {"l1": 0.0, "l2": 0.0}}
# The names keras.regularizers.get takes, and Keras 2's "l1_l2" (written back as Keras 3's L1L2 config).
REGULARIZER_NAMES = {"l1": "L1", "l2": "L2", "l1l2": "L1L2", "l1_l2": "L1L2"}
# Weight constraints, applied after every optimizer step: Keras' class name -> its settings with their defaults.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "MaxNorm": {"max_value": 2.0, "axis": 0}, "NonNeg": {}, "UnitNorm": {"axis": 0},
    "MinMaxNorm": {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}}
CONSTRAINT_NAMES = {"max_norm": "MaxNorm", "non_neg": "NonNeg", "unit_norm": "UnitNorm", "min_max_norm": "MinMaxNorm"}
# Keras dtype policies mirrored: float32, and mixed precision (the weights float32, Keras' arithmetic in half
# precision; torch computes the layer in float32, within that arithmetic's rounding of Keras' numbers).
FLOAT32 = "float32"
DTYPE_POLICIES = (FLOAT32, "mixed_float16", "mixed_bfloat16")
# How Keras 3 serialises a policy (``FloatDTypePolicy``: Keras 3.2 to 3.5's name for it); quantized ones are others.
DTYPE_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy")
# Config entries every layer has that this bridge reads elsewhere or does not need.
COMMON_IGNORED = {"name"}
# Training-only extras Keras may attach to a layer; none is mirrored, so each must be unset.
# (A layer that has a weight's ``*_regularizer`` or ``*_constraint`` as a setting takes it; see :func:`regularizer`
# and :func:`constraint`.)
UNSUPPORTED_EXTRAS = ("kernel_regularizer", "bias_regularizer", "kernel_constraint",
                      "bias_constraint", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                      "gamma_constraint", "alpha_regularizer", "alpha_constraint", "quantization_config", "lora_rank",
                      "noise_shape", "renorm")


class LayerError(UserError):
    """One layer's settings or input cannot be mirrored; :class:`Architecture` adds which layer it is."""


LAYER_TYPES: dict[str, type[Layer]] = {}


def layer_type(cls: type[Layer]) -> type[Layer]:
    """Register a layer description under its type: its Keras class name (a Keras operation's: ``ops.add``)."""
    LAYER_TYPES[cls.type_name()] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Setting checks: each returns the normalised value or raises LayerError naming the setting.


def int_tuple(value: Any, setting: str, length: int, least: int = 1, also: str = "") -> tuple[int, ...]:
    """A positive integer (``least=0``: non-negative, an amount of padding), or ``length`` of them (a window's size per
    axis, as Keras takes it). ``also``: what else the setting takes, for the message (``"null, "``)."""
    items = (value,) * length if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (list, tuple)) or len(items) != length
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in items)):
        several = "a pair of them" if length == 2 else f"a list of {length}"
        kind = "a positive" if least == 1 else "a non-negative"
        raise LayerError(f"{setting} must be {also}{kind} integer or {several}, got {value!r}")
    return tuple(map(int, items))


def int_pair(value: Any, setting: str) -> tuple[int, int]:
    return int_tuple(value, setting, 2)


def positive_int(value: Any, setting: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LayerError(f"{setting} must be a positive integer, got {value!r}")
    return value


def number(value: Any, setting: str, low: float = -math.inf, high: float = math.inf,
            low_open: bool = False, high_open: bool = False) -> float | int:
    huge = beyond_float_range(value)  # 10**400: an OverflowError in float() and math.isfinite
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or huge or not math.isfinite(value)
            or value < low or value > high or (low_open and value == low) or (high_open and value == high)):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        shown = f"a whole number of {len(str(abs(value))):,} digits" if huge else repr(value)
        raise LayerError(f"{setting} must be a number in {bounds}, got {shown}")
    return value if type(value) is int else float(value)  # as given: Keras writes MaxNorm(2)'s 2 back as 2, not 2.0


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: what Keras and torch compute a setting in


def float32_number(value: Any, setting: str, low: float = -FLOAT32_MAX) -> float:
    """A number both frameworks hold as a finite float32 (Keras casts such settings; 1e39 would be inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and abs(value) > FLOAT32_MAX:
        raise LayerError(f"{setting} must be within float32's range (at most {FLOAT32_MAX:.4g} in size), "
                         f"got {value!r}")
    return number(value, setting, low)


def keras_object(value: Any, setting: str, known: dict[str, dict[str, Any]], names: dict[str, str],
                 module: str) -> tuple[str, dict[str, Any]]:
    """(class name, config) of one of Keras' own objects in ``known`` (by class name; its settings' defaults), given
    as a name (``names``: Keras' snake-case aliases) or as its serialised dict from ``module``; any other value, a
    custom class or a setting the class does not have is refused naming ``setting``."""
    kinds = ", ".join(known)
    if isinstance(value, str) and (value in known or value in names):
        return names.get(value, value), {}
    if isinstance(value, dict) and value.get("class_name") in known:
        cls, config = value["class_name"], dict(value.get("config") or {})
        if value.get("module") not in (None, module) or value.get("registered_name") not in (None, cls):
            raise LayerError(f"{setting} is a custom class ({value.get('registered_name') or cls}); only Keras' "
                             f"{kinds} are supported")
        unknown = sorted(set(config) - set(known[cls]))
        if unknown:
            raise LayerError(f"{setting} {cls} sets {', '.join(unknown)}, which is not supported")
        return cls, config
    shown = value.get("class_name") if isinstance(value, dict) else value
    raise LayerError(f"{setting} {shown!r} is not supported (supported: {kinds}, by name or as their Keras configs)")


def constraint(value: Any, setting: str) -> dict[str, Any] | None:
    """A Keras weight constraint (MaxNorm, NonNeg, UnitNorm, MinMaxNorm: a name or its serialised dict) as
    ``{"class_name": ..., "config": {settings}}``, every setting spelled out (``axis`` an integer or a tuple of them);
    None for none. Keras applies it to the weight after every optimizer step."""
    if value is None:
        return None
    cls, config = keras_object(value, setting, CONSTRAINTS, CONSTRAINT_NAMES, "keras.constraints")
    settings: dict[str, Any] = {}
    for name, default in CONSTRAINTS[cls].items():
        given = default if config.get(name) is None else config[name]
        if name == "axis":
            axes = list(given) if isinstance(given, (list, tuple)) else [given]
            if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
                raise LayerError(f"{setting} axis must be an integer or a list of integers, got {given!r}")
            settings[name] = axes[0] if not isinstance(given, (list, tuple)) else tuple(axes)
        else:
            settings[name] = float32_number(given, f"{setting} {name}", 0.0)
    if cls == "MinMaxNorm" and (settings["min_value"] > settings["max_value"] or settings["rate"] > 1.0):
        raise LayerError(f"{setting} MinMaxNorm needs min_value <= max_value and rate in [0, 1], got {config!r}")
    return {"class_name": cls, "config": settings}


def seed_value(value: Any, setting: str) -> int | None:
    """A Keras seed: None (a fresh draw each time) or a non-negative integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise LayerError(f"{setting} must be a non-negative integer or null, got {value!r}")
    return value


def boolean(value: Any, setting: str) -> bool:
    if not isinstance(value, bool):
        raise LayerError(f"{setting} must be true or false, got {value!r}")
    return value


def dtype_policy(value: Any) -> str:
    """A layer's ``dtype``: a policy's name, or Keras' serialised policy (``{"class_name": "DTypePolicy", "config":
    {"name": "mixed_float16"}}``); None is Keras' default, float32."""
    if isinstance(value, dict):
        if value.get("class_name") not in DTYPE_POLICY_CLASSES:
            raise LayerError(f"computes under a {value.get('class_name')!r} dtype policy; only float32 and mixed "
                             f"precision ({', '.join(DTYPE_POLICIES[1:])}) are supported")
        value = (value.get("config") or {}).get("name")
    value = FLOAT32 if value is None else value
    if value not in DTYPE_POLICIES:
        raise LayerError(f"computes in {value}; only float32 and mixed precision ({', '.join(DTYPE_POLICIES[1:])}) "
                         f"are supported")
    return value


def choice(value: Any, setting: str, choices: tuple[str, ...], lower: bool = False) -> str:
    """``value``, one of ``choices``; in any case with ``lower``, where Keras lower-cases the setting itself (a
    convolution's or pooling's padding), else as Keras takes it (Attention's ``score_mode="CONCAT"`` ran in torch
    where Keras refuses it)."""
    if not isinstance(value, str) or (value.lower() if lower else value) not in choices:
        raise LayerError(f"{setting} must be one of {', '.join(choices)}, got {value!r}")
    return value.lower() if lower else value


def activation_name(value: Any, setting: str = "activation") -> str:
    if value is None:
        return "linear"
    if isinstance(value, dict):  # Keras' serialised form of a built-in function: the forms keras.activations.get takes
        if value.get("class_name") == "function" and (value.get("module"), value.get("registered_name")) in \
                (("keras.activations", None), ("builtins", "function")):
            value = value.get("config")
    if isinstance(value, dict) and value.get("module") == "keras.layers" and isinstance(value.get("class_name"), str):
        kind = escaped(value["class_name"])[:60]  # a layer object given as the activation, saved as its config
        raise LayerError(f"{setting} is a {kind} layer object, which this bridge takes as the activation of a "
                         f"convolution or a Dense layer only: give the activation by "
                         f"name ({setting}=\"leaky_relu\", ...) or call the {kind} layer on this layer's output")
    if isinstance(value, str) and value.endswith("_v2") and value[:-3] in ACTIVATIONS:
        raise LayerError(f"{setting} {value!r} is TensorFlow's function (tf.nn.{value[:-3]}), which Keras saved by its "
                         f"own name and cannot load again; use {setting}={value[:-3]!r}")
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise LayerError(f"{setting} {escaped(repr(value))[:200]} is not supported (supported: "
                         f"{', '.join(ACTIVATIONS)})")
    return value


def initializer(value: Any, setting: str) -> str | dict[str, Any]:
    """A Keras initializer as a snake-case name, or ``{"class_name": ..., "config": {...}}`` with settings.

    Accepts what Keras accepts (a name, or its serialised dict) for the initializers in
    :data:`INITIALIZERS`. A seed is kept in the dict (``{"class_name": "GlorotUniform", "config": {"seed": 7}}``):
    it picks Keras' random draw, which the Keras side then makes again; the torch side draws its own.
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
        unknown = sorted(k for k, v in config.items() if k not in {*defaults, "seed", *INITIALIZER_IGNORED}
                         and v is not None)
        if unknown:
            raise LayerError(f"{setting} {cls} sets {', '.join(unknown)}, which is not supported")
        settings = {key: config.get(key, default) for key, default in defaults.items()}
        for key, default in defaults.items():
            if isinstance(default, float):
                settings[key] = float32_number(settings[key], f"{setting} {key}")
        if cls == "VarianceScaling":
            choice(settings["mode"], f"{setting} mode", ("fan_in", "fan_out", "fan_avg"))
            choice(settings["distribution"], f"{setting} distribution",
                    ("truncated_normal", "untruncated_normal", "normal", "uniform"), lower=True)
        seed = seed_value(config.get("seed"), f"{setting} seed")
        if settings == defaults and cls not in ("Constant",) and seed is None:
            return name
        return {"class_name": cls, "config": settings if seed is None else {**settings, "seed": seed}}
    names = ", ".join(INITIALIZER_NAMES)
    raise LayerError(f"{setting} {value!r} is not supported (supported: {names}, or their Keras configs)")


def regularizer(value: Any, setting: str) -> dict[str, Any] | None:
    """A Keras weight regularizer (L1, L2, L1L2: a name or its serialised dict) as ``{"class_name": ..., "config":
    {factors}}``, every factor spelled out; None for none. Keras adds ``l1 * sum(|w|) + l2 * sum(w ** 2)`` of the
    weight to the loss, in training and evaluation alike."""
    if value is None:
        return None
    cls, config = keras_object(value, setting, REGULARIZERS, REGULARIZER_NAMES, "keras.regularizers")
    factors = {name: float32_number(default if config.get(name) is None else config[name], f"{setting} {name}", 0.0)
               for name, default in REGULARIZERS[cls].items()}
    return {"class_name": cls, "config": factors}


# ---------------------------------------------------------------------------------------------
# The layer descriptions


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Settings of one Keras layer. Subclasses are named like the Keras class they describe."""

    name: str | None = None  # the Keras layer's name, kept for the Keras side; None lets Keras choose
    # False: frozen, as Keras' ``layer.trainable = False`` (fine-tuning's frozen base): no training changes its
    # weights, it adds no weight penalty, and a BatchNormalization normalises with its moving statistics in training
    # too (Keras runs it in inference mode). Written only when False.
    trainable: bool = True
    # Keras' dtype policy: float32, or mixed_float16 / mixed_bfloat16 (what ``keras.mixed_precision`` sets), kept for
    # the Keras side; the torch layer computes in float32 whatever it says. Written only when not float32.
    dtype: str = FLOAT32
    # Keras' penalty on the layer's outputs (L1, L2, L1L2), added to the loss at every call, divided by the batch size:
    # the torch network computes it beside the logits (KerasNetwork.logits_and_activity_penalty).
    activity_regularizer: dict | None = None

    # Keras config entries that must keep their default (value) for the layer to be mirrored,
    # each with the words that say what is not supported.
    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {}
    # Keras config entries of this layer that change nothing this bridge mirrors.
    KERAS_IGNORED: ClassVar[frozenset[str]] = frozenset()
    # How many tensors the layer is called on: 1, or None for "two or more" (the merge layers).
    INPUTS: ClassVar[int | None] = 1
    # Weights Keras counts as non-trainable (BatchNorm's moving statistics, Normalization's adapted ones).
    NON_TRAINABLE: ClassVar[frozenset[str]] = frozenset()
    # Weights Keras keeps in another dtype than float32 (Normalization's ``count``: int64), by weight name.
    WEIGHT_DTYPES: ClassVar[dict[str, str]] = {}
    # Keras settings held under another field name, by Keras' name (MultiHeadAttention's ``output_shape``, which is
    # this class's method): descriptions and configs use Keras' name
    KERAS_RENAMED: ClassVar[dict[str, str]] = {}
    # A layer called on several tensors as its call's arguments (``mha(query, value, key=...)``), not as one list:
    # their names, positional or keyword, in the order its inputs list them (empty: one tensor, or a merge's list)
    CALL_TENSORS: ClassVar[tuple[str, ...]] = ()
    # Keyword arguments of its call that a file may record at these values (their defaults); any other is refused
    CALL_DEFAULTS: ClassVar[dict[str, Any]] = {}
    # Settings its call takes, not its constructor (``mha(q, v, use_causal_mask=True)``): a description's settings
    # like any other, read from a file's call and given to the Keras layer's call where set (true)
    CALL_SETTINGS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def type_name(cls) -> str:
        """The kind's name in a description: the Keras class's (a Keras operation's differs: ``ops.add``)."""
        return cls.__name__

    @property
    def type(self) -> str:
        return self.type_name()

    @property
    def keras_class(self) -> str:
        """The class Keras makes it of, whose snake-case name Keras gives an unnamed one (``conv2d``, ``add``)."""
        return type(self).__name__

    def input_count(self) -> int | None:
        """How many tensors it is called on: :attr:`INPUTS` (an operation given a number for an operand: fewer)."""
        return self.INPUTS

    def call_arguments(self, tensors: list[Any]) -> list[Any]:
        """Its call's positional arguments on ``tensors``: the one tensor, a merge's list of them, or each in turn
        (:attr:`CALL_TENSORS`)."""
        if self.CALL_TENSORS:
            return list(tensors)
        return [list(tensors)] if self.input_count() is None else [tensors[0]]

    def call_keywords(self) -> dict[str, Any]:
        """Its call's keyword arguments besides the tensors: the :attr:`CALL_SETTINGS` it sets."""
        return {key: getattr(self, key) for key in self.CALL_SETTINGS if getattr(self, key)}

    def keras_settings(self) -> dict[str, Any]:
        """The Keras constructor's arguments (a config.json entry's ``config``): :meth:`settings` but those its
        call takes."""
        return {key: value for key, value in self.settings().items() if key not in self.CALL_SETTINGS}

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise LayerError(f"name must be a non-empty string, got {self.name!r}")
        boolean(self.trainable, "trainable")
        object.__setattr__(self, "dtype", dtype_policy(self.dtype))
        for f in dataclasses.fields(self):
            if f.name.endswith("_regularizer"):
                object.__setattr__(self, f.name, regularizer(getattr(self, f.name), f.name))
            elif f.name.endswith("_constraint"):
                object.__setattr__(self, f.name, constraint(getattr(self, f.name), f.name))

    # --- what a layer does to shapes and which weights it has -----------------------------
    def output_shape(self, *shapes: Shape) -> Shape:
        """The output shape for these input shapes (one per input); the default keeps its one input's."""
        return shapes[0]

    def weights(self, *shapes: Shape) -> tuple[tuple[str, Shape], ...]:
        """(Keras weight name, Keras shape) in Keras' storage order, for these input shapes."""
        return ()

    def working_values(self, *shapes: Shape) -> int:
        """Values per example it holds while computing, besides its output (an attention's scores), which the
        bridge's bound on a network's size counts: none by default."""
        return 0

    def unrolled_steps(self, *shapes: Shape) -> int:
        """The steps of the recurrent cells it runs on these input shapes (a recurrent layer's steps, both directions
        of a Bidirectional), which a graph that unrolls them (LiteRT's export) writes out one by one: none by
        default."""
        return 0

    def weight_dtype(self, weight_name: str) -> str:
        """The numpy dtype Keras keeps the weight in: float32 unless :attr:`WEIGHT_DTYPES` says otherwise."""
        return self.WEIGHT_DTYPES.get(weight_name, "float32")

    def trains(self, weight_name: str) -> bool:
        """Whether training changes the weight (Keras' ``trainable_weights``): not in a frozen layer, nor one of
        :attr:`NON_TRAINABLE` (moving statistics, which a BatchNormalization updates itself)."""
        return self.trainable and weight_name not in self.NON_TRAINABLE

    def weight_path(self, index: int) -> str:
        """Where Keras keeps the layer's ``index``-th weight under its group of ``model.weights.h5`` (``vars/0``;
        a recurrent layer's cell holds them: ``cell/vars/0``)."""
        return f"vars/{index}"

    def initial_shape(self, weight_name: str, shape: Shape) -> Shape:
        """The shape Keras draws the weight's initial values in, whose first and last axes give the initializer's
        fans (a kernel of more axes than two is drawn as one matrix where Keras says which axes are its input and
        output: an ``EinsumDense``'s); the weight's own by default."""
        return shape

    def finish_initial(self, weight_name: str, value: Any) -> Any:
        """A weight its initializer has just filled (in Keras' layout, any array that slices as numpy's), with what
        the layer itself sets at the start (LSTM's ``unit_forget_bias``); unchanged by default."""
        return value

    def input_factor(self) -> float | None:
        """The number it multiplies its input by, where that is what it does (an offset may follow: a ``Rescaling``,
        ``x / 255.0``); None otherwise. What tells that a model takes raw 0-255 pixels."""
        return None

    # Whether its output outside training is on its input's scale: its values moved between axes, some left out or
    # zeros added (a reshape, a crop, a dropout, an augmentation), or maxima and weighted means of them (a pooling, a
    # resize): the pixel scale is found past such layers.
    KEEPS_SCALE: ClassVar[bool] = False

    # What Keras does with uint8 inputs (a model fed raw bytes, measured in Keras' predict and fit): TAKES_BYTES, it
    # computes in float32 (a Rescaling, ``ops.cast``, a Normalization, a resize or augmentation); PASSES_BYTES, its
    # outputs stay bytes, which the next layer takes (a reshape, crop, padding, max pooling). Neither: Keras cannot
    # run it on bytes (a convolution, a Dense, a dropout in training, an average pooling)
    TAKES_BYTES: ClassVar[bool] = False
    PASSES_BYTES: ClassVar[bool] = False

    def takes_bytes(self) -> bool:
        """Whether Keras computes it in float32 on uint8 inputs (:attr:`TAKES_BYTES`; an operation's constants may
        decide it)."""
        return self.TAKES_BYTES

    # Whether its output outside training is its input's values, each once, arranged otherwise (a reshape, a
    # transpose; a dropout, the identity then): one distribution over all its input's values stays one.
    REARRANGES: ClassVar[bool] = False

    def held_layers(self) -> tuple[Layer, ...]:
        """The layers it holds as settings (a wrapper's layer, an activation given as a layer object), which Keras
        calls inside its own call, each under its own name."""
        return tuple(value for f in dataclasses.fields(self) if isinstance(value := getattr(self, f.name), Layer))

    def output_activation(self) -> str | None:
        """The activation its outputs come out of (a ``sigmoid``: independent probabilities), None where it has
        none; an activation given as a layer object (:func:`activation_setting`): that layer's."""
        activation = getattr(self, "activation", None)
        return activation.output_activation() if isinstance(activation, Layer) else activation

    def softmax_axis(self) -> int | None:
        """The axis of the softmax it ends with (Keras': the batch is 0, -1 the last), None where it has none: a
        ``softmax`` activation's is the last, a ``Softmax`` layer object's its own."""
        activation = getattr(self, "activation", None)
        if isinstance(activation, Layer):
            return activation.softmax_axis()
        return -1 if activation == "softmax" else None

    # said where a model's probabilities changed by this layer are refused (Architecture.require_one_distribution)
    DISTRIBUTION_ADVICE: ClassVar[str] = ""

    def keeps_distributions(self, *shapes: Shape) -> bool:
        """Whether inputs that are probabilities along their last axis (a softmax's) give outputs that are too,
        outside training: the same values, or a mean of them (an average pooling of per-pixel softmaxes).
        What tells predict and training that a model's outputs are already probabilities; False by default."""
        return False

    def logits_of_distributions(self) -> bool:
        """Whether it turns probabilities into logits (log-probabilities, whose softmax gives them back) with no
        weights: a natural logarithm. What lets a model end in ``log(softmax(x))``; False by default."""
        return False

    def setting_stem(self, weight_name: str) -> str:
        """How Keras names a weight's settings (``kernel`` -> ``kernel_initializer``, ``depthwise_kernel`` ->
        ``depthwise_regularizer``, ``moving_mean`` -> ``moving_mean_initializer``): the stem before ``_``."""
        return weight_name[:-len("_kernel")] if weight_name.endswith("_kernel") else weight_name

    def initializer_of(self, weight_name: str) -> str | dict[str, Any]:
        """The setting that initialises a weight."""
        return getattr(self, f"{self.setting_stem(weight_name)}_initializer")

    def regularizer_of(self, weight_name: str) -> dict[str, Any] | None:
        """The weight's regularizer (:func:`regularizer`), None where it has none or the layer takes none."""
        return getattr(self, f"{self.setting_stem(weight_name)}_regularizer", None)

    def constraint_of(self, weight_name: str) -> dict[str, Any] | None:
        """The weight's constraint (:func:`constraint`), None where it has none or the layer takes none."""
        return getattr(self, f"{self.setting_stem(weight_name)}_constraint", None)

    def check_weight_settings(self, *shapes: Shape) -> None:
        """Refuse, for these input shapes, a constraint whose ``axis`` its weight does not have (Keras would fail at
        the first training step), or an Orthogonal or Identity initializer on a weight it cannot fill (Keras fails
        when it builds the layer: a vector, or for Identity anything but a matrix). Called once the shapes are
        known."""
        for weight_name, shape in self.weights(*shapes):
            init = self.initializer_of(weight_name)
            cls = init["class_name"] if isinstance(init, dict) else INITIALIZER_NAMES.get(init)
            fewest, most = MATRIX_INITIALIZERS.get(cls, (0, len(shape)))
            if not fewest <= len(shape) <= most:
                axes = "two" if most == 2 else "two or more"
                raise LayerError(f"{self.setting_stem(weight_name)}_initializer {cls} fills a weight of {axes} axes; "
                                 f"its {weight_name} has shape {shape_text(shape)}")
            rule = self.constraint_of(weight_name)
            axis = rule["config"].get("axis") if rule else None
            for a in (axis if isinstance(axis, tuple) else () if axis is None else (axis,)):
                if not -len(shape) <= a < len(shape):
                    raise LayerError(f"{self.setting_stem(weight_name)}_constraint axis {a} is not an axis of its "
                                     f"{weight_name} of shape {shape_text(shape)} (Keras' layout)")

    def with_adapted(self, arrays: list[Any]) -> Layer:
        """The layer with what its weights hold that no training changes (statistics of the data, Normalization's
        adapted mean and variance) as settings instead: what a run trained from a ``.keras`` architecture keeps
        of the file. Layers without such weights are themselves."""
        return self

    def activity_rule(self) -> dict[str, Any] | None:
        """The regularizer Keras applies to the layer's outputs (:func:`regularizer`'s form), None for none."""
        return self.activity_regularizer

    def policies(self) -> set[str]:
        """The dtype policies the layer computes under (a Bidirectional: its own and its two layers')."""
        return {self.dtype}

    def in_float32(self) -> Layer:
        """The layer computing in float32, as torch computes it (a mixed-precision layer's float32 twin)."""
        return self if self.dtype == FLOAT32 else dataclasses.replace(self, dtype=FLOAT32)

    def renamed(self, name: str | None) -> Layer:
        """The same layer under another name (None: unnamed)."""
        return dataclasses.replace(self, name=name)

    # --- settings in and out --------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The Keras constructor arguments (every setting, tuples as lists); ``name``, regularizers and constraints
        only when set, ``trainable`` only when False, ``dtype`` only when not float32."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and (f.name == "name" or f.name.endswith(("_regularizer", "_constraint"))):
                continue
            if (f.name == "trainable" and value) or (f.name == "dtype" and value == FLOAT32):
                continue
            out[self.keras_name(f.name)] = plain(value)
        return out

    @classmethod
    def keras_name(cls, field_name: str) -> str:
        """The Keras setting a field holds (:attr:`KERAS_RENAMED`): its own name but for a renamed one."""
        return next((keras for keras, own in cls.KERAS_RENAMED.items() if own == field_name), field_name)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, **self.settings()}

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The settings by Keras' names (a description's and a config's keys)."""
        return tuple(cls.keras_name(f.name) for f in dataclasses.fields(cls))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Layer:
        unknown = sorted(set(settings) - set(cls.setting_names()))
        if unknown:
            raise LayerError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                             f"({cls.__name__} takes {', '.join(cls.setting_names())})")
        return cls(**{cls.KERAS_RENAMED.get(key, key): value for key, value in settings.items()})

    @classmethod
    def from_keras(cls, config: dict[str, Any]) -> Layer:
        """The layer from its Keras config (``layer["config"]`` of a saved model)."""
        own = set(cls.setting_names())
        for key in UNSUPPORTED_EXTRAS:
            if config.get(key) and key not in own:
                raise LayerError(f"sets {key}, which is not supported")
        for key, (default, what) in cls.KERAS_FIXED.items():
            value = config.get(key, default)
            if as_tuple(value) != as_tuple(default):
                raise LayerError(f"has {key}={value!r}: {what} is not supported")
        settings = {k: v for k, v in config.items() if k in own}
        ignored = own | COMMON_IGNORED | cls.KERAS_IGNORED | set(cls.KERAS_FIXED) | set(UNSUPPORTED_EXTRAS)
        unknown = sorted(k for k, v in config.items() if k not in ignored and v not in (None, False))
        if unknown:
            raise LayerError(f"sets {', '.join(unknown)}, which this bridge does not know")
        return cls.from_settings(settings)


def plain(value: Any) -> Any:
    """``value`` with every tuple a list, at any depth (dicts' values too): what YAML and JSON write; a layer (a
    wrapper's) as Keras serialises it, what ``from_config`` and config.json take."""
    if isinstance(value, Layer):
        return {"module": "keras.layers", "class_name": value.type, "config": value.keras_settings(),
                "registered_name": None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"


def require_rank(shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        wanted = {3: "an (H, W, C) image", 2: "an (H, W) map", 1: "a flat vector"}[rank]
        raise LayerError(f"needs {wanted} input, got {shape_text(shape)}; {what}")


def window_output(size: int, window: int, stride: int, padding: str, what: str) -> int:
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


def padded_values(shape: Shape, windows: tuple[int, ...], strides: tuple[int, ...], padding: str,
                  dilations: tuple[int, ...] | None = None) -> int:
    """The values of a windowed layer's input padded for Keras' ``"same"`` (or ``"causal"``) windows, per example;
    0 with ``"valid"``. The torch side pads its input to this size where Keras' padding is uneven (a pooling's
    always), and TensorFlow's dilated convolution does too: a window far larger than its input (a pool_size of
    10**5, a dilation of 10**9, hostile round 12) pads it to GBs an image, which the bound on a network's size
    counts (``Layer.working_values``). ``dilations``: TensorFlow computes a dilated convolution on blocks of its
    padded input (SpaceToBatchND), padded further up to a multiple of the dilation along each axis: a dilation of
    4,000 on 28 pixels is 8,000 of them, not 4,028 (hostile round 13: 2 s an image on the Keras backend)."""
    if padding == "valid":
        return 0
    sizes = [size + sum(same_padding(size, window, stride)) for size, window, stride in zip(shape, windows, strides)]
    if dilations is not None:
        sizes = [-(-size // dilation) * dilation for size, dilation in zip(sizes, dilations)]
    return math.prod(sizes) * math.prod(shape[len(windows):])


# How deep wrappers may wrap wrappers: a TimeDistributed of a TimeDistributed of a layer (a (steps, steps, features)
# input) is two; a crafted file of 200 of them ran the parser past Python's stack
MAX_WRAPPER_DEPTH = 8


def wrapper_depth(value: Any) -> int:
    """How many layers deep ``value`` (a wrapped layer as Keras serialises it, or a description's entry) holds
    further wrapped layers (``layer``), counted without recursion, no further than :data:`MAX_WRAPPER_DEPTH` + 1."""
    depth = 0
    while isinstance(value, dict) and depth <= MAX_WRAPPER_DEPTH:
        value = value.get("config") if isinstance(value.get("config"), dict) else value
        value = value.get("layer") if isinstance(value, dict) else None
        depth += value is not None
    return depth


def wrapped_layer(value: Any, setting: str, kind: type[Layer] = Layer,
                  kinds: str = "a supported Keras layer called on one tensor") -> Any:
    """The layer inside a wrapper, given as Keras serialises it (``{"class_name": "LSTM", "config": {...}}``, what
    config.json holds), as a description's entry (``{"type": "LSTM", "units": 8}``) or as a description: a ``kind``
    (``kinds`` in words) called on one tensor."""
    if isinstance(value, dict) and ("class_name" in value or "type" in value):
        if wrapper_depth(value) > MAX_WRAPPER_DEPTH:
            raise LayerError(f"{setting} wraps layers in wrappers more than {MAX_WRAPPER_DEPTH} deep")
        name = value.get("class_name", value.get("type"))
        found = LAYER_TYPES.get(name) if isinstance(name, str) and name.isidentifier() else None
        if found is None or not issubclass(found, kind):
            raise LayerError(f"{setting} must be {kinds}, got {name!r}")
        if value.get("module") not in (None, "keras.layers") or value.get("registered_name") not in (None, name):
            raise LayerError(f"{setting} is a custom class ({value.get('registered_name') or name}); only Keras' "
                             f"own layers are supported")
        if "class_name" in value and not isinstance(value.get("config") or {}, dict):
            raise LayerError(f"{setting} ({name}) has a config that is no mapping ({type(value['config']).__name__})")
        try:
            if "class_name" in value:
                value = found.from_keras(dict(value.get("config") or {}))
            else:
                value = found.from_settings({k: v for k, v in value.items() if k != "type"})
        except LayerError as err:
            raise LayerError(f"{setting} ({name}): {err}") from None
    if not isinstance(value, kind):
        raise LayerError(f"{setting} must be {kinds} (its Keras config or a description's entry), got {value!r}")
    if value.input_count() != 1 or value.CALL_TENSORS:
        raise LayerError(f"{setting} ({value.type}) is called on several tensors; a wrapper calls its layer on one")
    return value


# The layers Keras takes as another layer's activation given as an object (``Conv2D(32, 3,
# activation=LeakyReLU(0.1))``, saved as the layer's serialised config inside the other's): those of one tensor and
# no weights, whose torch modules the layer's converter calls on its output
ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")


def activation_setting(value: Any, setting: str = "activation") -> str | Layer:
    """A convolution's or a Dense layer's ``activation``: a Keras activation by name (:func:`activation_name`), or
    one of :data:`ACTIVATION_LAYERS` given as a layer object (its Keras config, as config.json holds it, or a
    description's entry, ``{type: LeakyReLU, negative_slope: 0.1}``), kept so: Keras' file names it as one."""
    if isinstance(value, Layer) or (isinstance(value, dict) and (
            "type" in value or value.get("module") == "keras.layers"
            or (value.get("module") is None and str(value.get("class_name")) in LAYER_TYPES))):
        kind = value.type if isinstance(value, Layer) else value.get("class_name", value.get("type"))
        if kind not in ACTIVATION_LAYERS:
            raise LayerError(f"{setting} is a {escaped(str(kind))[:60]} layer object; as an activation this bridge "
                             f"takes a name or a layer object of no weights: {', '.join(ACTIVATION_LAYERS)}")
        layer = wrapped_layer(value, setting)
        if layer.activity_regularizer is not None:  # Keras adds its penalty at the call inside the other layer's
            raise LayerError(f"{setting} ({layer.type}) sets activity_regularizer, which is not supported on an "
                             f"activation given as a layer object (set it on this layer)")
        return layer
    return activation_name(value, setting)
