"""What the bridge's tests share: Keras models with random weights, checked against the torch network built from
their own config, and random layers for random graphs.

Each layer family's test file (``tests/test_layers_<family>.py``) checks its kinds against
Keras with :func:`assert_matches_keras` and registers a :func:`sampler` per kind, which
``tests/test_bridge.py`` uses to build random graphs of every kind (seeded), and to fail
when a described kind has none.
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_mnist.frameworks import import_keras
from mnist_common.architecture import Architecture, ArchitectureError, architecture_from_keras_config
from mnist_common.keras_file import KerasFile, read_keras_file

keras = import_keras()
L = keras.layers

from lightning_mnist.__main__ import main as command_line  # noqa: E402
from lightning_mnist.interop.keras_models import torch_weights_of  # noqa: E402
from lightning_mnist.interop.parity import ParityReport, compare  # noqa: E402
from lightning_mnist.interop.proof import ROUNDING_FACTOR  # noqa: E402
from lightning_mnist.models.layers.layout import torch_shape  # noqa: E402
from lightning_mnist.models.network import KerasNetwork  # noqa: E402

LOGIT_TOLERANCE = 1e-4
RANDOM_INPUTS = 32

# Keras layer kind -> (rng, input shape) -> a Keras layer that takes that shape, or None where it cannot.
SAMPLERS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], "keras.layers.Layer | None"]] = {}


def sampler(kind: str):
    """Register a function that makes a random, valid ``kind`` layer for an input shape (None: not for that shape)."""
    def register(function):
        SAMPLERS[kind] = function
        return function
    return register


def randomised(model: "keras.Model", seed: int = 0) -> "keras.Model":
    """Random weights everywhere, BatchNorm moving statistics and Normalization's adapted ones included (defaults
    would hide mistakes); an integer weight (Normalization's count) a random count."""
    rng = np.random.default_rng(seed)

    def draw(w: np.ndarray, path: str) -> np.ndarray:
        if not np.issubdtype(w.dtype, np.floating):
            return rng.integers(0, 10_000, w.shape).astype(w.dtype)
        if "variance" in path:
            return rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
        return rng.normal(0.0, 0.3, w.shape).astype(np.float32)

    def fill(holder: "keras.Model") -> None:
        for layer in holder.layers:
            if isinstance(layer, keras.Model):  # a nested model: its own layers
                fill(layer)
            elif isinstance(layer, keras.layers.MultiHeadAttention):  # its weights are its four projections'
                layer.set_weights([draw(w, v.path) for w, v in zip(layer.get_weights(), layer.weights)])
            else:  # loaded as Keras loads a file's (a Normalization then computes with them)
                for owner in owners(layer):
                    owner.load_own_variables({str(i): draw(w, v.path)
                                              for i, (w, v) in enumerate(zip(owner.get_weights(), owner.weights))})

    def owners(layer: "keras.layers.Layer") -> list:
        """The layers that hold ``layer``'s weights: a recurrent layer's cell, a wrapper's layers' own."""
        if isinstance(layer, keras.layers.TimeDistributed):
            return owners(layer.layer)
        sides = [getattr(layer, side) for side in ("forward_layer", "backward_layer") if hasattr(layer, side)]
        return [getattr(one, "cell", one) for one in sides] if sides else [getattr(layer, "cell", layer)]

    fill(model)
    return model


def architecture_of(model: "keras.Model", source: str = "model") -> Architecture:
    """The description the bridge reads from the model's config (as a ``.keras`` file's config.json holds it)."""
    return architecture_from_keras_config(keras.saving.serialize_keras_object(model), source)


def network_of(model: "keras.Model", source: str = "model") -> tuple[Architecture, KerasNetwork]:
    architecture = architecture_of(model, source)
    network = KerasNetwork(architecture)
    network.load_state_dict(torch_weights_of(model, architecture), strict=True)
    return architecture, network


def random_inputs(architecture: Architecture, seed: int) -> torch.Tensor:
    """Seeded inputs in [-0.5, 1.5] of the architecture's shape, torch's layout."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(RANDOM_INPUTS, *torch_shape(architecture.input_shape), generator=generator) * 2 - 0.5


def check_against_keras(model: "keras.Model", seed: int = 1, source: str = "model") -> ParityReport:
    """Both frameworks on seeded random inputs of the model's shape (the model's weights as they are)."""
    architecture, network = network_of(model, source)
    return compare(network, model, random_inputs(architecture, seed), None, "random inputs")


def logit_limit(network: KerasNetwork, x: torch.Tensor) -> float:
    """:data:`LOGIT_TOLERANCE`, or where the network's own float32 rounding of its logits (against a float64 copy) is
    larger, :data:`~lightning_mnist.interop.proof.ROUNDING_FACTOR` times it, as the conversion check widens its
    limit: a random graph's logits can reach the hundreds, where two correct float32 runs differ by more."""
    with torch.no_grad():
        z32 = network.eval()(x).double()
        try:
            z64 = copy.deepcopy(network).double()(x.double())
        except (RuntimeError, TypeError):  # a layer that keeps float32 constants of its own
            return LOGIT_TOLERANCE
    return max(LOGIT_TOLERANCE, ROUNDING_FACTOR * float((z32 - z64).abs().max()))


