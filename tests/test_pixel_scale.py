"""Models that take raw 0-255 pixels: a Keras model whose input goes first through ``Rescaling(1/255)`` (or
``Rescaling(1/127.5, offset=-1)``) was trained on 0-255 pixels, as keras.io builds such models, and every command
feeds it MNIST that way (:attr:`Architecture.pixel_scale`); the notebook's [0, 1] pixels otherwise.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bridge_check import (L, architecture_of, command_line, converts_and_comes_back, keras, model_config_text,
                          sequential_case)
from mnist_common.architecture import Architecture, ArchitectureError
from conftest import both_frameworks_learn


@pytest.mark.parametrize("first, scale", [
    (L.Rescaling(1 / 255), 255.0),
    (L.Rescaling(1.0 / 255.0, offset=0.5), 255.0),
    (L.Rescaling(1 / 127.5, offset=-1.0), 255.0),
    (L.Rescaling(2.0), 1.0),
    (L.Rescaling([1 / 255]), 1.0),  # a per-channel list: no statement about the pixels' range
    (L.Conv2D(2, 3), 1.0),
])
def test_a_model_that_rescales_by_1_over_255_first_takes_0_to_255_pixels(first, scale):
    assert architecture_of(sequential_case((28, 28, 1), first)).pixel_scale == scale


def test_rescaling_after_another_layer_says_nothing_about_the_pixels():
    assert architecture_of(sequential_case((28, 28, 1), L.Conv2D(2, 3), L.Rescaling(1 / 255))).pixel_scale == 1.0


@pytest.mark.parametrize("steps, scale", [
    (lambda: [L.Rescaling(1.0, offset=-127.5), L.Rescaling(1 / 127.5)], 255.0),  # Keras 2's (x - 127.5) / 127.5
    (lambda: [lambda x: (x - 127.5) / 127.5], 255.0),  # the same in Keras 3's operations
    (lambda: [lambda x: x * 1.0 / 255], 255.0),
    (lambda: [lambda x: 1.0 - x, L.Rescaling(1 / 255)], 255.0),  # an inverted image, then to [0, 1]
    (lambda: [L.Rescaling(1 / 255), L.Rescaling(10.0)], 255.0),  # the pixels to [0, 1] first: what tells
    (lambda: [L.Rescaling(2.0, offset=-1.0), L.Rescaling(0.5)], 1.0),  # [0, 1] pixels moved around
    (lambda: [lambda x: x + 1.0, L.Conv2D(2, 3), L.Rescaling(1 / 255)], 1.0),
], ids=["two Rescaling", "operations", "times one over 255", "one minus", "then times 10", "no 255", "after a conv"])
def test_the_pixel_scale_is_the_product_of_the_first_steps(steps, scale):
    """A scale in several steps: Keras 2 saved ``(inputs - 127.5) / 127.5`` as two ``Rescaling`` layers (a TFOpLambda
    each, rewritten), the first of factor 1: such a model was fed [0, 1] pixels (12.6 % accuracy, every check of the
    conversion passing)."""
    inputs = x = keras.Input((28, 28, 1))
    for step in steps():
        x = step(x)
    model = keras.Model(inputs, sequential_case(tuple(x.shape[1:]))(x))
    assert architecture_of(model).pixel_scale == scale


def _augmentation_block():
    return keras.Sequential([L.RandomRotation(0.05), L.RandomZoom(0.1)], name="augmentation")


@pytest.mark.parametrize("shape, before, after", [
    ((28, 28, 1), lambda: [L.RandomRotation(0.05), L.RandomTranslation(0.1, 0.1)], L.Rescaling(1 / 255)),
    ((28, 28, 1), lambda: [_augmentation_block()], L.Rescaling(1 / 255)),  # keras.io's block, a nested model
    ((784,), lambda: [L.Reshape((28, 28, 1))], L.Rescaling(1 / 255)),
    ((28, 28), lambda: [L.Reshape((28, 28, 1)), L.Dropout(0.1), L.Identity()],
     L.Rescaling(1 / 127.5, offset=-1.0)),
    ((28, 28), lambda: [lambda x: keras.ops.expand_dims(x, -1)], lambda x: x / 255.0),
    # what "any size in, resized, rescaled" models do (the helper's: fed [0, 1] pixels, 13.6 % where Keras had 80.8 %)
    ((None, None, 1), lambda: [L.Resizing(28, 28)], L.Rescaling(1 / 255)),
    ((28, 28, 1), lambda: [L.CenterCrop(24, 24)], L.Rescaling(1 / 255)),
    ((28, 28, 1), lambda: [L.Resizing(32, 32, interpolation="nearest"), L.UpSampling2D(interpolation="bilinear")],
     L.Rescaling(1 / 255)),
    ((28, 28, 1), lambda: [L.AveragePooling2D(2), L.MaxPooling2D(2, padding="same")], lambda x: x / 255.0),
    ((28, 28), lambda: [L.MaxPooling1D(), L.UpSampling1D()], L.Rescaling(1 / 255)),
], ids=["augmentations", "nested augmentation block", "flat input reshaped", "reshape dropout identity",
        "expand_dims then a division", "open size resized", "center crop", "resize and upsample", "poolings",
        "1D pooling and upsampling"])
def test_a_rescaling_after_layers_that_only_move_the_pixels_takes_0_to_255_pixels(shape, before, after):
    """keras.io's augmentation block before Rescaling(1/255), a flat 784 input reshaped first, ``ops.expand_dims``:
    the scale was read from the first layer only, so these models were fed [0, 1] pixels (12.6 % accuracy, every
    check passing). Resizes, crops and poolings keep the pixels' scale too (maxima and weighted means of them)."""
    inputs = x = keras.Input(shape)
    for layer in [*before(), after]:
        x = layer(x)
    model = sequential_case(tuple(x.shape[1:]))  # the classifier's head, on what the rescaling gives
    model = keras.Model(inputs, model(x))
    assert architecture_of(model).pixel_scale == 255.0


