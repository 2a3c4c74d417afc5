"""Layers called more than once: a siamese network's shared convolution, tied weights, one head on two branches.

In Keras such a layer is one object with one set of weights and several nodes (calls); the bridge
reads each later call as a node that ``shares`` the layer (``conv@1``: Keras' node index), the
torch network runs the layer's one module at each call, and the Keras model written back calls one
layer again, so the file comes back as it was, its calls in their order.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml

from bridge_check import (L, assert_keras_file_refused, assert_matches_keras, command_line, converts_and_comes_back,
                          keras, model_config_text, network_of, randomised, torch_weights_of)
from mnist_common.architecture import Architecture, ArchitectureError


def siamese() -> "keras.Model":
    """One convolution on two crops of the image, their maps concatenated."""
    inputs = keras.Input((28, 28, 1))
    conv = L.Conv2D(4, 3, activation="relu", name="twin")
    a = conv(L.Cropping2D(((0, 4), (0, 4)))(inputs))
    b = conv(L.Cropping2D(((4, 0), (4, 0)))(inputs))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(L.Concatenate()([a, b]))))


def tied() -> "keras.Model":
    """A layer on its own output (tied weights), and a BatchNormalization shared by two Dense layers."""
    inputs = keras.Input((784,))
    dense, norm = L.Dense(64, activation="tanh", name="tied"), L.BatchNormalization(name="norm")
    x = norm(L.Dense(32)(dense(dense(L.Dense(64)(inputs)))))
    return keras.Model(inputs, L.Dense(10)(L.Add()([x, norm(L.Dense(32)(x))])))


def shared_head() -> "keras.Model":
    """One softmax head on two branches, averaged: the mean of two softmaxes, not logits."""
    inputs = keras.Input((28, 28, 1))
    flat = L.Flatten()(inputs)
    head = L.Dense(10, activation="softmax", name="head")
    return keras.Model(inputs, L.Average()([head(L.Dense(16)(flat)), head(L.Dense(16, activation="relu")(flat))]))


def later_call_deeper() -> "keras.Model":
    """The layer's second call deeper in the graph than its first: Keras orders its layers (and so stores their
    weights) by a shared layer's deepest call, which pulls the layers before it deeper too."""
    inputs = keras.Input((28, 28, 1))
    code = L.Dense(16)(L.Flatten()(inputs))
    shared = L.Dense(32, name="shared")
    first = shared(code)
    second = shared(L.Dense(16)(L.Dense(8)(code)))
    return keras.Model(inputs, L.Dense(10)(L.Concatenate()([second, first])))


def output_is_a_later_call() -> "keras.Model":
    """The model's output is the second call of a layer (``output_layers``: ``[out, 1, 0]``)."""
    inputs = keras.Input((28, 28, 1))
    x = L.Dense(10)(L.Flatten()(inputs))
    out = L.Dense(10, name="out")
    return keras.Model(inputs, out(L.Add()([out(x), x])))


CASES = [siamese, tied, shared_head, later_call_deeper, output_is_a_later_call]


@pytest.mark.parametrize("build", CASES, ids=lambda build: build.__name__)
def test_a_shared_layer_is_one_module_with_keras_numbers(build):
    """Random weights and inputs: the torch network gives Keras' outputs, holds each shared layer once (Keras'
    weight count), and its calls run that one module."""
    model = randomised(build(), seed=3)
    report = assert_matches_keras(model, seed=4)
    assert report.ok
    architecture, network = network_of(model)
    assert sum(p.numel() for p in network.parameters()) + sum(b.numel() for b in network.buffers()) \
        == model.count_params() == sum(architecture.parameter_count())
    shared = {node.shares for node in architecture.nodes if node.shares}
    assert shared and all(hasattr(network, name) for name in shared)
    assert not any(hasattr(network, node.name) for node in architecture.nodes if node.shares)
    assert list(architecture.storage_names) == [layer.name for layer in model.layers  # Keras' order of its layers
                                                if not isinstance(layer, L.InputLayer)]


