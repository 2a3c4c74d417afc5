"""The general bridge: Keras 3 models of the supported layers, built with plain Keras, both ways and proven.

Each model is made and saved by Keras itself; the MNIST-shaped ones are trained a little
in Keras first, so their accuracies mean something. Conversions run through the real
``convert`` command (in this process where that saves a start-up, as subprocesses where
the command line itself is the point).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge_check import (SAMPLERS, L, architecture_of, assert_matches_keras, classifier, converts_and_comes_back,
                          keras, model_config_text, predicts_alike_on_both_backends, randomised, torch_weights_of)
from conftest import REPO, assert_one_line_error, both_frameworks_learn, main_error
from keras_bridge.files import on_its_tensors
from mnist_common.architecture import LAYER_TYPES, Architecture, ArchitectureError, fixed_input_shape
from mnist_common.keras_file import read_keras_file
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.checkpoints import load_networks
from lightning_mnist.interop.parity import CHECK_TOLERANCE
from lightning_mnist.models.layers import CONVERTERS, converter_of
from lightning_mnist.models.network import KerasNetwork, Probabilities

# Every family's samplers (tests/test_layers_<family>.py), for the random graphs below.
for _family in sorted(Path(__file__).parent.glob("test_layers_*.py")):
    importlib.import_module(_family.stem)

TRAIN_IMAGES = 3000  # trained weights, not initial ones: most models score well above chance
SCORED_IMAGES = 2000  # the first test images: Keras' evaluate, convert's check and `test` score the same ones
ZOO = ["deeper_16_32_64", "keras_io_convnet", "lenet5_tanh_avgpool", "strided_same_gap", "functional_chain",
       "rgb_32x32x3", "resnet", "inception", "mobilenet", "squeeze_excite", "flat_mlp", "rgb_decoder_merges",
       "rows_lstm", "keras_ops_resnet", "fcn_any_size", "rows_gru_any_length", "pixels_gru_any_length"]
MNIST_ZOO = [name for name in ZOO if name not in ("rgb_32x32x3", "rgb_decoder_merges")]
GRAPH_ZOO = ["resnet", "inception", "mobilenet", "squeeze_excite", "flat_mlp"]  # the MNIST graphs of issue #19
SEQUENTIAL_ZOO = ["deeper_16_32_64", "keras_io_convnet", "lenet5_tanh_avgpool", "strided_same_gap", "rgb_32x32x3",
                  "flat_mlp", "rows_lstm", "rows_gru_any_length", "pixels_gru_any_length"]
OPEN_SIZED = ["fcn_any_size", "rows_gru_any_length", "pixels_gru_any_length"]  # inputs of a size left open (None)


def _conv_bn_relu(x, filters, strides=1):
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return L.ReLU()(L.BatchNormalization(momentum=0.9)(x))


def resnet() -> "keras.Model":
    """ResNet-style: Rescaling, Conv-BN-ReLU, an identity and a strided 1x1-projection shortcut, global pooling.
    BatchNorm momentum 0.9, so its statistics settle within the test's one short epoch."""
    inputs = keras.Input((28, 28, 1))
    x = _conv_bn_relu(L.Rescaling(2.0, offset=-1.0)(inputs), 16)
    y = L.BatchNormalization(momentum=0.9)(L.Conv2D(16, 3, padding="same", use_bias=False)(_conv_bn_relu(x, 16)))
    x = L.ReLU()(L.Add()([x, y]))  # identity shortcut
    y = L.BatchNormalization(momentum=0.9)(L.Conv2D(32, 3, padding="same", use_bias=False)(_conv_bn_relu(x, 32, strides=2)))
    shortcut = L.BatchNormalization(momentum=0.9)(L.Conv2D(32, 1, strides=2, use_bias=False)(x))  # projection shortcut
    x = L.ReLU()(L.Add()([shortcut, y]))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="resnet")


def inception() -> "keras.Model":
    """An Inception-style block: 1x1, 3x3, 5x5 and pooled branches joined by Concatenate."""
    inputs = keras.Input((28, 28, 1))
    x = L.MaxPooling2D()(L.Conv2D(16, 3, activation="relu")(inputs))
    branches = [L.Conv2D(8, 1, activation="relu")(x),
                L.Conv2D(8, 3, padding="same", activation="relu")(L.Conv2D(4, 1, activation="relu")(x)),
                L.Conv2D(8, 5, padding="same", activation="relu")(L.Conv2D(4, 1, activation="relu")(x)),
                L.Conv2D(8, 1, activation="relu")(L.MaxPooling2D(3, strides=1, padding="same")(x))]
    x = L.MaxPooling2D()(L.Concatenate()(branches))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)), name="inception")


def mobilenet() -> "keras.Model":
    """MobileNet-style: ZeroPadding2D, DepthwiseConv2D, SeparableConv2D, a dilated grouped Conv2D, Cropping2D."""
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(L.ZeroPadding2D(((1, 2), (2, 1)))(inputs))
    x = L.BatchNormalization(momentum=0.9)(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x))
    x = L.SeparableConv2D(32, 3, strides=2, padding="same", activation="relu")(L.ReLU(6.0)(x))
    x = L.Conv2D(32, 3, dilation_rate=2, groups=4, padding="same", activation="relu")(x)
    x = L.Cropping2D(((1, 0), (0, 1)))(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="mobilenet")


def squeeze_excite() -> "keras.Model":
    """A squeeze-and-excitation block: a Reshape'd sigmoid gate Multiply'd into the map, then LayerNormalization."""
    inputs = keras.Input((28, 28, 1))
    x = L.MaxPooling2D()(L.Conv2D(24, 3, activation="relu")(inputs))
    gate = L.Dense(24, activation="sigmoid")(L.Dense(6, activation="relu")(L.GlobalAveragePooling2D()(x)))
    x = L.Multiply()([x, L.Reshape((1, 1, 24))(gate)])
    x = L.LayerNormalization()(L.Conv2D(32, 3, strides=2, activation="relu")(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)), name="squeeze_excite")