def _towers(first, second):
    """Two convolution towers on one input, each with its own first steps, concatenated into a classifier."""
    inputs = keras.Input((28, 28, 1))
    towers = []
    for steps in (first, second):
        x = inputs
        for step in steps():
            x = step(x)
        towers.append(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(x)))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Concatenate()(towers)))


@pytest.mark.parametrize("first, second, scale", [
    (lambda: [L.Rescaling(1 / 255)], lambda: [L.Rescaling(1 / 255)], 255.0),
    (lambda: [], lambda: [L.RandomRotation(0.05), L.Rescaling(1 / 127.5, offset=-1.0)], 255.0),
    (lambda: [L.Identity()], lambda: [L.Dropout(0.1), lambda x: (x - 127.5) / 127.5], 255.0),
    (lambda: [], lambda: [L.Rescaling(2.0)], 1.0),
    (lambda: [L.Conv2D(1, 1), L.Rescaling(1 / 255)], lambda: [], 1.0),
], ids=["each rescales", "one rescales", "steps past layers that move pixels", "no 255", "after a conv"])
def test_each_branch_of_the_input_is_read_for_its_scale(first, second, scale):
    """An input that two towers take, each rescaling its own copy of the raw pixels: the scale was read only where
    one layer took the input, so such models were fed [0, 1] pixels, silently."""
    assert architecture_of(_towers(first, second)).pixel_scale == scale


