"""Keras 2's TensorFlow-function layers (``TFOpLambda``) of a legacy model config, as the Keras 3 layers they equal.

tf.keras 2 recorded a TensorFlow function applied to Keras tensors in a Functional model (``x + shortcut``,
``x * 0.5``, ``tf.nn.relu(x)``, ``tf.concat([a, b], -1)``) as a ``TFOpLambda`` layer naming the function
(``__operators__.add``, ``math.multiply``, ``nn.relu``, ``concat``); Keras 3 has no such layer and cannot read the
file (nor its own operations, such as ``ExpandDims``, from a legacy file). The common ones are the same computation
as a Keras layer, written here in their place, in the copy of the config Keras 3 reads (``tf.f`` stands for the
function of that name under ``tf``, ``tf.math`` or ``tf.compat.v1``, as Keras 2 recorded it):

======================================  =============================================================================
Keras 2 function                        Keras 3 layer
======================================  =============================================================================
``x + y``, ``x - y``, ``x * y``         ``Add``, ``Subtract``, ``Multiply`` (tensors)
``x + c``, ``x - c``, ``c - x``,        ``Rescaling(scale, offset)`` (a number ``c``): ``x * 1 + c``, ``x * 1 - c``,
``x * c``, ``x / c``                    ``x * -1 + c``, ``x * c + 0``, ``x * (1 / c) + 0`` (within a float32 rounding)
``tf.maximum(x, y)``, ``tf.minimum``    ``Maximum``, ``Minimum``; ``tf.maximum(x, 0)``: ``ReLU``
``tf.nn.relu``, ``tf.math.sigmoid``...  ``Activation`` of the same name (:data:`ACTIVATIONS`, ``tf.nn.log_softmax``
                                        and the exact ``tf.nn.gelu`` among them); ``tf.nn.softmax`` over
                                        a given axis: ``Softmax(axis)`` (the bridge takes the last, by any name)
``tf.nn.leaky_relu(x, alpha)``          ``LeakyReLU(negative_slope=alpha)`` (TensorFlow's default alpha, 0.2)
``tf.clip_by_value(x, 0, c)``           ``ReLU(max_value=c)``
``tf.concat([a, b, ...], axis)``        ``Concatenate(axis)``
``tf.reshape(x, [-1, ...])``            ``Reshape(...)``
``tf.expand_dims``, ``tf.squeeze``      ``Reshape`` to the shape they give, where the input's rank is known and all
                                        its sizes but one (an ``Input``'s, a ``Flatten``'s, a global pooling's, or
                                        these layers' of them)
``tf.transpose(x, [0, ...])``           ``Permute(...)`` (the batch axis stays first)
``tf.reduce_mean``, ``tf.reduce_max``   ``GlobalAveragePooling2D``, ``GlobalMaxPooling2D`` (``keepdims`` kept) over axes
                                        1 and 2; over axis 1, their 1D kinds (Keras refuses them on other ranks)
``tf.cast(x, "float32")``               ``Identity`` (the bridge's tensors are float32)
``tf.pad`` with zeros                   ``ZeroPadding2D`` (rows, columns), ``ZeroPadding1D`` (steps)
``tf.image.resize(x, [h, w])``          ``Resizing(h, w)``, bilinear or nearest, ``antialias`` kept
``tf.image.grayscale_to_rgb``,          ``Concatenate`` of copies of the input along that axis (three along the
``tf.tile`` along one axis              channels; ``tf.tile`` with all multiples 1: ``Identity``)
======================================  =============================================================================

A rewritten layer is renamed (Keras 3 layer names hold no ``.``: ``tf.__operators__.add`` becomes
``tf_operators_add``), and every reference to it follows. Any other function, or one called in another way (a mean
over other axes, a reshape of the batch axis), is refused, naming it and these. The layers hold no weights, so the
file's weights load as they are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from mnist_common.architecture.keras_config import MODEL_CLASSES
from mnist_common.errors import UserError, path_text

TF_OP_LAYER = "TFOpLambda"
CONSTANT = "_CONSTANT_VALUE"  # Keras 2's first "tensor" of a call whose first operand was a number (2.0 * x)
MERGES = {"__operators__.add": "Add", "math.add": "Add", "math.subtract": "Subtract", "math.multiply": "Multiply"}
ARITHMETIC = (*MERGES, "math.truediv", "math.divide")
# Keras 2's TensorFlow activation functions -> the Keras activation of the same computation
ACTIVATIONS = {"nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
               "math.tanh": "tanh", "nn.tanh": "tanh", "nn.softmax": "softmax", "nn.elu": "elu", "nn.selu": "selu",
               "math.softplus": "softplus", "nn.softplus": "softplus", "nn.silu": "silu", "nn.swish": "silu",
               "nn.gelu": "gelu", "math.exp": "exponential", "nn.log_softmax": "log_softmax",
               "math.log_softmax": "log_softmax"}
TF_LEAKY_RELU_ALPHA = 0.2  # tf.nn.leaky_relu's default
MAX_COPIES = 64  # tf.tile's copies as the inputs of one Concatenate: a hand-made file's 10**6 would be that many
KNOWN_RANK = ("of a tensor of a known rank (an Input's, a Flatten's or a global pooling's, or these functions' of "
              "them)")
GLOBAL_POOLING = {("mean", (1, 2)): "GlobalAveragePooling2D", ("max", (1, 2)): "GlobalMaxPooling2D",
                  ("mean", (1,)): "GlobalAveragePooling1D", ("max", (1,)): "GlobalMaxPooling1D"}

Tensor = tuple[str, int, int]  # a Keras 2 reference to a tensor: [layer, node, index]
Shape = tuple[int | None, ...]  # without the batch axis; None: a size not known here


class NotRewritten(Exception):
    """A function this module rewrites, called in a way no Keras layer computes; the message says how."""


@dataclass(frozen=True)
class Call:
    """One TFOpLambda entry's call of its function: the tensors, the number and the keywords it was given."""

    function: str
    tensors: list[Tensor]  # every tensor operand, the first first (tf.concat: all of its list)
    number: float | None  # the first operand where it was a number (2.0 * x), else None
    keywords: dict[str, Any]
    shapes: dict[str, Shape]  # the layers' output shapes (their ranks) known so far

    def shape(self, tensor: Tensor) -> Shape | None:
        return self.shapes.get(tensor[0]) if tensor[2] == 0 else None

    def one_tensor(self, *allowed: str) -> Tensor:
        """The call's one tensor, its keywords all among ``allowed``."""
        unknown = sorted(set(self.keywords) - {"name", *allowed})
        if len(self.tensors) != 1 or self.number is not None or unknown:
            raise NotRewritten("of one tensor" + (f" (not with {', '.join(unknown)})" if unknown else ""))
        return self.tensors[0]