def flat_mlp() -> "keras.Model":
    """A multilayer perceptron on flat (784,) inputs, as many MNIST tutorials write it."""
    return keras.Sequential([keras.Input((784,)), L.Dense(128, activation="relu"), L.Dropout(0.2),
                             L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")], name="flat_mlp")


def rows_lstm() -> "keras.Model":
    """keras.io's guide "Working with RNNs" (guides/working_with_rnns.py), its MNIST model: 28 rows of 28 pixels read
    by an LSTM of 64 units, BatchNormalization, a Dense of 10 (the guide's gives logits, trained with
    ``from_logits=True``; here the softmax is the layer's, the same loss)."""
    return keras.Sequential([keras.Input((28, 28)), L.LSTM(64), L.BatchNormalization(),
                             L.Dense(10, activation="softmax")], name="rows_lstm")


def keras_ops_resnet() -> "keras.Model":
    """A residual CNN written as Keras 3 code often is, with Keras operations between its layers (graph nodes, not
    layers): ``x * 2.0 - 1.0``, ``x + y`` shortcuts, ``keras.ops.relu``, a squeeze-and-excitation gate
    ``x * ops.sigmoid(...)``, ``ops.mean`` and ``ops.max`` over axes, ``ops.concatenate``, an "option A" shortcut
    (a strided slice zero-padded on its channels: ``ops.pad(x[:, ::2, ::2, :16], ...)``), and ``ops.softmax`` for
    the outputs."""
    ops = keras.ops
    inputs = keras.Input((28, 28, 1))
    x = ops.relu(L.BatchNormalization(momentum=0.9)(L.Conv2D(16, 3, padding="same")(inputs * 2.0 - 1.0)))
    x = L.MaxPooling2D()(ops.relu(x + L.Conv2D(16, 3, padding="same")(x)))
    gate = L.Dense(16, activation="sigmoid")(L.Dense(4, activation="relu")(ops.mean(x, axis=[1, 2])))
    x = x * L.Reshape((1, 1, 16))(gate)
    x = ops.concatenate([x, ops.max(x, axis=-1, keepdims=True)], axis=-1)
    y = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = ops.relu(y + ops.pad(x[:, ::2, ::2, :16], [[0, 0], [0, 0], [0, 0], [8, 8]]))  # 7x7x32 both
    return keras.Model(inputs, ops.softmax(L.Dense(10)(L.Flatten()(x))), name="keras_ops_resnet")


def fcn_any_size() -> "keras.Model":
    """A fully convolutional network for images of any size (``keras.Input((None, None, 1))``): no Flatten, global
    poolings before the classifier."""
    inputs = keras.Input((None, None, 1))
    x = L.MaxPooling2D()(L.ReLU()(L.BatchNormalization(momentum=0.9)(L.Conv2D(16, 3)(inputs))))
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    return keras.Model(inputs, L.Dense(10, activation="softmax")(x), name="fcn_any_size")


def rows_gru_any_length() -> "keras.Model":
    """A GRU over rows of 28 pixels, as many as there are (``keras.Input((None, 28))``)."""
    return keras.Sequential([keras.Input((None, 28)), L.GRU(32), L.Dense(10, activation="softmax")],
                            name="rows_gru_any_length")


def pixels_gru_any_length() -> "keras.Model":
    """Pixel-by-pixel MNIST, a sequence of any number of single pixels (``keras.Input((None, 1))``): built at 784
    steps, the image's pixels in reading order, which every command feeds it."""
    return keras.Sequential([keras.Input((None, 1)), L.Conv1D(32, 14, strides=7, activation="relu"),
                             L.MaxPooling1D(4), L.GRU(32), L.Dense(10, activation="softmax")],
                            name="pixels_gru_any_length")


def rgb_decoder_merges() -> "keras.Model":
    """32x32x3: Conv2DTranspose and UpSampling2D (nearest and bilinear) branches merged by Subtract, Maximum, Average,
    and a per-channel mean added back to every pixel (an Add of inputs with fewer axes, which Keras broadcasts)."""
    inputs = keras.Input((32, 32, 3))
    x = L.MaxPooling2D()(L.Conv2D(8, 3, padding="same", activation="relu")(inputs))  # 16x16x8
    up = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)  # 32x32x8
    near = L.Conv2D(8, 1)(L.UpSampling2D(2)(x))
    smooth = L.Conv2D(8, 1)(L.UpSampling2D(2, interpolation="bilinear")(x))
    x = L.Average()([L.Subtract()([up, near]), L.Maximum()([near, smooth]), up])
    x = L.Add()([x, L.GlobalAveragePooling2D()(smooth)])  # (32, 32, 8) + (8,)
    x = L.Conv2D(16, 3, strides=2, activation="relu")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalMaxPooling2D()(x)),
                       name="rgb_decoder_merges")


