"""The reference's models: any architecture the bridge builds (``keras_bridge.build``), compiled as the notebook
compiled its own, so every training run and every CV fold starts from the same thing."""

from __future__ import annotations

from keras_bridge.backend import import_keras
from keras_bridge.build import build_model
from keras_reference.config import LEARNING_RATE
from mnist_common.architecture import Architecture

keras = import_keras()


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
