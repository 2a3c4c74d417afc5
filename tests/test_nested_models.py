"""Keras models that hold models: a Sequential block inside a Functional graph, a Functional block inside a
Sequential, two levels deep. The bridge reads them into one graph (each nested model's layers take what it
was called on) and finds each layer's weights where Keras stores them, under the nested model's own place
(``layers/sequential/layers/conv2d/vars/0``). Every model is built and saved by Keras itself.
"""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

from bridge_check import (L, architecture_of, assert_keras_file_refused, assert_matches_keras, check_against_keras,
                          converts_and_comes_back, keras, predicts_alike_on_both_backends, randomised)
from lightning_mnist.interop.parity import CHECK_TOLERANCE
from mnist_common.architecture import ArchitectureError, architecture_from_keras_config
from mnist_common.keras_file import read_keras_file
from keras_bridge.build import find_layer
from keras_bridge.files import load_checked


def residual_block(filters: int, size: int | None) -> "keras.Model":
    """A Functional block of its own: Conv-BN, added to its input, ReLU (``size`` None: for maps of any size)."""
    inputs = keras.Input((size, size, filters))
    y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(inputs))
    return keras.Model(inputs, L.ReLU()(L.Add()([inputs, y])))


def sequential_in_graph() -> "keras.Model":
    """A Sequential feature extractor called inside a Functional model, with a layer of the graph before it."""
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    x = keras.Sequential([L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(), L.MaxPooling2D()])(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)))


def residual_blocks() -> "keras.Model":
    """Two Functional residual blocks, each its own model, in a Functional graph (the same classes at three levels:
    each model numbers its own conv2d, batch_normalization, ... from 0)."""
    inputs = keras.Input((28, 28, 1))
    x = L.MaxPooling2D()(L.Conv2D(8, 3, padding="same")(inputs))
    x = residual_block(8, 14)(residual_block(8, 14)(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)))


def sequential_of_models() -> "keras.Model":
    """A Sequential of a Sequential stem, a Functional block and a Sequential head: the output is a nested one's."""
    return keras.Sequential([keras.Input((28, 28, 1)),
                             keras.Sequential([L.Conv2D(8, 3, strides=2, padding="same"), L.BatchNormalization(),
                                               L.ReLU()], name="stem"),
                             residual_block(8, 14),
                             keras.Sequential([L.Flatten(), L.Dropout(0.2), L.Dense(10, activation="softmax")],
                                              name="head")])


def two_levels() -> "keras.Model":
    """A Functional graph holding a Sequential that holds a Functional block (for maps of any size), on flat inputs
    reshaped to images."""
    inputs = keras.Input((784,))
    x = L.Reshape((28, 28, 1))(inputs)
    inner = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, strides=2, padding="same"),
                              residual_block(8, None), L.MaxPooling2D()])
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(inner(x))))


def functional_head() -> "keras.Model":
    """A Functional head that gives the model's outputs (Keras names it in output_layers by its second call's index:
    its own construction is the first), on a block called with training=False (read as a plain call: Keras' fit and
    predict replace it with their own flag)."""
    head_inputs = keras.Input((14, 14, 8))
    head = keras.Model(head_inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(head_inputs)))
    inputs = keras.Input((28, 28, 1))
    x = residual_block(8, 14)(L.MaxPooling2D()(L.Conv2D(8, 3, padding="same")(inputs)), training=False)
    return keras.Model(inputs, head(x))


MODELS = {build.__name__: build for build in (sequential_in_graph, residual_blocks, sequential_of_models, two_levels,
                                              functional_head)}
HEADS_NESTED = ("sequential_of_models", "functional_head")  # the output softmax inside a nested model