@dataclass(frozen=True)
class Rewritten:
    """The Keras 3 layer a call becomes: its class, inputs and settings, and its output shape where known."""

    kind: str
    sources: list[Tensor]
    settings: dict[str, Any]
    shape: Shape | None = None


REWRITERS: dict[str, Callable[[Call], Rewritten]] = {}


def rewrites(*functions: str) -> Callable:
    """Register a rewriter for these TensorFlow functions, as Keras 2 named them (``math.maximum``, ``concat``)."""
    def register(rewriter: Callable[[Call], Rewritten]) -> Callable[[Call], Rewritten]:
        for function in functions:
            REWRITERS[function] = rewriter
        return rewriter
    return register


def _tensor(value: Any) -> Tensor | None:
    """A Keras 2 reference to a tensor ([layer, node, index]), else None (a number)."""
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str) and value[0] != CONSTANT:
        return value[0], value[1], value[2]
    return None


def _number(value: Any) -> float | None:
    """A finite number a float holds (not 10**400, NaN or infinity: a hand-made file's), else None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value) >= 1e300:
        return None
    return float(value) if math.isfinite(value) else None


def _axes(value: Any, rank: int | None = None) -> tuple[int, ...] | None:
    """Axes as TensorFlow counts them (the batch is 0), sorted; negative ones counted from ``rank`` (with the batch)
    where it is known; None for anything else."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    if any(v < 0 for v in values):
        if rank is None:
            return None
        values = [v + rank if v < 0 else v for v in values]
    return tuple(sorted(values))


