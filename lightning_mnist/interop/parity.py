"""Both frameworks on the same inputs: the numbers every conversion must show before it writes a file.

The inputs are the MNIST test images when the network takes 28x28x1 images and gives 10
classes (then both accuracies are reported too), seeded random images of the network's
input shape otherwise. Both run on the CPU in float32. The verdict is on probabilities,
the softmax of the outputs: ``max |p_torch - p_keras| <= 1e-5`` or the conversion fails.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from mnist_common.architecture import Architecture, shape_text
from mnist_common.errors import UserError
from lightning_mnist.interop.keras_models import keras, keras_on_cpu
from lightning_mnist.models.layers.layout import to_keras_layout, torch_shape
from lightning_mnist.models.network import KerasNetwork

CHECK_TOLERANCE = 1e-5  # largest |p_torch - p_keras| a conversion accepts
DEFAULT_CHECK_IMAGES = 10_000
RANDOM_INPUT_SEED = 0
BATCH_SIZE = 500


@dataclass
class ParityReport:
    """Both frameworks on the same ``images`` inputs."""

    inputs: str  # what the inputs were
    images: int
    max_prob_diff: float  # max |p_torch - p_keras|
    max_logit_diff: float  # max |z_torch - z_keras|, z = what goes into the final softmax
    argmax_equal: int
    correct_torch: int | None = None  # on MNIST only
    correct_keras: int | None = None

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_prob_diff) and self.max_prob_diff <= CHECK_TOLERANCE

    def describe(self) -> str:
        text = (f"check on {self.images} {self.inputs}: max |p_torch - p_keras| = {self.max_prob_diff:.2e} "
                f"(limit {CHECK_TOLERANCE:.0e}), max logit difference {self.max_logit_diff:.2e}, "
                f"argmax equal {self.argmax_equal}/{self.images}")
        if self.correct_torch is not None:
            text += (f", accuracy Lightning {self.correct_torch / self.images:.2%} ({self.correct_torch}), "
                     f"Keras {self.correct_keras / self.images:.2%} ({self.correct_keras})")
        return text


def check_inputs(architecture: Architecture, count: int = DEFAULT_CHECK_IMAGES,
                 data_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, np.ndarray | None, str]:
    """(float32 inputs in torch's layout, labels or None, what they are) for comparing two models of ``architecture``.

    MNIST models get the test images as (N, 1, 28, 28), whatever their layout (the network
    and :func:`keras_inputs` reshape them as a user would)."""
    if architecture.takes_mnist:
        from mnist_common.mnist import load_mnist

        mnist = load_mnist(data_dir)
        if not 1 <= count <= len(mnist.test_images):
            raise UserError(f"--check-images must be between 1 and {len(mnist.test_images)}, got {count}")
        x = torch.from_numpy(mnist.test_images[:count]).float().div_(255.0).unsqueeze(1)
        return x, mnist.test_labels[:count].astype(np.int64), "MNIST test images"
    if count < 1:
        raise UserError(f"--check-images must be at least 1, got {count}")
    generator = torch.Generator().manual_seed(RANDOM_INPUT_SEED)
    x = torch.rand(count, *torch_shape(architecture.input_shape), generator=generator)
    return x, None, f"seeded random {shape_text(architecture.input_shape)} inputs (the network does not take MNIST)"


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


@torch.inference_mode()
def torch_logits(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    network.eval()
    return torch.cat([network(x[i:i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)])


def keras_inputs(architecture: Architecture, x: torch.Tensor) -> np.ndarray:
    """The same values as ``x`` (torch's layout, or MNIST images) in the Keras model's own input layout."""
    return to_keras_layout(x).reshape(len(x), *architecture.input_shape).numpy()


def compare(network: KerasNetwork, model: "keras.Model", x: torch.Tensor, labels: np.ndarray | None,
            inputs: str) -> ParityReport:
    """Run both on ``x`` (torch's layout; Keras gets the same values in its own) and compare (see the module
    docstring)."""
    network = network.cpu()
    z_torch = torch_logits(network, x).float()
    p_torch = torch.softmax(z_torch, dim=1).numpy()
    z_keras, outputs = keras_logits_and_outputs(model, keras_inputs(network.architecture, x))
    p_keras = outputs if network.outputs_probabilities else torch.softmax(torch.from_numpy(outputs), 1).numpy()
    report = ParityReport(inputs=inputs, images=len(x), max_prob_diff=float(np.abs(p_torch - p_keras).max()),
                          max_logit_diff=float(np.abs(z_torch.numpy() - z_keras).max()),
                          argmax_equal=int((p_torch.argmax(1) == p_keras.argmax(1)).sum()))
    if labels is not None:
        report.correct_torch = int((p_torch.argmax(1) == labels).sum())
        report.correct_keras = int((p_keras.argmax(1) == labels).sum())
    return report


def compare_on_check_inputs(network: KerasNetwork, model: "keras.Model", count: int = DEFAULT_CHECK_IMAGES,
                            data_dir: str | os.PathLike | None = None) -> ParityReport:
    x, labels, inputs = check_inputs(network.architecture, count, data_dir)
    return compare(network, model, x, labels, inputs)