def zoo() -> dict[str, "keras.Model"]:
    """The kinds of model the issue names, written the way their authors write them."""
    mnist = (28, 28, 1)
    inputs = keras.Input(mnist)
    x = L.Conv2D(8, 4, padding="same", activation="relu")(inputs)  # an even kernel: uneven "same" padding
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Flatten()(L.Conv2D(16, 3, activation="elu")(x))
    functional = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Dropout(0.2)(x)), name="functional_chain")
    models = {
        "deeper_16_32_64": keras.Sequential([
            keras.Input(mnist), L.Conv2D(16, 3, activation="relu"), L.BatchNormalization(),
            L.Conv2D(32, 3, activation="relu"), L.BatchNormalization(), L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(64, activation="relu"),
            L.Dropout(0.3), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax")]),
        "keras_io_convnet": keras.Sequential([  # keras-io's examples/vision/mnist_convnet.py, verbatim
            keras.Input(shape=mnist), L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            L.MaxPooling2D(pool_size=(2, 2)), L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            L.MaxPooling2D(pool_size=(2, 2)), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")]),
        "lenet5_tanh_avgpool": keras.Sequential([
            keras.Input(mnist), L.Conv2D(6, 5, padding="same", activation="tanh"), L.AveragePooling2D(2),
            L.Conv2D(16, 5, activation="tanh"), L.AveragePooling2D(2), L.Flatten(), L.Dense(120, activation="tanh"),
            L.Dense(84, activation="tanh"), L.Dense(10, activation="softmax")]),
        "strided_same_gap": keras.Sequential([  # 28 -> 14 -> 7 with stride 2 and "same": odd total padding
            keras.Input(mnist), L.Conv2D(32, 3, strides=2, padding="same", use_bias=False), L.BatchNormalization(),
            L.ReLU(), L.Conv2D(64, 3, strides=2, padding="same"), L.BatchNormalization(), L.Activation("swish"),
            L.Conv2D(10, 1), L.GlobalAveragePooling2D(), L.Softmax()]),
        "functional_chain": functional,
        "rgb_32x32x3": keras.Sequential([
            keras.Input((32, 32, 3)), L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
            L.Conv2D(32, 3, strides=2, padding="same", activation="gelu"), L.BatchNormalization(center=False),
            L.AveragePooling2D(3, strides=2, padding="same"), L.Flatten(), L.Dense(64, activation="leaky_relu"),
            L.Dense(10, activation="softmax")]),
    }
    models.update({build.__name__: build() for build in (resnet, inception, mobilenet, squeeze_excite, flat_mlp,
                                                           rgb_decoder_merges, rows_lstm, keras_ops_resnet,
                                                           fcn_any_size, rows_gru_any_length,
                                                           pixels_gru_any_length)})
    assert list(models) == ZOO
    return models


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory, mnist):
    """name -> (.keras path, correct test images by Keras' evaluate, or None for non-MNIST inputs)."""
    folder = tmp_path_factory.mktemp("zoo")
    x = (mnist.train_images[:TRAIN_IMAGES].astype(np.float32) / 255)[..., None]
    y = np.eye(10, dtype=np.float32)[mnist.train_labels[:TRAIN_IMAGES]]
    x_test = (mnist.test_images[:SCORED_IMAGES].astype(np.float32) / 255)[..., None]
    y_test = np.eye(10, dtype=np.float32)[mnist.test_labels[:SCORED_IMAGES]]
    keras.utils.set_random_seed(0)
    out = {}
    for name, model in zoo().items():
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        correct = None
        if name in MNIST_ZOO:  # each in its own layout: (28, 28, 1), (28, 28), (784,) or (784, 1)
            layout = (-1, *fixed_input_shape(model.input_shape[1:]))  # a size left open (None): MNIST's
            model.fit(x.reshape(layout), y, batch_size=64, epochs=1, verbose=0)
            accuracy = model.evaluate(x_test.reshape(layout), y_test, batch_size=1000, verbose=0,
                                      return_dict=True)["accuracy"]
            correct = round(accuracy * SCORED_IMAGES)
        model.save(folder / f"{name}.keras")
        out[name] = (folder / f"{name}.keras", correct)
    return out


def model_class(path: Path) -> str:
    """What a ``.keras`` file's ``config.json`` says its model is: ``Sequential`` or ``Functional``."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))["class_name"]


def convert(capsys, *args) -> str:
    command_line(["convert", *map(str, args)])
    return capsys.readouterr().out


def parse_check(stdout: str) -> dict:
    [line] = [line for line in stdout.splitlines() if line.startswith("check on ")]
    images, inputs = re.match(r"check on (\d+) (MNIST test images|seeded random)", line).groups()
    found = {"images": int(images), "mnist": inputs.startswith("MNIST"),
             "max_dp": float(re.search(r"max \|p_torch - p_keras\| = ([0-9.e+-]+)", line).group(1)),
             "argmax_equal": int(re.search(r"argmax equal (\d+)/", line).group(1))}
    accuracy = re.search(r"Lightning [0-9.]+% \((\d+)\), Keras [0-9.]+% \((\d+)\)", line)
    if accuracy:
        found["correct_torch"], found["correct_keras"] = map(int, accuracy.groups())
    return found


@pytest.mark.parametrize("name", ZOO)
def test_keras_model_converts_both_ways_exactly(name, keras_files, tmp_path, capsys):
    source, keras_correct = keras_files[name]
    out = convert(capsys, source, tmp_path / "model.ckpt", "--check_images", SCORED_IMAGES)
    check = parse_check(out)
    with capsys.disabled():  # the figures docs/architectures.md quotes (pytest -s)
        print(f"\n{name}: {check}")
    assert check["max_dp"] <= CHECK_TOLERANCE and check["images"] == SCORED_IMAGES, out
    assert check["mnist"] is (keras_correct is not None)
    if keras_correct is not None:  # both frameworks score what Keras' evaluate scored
        assert check["correct_torch"] == check["correct_keras"] == keras_correct, out
        assert check["argmax_equal"] == SCORED_IMAGES
    back = parse_check(convert(capsys, tmp_path / "model.ckpt", tmp_path / "again.keras", "--check_images", 2000))
    assert back["max_dp"] <= CHECK_TOLERANCE
    before, after = read_keras_file(source), read_keras_file(tmp_path / "again.keras")
    assert before.architecture.layers == after.architecture.layers  # every setting, layer names included
    assert before.architecture == after.architecture  # the model's name, its input's, Sequential or Functional
    assert model_class(source) == model_class(tmp_path / "again.keras") == (
        "Sequential" if name in SEQUENTIAL_ZOO else "Functional")  # a Functional chain stays one
    assert before.weights.keys() == after.weights.keys()
    for layer in before.weights:
        for a, b in zip(before.weights[layer], after.weights[layer], strict=True):
            assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes(), layer


@pytest.mark.parametrize("name", OPEN_SIZED)
def test_a_size_keras_leaves_open_is_built_at_mnists_and_stays_open(name, keras_files, tmp_path, capsys):
    """A model for inputs of any size (None in Keras' input shape) converts at MNIST's 28 (the images every command
    feeds it), and the Keras model written back still takes any size: at another size the Keras file written back
    and the source compute the same (no weight depends on the size). The checkpoint's torch network takes the size
    it is built at (its paddings, crops and bins are computed for it) and refuses another in words, not silently
    wrong (a helper found "same" paddings with strides 1e-3 off at 41 x 37)."""
    source, _ = keras_files[name]
    out = convert(capsys, source, tmp_path / "model.ckpt", "--check_images", 200)
    open_text = {"fcn_any_size": "NonexNonex1, built at 28x28x1", "rows_gru_any_length": "Nonex28, built at 28x28",
                 "pixels_gru_any_length": "Nonex1, built at 784x1"}[name]
    assert re.search(r"\(Input\) +" + re.escape(open_text), out), out
    convert(capsys, tmp_path / "model.ckpt", tmp_path / "again.keras", "--check_images", 200)
    original = keras.saving.load_model(source, safe_mode=True)
    written = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    assert written.input_shape == original.input_shape and None in original.input_shape[1:]
    other = np.random.default_rng(0).random({"fcn_any_size": (4, 40, 34, 1), "rows_gru_any_length": (4, 45, 28),
                                             "pixels_gru_any_length": (4, 300, 1)}[name], np.float32)
    expected = original.predict(other, verbose=0)
    assert np.abs(written.predict(other, verbose=0) - expected).max() <= CHECK_TOLERANCE
    [network] = load_networks(tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match=r"the network takes inputs of shape \(batch, .*\), got \(4, .*built at "
                                         r"MNIST's \(28 rows or columns, or as many steps as hold its 784 pixels\)"):
        Probabilities([network.eval()])(torch.from_numpy(other))


# one model of each input layout MNIST is fed in ((28, 28, 1), (28, 28), (784,), (784, 1) of an open length), with
# BatchNormalization and a graph among them: every zoo model's conversion scores as Keras does in convert's check
SCORED_BY_TEST = ["deeper_16_32_64", "resnet", "rows_lstm", "flat_mlp", "pixels_gru_any_length"]


def test_lightning_scores_converted_checkpoints_as_keras_evaluates(keras_files, tmp_path, capsys):
    """``test --ckpt_path`` on the checkpoint of a model of each input layout prints Keras' own accuracy on the same
    first test images (in this process: the command's own subprocess run is test_convert.py's, on the notebook's
    file)."""
    for name in SCORED_BY_TEST:
        source, keras_correct = keras_files[name]
        ckpt = tmp_path / f"{name}.ckpt"
        convert(capsys, source, ckpt, "--check_images", 100)
        command_line(["test", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
                      "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
                      "--data.eval_batch_size", "500", "--trainer.limit_test_batches", str(SCORED_IMAGES // 500),
                      "--output_dir", str(tmp_path / "runs")])
        [row] = [line for line in capsys.readouterr().out.splitlines() if "test/acc" in line]
        lightning_acc = float(re.findall(r"[0-9]+\.[0-9]+", row)[0])
        assert round(lightning_acc * SCORED_IMAGES) == keras_correct, (name, lightning_acc, keras_correct)


@pytest.mark.parametrize("name", [*GRAPH_ZOO, "pixels_gru_any_length"])
def test_predict_agrees_on_both_backends_with_keras(name, keras_files, tmp_path, capsys, seed_png, mnist):
    """predict on the torch, Keras and ONNX Runtime backends, from the .keras file and from its checkpoint: one
    answer (pixel-by-pixel MNIST too: the image's 784 pixels in reading order, a sequence of 784 steps). ONNX Runtime
    runs the checkpoint's export: a .keras file's is the same network's, converted to torch first (10 s of export
    for the 784 steps)."""
    source, _ = keras_files[name]
    convert(capsys, source, tmp_path / "model.ckpt", "--check_images", 100)
    pixels = mnist.test_images[:64].astype(np.float32) / 255
    from lightning_mnist.predictors import load_predictor

    runs = {f"{backend} {path.suffix}": load_predictor(path, backend).predict_proba(pixels)
            for backend in ("torch", "keras", "onnx") for path in (source, tmp_path / "model.ckpt")
            if (backend, path.suffix) != ("onnx", ".keras")}
    reference = runs["keras .keras"]
    for label, probabilities in runs.items():
        assert np.abs(probabilities - reference).max() <= CHECK_TOLERANCE, (name, label)
    answers = []
    for backend in ("torch", "keras"):
        command_line(["predict", str(seed_png), "--weights", str(tmp_path / "model.ckpt"), "--backend", backend,
                      "--json"])
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert answers[0]["digit"] == answers[1]["digit"], answers
    assert np.abs(np.array(answers[0]["probabilities"]) - np.array(answers[1]["probabilities"])).max() <= 1e-5


def _unsupported_models() -> dict[str, "keras.Model"]:
    return {
        "conv_lstm": keras.Sequential([keras.Input((28, 28, 1)), L.ConvLSTM1D(4, 3), L.Flatten(),
                                       L.Dense(10, activation="softmax")]),
        "lambda": keras.Sequential([keras.Input((28, 28, 1)), L.Lambda(lambda t: t * 2.0), L.Flatten(),
                                    L.Dense(10, activation="softmax")]),
        "channels_first": keras.Sequential([keras.Input((1, 28, 28)), L.Conv2D(8, 3, data_format="channels_first"),
                                            L.Flatten(), L.Dense(10, activation="softmax")]),
    }


def test_unsupported_layers_are_refused_by_the_command_line(tmp_path, mnist_dir):
    """A ConvLSTM1D, a Lambda and a channels-first Conv2D: one line naming the layer, exit 2, no file (real
    subprocesses)."""
    expected = {"conv_lstm": ("layer 0 (conv_lstm1d, ConvLSTM1D) is not a supported layer",),
                "lambda": ("layer 0 (lambda, Lambda) holds Python code",),
                "channels_first": ("layer 0 (conv2d", "data_format other than channels_last is not supported")}
    env = {**os.environ, "MNIST_DATA_DIR": str(mnist_dir), "PYTHONPATH": str(REPO)}
    running = []
    for name, model in _unsupported_models().items():
        work = tmp_path / name
        work.mkdir()
        model.save(tmp_path / f"{name}.keras")
        running.append((name, work, subprocess.Popen(
            [sys.executable, "-m", "lightning_mnist", "convert", str(tmp_path / f"{name}.keras"), "out.ckpt"],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for name, work, proc in running:
        stdout, stderr = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert done.returncode == 2, (name, stderr[-2000:])
        assert_one_line_error(done, *expected[name])
        assert list(work.iterdir()) == [], name  # no output, no temporary file


def _two_outputs() -> "keras.Model":
    inputs = keras.Input((28, 28, 1))
    x = L.Flatten()(L.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, [L.Dense(10, activation="softmax")(x), L.Dense(1)(x)])


def _two_inputs() -> "keras.Model":
    a, b = keras.Input((28, 28, 1)), keras.Input((28, 28, 1))
    return keras.Model([a, b], L.Dense(10, activation="softmax")(L.Flatten()(L.Add()([a, b]))))


@keras.saving.register_keras_serializable(package="tests")
class Doubler(keras.layers.Layer):
    """A custom layer: not one of Keras' own."""

    def call(self, x):
        return x * 2.0


def _masking() -> "keras.Model":
    """Masking before an LSTM over rows: Keras records the mask's operations (not_equal, any) around the layer."""
    inputs = keras.Input((28, 28))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.LSTM(8)(L.Masking(0.0)(inputs))))


def _constant_operand() -> "keras.Model":
    """A position embedding computed while the model was built (``Embedding(49, 8)(ops.arange(49))``, eager): Keras
    records the array itself as the Add's operand."""
    inputs = keras.Input((28, 28, 1))
    tokens = L.Reshape((49, 8))(L.Conv2D(8, 4, strides=4)(inputs))
    x = tokens + L.Embedding(49, 8)(keras.ops.arange(49))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)))