@rewrites(*ACTIVATIONS)
def _activation(call: Call) -> Rewritten:
    x = call.one_tensor("axis", "approximate")
    if call.keywords.get("approximate", False) is not False:  # tf.nn.gelu's tanh approximation: no Keras layer
        raise NotRewritten("exactly (approximate=False: Keras' gelu activation is the exact one)")
    axis = call.keywords.get("axis", -1)
    if axis not in (-1, None):
        if ACTIVATIONS[call.function] == "softmax":  # over a given axis: the layer of that setting
            return Rewritten("Softmax", [x], {"axis": axis}, call.shape(x))
        raise NotRewritten(f"over the last axis (this one is over axis {axis})")
    return Rewritten("Activation", [x], {"activation": ACTIVATIONS[call.function]}, call.shape(x))


@rewrites(*ARITHMETIC)
def _arithmetic(call: Call) -> Rewritten:
    unknown = sorted(set(call.keywords) - {"y", "name"})
    if unknown or not 1 <= len(call.tensors) <= 2:
        raise NotRewritten("of two tensors, or a tensor and a number")
    kind = MERGES.get(call.function)
    if len(call.tensors) == 2:
        if kind is None:
            raise NotRewritten("for a tensor divided by a number (no Keras layer divides by a tensor)")
        return Rewritten(kind, call.tensors, {}, _same_shape(call))
    [tensor] = call.tensors
    c = call.number if call.number is not None else _number(call.keywords.get("y"))
    if c is None:  # y neither a tensor nor a finite number (a hand-made file's)
        raise NotRewritten("of two tensors, or a tensor and a finite number")
    scale_offset = {"Add": (1.0, c), "Multiply": (c, 0.0)}.get(kind) if c is not None else None
    if kind == "Subtract" and c is not None:
        scale_offset = (1.0, -c) if call.number is None else (-1.0, c)
    if kind is None and call.number is None and c:  # a tensor divided by a number
        scale_offset = (1.0 / c, 0.0)
    if scale_offset is None:
        raise NotRewritten("for a tensor divided by a number, not a number by a tensor")
    return Rewritten("Rescaling", [tensor], {"scale": scale_offset[0], "offset": scale_offset[1]},
                     call.shape(tensor))


def _same_shape(call: Call) -> Shape | None:
    shapes = {call.shape(tensor) for tensor in call.tensors}
    return shapes.pop() if len(shapes) == 1 else None


@rewrites("math.maximum", "math.minimum", "maximum", "minimum")
def _extreme(call: Call) -> Rewritten:
    if len(call.tensors) == 2 and call.number is None and set(call.keywords) <= {"y", "name"}:
        return Rewritten("Maximum" if call.function.endswith("maximum") else "Minimum", call.tensors, {},
                         _same_shape(call))
    other = call.number if call.number is not None else _number(call.keywords.get("y"))
    if call.function.endswith("maximum") and len(call.tensors) == 1 and other == 0.0:
        return Rewritten("ReLU", call.tensors, {}, call.shape(call.tensors[0]))
    raise NotRewritten("of two tensors (or the maximum of a tensor and 0)")


@rewrites("nn.leaky_relu")
def _leaky_relu(call: Call) -> Rewritten:
    x = call.one_tensor("alpha")
    alpha = _number(call.keywords.get("alpha", TF_LEAKY_RELU_ALPHA))
    if alpha is None or alpha < 0:
        raise NotRewritten("with a number alpha of 0 or more")
    return Rewritten("LeakyReLU", [x], {"negative_slope": alpha}, call.shape(x))


@rewrites("clip_by_value")
def _clip(call: Call) -> Rewritten:
    x = call.one_tensor("clip_value_min", "clip_value_max")
    low, high = (_number(call.keywords.get(key)) for key in ("clip_value_min", "clip_value_max"))
    if low != 0.0 or high is None or high <= 0:
        raise NotRewritten("from 0 to a positive number (ReLU's max_value)")
    return Rewritten("ReLU", [x], {"max_value": high}, call.shape(x))


@rewrites("concat")
def _concat(call: Call) -> Rewritten:
    axis = call.keywords.get("axis")
    if (len(call.tensors) < 2 or call.number is not None or set(call.keywords) - {"axis", "name"}
            or not isinstance(axis, int) or isinstance(axis, bool) or axis == 0):
        raise NotRewritten("of a list of tensors, along an axis other than the batch's")
    shapes = [call.shape(tensor) for tensor in call.tensors]
    shape = None
    if None not in shapes and len({len(s) for s in shapes}) == 1:
        rank = len(shapes[0]) + 1  # with the batch
        if not -rank < axis < rank:
            raise NotRewritten(f"along an axis from 1 to {rank - 1} or from -1 to {1 - rank} (not the batch's)")
        at = axis % rank - 1
        sizes = [s[at] for s in shapes]
        joined = None if None in sizes else sum(sizes)
        shape = (*shapes[0][:at], joined, *shapes[0][at + 1:])
    return Rewritten("Concatenate", call.tensors, {"axis": axis}, shape)