@pytest.fixture(scope="module")
def raw_pixel_model(tmp_path_factory, mnist):
    """A keras.io-style model with Rescaling(1/255) first, trained by Keras on 0-255 pixels; its Keras accuracy on
    the first 1,000 test images as they are (0-255) and scaled to [0, 1] (what it must not be fed)."""
    folder = tmp_path_factory.mktemp("raw")
    keras.utils.set_random_seed(0)
    model = sequential_case((28, 28, 1), L.Rescaling(1.0 / 255), L.Conv2D(8, 3, activation="relu"),
                            L.MaxPooling2D(), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D())
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = mnist.train_images[:4000, :, :, None].astype(np.float32)
    model.fit(x, mnist.train_labels[:4000], batch_size=64, epochs=1, verbose=0)
    x_test = mnist.test_images[:1000, :, :, None].astype(np.float32)
    raw = model.evaluate(x_test, mnist.test_labels[:1000], verbose=0, return_dict=True)["accuracy"]
    scaled = model.evaluate(x_test / 255, mnist.test_labels[:1000], verbose=0, return_dict=True)["accuracy"]
    model.save(folder / "raw.keras")
    return folder / "raw.keras", raw, scaled


def test_convert_predict_and_test_feed_it_0_to_255_pixels(raw_pixel_model, tmp_path, capsys, seed_png):
    """The conversion check scores it as Keras does on raw pixels; predict gives one answer on every backend and
    from the .onnx file (which records the scale); test scores what Keras' evaluate scores."""
    source, raw, scaled = raw_pixel_model
    assert raw > 0.8 and scaled < 0.5  # the model is only right on the pixels it was trained on
    command_line(["convert", str(source), str(tmp_path / "raw.onnx"), "--check_images", "1000"])
    [check] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("check on ")]
    assert f"accuracy source {raw:.2%}" in check, check  # the .keras model as Keras runs it, on raw pixels
    answers = []
    for weights, backend in ((source, "torch"), (source, "keras"), (source, "onnx"), (tmp_path / "raw.onnx", "onnx")):
        command_line(["predict", str(seed_png), "--weights", str(weights), "--backend", backend, "--json"])
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert len({a["digit"] for a in answers}) == 1
    assert max(np.abs(np.array(a["probabilities"]) - answers[0]["probabilities"]).max() for a in answers) <= 1e-5
    assert max(answers[0]["probabilities"]) > 0.3  # a confident answer, not the flat one of [0, 1] pixels


def test_lightning_test_scores_it_as_keras_evaluates_it(raw_pixel_model, run_module, tmp_path):
    """A real process: in one that imported TensorFlow before the parser was built (a test worker), jsonargparse
    reads the ``limit_test_batches 1`` below as 1.0, every batch: typing's cache hands back an earlier
    ``Optional[Union[float, int]]`` for Lightning's ``Optional[Union[int, float]]``, and the float is tried first."""
    source, raw, _ = raw_pixel_model
    run_module("lightning_mnist", "test", "--ckpt_path", source, "--trainer.limit_test_batches", "1",
               "--data.eval_batch_size", "1000")
    [results] = (tmp_path / "runs" / "lightning").glob("test_*/results.json")
    assert json.loads(results.read_text())["test_acc"] == pytest.approx(raw, abs=1e-3)


def test_both_frameworks_train_it_on_0_to_255_pixels(raw_pixel_model, run_main, tmp_path):
    """Trained afresh from its architecture, in each framework, on the pixels it rescales: both learn."""
    source, _, _ = raw_pixel_model
    both_frameworks_learn(run_main, tmp_path, source, subset=2000, minimum=0.6)


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory, mnist):
    """A model fed raw bytes, ``keras.Input(dtype="uint8")`` then ``Rescaling(1/255)`` (the deployment form of a
    raw-pixel model), trained by Keras on MNIST's bytes; its Keras accuracy on the first 1,000 test images."""
    folder = tmp_path_factory.mktemp("bytes")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), dtype="uint8", name="bytes")
    x = L.Rescaling(1 / 255)(L.Permute((2, 1, 3))(inputs))  # Keras' transpose keeps bytes
    x = L.MaxPooling2D()(L.Conv2D(8, 3, activation="relu")(x))
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)), name="fed_bytes")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist.train_images[:4000, :, :, None], mnist.train_labels[:4000], batch_size=64, epochs=1, verbose=0)
    accuracy = model.evaluate(mnist.test_images[:1000, :, :, None], mnist.test_labels[:1000], verbose=0,
                              return_dict=True)["accuracy"]
    model.save(folder / "bytes.keras")
    return folder / "bytes.keras", accuracy


