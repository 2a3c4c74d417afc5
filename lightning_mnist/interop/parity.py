"""Both frameworks on the same inputs: the numbers every conversion must show before it writes a file.

The inputs and the report are :mod:`lightning_mnist.interop.proof`'s (the MNIST test images
for an MNIST model, seeded random inputs otherwise). Both run on the CPU in float32 (a Keras model in mixed
precision is checked as its float32 twin, see :func:`proven_on_check_inputs`). The verdict is on probabilities,
the softmax of the outputs: ``max |p_torch - p_keras| <= 1e-5`` (or the limit an overconfident model's own float32
rounding sets, :func:`~lightning_mnist.interop.proof.float32_rounding`) or the conversion fails.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from lightning_mnist.interop.keras_models import call_eagerly, keras, keras_model_of, keras_on_cpu, torch_weights_of
from lightning_mnist.interop.proof import (  # noqa: F401  (re-exported: the conversions' and the tests' names)
    BATCH_SIZE, CHECK_TOLERANCE, DEFAULT_CHECK_IMAGES, RANDOM_INPUT_SEED, ParityReport, batch_size_for,
    check_inputs, compare_probabilities, float32_rounding, keras_inputs, proven, torch_logits)
from lightning_mnist.models.network import KerasNetwork, probabilities_as_logits
from mnist_common.architecture import Architecture


def run_keras(model: "keras.Model", x_nhwc: np.ndarray, graph: bool = True, batch: int = BATCH_SIZE):
    """``model`` on ``x_nhwc`` in batches of ``batch``: Keras' ``predict`` (a traced graph), or eager calls where
    ``graph`` is False (a model whose names TensorFlow refuses in a graph: see ``Architecture.graph_unsafe_name``)."""
    if graph:
        return model.predict(x_nhwc, batch_size=batch, verbose=0)
    batches = [call_eagerly(model, x_nhwc[i:i + batch]) for i in range(0, len(x_nhwc), batch)]
    if isinstance(batches[0], (list, tuple)):
        return [np.concatenate([np.asarray(batch[k]) for batch in batches]) for k in range(len(batches[0]))]
    return np.concatenate([np.asarray(batch) for batch in batches])


def keras_logits_and_outputs(model: "keras.Model", x_nhwc: np.ndarray, softmax_layer: str | None,
                             graph: bool = True, batch: int = BATCH_SIZE) -> tuple[np.ndarray | None, np.ndarray]:
    """(what goes into the softmax that gives the model's outputs, the model's outputs); logits = outputs without one,
    None where the softmax is another layer's activation (a convolution's), whose input is not the logits, or sits
    inside a nested model.

    ``softmax_layer`` names that softmax (the architecture's ``softmax_node``: the output layer, or a
    softmax followed only by linear activations), None where the outputs are logits or no logits exist. Both
    come from one forward pass: a sub-model also returns that layer's input, and a softmax Dense is
    recomputed from it in float32 without its softmax. ``graph``, ``batch``: see :func:`run_keras`.
    """
    with keras_on_cpu():
        if softmax_layer is None:  # the outputs are the logits
            outputs = run_keras(model, x_nhwc, graph, batch)
            return outputs, outputs
        nodes = model.operations if isinstance(model, keras.Model) and not isinstance(model, keras.Sequential) \
            else model.layers  # a Functional model's operations: its layers and its ``keras.ops`` nodes
        own = {op.name: op for op in nodes if not isinstance(op, keras.Model)}
        if softmax_layer not in own:
            # inside a model this one holds: its input is no tensor of this graph, so only the outputs compare
            return None, run_keras(model, x_nhwc, graph, batch)
        layer = own[softmax_layer]  # called once, on one tensor
        features, outputs = run_keras(keras.Model(model.inputs, [layer.input, model.outputs[0]]), x_nhwc, graph,
                                      batch)
    kind = type(layer).__name__
    if kind in ("Softmax", "Activation"):  # its input is the logits
        return features, outputs
    if kind != "Dense":
        return None, outputs
    weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
    logits = features.astype(np.float32) @ weights[0] + (weights[1] if len(weights) > 1 else 0.0)
    return logits, outputs


def compare(network: KerasNetwork, model: "keras.Model", x: torch.Tensor, labels: np.ndarray | None,
            inputs: str) -> ParityReport:
    """Run both on ``x`` (torch's layout; Keras gets the same values in its own) and compare (see the module
    docstring)."""
    network = network.cpu()
    z_torch = torch_logits(network, x).float()
    p_torch = torch.softmax(z_torch, dim=1).numpy()
    architecture = network.architecture
    softmax = architecture.softmax_node
    z_keras, outputs = keras_logits_and_outputs(model, keras_inputs(architecture, x),
                                                None if softmax is None else softmax.name,
                                                graph=architecture.graph_unsafe_name is None,
                                                batch=batch_size_for(architecture))
    p_keras = outputs if network.outputs_probabilities else torch.softmax(torch.from_numpy(outputs), 1).numpy()
    if architecture.probabilities_without_logits:  # the torch network gives their log: compare logs
        z_keras = probabilities_as_logits(torch.from_numpy(outputs)).numpy()
    if architecture.num_classes == 1 and z_keras is not None:  # a softmax over one value is 1 whatever the weights:
        p_torch, p_keras = z_torch.numpy(), z_keras  # compare what goes into it (a sigmoid's output, a logit)
    report = compare_probabilities(p_torch, p_keras, labels, inputs)
    if z_keras is not None and z_keras.shape == tuple(z_torch.shape):
        report.max_logit_diff = float(np.abs(z_torch.numpy() - z_keras).max())
    return report


def float32_twin(architecture: Architecture, model: "keras.Model") -> "keras.Model":
    """The Keras ``model`` of ``architecture`` computing in float32 throughout: every layer's mixed-precision policy
    float32, the model's own weights (read from it, so a wrong weight in ``model`` is in its twin too)."""
    return keras_model_of(architecture.in_float32(), torch_weights_of(model, architecture))


def proven_on_check_inputs(network: KerasNetwork, model: "keras.Model", destination: os.PathLike,
                           count: int = DEFAULT_CHECK_IMAGES,
                           data_dir: str | os.PathLike | None = None) -> ParityReport:
    """:func:`compare` on the check inputs, :func:`~lightning_mnist.interop.proof.proven` for ``destination``.

    A model that Keras computes in mixed precision (half-precision arithmetic, float32 weights) is checked as its
    float32 twin (:func:`float32_twin`), which computes what torch computes, under the same limit as every model:
    the weights and the layers are proven exactly; the model in its own policy is compared too and reported (it
    differs by half precision's rounding, 1e-4 to 1e-2, which no limit can tell from a small mistake)."""
    x, labels, inputs = check_inputs(network.architecture, count, data_dir)
    policies = network.architecture.mixed_precision
    report = compare(network, float32_twin(network.architecture, model) if policies else model, x, labels, inputs)
    if policies:
        report.half_precision = (" and ".join(policies), compare(network, model, x, labels, inputs))
    return proven(report, destination, lambda: float32_rounding([network], x))