def _reshape_to(x: Tensor, shape: Shape) -> Rewritten:
    """A Reshape to ``shape``, whose one unknown size (None) Keras infers (-1)."""
    if shape.count(None) > 1:
        raise NotRewritten("of a tensor whose sizes are known here but for one at most")
    return Rewritten("Reshape", [x], {"target_shape": [-1 if size is None else size for size in shape]}, shape)


@rewrites("reshape", "compat.v1.reshape")
def _reshape(call: Call) -> Rewritten:
    x = call.one_tensor("shape")
    shape = call.keywords.get("shape")
    if (not isinstance(shape, list) or len(shape) < 2 or shape[0] not in (-1, None)
            or not all(isinstance(size, int) and (size > 0 or size == -1) for size in shape[1:])
            or shape[1:].count(-1) > 1):
        raise NotRewritten("to a list of sizes whose first is -1 (the batch), then at most one more -1")
    return _reshape_to(x, tuple(None if size == -1 else size for size in shape[1:]))


@rewrites("expand_dims", "compat.v1.expand_dims")
def _expand_dims(call: Call) -> Rewritten:
    x = call.one_tensor("axis", "dim")
    shape = call.shape(x)
    axis = call.keywords.get("axis", call.keywords.get("dim"))
    if shape is None:
        raise NotRewritten(KNOWN_RANK)
    rank = len(shape) + 2  # of the result, with the batch
    if not isinstance(axis, int) or isinstance(axis, bool) or not -rank < axis < rank or axis % rank == 0:
        raise NotRewritten(f"at an axis from 1 to {rank - 1} or from -1 to {1 - rank} (the batch axis stays first)")
    at = axis % rank - 1
    return _reshape_to(x, (*shape[:at], 1, *shape[at:]))


@rewrites("squeeze", "compat.v1.squeeze")
def _squeeze(call: Call) -> Rewritten:
    x = call.one_tensor("axis", "squeeze_dims")
    shape = call.shape(x)
    if shape is None:
        raise NotRewritten(KNOWN_RANK)
    given = call.keywords.get("axis", call.keywords.get("squeeze_dims"))
    axes = tuple(i + 1 for i, size in enumerate(shape) if size == 1) if given in (None, []) else \
        _axes(given, len(shape) + 1)
    # a size not known here is 1 where TensorFlow squeezed it (it refuses any other)
    if axes is None or 0 in axes or any(axis > len(shape) or shape[axis - 1] not in (1, None) for axis in axes):
        raise NotRewritten("of axes of size 1, not the batch's")
    return _reshape_to(x, tuple(size for i, size in enumerate(shape) if i + 1 not in axes))


@rewrites("transpose", "compat.v1.transpose")
def _transpose(call: Call) -> Rewritten:
    x = call.one_tensor("perm", "conjugate")
    perm = call.keywords.get("perm")
    if (call.keywords.get("conjugate", False) or not isinstance(perm, list) or len(perm) < 2 or perm[0] != 0
            or not all(isinstance(axis, int) and not isinstance(axis, bool) for axis in perm)
            or sorted(perm) != list(range(len(perm)))):
        raise NotRewritten("with a permutation that keeps the batch axis first")
    shape = call.shape(x)
    return Rewritten("Permute", [x], {"dims": perm[1:]},
                     tuple(shape[axis - 1] for axis in perm[1:]) if shape and len(shape) == len(perm) - 1 else None)