def test_a_model_fed_bytes_converts_to_every_format_and_back_and_predicts_alike(byte_model, tmp_path, capsys,
                                                                                seed_png):
    """Fed 0-255 pixels by every command (as floats: the torch network truncates them to bytes as Keras' cast does,
    the deploy files take floats); the Keras file written back takes uint8 again, the same config text."""
    source, accuracy = byte_model
    assert architecture_of(keras.saving.load_model(source)).input_dtype == "uint8"
    converts_and_comes_back(source, tmp_path, capsys, ("model.ckpt", "model.onnx", "model.tflite"), 1000)
    command_line(["convert", str(source), str(tmp_path / "model.pt2"), "--check_images", "100"])
    assert "input 'input' float32 (batch, 28, 28, 1) 0-255 whole bytes as float32, where the Keras model takes uint8" \
        in capsys.readouterr().out
    assert model_config_text(tmp_path / "again.keras") == model_config_text(source)
    command_line(["convert", str(source), str(tmp_path / "twice.ckpt"), "--check_images", "1000"])
    assert f"accuracy Lightning {accuracy:.2%}" in capsys.readouterr().out  # scored on bytes, as Keras scored it
    answers = []
    for weights, backend in ((source, "torch"), (source, "keras"), (tmp_path / "model.ckpt", "keras"),
                             (tmp_path / "model.onnx", "onnx")):
        command_line(["predict", str(seed_png), "--weights", str(weights), "--backend", backend, "--json"])
        answers.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert len({a["digit"] for a in answers}) == 1 and max(answers[0]["probabilities"]) > 0.3
    assert max(np.abs(np.array(a["probabilities"]) - answers[0]["probabilities"]).max() for a in answers) <= 1e-5


def test_a_dark_on_light_picture_reaches_a_model_fed_bytes_as_its_own_bytes(byte_model, mnist, tmp_path, capsys):
    """An MNIST digit saved black on white (28x28, as people draw): the notebook's preprocessing inverts it back to
    the digit's own bytes, and every backend answers as Keras' predict on those bytes (inverted in [0, 1], 1 - 0.2
    times 255 was 203.99998, which a byte input truncated to 203: 3e-5 off, zoo round 11)."""
    from PIL import Image

    source, _ = byte_model
    digit = mnist.test_images[0]
    Image.fromarray(255 - digit).save(tmp_path / "drawn.png")
    expected = keras.saving.load_model(source).predict(digit[None, :, :, None], verbose=0)[0]
    for backend in ("keras", "torch", "onnx"):
        command_line(["predict", str(tmp_path / "drawn.png"), "--weights", str(source), "--backend", backend,
                      "--preprocess", "notebook", "--json"])
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert np.abs(np.array(answer["probabilities"]) - expected).max() <= 1e-6, backend


def test_both_frameworks_train_a_model_fed_bytes(byte_model, run_main, tmp_path):
    both_frameworks_learn(run_main, tmp_path, byte_model[0], subset=2000, minimum=0.6)