@pytest.mark.parametrize("name, build, message", [
    ("two_outputs", _two_outputs, "the model has 2 outputs; only single-input, single-output models"),
    # the layer named, not the operation Keras recorded for its mask ("not_equal (NotEqual) is the Keras operation")
    ("masking", _masking, "layer 1 (masking, Masking) is not a supported layer"),
    ("attention_scores", lambda: classifier(rows := keras.Input((28, 28)), L.Attention()(
        [rows, rows], return_attention_scores=True)[0]),
     ": attention (Attention) is called with return_attention_scores; only layers called on the outputs of other "
     "layers and nothing else (other arguments at their defaults) are supported"),
    # was "is called on arguments other than tensors and numbers"
    ("constant_operand", _constant_operand, "(Add) is called on a constant array of shape 49x8 (a tensor the code "
                                            "computed while it built the model, such as a position embedding of "
                                            "ops.arange: not a layer's output, and it never trains)"),
    ("two_inputs", _two_inputs, "the model has 2 inputs; only single-input, single-output models"),
    ("custom", lambda: keras.Sequential([keras.Input((28, 28, 1)), Doubler(), L.Flatten(), L.Dense(10)]),
     "layer 0 (doubler, Doubler) is not a supported layer"),
    ("conv_lstm", lambda: keras.Sequential([keras.Input((28, 28, 1)), L.ConvLSTM1D(4, 3, name="rows_lstm"),
                                            L.Flatten(), L.Dense(10)]),
     "layer 0 (rows_lstm, ConvLSTM1D) is not a supported layer"),
    ("activity", lambda: keras.Sequential([keras.Input((28, 28)), L.Bidirectional(L.LSTM(4, activity_regularizer="l2")),
                                           L.Dense(10)]),
     "layer sets activity_regularizer, which is not supported inside a Bidirectional"),
    ("bn_axis", lambda: keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3), L.BatchNormalization(axis=1),
                                          L.Flatten(), L.Dense(10)]), "normalises axis 1"),
    ("random_crop", lambda: keras.Sequential([keras.Input((28, 28, 1)), L.RandomCrop(24, 24),
                                              L.GlobalAveragePooling2D(), L.Dense(10)]),
     "layer 0 (random_crop, RandomCrop) is not a supported layer"),
])
def test_more_unsupported_models_are_refused_in_one_line(name, build, message, tmp_path, capsys):
    build().save(tmp_path / f"{name}.keras")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(SystemExit) as info:
        command_line(["convert", str(tmp_path / f"{name}.keras"), str(work / "out.ckpt")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert message in line and "Traceback" not in err, err
    assert list(work.iterdir()) == []


def _edited_config(model: "keras.Model", folder: Path, edit) -> Path:
    """``model`` saved as ``folder/odd.keras`` with ``edit(config)`` applied to its config.json."""
    model.save(folder / "model.keras")
    with zipfile.ZipFile(folder / "model.keras") as source, zipfile.ZipFile(folder / "odd.keras", "w") as odd:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            odd.writestr(name, data)
    return folder / "odd.keras"


def _dense_stack() -> "keras.Model":
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = L.Dense(16, name="d2")(L.Dense(16, name="d1")(L.Flatten()(inputs)))
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="head")(L.Dense(16, name="d3")(x)))


def _share(*names: str):
    def edit(config):
        for entry in config["config"]["layers"]:
            if entry["config"]["name"] in names:
                entry["shared_object_id"] = 777
    return edit


@pytest.mark.parametrize("edit, message", [
    # was refused as having "1 input layers", for not having one (hostile round 7)
    (lambda config: config["config"].__setitem__("input_layers", ["head", 0, 0]),
     "the model's input_layers name head, not its input layer pixels"),
    # Keras loads the two entries as one layer (and then fails, or runs d2's weights twice), torch read two layers
    (_share("d2", "d3"), "entries d2 and d3 are one object to Keras (one shared_object_id), one layer written in "
                         "two places; a layer called more than once is supported as Keras writes it in one model, one "
                         "entry of several calls"),
    # Keras casts the input to a serialised policy's name, torch read float32 (or Keras failed: a traceback, round 8)
    (lambda config: config["config"]["layers"][0]["config"].__setitem__("dtype", {
        "module": "keras", "class_name": "DTypePolicy", "config": {"name": "int32"}, "registered_name": None}),
     "the model's input is int32; only float32 and uint8 inputs are supported"),
    # the batch its input declares is kept for the Keras model written back (zoo round 12's NIT-1): a whole number
    (lambda config: config["config"]["layers"][0]["config"].__setitem__("batch_shape", [1e12, 28, 28, 1]),
     "the model's input declares a batch of 1000000000000.0; a batch is a whole number from 1 to 2,147,483,647, or "
     "None (any)"),
    # a tensor the InputLayer was built on: Keras writes none and cannot load one; torch took the file (round 11)
    (lambda config: config["config"]["layers"][0]["config"].__setitem__("input_tensor", {
        "class_name": "__tensor__", "config": {"value": [[0.0]], "dtype": "float32"}}),
     "the model's InputLayer holds an input_tensor, which Keras cannot load from a file (it writes none); only an "
     "input of a shape and dtype is supported"),
], ids=["input_layers", "shared_object_id", "input_dtype", "input_batch", "input_tensor"])
def test_crafted_graph_entries_are_refused_in_one_line_by_both_backends(edit, message, tmp_path, seed_png, capsys):
    odd = _edited_config(_dense_stack(), tmp_path, edit)
    for argv in (["convert", str(odd), str(tmp_path / "out.ckpt")],
                 *(["predict", str(seed_png), "--weights", str(odd), "--backend", backend]
                   for backend in ("torch", "keras"))):
        code, error, err = main_error(command_line, argv, capsys)
        assert code == 2 and err.strip() == f"error: {odd}: {message}", err
    assert not (tmp_path / "out.ckpt").exists()