@pytest.mark.parametrize("build", [siamese, later_call_deeper, output_is_a_later_call],
                         ids=lambda build: build.__name__)
def test_a_keras_file_with_shared_layers_converts_both_ways_as_it_was(build, tmp_path, capsys):
    """.keras -> .ckpt -> .keras (each conversion proven on MNIST): the same config.json, each call in its
    place and order, and every weight bit for bit (stored where Keras' own order puts them)."""
    randomised(build(), seed=5).save(tmp_path / "shared.keras")
    converts_and_comes_back(tmp_path / "shared.keras", tmp_path, capsys, check_images=100)
    assert model_config_text(tmp_path / "again.keras") == model_config_text(tmp_path / "shared.keras")


def test_a_shared_layer_deploys_and_predicts(tmp_path, capsys, seed_png):
    """The siamese network as an .onnx file (proven by convert) and on ONNX Runtime's backend."""
    randomised(siamese(), seed=6).save(tmp_path / "siamese.keras")
    command_line(["convert", str(tmp_path / "siamese.keras"), str(tmp_path / "siamese.ckpt"), "--check_images", "100"])
    command_line(["convert", str(tmp_path / "siamese.ckpt"), str(tmp_path / "siamese.onnx"), "--check_images", "100"])
    capsys.readouterr()
    answers = []
    for weights, backend in (("siamese.ckpt", "torch"), ("siamese.onnx", "onnx")):
        command_line(["predict", str(seed_png), "--weights", str(tmp_path / weights), "--backend", backend, "--json"])
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert np.abs(np.subtract(*(a["probabilities"] for a in answers))).max() <= 1e-5


def test_one_optimizer_step_adds_every_call_s_gradient_as_keras_does():
    """One SGD step on one batch, Keras' ``train_on_batch`` against torch's: a shared layer's weights move by the sum
    of its calls' gradients, and a shared BatchNormalization's moving statistics by each call's batch, in
    Keras' order."""
    model = randomised(tied(), seed=7)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    architecture, network = network_of(model)
    rng = np.random.default_rng(2)
    x, y = rng.random((32, 784)).astype(np.float32), rng.integers(0, 10, 32)
    model.train_on_batch(x, y)
    network.train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(network(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    optimizer.step()
    expected = torch_weights_of(model, architecture)
    for key, value in network.state_dict().items():
        assert torch.allclose(value.float(), expected[key].float(), rtol=0, atol=2e-5), key


def test_a_description_shares_a_layer_and_reads_back():
    """In YAML a later call is ``{shares: layer, inputs: [...]}``: named ``layer@1``, written back with its name,
    counted once."""
    architecture = Architecture.from_config(yaml.safe_load("""
        input_shape: [28, 28, 1]
        layers:
          - {type: Cropping2D, cropping: [[0, 4], [0, 4]], name: top}
          - {type: Cropping2D, cropping: [[4, 0], [4, 0]], name: bottom, inputs: [input]}
          - {type: Conv2D, filters: 4, kernel_size: 3, name: twin, inputs: [top]}
          - {shares: twin, inputs: [bottom]}
          - {type: Concatenate, inputs: [twin, twin@1]}
          - {type: Flatten}
          - {type: Dense, units: 10, activation: softmax}
    """))
    assert [(node.name, node.shares) for node in architecture.nodes if node.layer.type == "Conv2D"] == \
        [("twin", None), ("twin@1", "twin")]
    assert architecture.parameter_count() == (40 + 22 * 22 * 8 * 10 + 10, 0)
    assert {"shares": "twin", "name": "twin@1", "inputs": ["bottom"]} in architecture.to_config()["layers"]
    assert Architecture.from_config(architecture.to_config()) == architecture
    assert "twin@1 (Conv2D)" in architecture.summary()


@pytest.mark.parametrize("layers, message", [
    ([{"type": "Dense", "units": 10, "name": "d"}, {"shares": "e"}], "layer 1 (a later call) shares 'e', which is no "
                                                                      "layer of the model"),
    ([{"type": "Dense", "units": 10}, {"shares": "dense", "units": 3}], "a later call of a layer has shares, inputs "
                                                                       "and name only"),
    ([{"type": "Dense", "units": 10, "name": "d"}, {"type": "Dense", "units": 10, "name": "d@1"}],
     "its name 'd@1' is how a shared layer's later call is named"),
    ([{"type": "Dense", "units": 784, "name": "d"}, {"shares": "d"}, {"type": "Dense", "units": 10}], None),
    ([{"type": "Dense", "units": 20, "name": "d"}, {"shares": "d"}, {"type": "Dense", "units": 10}],
     "calls d on 20, which is built for 784 (its first call's); a shared layer with weights takes inputs of one "
     "shape at every call (one layer per call otherwise)"),
    ([{"type": "Dense", "units": 10, "name": "d"}, {"type": "Dense", "units": 10, "name": "d"}],
     "its name 'd' is used twice; a layer called again is an entry that shares it"),
])
def test_descriptions_refuse_a_call_of_no_layer_or_of_another_shape(layers, message):
    config = {"input_shape": [784], "layers": layers}
    if message is None:  # a Dense on its own output: tied weights
        assert Architecture.from_config(config).parameter_count() == (784 * 785 + 7850, 0)
        return
    with pytest.raises(ArchitectureError, match=re.escape(message)):
        Architecture.from_config(config)


def weightless_at_three_sizes() -> "keras.Model":
    """One ``ReLU()`` and one ``MaxPooling2D()`` object called after every block, on maps of three sizes."""
    inputs = keras.Input((28, 28, 1))
    relu, pool = L.ReLU(name="relu"), L.MaxPooling2D(padding="same", name="pool")
    x = pool(relu(L.Conv2D(4, 3, padding="same")(inputs)))
    x = pool(relu(L.Conv2D(6, 3, padding="same")(x)))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(pool(relu(x)))))


