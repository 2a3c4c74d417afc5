"""``.tflite``: a LiteRT (TensorFlow Lite) model, written by Keras' own export of the bridged Keras model.

The source's networks become one Keras model through the bridge
(:func:`lightning_mnist.interop.keras_models.keras_probabilities_model`: the softmax in the graph,
a k-fold run's mean), which Keras writes with ``model.export(path, format="litert")``, limited
to LiteRT's built-in operators: a file that needed TensorFlow's own ("Flex") operators would not
run on LiteRT's standard interpreter, so such a layer is refused and named instead. The proof
runs the file with the LiteRT interpreter of the ``ai-edge-litert`` package, as an app would.
The file's input takes the Keras model's layout with a dynamic batch axis (LiteRT resizes it
per call); its signature ``serving_default`` takes ``input`` and gives ``probabilities``.
"""

from __future__ import annotations

import re
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mnist_common.architecture import ArchitectureError, layer_label
from mnist_common.architecture.layers import Operation
from mnist_common.files import temporary_folder
from lightning_mnist.formats.base import (DEPLOY_SOURCES, INPUT_NAME, OUTPUT_NAME, Export, Format, Runner,
                                          export_proven)
from lightning_mnist.models.network import Probabilities

SUFFIX = ".tflite"
# The recurrent steps a file may unroll (every layer's, both directions): LiteRT's converter takes Keras' loop over
# the steps only unrolled, and a graph of steps x layers cells takes it about a minute a 784-step layer; two such
# layers (a Bidirectional over the pixels) are the most a model of this bridge asks for
MAX_UNROLLED_STEPS = 1_600