@pytest.mark.parametrize("side", ["input", "output", "list"])
def test_a_model_built_on_a_dict_of_one_tensor_converts_and_comes_back_so(side, tmp_path, capsys, seed_png):
    """``keras.Model({"pixels": inputs}, outputs)``: Keras records its one input (or output) as a mapping of one,
    and takes the tensor alone too; refused as a mapping before (zoo round 8). A mapping of two stays refused.
    Keras' predict gives a dict for a dict of outputs, which the conversion's proof of logits and the Keras
    backend of predict took as an array (tracebacks, zoo round 9): the model is run on its tensors. The file
    written back is built as the source was (zoo round 9's BUG-C: it gave an array where the source gave
    ``{"digits": ...}``): the same config, a list of one (``keras.Model([x], [y])``) too."""
    inputs = keras.Input((28, 28, 1), name="pixels")
    outputs = L.Dense(10, name="digits")(L.Flatten()(L.Conv2D(4, 3)(inputs)))  # logits: the usual from_logits model
    model = keras.Model({"pixels": inputs} if side == "input" else [inputs] if side == "list" else inputs,
                        {"digits": outputs} if side == "output" else [outputs] if side == "list" else outputs)
    assert_matches_keras(on_its_tensors(model), source=f"dict_{side}")
    model.save(tmp_path / "dict.keras")
    converts_and_comes_back(tmp_path / "dict.keras", tmp_path, capsys, check_images=100)
    assert model_config_text(tmp_path / "again.keras") == model_config_text(tmp_path / "dict.keras")
    again = keras.saving.load_model(tmp_path / "again.keras")
    given = again.predict({"pixels": np.zeros((1, 28, 28, 1))} if side == "input" else np.zeros((1, 28, 28, 1)),
                          verbose=0)
    assert list(given) == ["digits"] if side == "output" else given.shape == (1, 10)
    predicts_alike_on_both_backends(tmp_path / "again.keras", seed_png, capsys)
    if side == "input":  # a key other than its Input's name: Keras' advice at every load (raw bytes of the key, hostile
        keyed = keras.Model({"image": inputs}, outputs)  # round 11) is the source's choice, not shown
        keyed.save(tmp_path / "keyed.keras")
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            command_line(["convert", str(tmp_path / "keyed.keras"), str(tmp_path / "keyed.ckpt"), "--check_images",
                          "10"])
            command_line(["convert", str(tmp_path / "keyed.ckpt"), str(tmp_path / "keyed_again.keras"),
                          "--check_images", "10"])
        assert not [w for w in shown if "When providing `inputs` as a dict" in str(w.message)], shown


@pytest.mark.parametrize("fails", [True, False], ids=["refused", "loaded"])
def test_keras_warnings_while_it_loads_a_file_never_precede_the_error_line(fails, seed_keras, monkeypatch):
    """Keras warned ("Skipping nested container ...", two lines) and then failed to load a crafted file: the warning
    came before the one error line (hostile round 7). It is now shown only when the model loads."""
    from keras_bridge.files import load_checked
    from mnist_common.errors import UserError

    load = keras.saving.load_model

    def warning_load(*args, **kwargs):
        warnings.warn("Skipping nested container at 'x'", UserWarning)
        if fails:
            raise ValueError("A total of 1 objects could not be loaded")
        return load(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", warning_load)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        if fails:
            with pytest.raises(UserError, match=r"cnn_model\.keras: Keras cannot load it \(ValueError: A total of 1"):
                load_checked(seed_keras)
        else:
            assert load_checked(seed_keras)[0].count_params() == 225_418
    assert [str(warning.message) for warning in shown] == ([] if fails else ["Skipping nested container at 'x'"])


def test_names_tensorflow_cannot_trace_convert_and_predict_eagerly(tmp_path, capsys, mnist_dir, seed_png):
    """A space, a colon or a non-ASCII letter in a name: Keras' predict, fit and export fail on such a model (TensorFlow
    refuses them in a graph's name scopes), but it runs eagerly. It converts both ways and to .onnx, proven; predict's
    Keras backend runs it eagerly; LiteRT's export and the Keras reference's training refuse it in one line."""
    from keras_reference.__main__ import main as keras_command_line
    from lightning_mnist.predictors import load_predictor

    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, name="conv a:b"), L.Flatten(),
                              L.Dense(10, activation="softmax", name="κλάσεις")], name="my model")
    assert architecture_of(model).graph_unsafe_name == "my model"
    # the model built (and written back) takes a root scope's name; its layers keep theirs (zoo round 12: the
    # non-ASCII letters of a model's name were kept where punctuation was not)
    from keras_bridge.build import build_model, graph_root_name

    assert build_model(architecture_of(model)).name == "my_model"
    assert [graph_root_name(name) for name in ("MNIST-CNN v2 (best)", "mnist_модель", "-_x.1", "??", "")] == [
        "MNIST-CNN_v2__best_", "mnist_______", "x.1", None, None]
    source = tmp_path / "odd names.keras"
    randomised(model).save(source)
    for destination in ("odd.ckpt", "odd.onnx"):
        command_line(["convert", str(source), str(tmp_path / destination), "--check_images", "50",
                      "--data_dir", str(mnist_dir)])
        assert "max |p_" in capsys.readouterr().out
    command_line(["convert", str(tmp_path / "odd.ckpt"), str(tmp_path / "back.keras"), "--check_images", "50",
                  "--data_dir", str(mnist_dir)])
    assert "max |p_torch - p_keras|" in capsys.readouterr().out
    predictor = load_predictor(source, backend="keras", graph=True)
    assert predictor.graph is False
    pixels = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    expected = np.asarray(model(pixels[..., None], training=False))
    assert np.abs(predictor.predict_proba(pixels) - expected).max() < 1e-6

    code, error, _ = main_error(command_line, ["convert", str(source), str(tmp_path / "odd.tflite"),
                                               "--data_dir", str(mnist_dir)], capsys)
    assert code == 2 and "the name 'my model' is one TensorFlow refuses in a traced graph" in error, error
    assert not (tmp_path / "odd.tflite").exists()
    code, error, _ = main_error(keras_command_line, ["train", "--model.architecture", str(source), "--data.data_dir",
                                                     str(mnist_dir), "--output_dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "so Keras cannot fit it; rename it" in error, error
    assert not (tmp_path / "runs").exists()


def test_a_graph_that_tensorflow_cannot_trace_converts_without_a_word_from_keras(tmp_path, capsys, mnist_dir):
    """A Functional model read back from its file expects its input as a list of one; run eagerly (its names are
    ones TensorFlow refuses in a graph), Keras would warn about the structure at every batch of the check and at
    every prediction."""
    from lightning_mnist.predictors import load_predictor

    inputs = keras.Input((28, 28, 1), name="in-put")
    outputs = L.Dense(10, activation="softmax", name="κλάσεις")(L.Flatten()(L.Conv2D(4, 3, name="conv_é")(inputs)))
    source = tmp_path / "graph.keras"
    randomised(keras.Model(inputs, outputs, name="graph")).save(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        command_line(["convert", str(source), str(tmp_path / "graph.ckpt"), "--check_images", "50",
                      "--data_dir", str(mnist_dir)])
        command_line(["convert", str(tmp_path / "graph.ckpt"), str(tmp_path / "back.keras"), "--check_images", "50",
                      "--data_dir", str(mnist_dir)])
        probabilities = load_predictor(source, backend="keras").predict_proba(np.zeros((2, 28, 28), np.float32))
    assert probabilities.shape == (2, 10)
    assert capsys.readouterr().out.count("max |p_torch - p_keras|") == 2
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)], [str(w.message) for w in caught]


ATTRIBUTE = "is also an attribute of the torch network (torch.nn.Module's or its own)"


@pytest.mark.parametrize("name, reason", [("conv.1", "holds a '.', which torch uses between module names"),
                                          ("forward", ATTRIBUTE), ("plan", ATTRIBUTE), ("log_of_outputs", ATTRIBUTE)])
def test_layer_names_torch_cannot_hold_are_refused_naming_the_file(name, reason, tmp_path, capsys):
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, name=name), L.Flatten(), L.Dense(10)])
    model.save(tmp_path / "named.keras")
    code, error, _ = main_error(command_line, ["convert", str(tmp_path / "named.keras"), str(tmp_path / "out.ckpt")],
                                capsys)
    assert code == 2 and "named.keras" in error and f"layer name {name!r} {reason}; rename the layer" in error, error
    assert not (tmp_path / "out.ckpt").exists()


