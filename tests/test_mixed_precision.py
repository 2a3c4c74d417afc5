"""Keras' mixed precision (``keras.mixed_precision.set_global_policy("mixed_float16")`` or ``"mixed_bfloat16"``):
models saved under it convert both ways, keeping each layer's policy.

Such a layer keeps float32 weights and computes in half precision in Keras; the torch network
computes it in float32 (train it in half precision with ``--trainer.precision 16-mixed`` or
``bf16-mixed``). The two then differ by half precision's rounding, so the conversion
is proven against the Keras model's float32 twin (its own weights, every layer float32) under the
usual 1e-5, and the model in its own policy is reported beside it.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import yaml

from bridge_check import L, architecture_of, converts_and_comes_back, keras, network_of
from keras_bridge.build import build_model
from keras_reference.model import compile_model
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.interop.parity import proven_on_check_inputs
from lightning_mnist.interop.proof import ConversionCheckFailed
from mnist_common.architecture import Architecture, ArchitectureError, architecture_from_keras_config


def under_policy(policy: str, build):
    """``build()`` with Keras' global dtype policy set to ``policy`` (and set back), from seeded initial weights (the
    tests compare differences that depend on the weights: each run gets the same ones)."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(policy)
    try:
        return build()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def guide_model() -> "keras.Model":
    """The Keras mixed precision guide's MNIST model (784 inputs, two Dense relu, Dense 10, softmax kept in float32 as
    the guide advises), its 4096 units made 256."""
    inputs = keras.Input((784,), name="digits")
    x = L.Dense(256, activation="relu", name="dense_1")(inputs)
    x = L.Dense(256, activation="relu", name="dense_2")(x)
    x = L.Dense(10, name="dense_logits")(x)
    return keras.Model(inputs, L.Activation("softmax", dtype="float32", name="predictions")(x))


def cnn_model() -> "keras.Model":
    """A CNN with BatchNormalization (Keras computes its statistics in float32 under a mixed policy), its output
    layer left in the policy too."""
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
                             L.MaxPooling2D(), L.SeparableConv2D(8, 3, padding="same"), L.GlobalAveragePooling2D(),
                             L.Dense(10, activation="softmax")])


def rows_model() -> "keras.Model":
    return keras.Sequential([keras.Input((28, 28)), L.Bidirectional(L.LSTM(8)), L.Dense(10, activation="softmax")])


TRAIN_IMAGES = 1000  # float16 has no fast kernels on a CPU: the guide's model took 17 s an epoch of 2,000 images


def trained(model: "keras.Model", mnist, flat: bool) -> "keras.Model":
    """One epoch of Keras' own mixed-precision training on 1,000 images (a real model, not random weights)."""
    x = mnist.train_images[:TRAIN_IMAGES].astype(np.float32) / 255.0
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x.reshape(len(x), -1) if flat else x[..., None] if len(model.inputs[0].shape) == 4 else x,
              mnist.train_labels[:TRAIN_IMAGES], batch_size=64, epochs=1, verbose=0)
    return model


TRAINED: dict[tuple, "keras.Model"] = {}


def trained_under(policy: str, build, mnist) -> "keras.Model":
    """``build``'s model under ``policy``, trained once for the tests that read it (float16 on a CPU is slow)."""
    if (policy, build) not in TRAINED:
        TRAINED[policy, build] = trained(under_policy(policy, build), mnist, flat=build is guide_model)
    return TRAINED[policy, build]


def policies(model: "keras.Model") -> list[str]:
    return [layer.dtype_policy.name for layer in model.layers if not isinstance(layer, L.InputLayer)]