def export_keras(model, path: Path) -> None:
    """Keras' LiteRT export of ``model`` to ``path``, built-in operators only (what every LiteRT runtime has).

    The converter prints its diagnostics to the process' stderr, a dozen lines an operator it cannot
    write; they are silenced, and its error says in one phrase which TensorFlow operators it lacks.
    """
    import tensorflow as tf  # Keras' backend here: imported with Keras
    from keras_bridge.backend import native_stderr_silenced

    # TensorFlow's autograph writes the code it generates into temporary files that it removes at the interpreter's
    # exit, which convert's quick exit skips: two files a conversion were left in /tmp (hostile round 12). They are
    # written into a temporary folder of the export's own, gone with it
    with temporary_folder(prefix="lightning_mnist_export_") as scratch:
        kept, tempfile.tempdir = tempfile.tempdir, scratch
        try:
            with native_stderr_silenced():
                model.export(str(path), format="litert", verbose=False,
                             target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
        except Exception as err:  # the converter's errors carry pages of MLIR locations
            lacking = lacking_operators(str(err))
            if not lacking:
                raise
            raise RuntimeError(f"LiteRT's built-in operators have no {', '.join(lacking)}") from None
        finally:
            tempfile.tempdir = kept


def lacking_operators(error: str) -> list[str]:
    """The TensorFlow operators a converter error says LiteRT's built-in set lacks, sorted: those TensorFlow's own
    ("Flex", "TF Select") operators would run, and those nothing would ("neither a custom op nor a flex op")."""
    flex = [name.strip() for listed in re.findall(r"TF Select ops: ([\w, ]+)", error) for name in listed.split(",")]
    unknown = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", error)
    return sorted({name for name in flex + unknown if name})


def keras_model(module: Probabilities, named_output: bool = True):
    """The bridged Keras model of ``module``'s networks: their mean probabilities, the input called ``input``.

    ``named_output``: the output is ``{"probabilities": ...}``, so the file's signature names it
    (LiteRT's signature runner then takes ``input=`` and gives ``probabilities``).
    """
    from lightning_mnist.frameworks import import_keras
    from lightning_mnist.interop.keras_models import keras_probabilities_model  # Keras loads here, only when asked

    # in float32, as the torch networks compute: a deployed file computes what they do, whatever Keras' policies
    model = keras_probabilities_model([(n.architecture.in_float32(), n.state_dict()) for n in module.networks],
                                      INPUT_NAME)
    unroll_recurrent_layers(model)
    zero_safe_unit_normalization(model)
    return import_keras().Model(model.inputs, {OUTPUT_NAME: model.outputs[0]}) if named_output else model


def unroll_recurrent_layers(model) -> None:
    """Recurrent layers computed as one unrolled graph of their steps (Keras' ``unroll=True``: the same values).

    Keras' loop over the steps is a TensorFlow while loop over a tensor list, which LiteRT's converter
    refuses where the batch axis is dynamic; the steps of an MNIST sequence are a few dozen.
    """
    from keras_bridge.build import own_layers  # Keras is loaded by now: the model is Keras'

    def wrapped(layer) -> list:  # the layers inside wrappers too: a Bidirectional's two, a TimeDistributed's one
        if hasattr(layer, "forward_layer"):
            return [layer.forward_layer, layer.backward_layer]
        inner = getattr(layer, "layer", None)
        return [layer] if inner is None else [layer, *wrapped(inner)]

    for layer in own_layers(model):
        for recurrent in wrapped(layer):
            if hasattr(recurrent, "unroll"):
                recurrent.unroll = True


def zero_safe_unit_normalization(model) -> None:
    """``UnitNormalization`` layers computed as ``x * rsqrt(max(sum(x ** 2), 1e-24))``, Keras' own values.

    Keras writes the layer as TensorFlow's L2 normalisation, whose LiteRT kernel gives NaN for an all-zero vector
    (a blank row of an MNIST image, a channel a ReLU zeroed) where Keras gives zeros (``x * min(rsqrt(sum),
    1e12)``); with the floor inside the square root the two agree, and the converter keeps the plain operators.
    Each such layer of ``model`` takes the subclass computing so (its settings and weights unchanged).
    """
    from lightning_mnist.frameworks import import_keras
    from keras_bridge.build import own_layers  # Keras is loaded by now: the model is Keras'

    keras = import_keras()
    ops = keras.ops

    class ZeroSafeUnitNormalization(keras.layers.UnitNormalization):
        def call(self, inputs):
            x = ops.cast(inputs, self.compute_dtype)
            squares = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
            return x * ops.rsqrt(ops.maximum(squares, 1e-24))  # 1e-24: Keras' epsilon (1e-12), squared

    for layer in own_layers(model):
        if type(layer) is keras.layers.UnitNormalization:
            layer.__class__ = ZeroSafeUnitNormalization


def save(module: Probabilities, inputs: tuple[torch.Tensor, ...], path: Path,
         export: Callable = export_keras) -> None:
    """Write ``module`` as LiteRT through Keras (the batch axis of a Keras model is dynamic: ``inputs`` unused)."""
    for network in module.networks:  # Keras' export traces a TensorFlow graph, which refuses some names
        network.architecture.require_graph_safe_names("LiteRT's export (Keras') cannot write it",
                                                      "convert to .onnx or .pt2")
        steps = network.architecture.unrolled_steps
        if steps > MAX_UNROLLED_STEPS:
            raise ArchitectureError(f"its recurrent layers run {steps:,} steps in all, which LiteRT's export writes "
                                    f"out one by one (more than {MAX_UNROLLED_STEPS:,} take minutes: three layers "
                                    f"over 784 pixels took 190 s); convert to .onnx or .pt2")
    export(keras_model(module), path)


def unexportable_layer(module: Probabilities, example: torch.Tensor, export: Callable = export_keras) -> str | None:
    """The first Keras layer that ``export`` cannot write alone ("layer 3 (conv2d_1, Conv2D)"), else None.

    Each layer of the first network's bridged model is exported as a model of its own, on inputs
    of the shapes it takes in the whole model.
    """
    from lightning_mnist.frameworks import import_keras

    keras = import_keras()
    network = module.networks[0]
    model = keras_model(Probabilities([network]), named_output=False).get_layer("model_0")
    with temporary_folder() as folder:
        for index, node in enumerate(network.architecture.nodes):
            if isinstance(node.layer, Operation) or node.shares:  # no layer to get (an operation), or one tried at
                continue  # its first call; its inputs' and outputs' layers are tried
            layer = model.get_layer(node.name)
            sources = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
            inputs = [keras.Input(shape=tuple(source.shape[1:])) for source in sources]
            try:
                alone = keras.Model(inputs, layer(*node.layer.call_arguments(inputs)))
                export(alone, Path(folder) / f"layer{SUFFIX}")
            except Exception:  # the converter's own errors are of many kinds
                return layer_label(index, node.layer)
    return None


def load(path: Path, threads: int | None = None) -> Runner:
    """Run a saved file as an app would: the LiteRT interpreter, its input resized to each batch. Its native
    "Created TensorFlow Lite XNNPACK delegate for CPU." line (printed whatever the log level) stays off stderr."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_bridge.backend import native_stderr_silenced

    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    [given], [taken] = interpreter.get_input_details(), interpreter.get_output_details()
    shape: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        if list(x.shape) != shape:
            interpreter.resize_tensor_input(given["index"], list(x.shape))
            with native_stderr_silenced():  # where the delegate is applied
                interpreter.allocate_tensors()
            shape[:] = x.shape
        interpreter.set_tensor(given["index"], np.ascontiguousarray(x, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(taken["index"]).copy()

    return run


EXPORT = Export(suffix=SUFFIX, runtime="the LiteRT interpreter", save=save, load=load,
                details=", LiteRT built-in operators (no Flex)", find_layer=unexportable_layer)
FORMAT = Format(suffix=SUFFIX, what="a LiteRT model", sources=DEPLOY_SOURCES,
                write=partial(export_proven, EXPORT))