def test_keras_io_preset_trains_to_97_percent_in_one_epoch_in_both_frameworks(run_main, tmp_path, capsys):
    """The keras-io recipe (Adam 1e-3, batch 128) for one epoch in each framework (their command lines' mains, in
    this process); Keras' file scores alike in ``convert``'s check (``test --ckpt_path`` on this architecture's
    converted checkpoints: test_lightning_scores_converted_checkpoints_as_keras_evaluates)."""
    fit = run_main("lightning_mnist", "fit", "--config", REPO / "configs" / "keras_io.yaml",
                   "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false")
    [line] = [line for line in fit.out.splitlines() if line.startswith("test accuracy")]
    lightning_acc = float(line.split()[2].rstrip(","))
    keras_run = run_main("keras_reference", "train", "--model.architecture", "keras_io", "--trainer.max_epochs", "1",
                         "--model.lr", "1e-3", "--data.batch_size", "128")
    keras_acc = float(re.search(r"test accuracy ([0-9.]+)%", keras_run.out).group(1)) / 100
    shutil.copy(tmp_path / "runs" / "keras" / "version_0" / "model.keras", tmp_path / "keras_io.keras")
    print(f"keras_io, one epoch: Lightning {lightning_acc:.4f}, Keras {keras_acc:.4f}")
    assert lightning_acc >= 0.965 and keras_acc >= 0.965  # measured 0.9705-0.9743 and 0.9735-0.9744 over seeds
    # one full epoch is not noisy: the two measured 0.01-0.4 points apart (seeds 0, 1, 2, 42)
    assert abs(lightning_acc - keras_acc) <= 0.01, (lightning_acc, keras_acc)
    check = parse_check(convert(capsys, tmp_path / "keras_io.keras", tmp_path / "keras_io.ckpt"))
    assert check["correct_torch"] == check["correct_keras"] == round(keras_acc * 10_000)


def test_fit_refuses_a_network_mnist_cannot_train(tmp_path, monkeypatch, capsys):
    import yaml

    (tmp_path / "rgb.yaml").write_text(yaml.safe_dump({"input_shape": [32, 32, 3], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 10}]}))
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(command_line, ["fit", "--model.architecture", "rgb.yaml"], capsys)
    assert code == 2 and "needs a network that takes 28x28x1 images or their 784 pixels" in error
    assert "and gives 10 classes; rgb takes 32x32x3" in error
    assert list(tmp_path.iterdir()) == [tmp_path / "rgb.yaml"]  # no run folder, nothing at all


# --- the registry and the class: every kind, random graphs ---------------------------------------
def test_every_described_kind_has_a_converter_a_mapping_and_a_sampler():
    """One place per kind on each floor, and they agree: a described kind without a torch module, a weight
    without a mapping, or a kind the random graphs cannot draw fails here."""
    assert set(CONVERTERS) == set(LAYER_TYPES)
    for kind, description in LAYER_TYPES.items():
        assert CONVERTERS[kind].description is description, kind
        assert description.INPUTS is None or kind in SAMPLERS, f"{kind} has no sampler in tests/test_layers_*.py"
    rng = np.random.default_rng(0)
    for kind, make in SAMPLERS.items():
        for shape in ((9, 8, 3), (28, 28, 1), (6, 5), (7,)):
            layer = make(rng, shape)
            if layer is None:
                continue
            description = LAYER_TYPES[kind].from_keras(layer.get_config())
            weights = {name for name, _ in description.weights(shape)}
            assert weights <= set(converter_of(description).weights), (kind, weights)


MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
INPUT_SHAPES = ((28, 28, 1), (12, 10, 3), (9, 11, 2), (28, 28), (784,), (8, 6))


def random_graph(seed: int) -> "keras.Model":
    """A seeded random graph of the table: each step draws a layer; half the time it is a branch merged back
    (element-wise when the shapes agree, Concatenate on the last axis when only that differs)."""
    rng = np.random.default_rng(seed)
    inputs = current = keras.Input(INPUT_SHAPES[seed % len(INPUT_SHAPES)])
    kinds = sorted(SAMPLERS)
    for _ in range(int(rng.integers(4, 10))):
        shape = tuple(current.shape[1:])
        layer = SAMPLERS[kinds[int(rng.integers(len(kinds)))]](rng, shape)
        if layer is None:
            continue
        branch = layer(current)
        if rng.random() < 0.5 and tuple(branch.shape[1:]) == shape:
            current = getattr(L, MERGES[int(rng.integers(len(MERGES)))])()([current, branch])
        elif rng.random() < 0.5 and len(branch.shape) == len(current.shape) and branch.shape[1:-1] == shape[:-1]:
            current = L.Concatenate()([branch, current])
        else:
            current = branch
    return classifier(inputs, current, name=f"random_{seed}")


@pytest.mark.parametrize("seed", range(24))
def test_random_graphs_of_the_table_match_keras(seed):
    model = random_graph(seed)
    assert_matches_keras(model, seed, source=f"random graph {seed} ({len(model.layers)} layers)")


@pytest.mark.parametrize("seed", range(0, 24, 3))
def test_layer_order_is_keras_whatever_order_a_description_lists_them(seed):
    """A description may list a graph's layers in any order its inputs allow; the bridge keeps Keras' order
    (model.layers), which names the weights inside a .keras file."""
    config = architecture_of(random_graph(seed)).to_config()
    previous = input_name = config.get("input_name", "input")
    for entry in config["layers"]:  # name every input, so the list can be reordered
        entry.setdefault("inputs", [previous])
        previous = entry["name"]
    rng = np.random.default_rng(seed)
    placed, pending, listed = {input_name}, list(config["layers"]), []
    while pending:  # a random order that still puts every layer after its inputs
        ready = [entry for entry in pending if set(entry["inputs"]) <= placed]
        entry = ready[int(rng.integers(len(ready)))]
        pending.remove(entry)
        listed.append(entry)
        placed.add(entry["name"])
    architecture = Architecture.from_config({**config, "layers": listed})
    from keras_bridge.build import build_model

    model = build_model(architecture)
    every = model.operations if hasattr(model, "operations") else model.layers  # Keras operations (x + y) too
    assert [layer.name for layer in every if type(layer).__name__ != "InputLayer"] == \
        [node.name for node in architecture.nodes]


