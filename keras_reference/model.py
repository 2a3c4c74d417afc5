"""The notebook's CNN as a Keras 3 ``Sequential`` model (TensorFlow backend).

Other parts of the project (the Lightning <-> ``.keras`` converter, parity tests)
import :func:`build_model` to get exactly this architecture, so the layer list
lives here once. Layer names are left to Keras, as in the notebook.
"""

from __future__ import annotations

from keras_reference.config import LEARNING_RATE
from mnist_common.frameworks import import_keras
from mnist_common.mnist import IMAGE_SIZE, NUM_CLASSES

keras = import_keras()

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last, as Keras and the notebook have it
CONV_FILTERS = (32, 64)
KERNEL_SIZE = 3
POOL_SIZE = 2
DENSE_UNITS = 128
DROPOUT = 0.5
NUM_PARAMS = 225_418
NUM_TRAINABLE_PARAMS = 225_226


def build_model() -> "keras.Sequential":
    """Conv-ReLU-BN-Pool twice, then Dense-Dropout-Dense; 225,418 parameters, not compiled.

    ReLU comes before BatchNormalization, as in the notebook. BatchNormalization
    keeps Keras' defaults (momentum 0.99, epsilon 1e-3), which the Lightning port mirrors.
    """
    layers = [keras.Input(shape=INPUT_SHAPE)]
    for filters in CONV_FILTERS:
        layers += [
            keras.layers.Conv2D(filters, KERNEL_SIZE, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(POOL_SIZE),
        ]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(DENSE_UNITS, activation="relu"),
        keras.layers.Dropout(DROPOUT),
        keras.layers.Dense(NUM_CLASSES, activation="softmax"),
    ]
    return keras.Sequential(layers)


def compile_model(model: "keras.Model", lr: float = LEARNING_RATE) -> "keras.Model":
    """Compile as the notebook did: Adam(lr), categorical cross-entropy on one-hot labels, accuracy."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def new_model(lr: float = LEARNING_RATE) -> "keras.Model":
    """A freshly initialised, compiled model: what every training run and every CV fold starts from."""
    return compile_model(build_model(), lr)
