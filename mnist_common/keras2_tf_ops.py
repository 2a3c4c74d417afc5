"""Keras 2's TensorFlow-function layers (``TFOpLambda``) of a legacy model config, as the Keras 3 layers they equal.

tf.keras 2 recorded a TensorFlow function applied to Keras tensors in a Functional model (``x + shortcut``,
``x * 0.5``, ``tf.nn.relu(x)``) as a ``TFOpLambda`` layer naming the function (``__operators__.add``,
``math.multiply``, ``nn.relu``); Keras 3 has no such layer and cannot read the file. The common ones are the
same computation as a Keras layer, written here in their place, in the copy of the config Keras 3 reads:

===========================================  ==========================================================
Keras 2 function                             Keras 3 layer
===========================================  ==========================================================
``x + y``, ``x - y``, ``x * y`` (tensors)    ``Add``, ``Subtract``, ``Multiply``
``x + c``, ``x - c``, ``c - x``, ``x * c``   ``Rescaling(scale, offset)``: ``x * 1 + c``, ``x * 1 - c``, ``x * -1 + c``,
``x / c`` (a number ``c``)                   ``x * c + 0``, ``x * (1 / c) + 0`` (the last within a float32 rounding)
``tf.nn.relu``, ``tf.math.sigmoid``, ...     ``Activation`` of the same name (:data:`ACTIVATIONS`)
===========================================  ==========================================================

A rewritten layer is renamed (Keras 3 layer names hold no ``.``: ``tf.__operators__.add`` becomes
``tf_operators_add``), and every reference to it follows. Any other function is refused, naming it and
these. The layers hold no weights, so the file's weights load as they are.
"""

from __future__ import annotations

import re
from typing import Any

from mnist_common.errors import UserError

TF_OP_LAYER = "TFOpLambda"
CONSTANT = "_CONSTANT_VALUE"  # Keras 2's first "tensor" of a call whose first operand was a number (2.0 * x)
MERGES = {"__operators__.add": "Add", "math.add": "Add", "math.subtract": "Subtract", "math.multiply": "Multiply"}
ARITHMETIC = (*MERGES, "math.truediv", "math.divide")
# Keras 2's TensorFlow activation functions -> the Keras activation of the same computation
ACTIVATIONS = {"nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
               "math.tanh": "tanh", "nn.tanh": "tanh", "nn.softmax": "softmax", "nn.elu": "elu", "nn.selu": "selu",
               "math.softplus": "softplus", "nn.softplus": "softplus", "nn.silu": "silu", "nn.swish": "silu",
               "nn.gelu": "gelu", "math.exp": "exponential"}


def _tensor(value: Any) -> tuple[str, int, int] | None:
    """A Keras 2 reference to a tensor ([layer, node, index]), else None (a number)."""
    if isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str) and value[0] != CONSTANT:
        return value[0], value[1], value[2]
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _layer(kind: str, name: str, sources: list[tuple[str, int, int]], **settings: Any) -> dict[str, Any]:
    config = {"name": name, "trainable": True, "dtype": "float32", **settings}
    node = [[*source, {}] for source in sources]  # Keras 2's form of one call: [layer, node, tensor, kwargs] each
    return {"class_name": kind, "name": name, "config": config, "inbound_nodes": [node]}


def _rewritten(entry: dict[str, Any], name: str, path: Any) -> dict[str, Any]:
    """The Keras 3 layer of one TFOpLambda entry (named ``name``); UserError for a function it is not."""
    function = str((entry.get("config") or {}).get("function", ""))
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) != 1 or not isinstance(nodes[0], list) or len(nodes[0]) != 4 or not isinstance(nodes[0][3], dict):
        raise UserError(f"{path}: layer {entry.get('name')} ({TF_OP_LAYER} tf.{function}) is called in a way this "
                        f"bridge does not read")
    first, node, index, keywords = nodes[0]
    x = None if first == CONSTANT else (first, node, index)
    y_value = keywords.get("y")
    y = _tensor(y_value)
    unknown = sorted(set(keywords) - {"y", "name", "axis"})
    if function in ACTIVATIONS and x is not None and y_value is None and not unknown:
        if keywords.get("axis", -1) not in (-1, None):
            raise UserError(f"{path}: layer {entry.get('name')} (tf.{function}) over axis {keywords['axis']}: only "
                            f"the last axis is read")
        return _layer("Activation", name, [x], activation=ACTIVATIONS[function])
    if function in ARITHMETIC and not unknown and "axis" not in keywords:
        if x is not None and y is not None and function in MERGES:  # two tensors
            return _layer(MERGES[function], name, [x, y])
        tensor, c = (x, _number(y_value)) if x is not None else (y, _number(index))  # a tensor and a number
        kind = MERGES.get(function)
        scale_offset = {"Add": (1.0, c), "Multiply": (c, 0.0)}.get(kind) if c is not None else None
        if kind == "Subtract" and c is not None:
            scale_offset = (1.0, -c) if x is not None else (-1.0, c)
        if kind is None and x is not None and c:  # a tensor divided by a number
            scale_offset = (1.0 / c, 0.0)
        if tensor is not None and scale_offset is not None:
            return _layer("Rescaling", name, [tensor], scale=scale_offset[0], offset=scale_offset[1])
    supported = ", ".join(f"tf.{f}" for f in (*ARITHMETIC, *ACTIVATIONS))
    raise UserError(f"{path}: layer {entry.get('name')} ({TF_OP_LAYER} tf.{function}) is refused: Keras 3 cannot read "
                    f"Keras 2's TensorFlow-function layers, and this bridge rewrites only {supported} (of tensors, or "
                    f"a tensor and a number; a tensor divided by a number); rebuild it with layers and save it again")


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every tensor reference to a renamed layer following it, at any depth."""
    if isinstance(value, list):
        if value and isinstance(value[0], str) and value[0] in names and len(value) >= 3:
            return [names[value[0]], *(_renamed(v, names) for v in value[1:])]
        return [_renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {key: _renamed(v, names) for key, v in value.items()}
    return value


def rewrite_tf_ops(config: dict[str, Any], path: Any) -> bool:
    """Rewrite a Functional model config's TFOpLambda layers in place (see the module docstring); whether any was."""
    model = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = model.get("layers") if isinstance(model.get("layers"), list) else []
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
    rewritten = {id(entry): _rewritten(entry, names[str(entry.get("name"))], path) for entry in found}
    model["layers"] = [_renamed(rewritten.get(id(entry), entry), names) for entry in layers]
    for key in ("input_layers", "output_layers"):
        if key in model:
            model[key] = _renamed(model[key], names)
    return True