def assert_matches_keras(model: "keras.Model", seed: int = 0, source: str = "model") -> ParityReport:
    """Random weights, random inputs: the torch network gives Keras' probabilities and logits (within
    :func:`logit_limit`)."""
    model = randomised(model, seed)
    architecture, network = network_of(model, source)
    x = random_inputs(architecture, seed + 1)
    report = compare(network, model, x, None, "random inputs")
    limit = logit_limit(network, x)
    assert report.ok and report.max_logit_diff < limit, f"{source}: {report.describe()} (logit limit {limit:.1e})"
    return report


def classifier(inputs: "keras.KerasTensor", x: "keras.KerasTensor", classes: int = 10, name: str = "case"):
    """A model ending in Flatten (where needed) and a softmax Dense, so every case is a classifier."""
    if len(x.shape) > 2:
        x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(classes, activation="softmax")(x), name=name)


def sequential_case(input_shape: tuple[int, ...], *layers: "keras.layers.Layer", name: str = "case"):
    """``layers`` in a row on an input of ``input_shape``, made a classifier."""
    inputs = x = keras.Input(input_shape)
    for layer in layers:
        x = layer(x)
    return classifier(inputs, x, name=name)


def assert_keras_layer_refused(shape: tuple[int, ...], layer: "keras.layers.Layer", message: str) -> None:
    """A Keras model of ``layer`` alone on an input of ``shape``: the bridge refuses it in one line naming layer 0."""
    with pytest.raises(ArchitectureError) as info:
        architecture_of(keras.Sequential([keras.Input(shape), layer]), "model.keras")
    assert str(info.value).startswith("model.keras: layer 0 (") and message in str(info.value)
    assert "\n" not in str(info.value)


def assert_description_refused(input_shape: list[int], layer: dict, message: str) -> None:
    """A description of ``layer`` (then Flatten and a Dense) on ``input_shape``: refused in one line naming layer 0."""
    config = {"input_shape": input_shape, "layers": [layer, {"type": "Flatten"}, {"type": "Dense", "units": 3}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and "\n" not in str(info.value) and "layer 0 (" in str(info.value)


def assert_settings_round_trip(shape: tuple[int, ...], layers: list, folder: Path) -> None:
    """Keras' config -> description -> YAML -> description -> Keras layer: the first layer's Keras config again
    (as JSON, its name aside)."""
    import yaml

    from keras_bridge.build import keras_layer

    architecture = architecture_of(sequential_case(shape, *layers))
    (folder / "net.yaml").write_text(yaml.safe_dump(architecture.to_config()))
    again = Architecture.load(folder / "net.yaml")
    assert again == architecture
    def as_json(config: dict) -> dict:  # its name aside, and what a built layer adds (a Bidirectional's layers' shapes)
        def settings(value):
            return {k: settings(v) for k, v in value.items() if k != "build_config"} if isinstance(value, dict) \
                else value
        return json.loads(json.dumps(settings({k: v for k, v in config.items() if k != "name"})))

    assert as_json(keras_layer(again.nodes[0].layer).get_config()) == as_json(layers[0].get_config())


def converts_and_comes_back(source: Path, folder: Path, capsys, targets: tuple[str, ...] = ("model.ckpt",),
                            check_images: int = 500) -> tuple[KerasFile, KerasFile]:
    """``convert`` the ``.keras`` file ``source`` to each of ``targets`` in ``folder`` (a ``.ckpt`` first; each
    conversion proves itself on MNIST), then the ``.ckpt`` back to ``again.keras``: that file has the same layers,
    settings and names, and every weight bit for bit. The two files' contents, read."""
    for target in targets:
        command_line(["convert", str(source), str(folder / target), "--check_images", str(check_images)])
        assert "max |p_" in capsys.readouterr().out
    command_line(["convert", str(folder / targets[0]), str(folder / "again.keras"), "--check_images",
                  str(check_images)])
    capsys.readouterr()
    before, after = read_keras_file(source), read_keras_file(folder / "again.keras")
    assert before.architecture.layers == after.architecture.layers
    assert before.architecture == after.architecture  # its name, its input's, Sequential or Functional
    assert before.weights.keys() == after.weights.keys()
    for layer, arrays in before.weights.items():
        assert [a.tobytes() for a in arrays] == [b.tobytes() for b in after.weights[layer]], layer
    return before, after


def model_config_text(path: Path) -> str:
    """A ``.keras`` file's model config (its layers and their calls) without the ids Keras gives the objects it
    saves (new in every process)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))["config"]
    return re.sub(r', "shared_object_id": \d+', "", json.dumps(config))


def assert_keras_file_refused(model: "keras.Model", folder: Path, capsys, pattern: str) -> None:
    """``model`` saved as a .keras file: ``convert`` refuses it in one line matching ``pattern``, writing nothing."""
    from conftest import main_error

    model.save(folder / "model.keras")
    (folder / "work").mkdir()
    code, line, _ = main_error(command_line, ["convert", str(folder / "model.keras"),
                                              str(folder / "work" / "out.ckpt")], capsys)
    assert code == 2 and re.search(pattern, line), line
    assert list((folder / "work").iterdir()) == []


def predicts_alike_on_both_backends(weights: Path, image: Path, capsys) -> dict:
    """``predict --json`` of ``image`` with ``weights`` on the torch and the Keras backend: one digit, probabilities
    within 1e-5. The torch backend's answer."""
    answers = []
    for backend in ("torch", "keras"):
        command_line(["predict", str(image), "--weights", str(weights), "--backend", backend, "--json"])
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert answers[0]["digit"] == answers[1]["digit"], answers
    assert np.abs(np.array(answers[0]["probabilities"]) - np.array(answers[1]["probabilities"])).max() <= 1e-5
    return answers[0]