@pytest.mark.parametrize("policy, build, targets", [
    ("mixed_float16", guide_model, ("model.ckpt", "model.onnx", "model.tflite")),
    ("mixed_float16", cnn_model, ("model.ckpt",)),
    ("mixed_bfloat16", cnn_model, ("model.ckpt", "model.pt2")),
    ("mixed_bfloat16", rows_model, ("model.ckpt",)),
])
def test_a_mixed_precision_model_converts_both_ways_keeping_its_policies(policy, build, targets, mnist, tmp_path,
                                                                          capsys):
    model = trained_under(policy, build, mnist)
    assert policy in policies(model)
    model.save(tmp_path / "mixed.keras")
    before, after = converts_and_comes_back(tmp_path / "mixed.keras", tmp_path, capsys, targets)
    assert before.architecture.mixed_precision == after.architecture.mixed_precision == (policy,)
    assert policies(keras.saving.load_model(tmp_path / "again.keras")) == policies(model)
    # proven against the float32 twin at 1e-5; the model in its own policy reported beside it, further than that
    command_line(["convert", str(tmp_path / "mixed.keras"), str(tmp_path / "twice.ckpt"), "--check_images", "500"])
    line = capsys.readouterr().out
    assert "(limit 1e-05)" in line and f"Keras computed in float32 there, as torch computes; in its own {policy}" in line
    half = float(re.search(rf"in its own {policy} .*?\| = ([0-9.e+-]+)", line).group(1))
    assert half > 1e-5, line


def test_a_small_mistake_is_refused_though_half_precision_differs_more(mnist, tmp_path):
    """Against the float32 twin, a hidden bias off by 2e-4 fails the check, though the model in its own
    mixed_float16 differs from torch's float32 by more than that mistake does."""
    model = trained_under("mixed_float16", guide_model, mnist)
    _, network = network_of(model)
    report = proven_on_check_inputs(network, model, tmp_path / "x.ckpt", 500)
    assert report.ok and report.max_prob_diff <= 1e-5
    wrong = copy.deepcopy(network)
    with torch.no_grad():
        wrong.dense_2.bias.add_(2e-4)
    with pytest.raises(ConversionCheckFailed, match=r"> 1e-05 on 500 MNIST test images") as info:
        proven_on_check_inputs(wrong, model, tmp_path / "x.ckpt", 500)
    mistake = float(re.search(r"\| = ([0-9.e+-]+)", str(info.value)).group(1))
    assert mistake < report.half_precision[1].max_prob_diff, (mistake, report.describe())


def test_the_description_keeps_the_policy_and_keras_builds_it_again(tmp_path):
    model = under_policy("mixed_bfloat16", cnn_model)
    architecture = architecture_of(model)
    config = architecture.to_config()
    assert [layer.get("dtype") for layer in config["layers"]] == ["mixed_bfloat16"] * len(config["layers"])
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(config))
    again = Architecture.load(tmp_path / "net.yaml")
    assert again == architecture and policies(build_model(again)) == policies(model)
    float32 = again.in_float32()
    assert float32.mixed_precision == () and all("dtype" not in layer for layer in float32.to_config()["layers"])
    assert "Keras computes in mixed_bfloat16, torch in float32" in again.summary()


def test_keras_training_scales_the_loss_of_a_mixed_float16_model():
    """As Keras' compile does for a model built under mixed_float16 (float16 gradients underflow otherwise); not for
    bfloat16, whose range is float32's."""
    for policy, scaled in (("mixed_float16", True), ("mixed_bfloat16", False), ("float32", False)):
        architecture = architecture_of(under_policy(policy, cnn_model))
        model = compile_model(build_model(architecture))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == scaled, policy


@pytest.mark.parametrize("edit, message", [
    (lambda layer: layer["config"].update(dtype="float16"),
     "computes in float16; only float32 and mixed precision (mixed_float16, mixed_bfloat16) are supported"),
    (lambda layer: layer["config"].update(dtype={"module": "keras", "class_name": "QuantizedDTypePolicy",
                                                 "config": {"name": "int8_from_float32"}}),
     "computes under a 'QuantizedDTypePolicy' dtype policy"),
    (lambda layer: layer["config"].update(dtype={"module": "keras", "class_name": "DTypePolicy",
                                                 "config": {"name": "float64"}}), "computes in float64"),
])
def test_other_policies_are_refused_in_one_line(edit, message, tmp_path):
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(10, activation="softmax")])
    config = keras.saving.serialize_keras_object(model)
    edit(config["config"]["layers"][-1])
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(config, "model.keras")
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ArchitectureError, match="computes in float64"):
        Architecture.from_config({"input_shape": [4], "layers": [{"type": "Dense", "units": 2, "dtype": "float64"}]})
