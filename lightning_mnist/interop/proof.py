"""The proof every conversion gives, on the source's side: inputs, the source network's numbers, the report.

Torch only (no Keras), so exports that never meet Keras (``.pt2``, ``.onnx``) prove themselves
without importing TensorFlow; :mod:`lightning_mnist.interop.parity` adds the Keras side.
The inputs are the MNIST test images when the network takes MNIST's 784 pixels and gives 10
classes (then both accuracies are reported too), seeded random inputs of the network's input
shape otherwise. The verdict is on probabilities: ``max |p_a - p_b| <= 1e-5`` or no file; for a model
whose own float32 rounding is larger than that (logits in the hundreds), a multiple of that rounding
(:func:`float32_rounding`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mnist_common.architecture import Architecture, shape_text
from mnist_common.errors import UserError
from lightning_mnist.models.layers.layout import to_keras_layout, torch_shape

CHECK_TOLERANCE = 1e-5  # largest |p_a - p_b| a conversion accepts (unless the model's own rounding is larger)
# How many times the source's float32 rounding two correct float32 runs may differ by: ONNX Runtime's kernels were
# measured 9 to 10 times torch's own rounding on keras.applications' MobileNets (2.2e-5 from a float64 run, where
# torch's float32 is 2.5e-6 from it; BatchNorm folded or not, graph optimisations on or off), a correct run.
ROUNDING_FACTOR = 16
DEFAULT_CHECK_IMAGES = 10_000
RANDOM_INPUT_SEED = 0
BATCH_SIZE = 500
# Values a check batch may hold across a network's layers, and the check's inputs all together (float32: 256 MB
# each; a convolution's own buffers take several times its output): a network of 13 million activations an example
# is checked 5 at a time, not 500 (26 GB). The notebook's network (68,000) still takes 500.
CHECK_BATCH_VALUES = 1 << 26


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
    rounding: float | None = None  # the source's own float32 rounding, where measured (float32_rounding)
    # A Keras model in mixed precision, which this report compared as its float32 twin: that model itself against
    # side a, as (its policies, the report of that comparison); None for others
    half_precision: tuple[str, ParityReport] | None = None

    @property
    def limit(self) -> float:
        """CHECK_TOLERANCE, or ROUNDING_FACTOR times the source's float32 rounding where that is larger."""
        return max(CHECK_TOLERANCE, ROUNDING_FACTOR * (self.rounding or 0.0))

    @property
    def limit_text(self) -> str:
        if self.limit == CHECK_TOLERANCE:
            return f"{CHECK_TOLERANCE:.0e}"
        return f"{self.limit:.1e}: {ROUNDING_FACTOR}x the source's own float32 rounding, {self.rounding:.1e}"

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_prob_diff) and self.max_prob_diff <= self.limit

    @property
    def difference(self) -> str:
        return f"max |p_{self.sides[0]} - p_{self.sides[1]}|"

    def describe(self) -> str:
        text = f"check on {self.images} {self.inputs}: {self.difference} = {self.max_prob_diff:.2e} " \
               f"(limit {self.limit_text})"
        if self.max_logit_diff is not None:
            text += f", max logit difference {self.max_logit_diff:.2e}"
        text += f", argmax equal {self.argmax_equal}/{self.images}"
        if self.correct_torch is not None:
            text += (f", accuracy {self.names[0]} {self.correct_torch / self.images:.2%} ({self.correct_torch}), "
                     f"{self.names[1]} {self.correct_keras / self.images:.2%} ({self.correct_keras})")
        if self.half_precision is not None:
            policies, half = self.half_precision
            text += (f"; Keras computed in float32 there, as torch computes; in its own {policies} (not checked: "
                     f"half precision's rounding): {half.difference} = {half.max_prob_diff:.2e}, argmax equal "
                     f"{half.argmax_equal}/{half.images}")
            if half.correct_keras is not None:
                text += f", accuracy {half.correct_keras / half.images:.2%} ({half.correct_keras})"
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
    and :func:`keras_inputs` reshape them as a user would), in [0, 1] or 0-255 as the model takes them
    (:attr:`Architecture.pixel_scale`)."""
    if architecture.takes_mnist:
        from mnist_common.mnist import load_mnist

        mnist = load_mnist(data_dir)
        if not 1 <= count <= len(mnist.test_images):
            raise UserError(f"--check-images must be between 1 and {len(mnist.test_images)}, got {count}")
        x = torch.from_numpy(mnist.test_images[:count]).float().div_(255.0 / architecture.pixel_scale).unsqueeze(1)
        return x, mnist.test_labels[:count].astype(np.int64), "MNIST test images"
    if count < 1:
        raise UserError(f"--check-images must be at least 1, got {count}")
    count = min(count, max(1, CHECK_BATCH_VALUES // math.prod(architecture.input_shape)))  # the line says how many
    generator = torch.Generator().manual_seed(RANDOM_INPUT_SEED)
    x = torch.rand(count, *torch_shape(architecture.input_shape), generator=generator)
    return x, None, f"seeded random {shape_text(architecture.input_shape)} inputs (the network does not take MNIST)"


def batch_size_for(*architectures: Architecture | None, most: int = BATCH_SIZE) -> int:
    """How many examples of the networks of ``architectures`` run at once (a check's, ``predict``'s): ``most``,
    fewer where the largest one's activations would not fit in :data:`CHECK_BATCH_VALUES` (None: not known)."""
    largest = max((a.activation_values for a in architectures if a is not None), default=1)
    return max(1, min(most, CHECK_BATCH_VALUES // largest))


@torch.inference_mode()
def torch_logits(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    network.eval()
    batch = batch_size_for(getattr(network, "architecture", None))
    return torch.cat([network(x[i:i + batch]) for i in range(0, len(x), batch)])


def keras_inputs(architecture: Architecture, x: torch.Tensor) -> np.ndarray:
    """The same values as ``x`` (torch's layout, or MNIST images) in the Keras model's own input layout."""
    return to_keras_layout(x).reshape(len(x), *architecture.input_shape).numpy()


class ConversionCheckFailed(UserError):
    """The converted model does not predict what the source model predicts; nothing was written."""


def float32_rounding(networks: list[torch.nn.Module], x: torch.Tensor) -> float:
    """How far float32 itself takes ``networks``' compared values (their mean) from exact, on the check inputs ``x``
    (float32, torch's layout, as :func:`check_inputs` gives them): ``max |q32 - q64|``, q the softmax of the logits (a one-class network's logit itself), q64 from a float64 copy.

    A converted file runs on another float32 implementation (other kernels, other summation orders) whose
    rounding is of the same size, so two correct runs differ by up to a few times this. It is far below
    CHECK_TOLERANCE for most models (1e-8 to 1e-6), but reaches 1e-5 where logits are in the hundreds
    (saturated softmaxes of an overconfident model): there the limit grows with it, so that an exact
    conversion is not refused. 0.0 where a network cannot run in float64.
    """

    def compared(network: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        logits = torch_logits(network, inputs)
        return (logits if logits.shape[1] == 1 else torch.softmax(logits, 1)).double()

    try:
        q32 = torch.stack([compared(network, x) for network in networks]).mean(0)
        q64 = torch.stack([compared(copy.deepcopy(network).double(), x.double()) for network in networks]).mean(0)
    except (RuntimeError, TypeError):  # a layer that keeps float32 constants of its own
        return 0.0
    return float((q32 - q64).abs().max())


def proven(report: ParityReport, destination: os.PathLike,
           rounding: Callable[[], float] | None = None) -> ParityReport:
    """``report`` if it passes, else :class:`ConversionCheckFailed` saying the file was not written and why.

    ``rounding`` gives the source's float32 rounding (:func:`float32_rounding`), measured only when the difference
    is above CHECK_TOLERANCE: a float64 run costs about twice a float32 one."""
    if not report.ok and rounding is not None and math.isfinite(report.max_prob_diff):
        report.rounding = rounding()
    if not report.ok:
        raise ConversionCheckFailed(f"conversion check failed, {destination} not written: {report.difference} "
                                    f"= {report.max_prob_diff:.3g} > {report.limit_text} on {report.images} "
                                    f"{report.inputs}")
    return report