def test_a_softmax_before_dropout_or_a_linear_activation_gives_the_outputs_once():
    """A softmax followed only by linear Activations gives the model's outputs: the torch network returns its logits
    there. Followed by a Dropout, it keeps the probabilities, which the dropout acts on in training as in Keras, and
    returns their log. Either way the probabilities are Keras' (not a softmax of Keras' probabilities). A softmax
    whose output another layer also reads gives no logits to take."""
    inputs = keras.Input((12, 12, 1))
    x = L.Flatten()(L.Conv2D(4, 3, activation="relu")(inputs))
    probabilities = L.Dense(10, activation="softmax", name="probabilities")(x)
    images = np.random.default_rng(3).random((4, 12, 12, 1), dtype=np.float32)
    linear = keras.Model(inputs, L.Activation("linear")(L.Activation("linear")(probabilities)))
    dropout = keras.Model(inputs, L.Activation("linear")(L.Dropout(0.3)(probabilities)))
    for model, strips in ((linear, True), (dropout, False)):
        report = assert_matches_keras(model)  # logits compared with the Dense's own, or the logs of the outputs
        architecture = architecture_of(model)
        assert architecture.ends_in_softmax is strips and architecture.outputs_probabilities
        assert (architecture.softmax_node.name == "probabilities") if strips else architecture.softmax_node is None
        network = KerasNetwork(architecture)
        network.load_state_dict(torch_weights_of(model, architecture))
        with torch.inference_mode():
            ours = torch.softmax(network.eval()(torch.from_numpy(images).permute(0, 3, 1, 2)), dim=1).numpy()
        assert np.abs(ours - np.asarray(model(images, training=False))).max() < 1e-6, report.describe()

    torch.manual_seed(0)  # in training, the dropout zeroes probabilities and scales the rest, as Keras' does
    with torch.no_grad():
        dropped = network.train()(torch.from_numpy(images).permute(0, 3, 1, 2)).exp().numpy()
    kept = np.isclose(dropped, ours / 0.7, rtol=1e-5)
    assert (kept | (dropped <= 1.01e-7)).all() and 0 < kept.mean() < 1

    read_twice = L.Add()([L.Dropout(0.3)(probabilities), probabilities])
    assert architecture_of(keras.Model(inputs, read_twice)).softmax_node is None
    assert architecture_of(keras.Model(inputs, L.Dense(10)(x))).softmax_node is None  # logits out


def test_averaged_softmaxes_are_the_outputs_as_they_are(tmp_path, capsys, mnist_dir):
    """Per-pixel softmaxes averaged by a pooling are probabilities with no logits behind them: the torch network
    gives their log (whose softmax is them again), so the converted files, predict on every backend and the Keras
    reference's loss take them as Keras gives them, not a softmax of them. Layers that break a distribution (a max,
    a sum, a flatten of many pixels) leave the outputs logits."""
    from keras_reference.model import compile_model
    from lightning_mnist.predictors import load_predictor

    inputs = keras.Input((28, 28, 1))
    maps = L.Conv2D(8, 3, activation="relu")(inputs)
    per_pixel = L.Conv2D(10, 1, activation="softmax")(maps)
    pooled = L.GlobalAveragePooling2D(keepdims=True)(L.AveragePooling2D(2)(per_pixel))
    model = keras.Model(inputs, L.Dropout(0.2)(L.Reshape((10,))(pooled)), name="mean_of_softmaxes")
    architecture = architecture_of(model)
    assert architecture.outputs_probabilities and architecture.probabilities_without_logits
    assert architecture.softmax_node is None and not architecture.ends_in_softmax
    report = assert_matches_keras(model)  # probabilities, and their logs against the network's outputs
    assert report.max_logit_diff is not None
    source = tmp_path / "mean.keras"
    randomised(model, seed=4).save(source)
    expected = np.asarray(keras.saving.load_model(source)(np.zeros((1, 28, 28, 1)) + 0.5, training=False))
    for destination in ("mean.ckpt", "mean.onnx"):
        command_line(["convert", str(source), str(tmp_path / destination), "--check_images", "50",
                      "--data_dir", str(mnist_dir)])
        assert "max |p_" in capsys.readouterr().out
    pixels = np.full((1, 28, 28), 0.5, dtype=np.float32)
    for weights, backend in ((source, "keras"), (source, "torch"), (tmp_path / "mean.ckpt", "torch"),
                             (tmp_path / "mean.onnx", "onnx")):
        got = load_predictor(weights, backend).predict_proba(pixels)
        assert np.abs(got - expected).max() < 1e-5, (weights.name, backend, got, expected)
    assert expected.max() - expected.min() > 1e-3  # a softmax of these would flatten them: the check can fail

    assert compile_model(randomised(model)).loss.from_logits is False
    softmax_then_dropout = keras.Model(inputs, L.Dropout(0.1)(L.Dense(10, activation="softmax")(L.Flatten()(maps))))
    assert compile_model(softmax_then_dropout).loss.from_logits is False  # was taken for logits
    averaged = L.Average()([L.Dense(10, activation="softmax")(L.Flatten()(maps)) for _ in range(2)])
    assert architecture_of(keras.Model(inputs, averaged)).probabilities_without_logits
    dense = L.Dense(10, activation="softmax")(L.Flatten()(maps))
    for unchanged in (L.ReLU(), L.Activation("relu6"), L.LeakyReLU(), L.ReLU(max_value=1.0), L.Activation("elu"),
                      L.Activation("celu"), L.Activation("hard_tanh")):
        assert architecture_of(keras.Model(inputs, unchanged(dense))).probabilities_without_logits, unchanged
    assert_matches_keras(keras.Model(inputs, L.ReLU()(dense)))
    for changed in (L.ReLU(max_value=0.5), L.ReLU(threshold=0.05), L.Activation("selu"), L.Activation("sigmoid"),
                    L.Activation("hard_shrink"), L.Activation("log_softmax")):
        assert not architecture_of(keras.Model(inputs, changed(dense))).outputs_probabilities, changed
    for broken in (L.GlobalMaxPooling2D()(per_pixel), L.Add()([L.GlobalAveragePooling2D()(per_pixel)] * 2),
                   L.Dense(10)(L.Flatten()(per_pixel))):
        architecture = architecture_of(keras.Model(inputs, broken))
        assert not architecture.outputs_probabilities, broken
        assert compile_model(keras.Model(inputs, broken)).loss.from_logits is True


def test_a_layer_called_input_converts_both_ways(tmp_path, capsys, mnist_dir):
    """A Sequential's input keeps the name its author gave it (``keras.Input(shape, name="digits")``); one Keras
    named is ``input`` in its description unless a layer has that name; then the input layer's own name, which a
    model built from that description keeps, so its checkpoint converts back to .keras."""
    sequential = keras.Sequential([keras.Input((28, 28, 1), name="pixels"), L.Flatten(),
                                   L.Dense(16, activation="relu", name="input"), L.Dense(10, activation="softmax")])
    assert architecture_of(sequential).input_name == "pixels"
    named = keras.Sequential([keras.Input((28, 28, 1), name="digits"), L.Flatten(), L.Dense(10, activation="softmax")])
    assert architecture_of(named).input_name == "digits"
    for unnamed in (keras.Input((28, 28, 1)), keras.Input((28, 28, 1), name="input_layer_7"),
                    keras.Input((28, 28, 1), name="dense_input"), keras.Input((28, 28, 1), name="input_2")):
        assert architecture_of(keras.Sequential([unnamed, L.Flatten(), L.Dense(10)])).input_name == "input"
    inputs = keras.Input((28, 28, 1), name="img-in")
    chain = L.Conv2D(4, 3, name="input")(inputs)
    functional = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(chain)))
    for k, model in enumerate((sequential, functional, named)):
        source = tmp_path / f"model_{k}.keras"
        randomised(model).save(source)
        convert(capsys, source, tmp_path / f"model_{k}.ckpt", "--check_images", 20, "--data_dir", mnist_dir)
        out = convert(capsys, tmp_path / f"model_{k}.ckpt", tmp_path / f"back_{k}.keras", "--check_images", 20,
                      "--data_dir", mnist_dir)
        assert parse_check(out)["max_dp"] <= CHECK_TOLERANCE
        back = keras.saving.load_model(tmp_path / f"back_{k}.keras")
        assert architecture_of(back).same_network(architecture_of(model))
        assert back.inputs[0].name == model.inputs[0].name == architecture_of(model).input_name