def test_a_uint8_input_is_a_description_setting_and_always_takes_0_to_255_pixels(tmp_path):
    inputs = keras.Input((28, 28, 1), dtype="uint8")
    cast = architecture_of(keras.Model(inputs, sequential_case((28, 28, 1))(keras.ops.cast(inputs, "float32"))))
    assert cast.input_dtype == "uint8" and cast.pixel_scale == 255.0  # bytes, though nothing divides by 255
    assert re.search(r"\(Input\)  28x28x1 uint8\n", cast.summary())
    import torch

    from lightning_mnist.models import KerasNetwork

    network = KerasNetwork(cast).eval()  # the nearest byte within 0-255, in every file exported from it too
    given, taken = torch.tensor([300.0, -3.0, 100.4, 99.6]), torch.tensor([255.0, 0.0, 100.0, 100.0])
    assert torch.equal(*(network(v[:, None, None, None].expand(4, 1, 28, 28)) for v in (given, taken)))
    config = cast.to_config()
    assert config["input_dtype"] == "uint8" and Architecture.from_config(config) == cast
    assert "input_dtype" not in architecture_of(sequential_case((28, 28, 1))).to_config()  # float32 unsaid
    for wrong in ("int8", ["uint8"], None):
        with pytest.raises(ArchitectureError, match=r"input_dtype must be float32 or uint8, got "):
            Architecture.from_config({**config, "input_dtype": wrong})
    # Keras computes no convolution on bytes (a traceback in keras_reference train, where fit trained): refused, also
    # past a max pooling, whose outputs stay bytes; an augmentation or a resize computes in float32 (measured in Keras)
    inputs = keras.Input((28, 28, 1), dtype="uint8")
    for before, index in (([], 0), ([L.MaxPooling2D(2), L.Reshape((14, 14, 1))], 2)):
        x = inputs
        for layer in before:
            x = layer(x)
        x = L.Conv2D(2, 3, name="edges")(x)
        model = keras.Model(inputs, sequential_case(tuple(x.shape[1:]))(x))
        with pytest.raises(ArchitectureError, match=rf"^m.keras: layer {index} \(edges, Conv2D\): takes the model's "
                                                    r"uint8 input \(bytes\); bytes go first through a Rescaling, "
                                                    r"ops.cast to float32, a Normalization, a resize or an "
                                                    r"augmentation, past reshapes, crops, paddings and max poolings"):
            architecture_of(model, "m.keras")
    for first in (L.RandomFlip(), L.Resizing(20, 20), L.CenterCrop(20, 20), lambda t: t / 255, lambda t: t - 127.5):
        x = L.Conv2D(2, 3)(first(L.Permute((2, 1, 3))(inputs)))
        assert architecture_of(keras.Model(inputs, sequential_case(tuple(x.shape[1:]))(x))).input_dtype == "uint8"
    x = L.Conv2D(2, 3)(inputs * 2)  # bytes still (wrapping past 255 in Keras): refused
    with pytest.raises(ArchitectureError, match=r"layer 0 \(multiply\w*, ops.multiply\): takes the model's uint8 "
                                                r"input"):
        architecture_of(keras.Model(inputs, sequential_case(tuple(x.shape[1:]))(x)))
    # a sparse input (Keras keeps it so; the bridge wrote it back dense, hostile round 11)
    sparse = keras.Input((784,), sparse=True)
    with pytest.raises(ArchitectureError, match=r"^m.keras: the model's input is sparse "
                                                r"\(keras.Input\(sparse=True\)\); only dense inputs are supported$"):
        architecture_of(keras.Model(sparse, L.Dense(10, activation="softmax")(sparse)), "m.keras")
    # a nested model's own uint8 input: the bridge's one graph has one input, the outermost model's
    inner = keras.Input((28, 28, 1), dtype="uint8")
    nested = keras.Model(inner, L.Rescaling(1 / 255)(inner), name="inner")
    outer = keras.Input((28, 28, 1))
    with pytest.raises(ArchitectureError, match=r"^m.keras, nested model inner: its input is uint8; bytes are read by "
                                                r"the outermost model's input only; give the nested model a float32 "
                                                r"input$"):
        architecture_of(keras.Model(outer, sequential_case((28, 28, 1))(nested(outer))), "m.keras")
    towers = [L.Normalization(mean=30.0, variance=900.0)(inputs), L.Rescaling(1 / 255)(inputs)]
    assert architecture_of(keras.Model(inputs, sequential_case((28, 28, 2))(L.Concatenate()(towers)))).pixel_scale \
        == 255.0