@pytest.mark.parametrize("name", MODELS)
def test_nested_models_match_keras_with_random_weights(name):
    model = randomised(MODELS[name]())
    architecture = architecture_of(model)
    assert not any(node.layer.type in ("Sequential", "Functional") for node in architecture.nodes)
    # every layer of every level is in the graph, under its own name
    def layers(level):
        for layer in level.layers:
            yield from layers(layer) if isinstance(layer, keras.Model) else [layer.name]
    assert sorted(node.name for node in architecture.nodes) == sorted(
        name for name in layers(model) if not name.startswith("input_layer"))
    if name in HEADS_NESTED:  # the softmax sits inside the head: only the probabilities are compared
        report = check_against_keras(model)
        assert report.ok and report.max_logit_diff is None, report.describe()
    else:
        assert_matches_keras(model)  # probabilities within 1e-5, logits within 1e-4


def test_weights_are_read_where_keras_stores_nested_models_weights(tmp_path):
    """Each array the checks read from model.weights.h5 is the one Keras loads into that layer (load_checked
    compares them), with random values everywhere, so no two layers' arrays could be swapped unseen."""
    model = randomised(residual_blocks(), seed=3)
    model.save(tmp_path / "blocks.keras")
    with zipfile.ZipFile(tmp_path / "blocks.keras") as archive, archive.open("model.weights.h5") as raw:
        with h5py.File(io.BytesIO(raw.read())) as h5:
            stored = set()
            h5.visititems(lambda key, obj: stored.add(key) if isinstance(obj, h5py.Dataset) else None)
    assert "layers/functional/layers/conv2d/vars/0" in stored and "layers/conv2d/vars/0" in stored
    _, info = load_checked(tmp_path / "blocks.keras")
    for layer, arrays in info.weights.items():
        for ours, theirs in zip(arrays, find_layer(model, layer).get_weights(), strict=True):
            assert ours.tobytes() == np.asarray(theirs, np.float32).tobytes(), layer


@pytest.mark.parametrize("name", ["sequential_in_graph", "sequential_of_models", "functional_head"])
def test_a_nested_keras_file_converts_to_every_format_and_back_to_one_graph(name, tmp_path, capsys, mnist_dir,
                                                                             seed_png):
    """``.keras -> .ckpt -> .keras`` and ``.onnx``: each proven on MNIST by the command; the file Keras gets back
    is one graph of the same layers and the same weights, bit for bit, and predicts as the nested one."""
    source = tmp_path / f"{name}.keras"
    randomised(MODELS[name](), seed=5).save(source)
    converts_and_comes_back(source, tmp_path, capsys, ("model.ckpt", "model.onnx"))
    again, _ = load_checked(tmp_path / "again.keras")
    assert not any(isinstance(layer, keras.Model) for layer in again.layers)
    nested, _ = load_checked(source)
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    assert np.abs(again.predict(x, verbose=0) - nested.predict(x, verbose=0)).max() <= CHECK_TOLERANCE
    predicts_alike_on_both_backends(source, seed_png, capsys)


def named_block(name: str, size: int) -> "keras.Model":
    """A block whose layers a function names, so every block built by it has a ``conv``, a ``bn``, ..."""
    inputs = keras.Input((size, size, 8))
    x = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="conv")(inputs))
    return keras.Model(inputs, L.ReLU(name="relu")(L.Add(name="add")([inputs, x])), name=name)


