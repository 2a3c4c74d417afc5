"""The proof every conversion gives, on the source's side: inputs, the source network's numbers, the report.

Torch only (no Keras), so exports that never meet Keras (``.pt2``, ``.onnx``) prove themselves
without importing TensorFlow; :mod:`lightning_mnist.interop.parity` adds the Keras side.
The inputs are the MNIST test images when the network takes MNIST's 784 pixels and gives 10
classes (then both accuracies are reported too), seeded random inputs of the network's input
shape otherwise. The verdict is on probabilities: ``max |p_a - p_b| <= 1e-5`` or no file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from mnist_common.architecture import Architecture, shape_text
from mnist_common.errors import UserError
from lightning_mnist.models.layers.layout import to_keras_layout, torch_shape

CHECK_TOLERANCE = 1e-5  # largest |p_a - p_b| a conversion accepts
DEFAULT_CHECK_IMAGES = 10_000
RANDOM_INPUT_SEED = 0
BATCH_SIZE = 500


@dataclass
class ParityReport:
    """Two runs of one model (the source and its converted file) on the same ``images`` inputs.

    The sides are named so one report serves every conversion: torch against Keras for the
    ``.keras`` bridge, the source network against a ``.pt2``, ``.onnx`` or ``.tflite`` file run by its own runtime.
    """

    inputs: str  # what the inputs were
    images: int
    max_prob_diff: float  # max |p_a - p_b|
    max_logit_diff: float | None  # max |z_a - z_b|, z = what goes into the final softmax; None: a side gives none
    argmax_equal: int
    correct_torch: int | None = None  # on MNIST only: side a's correct predictions
    correct_keras: int | None = None  # side b's
    sides: tuple[str, str] = ("torch", "keras")  # how the difference is written: |p_torch - p_keras|
    names: tuple[str, str] = ("Lightning", "Keras")  # how the accuracies are labelled

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_prob_diff) and self.max_prob_diff <= CHECK_TOLERANCE

    @property
    def difference(self) -> str:
        return f"max |p_{self.sides[0]} - p_{self.sides[1]}|"

    def describe(self) -> str:
        text = f"check on {self.images} {self.inputs}: {self.difference} = {self.max_prob_diff:.2e} " \
               f"(limit {CHECK_TOLERANCE:.0e})"
        if self.max_logit_diff is not None:
            text += f", max logit difference {self.max_logit_diff:.2e}"
        text += f", argmax equal {self.argmax_equal}/{self.images}"
        if self.correct_torch is not None:
            text += (f", accuracy {self.names[0]} {self.correct_torch / self.images:.2%} ({self.correct_torch}), "
                     f"{self.names[1]} {self.correct_keras / self.images:.2%} ({self.correct_keras})")
        return text


def compare_probabilities(p_a: np.ndarray, p_b: np.ndarray, labels: np.ndarray | None, inputs: str,
                          **naming: tuple[str, str]) -> ParityReport:
    """The report on two (N, classes) probability arrays of the same inputs (logits not compared)."""
    report = ParityReport(inputs=inputs, images=len(p_a), max_prob_diff=float(np.abs(p_a - p_b).max()),
                          max_logit_diff=None, argmax_equal=int((p_a.argmax(1) == p_b.argmax(1)).sum()), **naming)
    if labels is not None:
        report.correct_torch = int((p_a.argmax(1) == labels).sum())
        report.correct_keras = int((p_b.argmax(1) == labels).sum())
    return report


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


@torch.inference_mode()
def torch_logits(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    network.eval()
    return torch.cat([network(x[i:i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)])


def keras_inputs(architecture: Architecture, x: torch.Tensor) -> np.ndarray:
    """The same values as ``x`` (torch's layout, or MNIST images) in the Keras model's own input layout."""
    return to_keras_layout(x).reshape(len(x), *architecture.input_shape).numpy()


class ConversionCheckFailed(UserError):
    """The converted model does not predict what the source model predicts; nothing was written."""


def proven(report: ParityReport, destination: os.PathLike) -> ParityReport:
    """``report`` if it passes, else :class:`ConversionCheckFailed` saying the file was not written and why."""
    if not report.ok:
        raise ConversionCheckFailed(f"conversion check failed, {destination} not written: {report.difference} "
                                    f"= {report.max_prob_diff:.3g} > {CHECK_TOLERANCE:g} on {report.images} "
                                    f"{report.inputs}")
    return report
