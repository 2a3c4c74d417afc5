"""A Keras model from an architecture description, and its weights by layer name.

Each description names its layers and settings exactly as Keras does, so a layer is
``getattr(keras.layers, spec.type).from_config(spec.settings())``, called on the outputs of the
layers its node names (a Keras operation, ``x + y``, is made from its serialised form and called
with its numbers): a chain becomes a ``Sequential`` (unless a Functional model's file gave it:
``Architecture.functional``), any other graph a Functional model. Layers
keep the description's names, and weights are read and written through :func:`find_layer` (by
name, in nested models too: a ``.keras`` file may hold a model inside another, read into one
graph), never by position.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator

import numpy as np

from keras_bridge.backend import import_keras
from mnist_common.architecture import Architecture
from mnist_common.model_files import load_architecture
from mnist_common.architecture.layers import Layer, Operation

keras = import_keras()


def keras_layer(layer: Layer) -> "keras.layers.Layer | keras.Operation":
    """The Keras layer of a description, made as Keras makes it from a config.json entry (``from_config``, which
    also builds a ``Bidirectional``'s layers from their serialised configs); a Keras operation (``ops.add``) as
    Keras makes it when it loads a file (its serialised form, through Keras' own deserialisation)."""
    if isinstance(layer, Operation):
        return keras.saving.deserialize_keras_object(layer.keras_object())
    return getattr(keras.layers, layer.type).from_config(layer.keras_settings())


def call_layer(layer: Layer, tensors: list, made: "keras.layers.Layer | None" = None) -> "keras.KerasTensor":
    """The output of ``layer`` (:func:`keras_layer`, or ``made`` of it already: a shared layer's) called on
    ``tensors`` (an operation: with its numbers)."""
    return (made or keras_layer(layer))(*layer.call_arguments(tensors), **layer.call_keywords())


def graph_root_name(name: str) -> str | None:
    """The model's name as the model built gets it: one TensorFlow takes as a traced graph's root scope, so that
    Keras' predict, fit and export run the model (each character outside ASCII letters, digits, ``_``, ``.`` and ``-``
    made ``_``, and none of ``_`` and ``-`` first: ``MNIST-CNN v2 (best)`` is ``MNIST-CNN_v2__best_``, ``mnist_модель``
    ``mnist_______``); None (Keras' own name) where nothing is left. Layer names stay as they are: the weights are
    found by them."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_-") or None


def build_model(architecture: Architecture | str | os.PathLike | dict | None = None) -> "keras.Model":
    """The Keras model of ``architecture`` (default: the notebook's), freshly initialised, not compiled."""
    architecture = load_architecture(architecture)
    name = graph_root_name(architecture.name)
    inputs = keras.Input(shape=architecture.keras_input_shape, batch_size=architecture.input_batch_size,
                         name=architecture.input_name, dtype=architecture.input_dtype)
    if not architecture.functional:  # a chain a Sequential's file or a description gave
        return keras.Sequential([inputs, *(keras_layer(node.layer) for node in architecture.nodes)], name=name)
    tensors = {architecture.input_name: inputs}
    by_name = {node.name: node for node in architecture.nodes}
    shared = {name: keras_layer(by_name[name].layer) for name in architecture.shared_layers}  # one object, each call
    for node in architecture.nodes:
        tensors[node.name] = call_layer(node.layer, [tensors[i] for i in node.inputs], shared.get(node.layer_name))
    return keras.Model(inputs, tensors[architecture.output.name], name=name)


# Keras' advice, at every build and load of a model on a dict, that the dict's key name its Input: the source's choice
DICT_KEY_ADVICE = "When providing `inputs` as a dict"


def as_given(model: "keras.Model", architecture: Architecture) -> "keras.Model":
    """``model`` (built on its tensors, as every caller here runs it) taking and giving them as the Keras model the
    architecture was read from did (:attr:`Architecture.input_key`: a dict of one, ``{"pixels": x}``, or a list of
    one), so the file written back is built as its source was; the same layers and weights."""
    if (architecture.input_key, architecture.output_key) == (None, None):
        return model

    def given(key: str | int | None, tensor: "keras.KerasTensor"):
        return tensor if key is None else [tensor] if key == 0 else {key: tensor}

    with warnings.catch_warnings():  # Keras' advice that a dict's key name its Input: the source's own choice
        warnings.filterwarnings("ignore", message=DICT_KEY_ADVICE)
        return keras.Model(given(architecture.input_key, model.inputs[0]),
                           given(architecture.output_key, model.outputs[0]), name=model.name)


def find_layer(model: "keras.Model", name: str, path: tuple[str, ...] | None = None) -> "keras.layers.Layer":
    """The layer called ``name`` in ``model`` or in a model it holds (``get_layer`` looks at one level only).

    ``path``: where a file's nested layer is (the models holding it, outermost first, then its own name in its
    model, :attr:`mnist_common.keras_file.KerasFile.keras_paths`), for a layer the one graph had to rename."""
    if path:
        for step in path:
            model = model.get_layer(step)
        return model
    for layer in own_layers(model):
        if layer.name == name:
            return layer
    return model.get_layer(name)  # Keras' own error for a name it does not hold


def own_layers(model: "keras.Model") -> Iterator["keras.layers.Layer"]:
    """Every layer of ``model`` and of the models it holds (not those models themselves), outer levels first."""
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
        else:
            yield layer


def set_layer_weights(model: "keras.Model", architecture: Architecture, weights: dict[str, list[np.ndarray]]) -> None:
    """Load ``{layer name: arrays in Keras' order}`` into a model of ``architecture``, as Keras' own loading does
    (``load_own_variables``, which also lets a layer derive its state from them: ``set_weights`` would leave a
    Normalization computing with the values it had before). A layer whose weights its cell holds (the recurrent
    layers: :meth:`~mnist_common.architecture.layers.Layer.weight_path` ``cell/vars/i``; ``forward_layer/cell/vars/i``
    in a Bidirectional) loads them into the cell."""
    for node, _, _ in architecture.weight_shapes():
        stores: dict[str, dict[str, np.ndarray]] = {}  # the path of the layer that holds them -> its arrays
        for i, array in enumerate(weights[node.name]):
            owner, _, index = node.layer.weight_path(i).rpartition("vars/")
            stores.setdefault(owner, {})[index] = array
        layer = find_layer(model, node.name)
        for owner, store in stores.items():
            holder = layer
            for part in filter(None, owner.split("/")):
                holder = getattr(holder, part)
            holder.load_own_variables(store)


def layer_weights(model: "keras.Model", architecture: Architecture,
                  keras_paths: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[np.ndarray]]:
    """The model's weights as ``{layer name: arrays in Keras' order}``, each of its weight's dtype (float32 but for
    Normalization's count) (``keras_paths``: see :func:`find_layer`)."""
    paths = keras_paths or {}
    return {node.name: [np.asarray(w, dtype=node.layer.weight_dtype(weight_name)) for (weight_name, _), w in
                        zip(weights, find_layer(model, node.name, paths.get(node.name)).get_weights(), strict=True)]
            for node, _, weights in architecture.weight_shapes()}