@rewrites("math.reduce_mean", "reduce_mean", "math.reduce_max", "reduce_max")
def _reduce(call: Call) -> Rewritten:
    x = call.one_tensor("axis", "keepdims")
    shape = call.shape(x)
    axes = _axes(call.keywords.get("axis"), None if shape is None else len(shape) + 1)
    kind = GLOBAL_POOLING.get(("mean" if call.function.endswith("mean") else "max", axes))
    keepdims = call.keywords.get("keepdims", False)
    if kind is None or not isinstance(keepdims, bool) or (shape is not None and len(shape) != len(axes) + 1):
        raise NotRewritten("over axes 1 and 2 of an image's (height, width, channels), or over axis 1 of "
                           "(steps, features): global pooling")
    channels = None if shape is None else shape[-1]
    return Rewritten(kind, [x], {"keepdims": keepdims, "data_format": "channels_last"},
                     (*(1,) * len(axes), channels) if keepdims else (channels,))


@rewrites("cast")
def _cast(call: Call) -> Rewritten:
    x = call.one_tensor("dtype")
    if call.keywords.get("dtype") != "float32":
        raise NotRewritten("to float32")
    return Rewritten("Identity", [x], {}, call.shape(x))


@rewrites("pad", "compat.v1.pad")
def _pad(call: Call) -> Rewritten:
    x = call.one_tensor("paddings", "mode", "constant_values")
    paddings = call.keywords.get("paddings")
    if (str(call.keywords.get("mode", "CONSTANT")).upper() != "CONSTANT"
            or _number(call.keywords.get("constant_values", 0)) != 0.0 or not isinstance(paddings, list)
            or len(paddings) not in (3, 4) or not all(isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in pair) for pair in paddings)
            or paddings[0] != [0, 0] or paddings[-1] != [0, 0]):
        raise NotRewritten("with zeros (mode CONSTANT, constant_values 0) around the rows and columns of an image "
                           "([[0, 0], [top, bottom], [left, right], [0, 0]]) or the steps of a sequence: "
                           "ZeroPadding2D, ZeroPadding1D")
    shape = call.shape(x)
    if shape is not None and len(shape) != len(paddings) - 1:
        raise NotRewritten(f"with a pair of paddings for each of the input's {len(shape) + 1} axes")
    sides = paddings[1:-1]
    padded = None if shape is None else (*(None if size is None else size + sum(pair)
                                           for size, pair in zip(shape, sides)), shape[-1])
    if len(sides) == 2:
        return Rewritten("ZeroPadding2D", [x], {"padding": sides, "data_format": "channels_last"}, padded)
    return Rewritten("ZeroPadding1D", [x], {"padding": sides[0]}, padded)


@rewrites("image.resize")
def _resize(call: Call) -> Rewritten:
    x = call.one_tensor("size", "method", "antialias", "preserve_aspect_ratio")
    size, method = call.keywords.get("size"), str(call.keywords.get("method", "bilinear")).lower()
    antialias = call.keywords.get("antialias", False)
    if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool)
                                                                 and n > 0 for n in size)
            or method not in ("bilinear", "nearest") or not isinstance(antialias, bool)
            or call.keywords.get("preserve_aspect_ratio", False) is not False):
        raise NotRewritten("to a size [height, width], bilinear or nearest, the aspect ratio not preserved: Resizing")
    shape = call.shape(x)
    if shape is not None and len(shape) != 3:
        raise NotRewritten("of images (height, width, channels)")
    return Rewritten("Resizing", [x], {"height": size[0], "width": size[1], "interpolation": method,
                                       "antialias": antialias, "data_format": "channels_last"},
                     (*size, None if shape is None else shape[-1]))


def _copies(x: Tensor, count: int, axis: int, shape: Shape | None, along: int) -> Rewritten:
    """``count`` copies of ``x`` side by side along ``axis`` (TensorFlow's count, the batch 0): a Concatenate."""
    tiled = None if shape is None else tuple(None if size is None else size * count if i == along else size
                                             for i, size in enumerate(shape))
    return Rewritten("Concatenate", [x] * count, {"axis": axis}, tiled)


@rewrites("image.grayscale_to_rgb")
def _grayscale_to_rgb(call: Call) -> Rewritten:
    x = call.one_tensor()
    shape = call.shape(x)
    if shape is not None and (len(shape) != 3 or shape[-1] not in (1, None)):
        raise NotRewritten("of images of one channel")
    return _copies(x, 3, -1, shape, 2)


