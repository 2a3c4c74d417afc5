"""Both frameworks on the same inputs: the numbers every conversion must show before it writes a file.

The inputs and the report are :mod:`lightning_mnist.interop.proof`'s (the MNIST test images
for an MNIST model, seeded random inputs otherwise). Both run on the CPU in float32. The verdict is on probabilities,
the softmax of the outputs: ``max |p_torch - p_keras| <= 1e-5`` or the conversion fails.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from lightning_mnist.interop.keras_models import keras, keras_on_cpu
from lightning_mnist.interop.proof import (  # noqa: F401  (re-exported: the conversions' and the tests' names)
    BATCH_SIZE, CHECK_TOLERANCE, DEFAULT_CHECK_IMAGES, RANDOM_INPUT_SEED, ParityReport, check_inputs,
    compare_probabilities, keras_inputs, torch_logits)
from lightning_mnist.models.network import KerasNetwork


def keras_logits_and_outputs(model: "keras.Model", x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(what goes into the model's final softmax, the model's outputs); logits = outputs without a softmax.

    Both come from one forward pass: a sub-model also returns the last layer's input, and a
    final softmax Dense is recomputed from it in float32 without its softmax.
    """
    last = model.layers[-1]
    kind, activation = type(last).__name__, last.get_config().get("activation")
    softmax_layer = kind == "Softmax" or (kind == "Activation" and activation == "softmax")
    softmax_dense = kind == "Dense" and activation == "softmax"
    with keras_on_cpu():
        if not (softmax_layer or softmax_dense):  # the outputs are the logits
            outputs = model.predict(x_nhwc, batch_size=BATCH_SIZE, verbose=0)
            return outputs, outputs
        last_input = last.input  # the output layer is called once, on one tensor
        features, outputs = keras.Model(model.inputs, [last_input, model.outputs[0]]).predict(
            x_nhwc, batch_size=BATCH_SIZE, verbose=0)
    if softmax_layer:
        return features, outputs
    weights = [np.asarray(w, dtype=np.float32) for w in last.get_weights()]
    logits = features.astype(np.float32) @ weights[0] + (weights[1] if len(weights) > 1 else 0.0)
    return logits, outputs


def compare(network: KerasNetwork, model: "keras.Model", x: torch.Tensor, labels: np.ndarray | None,
            inputs: str) -> ParityReport:
    """Run both on ``x`` (torch's layout; Keras gets the same values in its own) and compare (see the module
    docstring)."""
    network = network.cpu()
    z_torch = torch_logits(network, x).float()
    p_torch = torch.softmax(z_torch, dim=1).numpy()
    z_keras, outputs = keras_logits_and_outputs(model, keras_inputs(network.architecture, x))
    p_keras = outputs if network.outputs_probabilities else torch.softmax(torch.from_numpy(outputs), 1).numpy()
    report = compare_probabilities(p_torch, p_keras, labels, inputs)
    report.max_logit_diff = float(np.abs(z_torch.numpy() - z_keras).max())
    return report


def compare_on_check_inputs(network: KerasNetwork, model: "keras.Model", count: int = DEFAULT_CHECK_IMAGES,
                            data_dir: str | os.PathLike | None = None) -> ParityReport:
    x, labels, inputs = check_inputs(network.architecture, count, data_dir)
    return compare(network, model, x, labels, inputs)