def input_batch_shape(path: Path) -> list:
    """The ``batch_shape`` a ``.keras`` file's (outermost) input layer declares."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))["config"]
    return next(entry["config"]["batch_shape"] for entry in config["layers"] if entry["class_name"] == "InputLayer")


def test_a_batch_the_input_declares_comes_back_in_the_keras_file(tmp_path, capsys, mnist):
    """``keras.Input(shape, batch_size=32)``, and a Sequential built by its first ``fit`` (no Input: Keras records that
    batch, ``batch_shape [16, 28, 28, 1]``, as most notebooks' models have it), came back from their checkpoints with
    the batch open (zoo round 12's NIT-1). The description keeps it (``input_batch_size``), the file written back
    declares it, and the torch network and the deploy files still take any batch (a .tflite is exported through
    Keras: its batch axis stays dynamic)."""
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((28, 28, 1), batch_size=32)
    functional = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(L.Conv2D(4, 3)(inputs))))
    lazy = keras.Sequential([L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(10, activation="softmax")])
    lazy.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    lazy.fit(mnist.train_images[:64, :, :, None] / 255.0, mnist.train_labels[:64], batch_size=16, verbose=0)
    for name, model, batch in (("functional", functional, 32), ("lazy", lazy, 16)):
        folder = tmp_path / name
        folder.mkdir()
        model.save(folder / "source.keras")
        assert input_batch_shape(folder / "source.keras") == [batch, 28, 28, 1]
        _, after = converts_and_comes_back(folder / "source.keras", folder, capsys, ("model.ckpt", "model.tflite"),
                                           check_images=100)
        assert after.architecture.input_batch_size == batch
        assert input_batch_shape(folder / "again.keras") == [batch, 28, 28, 1]
        if name == "functional":
            assert model_config_text(folder / "again.keras") == model_config_text(folder / "source.keras")
        assert keras.saving.load_model(folder / "again.keras").predict(np.zeros((3, 28, 28, 1)), verbose=0).shape \
            == (3, 10)
        (network,) = load_networks(folder / "model.ckpt")
        assert network(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
        assert Interpreter(model_path=str(folder / "model.tflite")).get_input_details()[0]["shape_signature"][0] \
            == -1
    description = after.architecture.to_config()  # the lazy Sequential's, as a checkpoint records it
    assert description["input_batch_size"] == 16 and Architecture.from_config(description) == after.architecture
    for bad in (0, -1, True, 2.0, "16", 2**31):
        with pytest.raises(ArchitectureError, match=f"input_batch_size must be null .any batch. or a whole number "
                                                    f"from 1 to 2,147,483,647, got {re.escape(repr(bad))}"):
            Architecture.from_config({**description, "input_batch_size": bad})


def test_seeds_and_synchronized_statistics_come_back_in_the_keras_file(tmp_path, capsys, mnist_dir):
    """What only the Keras side uses (initializer seeds, dropout seeds, BatchNorm's ``synchronized``, a recurrent
    layer's ``unroll``) is kept by
    .keras -> .ckpt -> .keras: every layer's Keras config comes back as it was. The torch side, which builds the
    network (its initializers included) before the weights are loaded, draws its own."""
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(8, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=7),
                 bias_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=11)),
        L.BatchNormalization(synchronized=True, gamma_initializer=keras.initializers.TruncatedNormal(seed=2)),
        L.SpatialDropout2D(0.1, seed=5), L.Flatten(), L.Dropout(0.3, seed=3),
        L.Dense(10, activation="softmax", kernel_initializer="he_normal")])
    rows = keras.Sequential([  # how Keras runs a recurrent layer: unrolled or not
        keras.Input((28, 28)), L.LSTM(8, unroll=True, return_sequences=True),
        L.GRU(8, unroll=True, dropout=0.1, seed=4), L.Dense(10, activation="softmax")])
    for name, each in (("image", model), ("rows", rows)):
        randomised(each).save(tmp_path / f"{name}.keras")
        convert(capsys, tmp_path / f"{name}.keras", tmp_path / f"{name}.ckpt", "--check_images", 100,
                "--data_dir", mnist_dir)
        out = convert(capsys, tmp_path / f"{name}.ckpt", tmp_path / f"{name}_back.keras", "--check_images", 100,
                      "--data_dir", mnist_dir)
        assert parse_check(out)["max_dp"] <= CHECK_TOLERANCE
        back = keras.saving.load_model(tmp_path / f"{name}_back.keras")
        for before, after in zip(each.layers, back.layers, strict=True):
            assert before.get_config() == after.get_config(), before.name
    back = keras.saving.load_model(tmp_path / "image_back.keras")
    assert back.layers[1].synchronized and back.layers[2].seed == 5
    back = keras.saving.load_model(tmp_path / "rows_back.keras")
    assert back.layers[0].unroll and back.layers[1].unroll


def test_the_network_is_named_as_keras_and_compiles_and_exports():
    """Submodules carry the Keras layer names; torch.export and torch.compile take the graph as it is."""
    inputs = keras.Input((12, 12, 3))
    a = L.Conv2D(4, 3, padding="same", name="stem")(inputs)
    b = L.Conv2D(4, 3, padding="same", activation="relu")(a)
    model = classifier(inputs, L.GlobalAveragePooling2D()(L.Add(name="shortcut")([a, b])), name="tiny_residual")
    architecture = architecture_of(model)
    network = KerasNetwork(architecture).eval()
    assert [name for name, _ in network.named_children()] == [node.name for node in architecture.nodes]
    assert network.stem.weight.shape == (4, 3, 3, 3)
    x = torch.rand(5, 3, 12, 12)
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(network, (x,), dynamic_shapes=({0: batch},))
    assert torch.allclose(exported.module()(x[:3]), network(x[:3]), atol=1e-6)
    compiled = torch.compile(network)
    assert torch.allclose(compiled(x), network(x), atol=1e-5)


@pytest.mark.parametrize("name", ["inception", "flat_mlp", "fcn_any_size"])
def test_fit_and_keras_reference_train_any_graph_from_its_keras_file(name, keras_files, run_main, tmp_path):
    """``fit --model.architecture graph.keras`` and ``keras_reference train`` with it: each framework trains the
    graph afresh from the file's architecture, in its own input layout, and records it."""
    source, _ = keras_files[name]
    both_frameworks_learn(run_main, tmp_path, source, subset=1500, minimum=0.3)  # chance is 0.1
    recorded = torch.load(next((tmp_path / "runs" / "lightning" / "version_0" / "checkpoints").glob("last.ckpt")),
                          weights_only=True)["hyper_parameters"]["architecture"]
    assert Architecture.from_config(recorded).same_network(read_keras_file(source).architecture)
    assert recorded["input_shape"] == list(read_keras_file(source).architecture.keras_input_shape)  # None kept
