"""Keras models holding a torch network's weights, and the reverse, through the mapping in ``weights``."""

from __future__ import annotations

import dataclasses

import warnings

from lightning_mnist.frameworks import import_keras

keras = import_keras()  # torch's triton half first, see lightning_mnist/frameworks.py

from keras_bridge.build import as_given as given_endpoints, build_model, layer_weights, set_layer_weights  # noqa: E402
from keras_bridge.files import load_checked, load_legacy_h5, save_model  # noqa: E402,F401  (re-exported here)
from keras_reference.config import LEARNING_RATE  # noqa: E402
from keras_reference.model import compile_model  # noqa: E402
from mnist_common.architecture import Architecture  # noqa: E402
from lightning_mnist.interop.weights import TorchWeights, keras_to_torch, torch_to_keras  # noqa: E402


def keras_model_from_torch(architecture: Architecture, state_dict: TorchWeights,
                           lr: float = LEARNING_RATE, as_given: bool = False) -> "keras.Model":
    """The Keras model of ``architecture`` holding ``state_dict``, compiled like the notebook (Adam, cross-entropy).

    Adam's (zero) moments are created now, so a saved file holds the optimizer's full state
    and loading it with ``compile=True`` restores the optimizer instead of warning that it skips it.
    ``as_given``: taking and giving a dict or list of one where the source model did (a file to write back,
    :func:`keras_bridge.build.as_given`); else on its tensors, as the commands run it.
    """
    model = keras_model_of(architecture, state_dict)
    if as_given:
        model = given_endpoints(model, architecture)
    compile_model(model, lr)
    model.optimizer.build(model.trainable_variables)
    return model


def keras_model_of(architecture: Architecture, state_dict: TorchWeights) -> "keras.Model":
    """The Keras model of ``architecture`` holding ``state_dict`` (not compiled: for inference and export)."""
    model = build_model(architecture)
    set_layer_weights(model, architecture, torch_to_keras(architecture, state_dict))
    return model


def keras_probabilities_model(models: list[tuple[Architecture, TorchWeights]],
                              input_name: str = "input") -> "keras.Model":
    """One Keras model giving the mean probabilities of the bridged models of ``models`` (one: its probabilities).

    What a deployed file computes (as :class:`lightning_mnist.models.network.Probabilities` does in
    torch): the softmax in the graph for a model that ends in logits, the mean of a k-fold run's
    models. Each model is nested under its own name (``model_0``, ...), its layers keep theirs.
    """
    architecture = models[0][0]
    inputs = keras.Input(shape=architecture.input_shape, name=input_name)
    outputs = []
    for k, (each, weights) in enumerate(models):
        # built at the size it takes (an input size left open fixed at it): what a deployed file is given, and what
        # LiteRT's unrolled recurrent layers need
        built = keras_model_of(dataclasses.replace(each, open_input_axes=()), weights)
        nested = keras.Model(built.inputs[0], built.outputs[0], name=f"model_{k}")
        output = nested(inputs)
        outputs.append(output if each.outputs_probabilities else keras.layers.Softmax(name=f"softmax_{k}")(output))
    output = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="mean")(outputs)
    return keras.Model(inputs, output, name="probabilities")


def torch_weights_of(model: "keras.Model", architecture: Architecture) -> TorchWeights:
    """A torch state dict of the weights a Keras model of ``architecture`` holds."""
    return keras_to_torch(architecture, layer_weights(model, architecture))


def keras_on_cpu():
    """A context in which Keras (TensorFlow) computes on the CPU.

    Comparisons run both frameworks on the CPU in plain float32: on a GPU, TF32 convolutions
    (on by default in TensorFlow and for cuDNN in torch) add differences of about 1e-3 that
    say nothing about the conversion.
    """
    import tensorflow as tf  # already imported with Keras

    return tf.device("/CPU:0")


def call_eagerly(model: "keras.Model", x):
    """``model(x)`` for inference, eagerly (for a model whose names TensorFlow refuses in a graph).

    A Functional model read back from its file expects its input as a list of one tensor, and Keras warns at every
    call that one tensor is not that list, though it runs it all the same."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match", category=UserWarning)
        return model(x, training=False)