def test_a_layer_without_weights_called_on_other_sizes_runs_a_module_per_call(tmp_path, capsys):
    """Refused before (zoo round 10: "calls relu on 14x14x6, which is built for 28x28x4"): Keras' idiom of one
    activation or pooling object for every block. Each later call at another size runs a module of its own (torch's
    pooling is built for one size); the file comes back calling the one layer again, its config as it was."""
    model = randomised(weightless_at_three_sizes(), seed=6)
    assert assert_matches_keras(model, seed=7).ok
    architecture, network = network_of(model)
    assert {"relu@1", "relu@2", "pool@1", "pool@2"} <= {name for name, _ in network.named_children()}
    model.save(tmp_path / "weightless.keras")
    converts_and_comes_back(tmp_path / "weightless.keras", tmp_path, capsys, check_images=100)
    assert model_config_text(tmp_path / "again.keras") == model_config_text(tmp_path / "weightless.keras")


def _shared_in_a_model_holding_a_model() -> "keras.Model":
    inputs = keras.Input((28, 28, 1))
    conv = L.Conv2D(1, 3, padding="same")
    block = keras.Sequential([L.Conv2D(2, 3)], name="block")
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(block(conv(conv(inputs))))))


def _shared_on_two_sizes() -> "keras.Model":
    """Keras builds a convolution's weights from the channels alone; torch's module is built for one size."""
    inputs = keras.Input((28, 28, 1))
    conv = L.Conv2D(2, 3)
    a = L.GlobalAveragePooling2D()(conv(inputs))
    b = L.GlobalAveragePooling2D()(conv(L.Cropping2D(2)(inputs)))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Concatenate()([a, b])))


@pytest.mark.parametrize("build, message", [
    (_shared_in_a_model_holding_a_model, r"conv2d\w* \(Conv2D\) is called 2 times; a layer called more than once in "
                                         r"a model that holds another model \(or in a nested model\) is not"),
    (_shared_on_two_sizes, r"calls conv2d\w* on 24x24x1, which is built for 28x28x1 \(its first call's\)"),
])
def test_shared_layers_the_bridge_cannot_hold_are_refused_in_one_line(build, message, tmp_path, capsys):
    assert_keras_file_refused(build(), tmp_path, capsys, message)