@rewrites("tile")
def _tile(call: Call) -> Rewritten:
    x = call.one_tensor("multiples")
    multiples, shape = call.keywords.get("multiples"), call.shape(x)
    if (not isinstance(multiples, list) or len(multiples) < 2 or multiples[0] != 1
            or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_COPIES for n in multiples)
            or sum(n > 1 for n in multiples) > 1 or (shape is not None and len(shape) != len(multiples) - 1)):
        raise NotRewritten(f"with multiples of 1 but one (at most {MAX_COPIES}), on an axis other than the batch's, "
                           f"for each of the input's axes (copies side by side: Concatenate)")
    along = next((i for i, n in enumerate(multiples[1:]) if n > 1), None)
    if along is None:
        return Rewritten("Identity", [x], {}, shape)
    return _copies(x, multiples[along + 1], along + 1, shape, along)


def _call(entry: dict[str, Any], function: str, shapes: dict[str, Shape]) -> Call:
    """The call one TFOpLambda entry records; NotRewritten where it is not one call this module reads."""
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1 or not isinstance(nodes[0], list) or not nodes[0]:
        raise NotRewritten("where it is called once")
    node = nodes[0]
    if all(isinstance(item, list) for item in node):  # a list of tensors as the first operand (tf.concat([a, b]))
        tensors = [_tensor(item) for item in node]
        keywords = node[0][3] if len(node[0]) == 4 and isinstance(node[0][3], dict) else None
        if None in tensors or keywords is None:
            raise NotRewritten("of tensors")
        return Call(function, tensors, None, dict(keywords), shapes)
    if len(node) != 4 or not isinstance(node[3], dict):
        raise NotRewritten("where it is called once")
    first, _, index, keywords = node
    y = _tensor(keywords.get("y"))
    if first == CONSTANT:  # a number first: 2.0 * x
        if _number(index) is None:
            raise NotRewritten("of tensors and finite numbers")
        return Call(function, [y] if y else [], _number(index), {k: v for k, v in keywords.items() if k != "y"},
                    shapes)
    x = _tensor(node[:3])
    if x is None:
        raise NotRewritten("of tensors")
    return Call(function, [x, y] if y else [x], None, {k: v for k, v in keywords.items() if not (k == "y" and y)},
                shapes)


def _layer(rewritten: Rewritten, name: str) -> dict[str, Any]:
    config = {"name": name, "trainable": True, "dtype": "float32", **rewritten.settings}
    node = [[*source, {}] for source in rewritten.sources]  # Keras 2's form of one call: [layer, node, tensor, kwargs]
    return {"class_name": rewritten.kind, "name": name, "config": config, "inbound_nodes": [node]}


def _rewritten(entry: dict[str, Any], name: str, path: Any, shapes: dict[str, Shape]) -> dict[str, Any]:
    """The Keras 3 layer of one TFOpLambda entry (named ``name``), its output shape added to ``shapes`` where known;
    UserError for a function it is not, or a call of one no Keras layer computes."""
    function = str((entry.get("config") if isinstance(entry.get("config"), dict) else {}).get("function", ""))
    # names as a one-line message shows them: a hand-made file's of 100,000 characters cut in its middle
    what = f"{path}: layer {path_text(str(entry.get('name')))} ({TF_OP_LAYER} tf.{path_text(function)})"
    rewriter = REWRITERS.get(function)
    if rewriter is None:
        activations = ", ".join(dict.fromkeys(f.split(".")[-1] for f in ACTIVATIONS))
        raise UserError(f"{what} is refused: Keras 3 cannot read Keras 2's TensorFlow-function layers, and this bridge "
                        f"rewrites only +, -, *, / (of tensors, or a tensor and a number), tf.maximum, tf.minimum, "
                        f"tf.clip_by_value, tf.nn.leaky_relu, the activations ({activations}), tf.concat, tf.reshape, "
                        f"tf.expand_dims, tf.squeeze, tf.transpose, tf.reduce_mean, tf.reduce_max, tf.cast, tf.pad, "
                        f"tf.tile, tf.image.resize and tf.image.grayscale_to_rgb, as the Keras 3 layers that compute "
                        f"them; rebuild it with layers and save it again")
    try:
        rewritten = rewriter(_call(entry, function, shapes))
    except NotRewritten as reason:
        raise UserError(f"{what} is refused: this bridge rewrites tf.{function} as a Keras layer only {reason}; "
                        f"rebuild it with layers and save it again") from None
    if rewritten.shape is not None:
        shapes[name] = rewritten.shape
    return _layer(rewritten, name)


