"""Keras models built from an architecture description (``mnist_common.architecture``).

Each description names its layers and settings exactly as Keras does, so a layer is
``getattr(keras.layers, spec.type)(**spec.settings())``: the notebook's network is
``build_model("notebook")``, keras-io's convnet ``build_model("keras_io")``, any YAML
description or ``.keras`` file's architecture likewise. Other parts of the project (the
Lightning <-> ``.keras`` conversion, parity tests) build their Keras side here too.
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_reference.backend import import_keras
from keras_reference.config import LEARNING_RATE
from mnist_common.architecture import Architecture

keras = import_keras()


def build_model(architecture: Architecture | str | os.PathLike | dict | None = None) -> "keras.Sequential":
    """The Keras ``Sequential`` of ``architecture`` (default: the notebook's), freshly initialised, not compiled."""
    architecture = Architecture.load(architecture)
    layers = [getattr(keras.layers, layer.type)(**layer.settings()) for layer in architecture.layers]
    name = re.sub(r"[^\w.-]", "_", architecture.name) or None
    return keras.Sequential([keras.Input(shape=architecture.input_shape), *layers], name=name)


def compile_model(model: "keras.Model", lr: float = LEARNING_RATE, from_logits: bool | None = None) -> "keras.Model":
    """Compile as the notebook did: Adam(lr), categorical cross-entropy on one-hot labels, accuracy.

    A model that does not end in a softmax gives logits; its loss is computed from them.
    """
    if from_logits is None:
        from_logits = model.layers[-1].get_config().get("activation") != "softmax" \
            and type(model.layers[-1]).__name__ != "Softmax"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    return model


def new_model(architecture: Architecture | str | dict | None = None, lr: float = LEARNING_RATE) -> "keras.Model":
    """A freshly initialised, compiled model: what every training run and every CV fold starts from."""
    return compile_model(build_model(architecture), lr)


def weighted_layers(model: "keras.Model") -> list:
    return [layer for layer in model.layers if layer.weights]


def set_layer_weights(model: "keras.Model", architecture: Architecture, weights: dict[str, list[np.ndarray]]) -> None:
    """Load ``{Keras layer name in model.weights.h5: arrays}`` into a model of ``architecture``."""
    names = [name for _, name, _ in architecture.weight_shapes()]
    for layer, name in zip(weighted_layers(model), names, strict=True):
        layer.set_weights(weights[name])


def layer_weights(model: "keras.Model", architecture: Architecture) -> dict[str, list[np.ndarray]]:
    """The model's weights as ``{Keras layer name in model.weights.h5: float32 arrays}``."""
    names = [name for _, name, _ in architecture.weight_shapes()]
    return {name: [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
            for layer, name in zip(weighted_layers(model), names, strict=True)}