def test_layers_named_alike_in_different_models_get_their_models_names_in_the_one_graph(tmp_path, capsys, mnist_dir,
                                                                                        seed_png):
    """Keras names layers per model: a stem ``conv`` and two blocks each with ``conv``, ``bn``, ``relu``, ``add``,
    and a head. In the one graph a name met again is prefixed with its model's; the weights are still each
    layer's own (read where Keras stores them, compared with what Keras loads, proven on MNIST)."""
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = named_block("b1", 28)(L.Conv2D(8, 3, padding="same", name="conv")(inputs))
    x = L.BatchNormalization(name="bn")(named_block("b2", 14)(L.MaxPooling2D(name="pool")(x)))  # after the blocks
    head = keras.Sequential([L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="dense")], name="head")
    source = tmp_path / "blocks.keras"
    randomised(keras.Model(inputs, head(x), name="net"), seed=7).save(source)
    info = read_keras_file(source)
    assert [node.name for node in info.architecture.nodes] == [
        "conv", "b1_conv", "bn", "add", "relu", "pool", "b2_conv", "b2_bn", "b2_add", "b2_relu", "net_bn", "flat",
        "dense"]
    assert info.keras_paths["b2_bn"] == ("b2", "bn") and info.keras_paths["bn"] == ("b1", "bn")
    assert info.keras_paths["net_bn"] == ("bn",) and "conv" not in info.keras_paths  # renamed in the outer model
    converts_and_comes_back(source, tmp_path, capsys)  # one flat graph, under the names the graph gave them
    predicts_alike_on_both_backends(source, seed_png, capsys)


def _shared_block() -> "keras.Model":
    block = residual_block(8, 14)
    inputs = keras.Input((28, 28, 1))
    x = block(block(L.MaxPooling2D()(L.Conv2D(8, 3, padding="same")(inputs))))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)))


def _two_outputs() -> "keras.Model":
    inner = keras.Input((28, 28, 1))
    two = keras.Model(inner, [L.Conv2D(2, 3, padding="same")(inner), L.Conv2D(2, 1)(inner)], name="two")
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(L.Concatenate()(two(inputs)))))


def _too_deep() -> "keras.Model":
    model = keras.Sequential([L.Conv2D(2, 3)])
    for _ in range(9):
        model = keras.Sequential([model])
    return keras.Sequential([keras.Input((28, 28, 1)), model, L.Flatten(), L.Dense(10, activation="softmax")])


@pytest.mark.parametrize("build, message", [
    (_shared_block, r"functional\w* \(Functional\) is called 2 times; a nested model called more than once"),
    (_too_deep, r"\(sequential\w*, Sequential\) nests models more than 8 deep"),
    (_two_outputs, r"takes output 1 of two, which gives several; only single-output layers and models"),
])
def test_nested_models_the_bridge_cannot_hold_are_refused_in_one_line(build, message, tmp_path, capsys):
    assert_keras_file_refused(build(), tmp_path, capsys, message)


def test_nested_models_keras_could_not_build_are_refused():
    """Configs Keras could not build (edited by hand): the nested model's input layer and what it is called on
    disagree; a nested model's layer takes a layer of the outer model; a nested model has no layers. The torch
    path, which needs no Keras, refuses them too."""
    config = keras.saving.serialize_keras_object(sequential_in_graph())
    nested = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "Sequential")
    nested["config"]["layers"][0]["config"]["batch_shape"] = [None, 28, 28, 3]
    with pytest.raises(ArchitectureError, match=r"takes inputs of shape \(28, 28, 3\) but is called on \(28, 28, 8\)"):
        architecture_from_keras_config(config, "model.keras")
    config = keras.saving.serialize_keras_object(residual_blocks())  # an inner layer taking an outer one's output
    outer_conv = next(entry["config"]["name"] for entry in config["config"]["layers"] if entry["class_name"] == "Conv2D")
    block = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "Functional")
    add = next(entry for entry in block["config"]["layers"] if entry["class_name"] == "Add")
    add["inbound_nodes"][0]["args"][0][0]["config"]["keras_history"][0] = outer_conv
    with pytest.raises(ArchitectureError, match=f"takes '{outer_conv}', which is not a layer of its model"):
        architecture_from_keras_config(config, "model.keras")
    config = keras.saving.serialize_keras_object(sequential_in_graph())
    nested = next(entry for entry in config["config"]["layers"] if entry["class_name"] == "Sequential")
    nested["config"]["layers"] = nested["config"]["layers"][:1]
    with pytest.raises(ArchitectureError, match=r"model.keras, nested model sequential\w*: the model has no layers"):
        architecture_from_keras_config(config, "model.keras")