def _known_shapes(layers: list[Any]) -> dict[str, Shape]:
    """The output shapes (without the batch) known from the layers' own settings: the model's inputs, and the
    layers whose output's rank is fixed (a Flatten's, a global pooling's), their sizes unknown (None) but for 1s."""
    shapes: dict[str, Shape] = {}
    for entry in layers:
        if not isinstance(entry, dict):
            continue
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        kind, name = entry.get("class_name"), str(entry.get("name"))
        if kind == "InputLayer":
            shape = config.get("batch_input_shape", config.get("batch_shape"))
            if isinstance(shape, list) and len(shape) >= 2 and all(
                    size is None or (isinstance(size, int) and size > 0) for size in shape):
                shapes[name] = tuple(shape[1:])
        elif kind == "Flatten":
            shapes[name] = (None,)
        elif kind in GLOBAL_POOLING.values():
            spatial = 2 if kind.endswith("2D") else 1
            shapes[name] = (*(1,) * spatial, None) if config.get("keepdims") is True else (None,)
    return shapes


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every tensor reference to a renamed layer following it, at any depth."""
    if isinstance(value, list):
        if value and isinstance(value[0], str) and value[0] in names and len(value) >= 3:
            return [names[value[0]], *(_renamed(v, names) for v in value[1:])]
        return [_renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {key: _renamed(v, names) for key, v in value.items()}
    return value


def _calls_renamed(entry: Any, names: dict[str, str]) -> Any:
    """A layer entry whose calls (``inbound_nodes``) refer to renamed layers by their new names."""
    if not isinstance(entry, dict) or "inbound_nodes" not in entry:
        return entry
    return {**entry, "inbound_nodes": _renamed(entry["inbound_nodes"], names)}


def model_layers(config: Any) -> tuple[dict[str, Any], list[Any]]:
    """(a model config's settings, its layer entries); empty ones for anything else."""
    model = config.get("config") if isinstance(config, dict) and isinstance(config.get("config"), dict) else {}
    return model, model.get("layers") if isinstance(model.get("layers"), list) else []


def nested_models(config: Any) -> list[dict[str, Any]]:
    """The layer entries of a model config that are models themselves (a block called as a layer)."""
    return [entry for entry in model_layers(config)[1] if isinstance(entry, dict)
            and entry.get("class_name") in MODEL_CLASSES and isinstance(entry.get("config"), dict)]


def rewrite_tf_ops(config: dict[str, Any], path: Any) -> bool:
    """Rewrite the TFOpLambda layers of a model config and of the models nested in it (a block called as a layer),
    in place (see the module docstring); whether any was."""
    nested = [rewrite_tf_ops(entry, path) for entry in nested_models(config)]
    return _rewrite_model_tf_ops(config, path) or any(nested)


def _rewrite_model_tf_ops(config: dict[str, Any], path: Any) -> bool:
    """Rewrite one model config's own TFOpLambda layers."""
    model, layers = model_layers(config)
    found = [entry for entry in layers if isinstance(entry, dict) and entry.get("class_name") == TF_OP_LAYER]
    if not found:
        return False
    taken = {str(entry.get("name")) for entry in layers if isinstance(entry, dict)}
    names: dict[str, str] = {}
    for entry in found:
        stem = re.sub(r"[\W_]+", "_", str(entry.get("name"))).strip("_") or "tf_op"
        name, count = stem, 0
        while name in taken:
            count += 1
            name = f"{stem}_{count}"
        taken.add(name)
        names[str(entry.get("name"))] = name
    shapes = _known_shapes(layers)  # grows as the layers are rewritten, in the config's order (inputs first)
    rewritten = {}
    for entry in found:  # each call reads its inputs under their new names, so that their known shapes are found
        renamed = _renamed({key: value for key, value in entry.items() if key != "name"}, names)
        rewritten[id(entry)] = _rewritten({**renamed, "name": entry.get("name")}, names[str(entry.get("name"))],
                                          path, shapes)
    # the references to the renamed layers follow them: the other layers' calls (not inside a nested model's config,
    # whose names are its own)
    model["layers"] = [rewritten.get(id(entry)) or _calls_renamed(entry, names) for entry in layers]
    for key in ("input_layers", "output_layers"):
        if key in model:
            model[key] = _renamed(model[key], names)
    return True
