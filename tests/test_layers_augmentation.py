"""Image augmentation layers against Keras: RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness.

At inference (and in exported files) they pass images through, in both frameworks. In training each
draws a transformation per image; with a factor whose range is one value the draw is that value, so
Keras' own layer, called with ``training=True``, and the torch module give the same warped images,
which is how the warps and value changes are checked pixel for pixel (RandomContrast's range is
[1 - factor[0], 1 + factor[1]]: one value when factor is (-a, a)). The draws themselves are checked for their range.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bridge_check import (L, assert_matches_keras, converts_and_comes_back, keras, randomised, sampler,
                          sequential_case)
from lightning_mnist.models.layers import converter_of
from mnist_common.architecture import LAYER_TYPES, ArchitectureError, architecture_from_keras_config
from mnist_common.architecture.layers import LayerError

WARPS = [(fill, interpolation) for fill in ("reflect", "constant", "nearest") for interpolation in ("bilinear", "nearest")]


def torch_module(layer: "keras.layers.Layer", shape: tuple[int, ...]) -> torch.nn.Module:
    spec = LAYER_TYPES[type(layer).__name__].from_keras(layer.get_config())
    return converter_of(spec).module(spec, shape)


def in_torch(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("fill_mode, interpolation", WARPS)
def test_each_warp_reads_what_keras_reads_in_training(fill_mode, interpolation):
    """Fixed draws (a range of one value), a non-square image of 3 channels: every pixel as Keras computes it,
    inside the image and where ``fill_mode`` reads outside it."""
    settings = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.3 if fill_mode == "constant" else 0.0)
    x = np.random.default_rng(0).random((4, 9, 7, 3), dtype=np.float32)
    for layer in (L.RandomRotation((0.07, 0.07), **settings), L.RandomRotation((-0.4, -0.4), **settings),
                  L.RandomZoom((0.23, 0.23), **settings), L.RandomZoom((-0.31, -0.31), (0.17, 0.17), **settings),
                  L.RandomTranslation((0.13, 0.13), (-0.21, -0.21), **settings)):
        expected = np.asarray(layer(x, training=True))
        module = torch_module(layer, x.shape[1:]).train()
        assert np.abs(in_torch(module, x) - expected).max() <= 1e-5, layer.get_config()
        assert np.array_equal(in_torch(module.eval(), x), x)  # the identity outside training
        assert np.array_equal(np.asarray(layer(x, training=False)), x)


@pytest.mark.parametrize("layer, scale", [
    (L.RandomContrast((-0.3, 0.3)), 255.0), (L.RandomContrast((-0.45, 0.45), value_range=(0, 1)), 1.0),
    (L.RandomContrast((-0.25, 0.25), value_range=[-1.0, 2.0]), 1.0), (L.RandomBrightness((0.13, 0.13)), 255.0),
    (L.RandomBrightness((-0.2, -0.2), value_range=(1, 0)), 1.0),
])
def test_contrast_and_brightness_change_values_as_keras_does_in_training(layer, scale):
    """Images partly outside ``value_range`` before and after: the change and the clipping, within float32's
    rounding of the values."""
    x = (np.random.default_rng(2).random((5, 6, 8, 3), dtype=np.float32) * 1.2 - 0.1) * scale
    expected = np.asarray(layer(x, training=True))
    module = torch_module(layer, x.shape[1:]).train()
    assert np.abs(expected - x).max() > 0.05 * scale  # the layer did change them
    assert np.abs(in_torch(module, x) - expected).max() <= 1e-6 * scale, layer.get_config()
    assert np.array_equal(in_torch(module.eval(), x), x)


def test_warps_of_bfloat16_maps_read_at_float32_coordinates():
    """Under bf16 autocast a map inside the network is bfloat16; the coordinates stay float32 (bfloat16 would move
    a pixel near the edge of a 28-pixel map by up to 0.06), so only the values' own rounding differs."""
    layer = L.RandomRotation((0.11, 0.11))
    x = torch.rand(8, 3, 28, 28)
    module = torch_module(layer, (28, 28, 3)).train()
    out = module(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert (out.float() - module(x)).abs().max() <= 0.01


def test_draws_cover_the_factor_ranges_as_keras_draws_them():
    """Angles, zooms and shifts fall in their ranges and fill them; a zoom without width_factor keeps the aspect."""
    count, size = 4000, (9, 7)

    def matrices(layer):
        return torch_module(layer, (*size, 1)).matrices(count, *size, torch.device("cpu")).numpy()

    m = matrices(L.RandomRotation((-0.1, 0.25)))
    angles = np.arctan2(m[:, 1, 0], m[:, 0, 0]) / (2 * math.pi)
    assert -0.1 <= angles.min() < -0.09 and 0.24 < angles.max() <= 0.25 + 1e-6
    m = matrices(L.RandomZoom(0.2))
    assert np.array_equal(m[:, 0, 0], m[:, 1, 1]) and 0.8 <= m[:, 0, 0].min() < 0.81 and 1.19 < m[:, 0, 0].max() <= 1.2
    m = matrices(L.RandomZoom((0.1, 0.3), (-0.2, -0.1)))
    assert 1.1 <= m[:, 1, 1].min() and m[:, 1, 1].max() <= 1.3 and 0.8 <= m[:, 0, 0].min() and m[:, 0, 0].max() <= 0.9
    assert abs(np.corrcoef(m[:, 0, 0], m[:, 1, 1])[0, 1]) < 0.1  # drawn apart
    m = matrices(L.RandomTranslation(0.1, (0.0, 0.2)))
    dy, dx = -m[:, 1, 2] / size[0], -m[:, 0, 2] / size[1]
    assert -0.1 <= dy.min() < -0.09 and 0.09 < dy.max() <= 0.1 and 0.0 <= dx.min() < 0.01 and 0.19 < dx.max() <= 0.2


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_about_half_the_images_on_one_draw_each(mode):
    x = np.random.default_rng(1).random((2000, 5, 4, 2), dtype=np.float32)
    flipped = {"horizontal": x[:, :, ::-1], "vertical": x[:, ::-1], "horizontal_and_vertical": x[:, ::-1, ::-1]}[mode]
    out = in_torch(torch_module(L.RandomFlip(mode), x.shape[1:]).train(), x)
    same = np.all(out == x, axis=(1, 2, 3))
    turned = np.all(out == flipped, axis=(1, 2, 3))
    assert np.all(same | turned)  # each image as it was or flipped whole: both axes on one draw
    assert 0.45 < turned.mean() < 0.55
    keras_out = np.asarray(L.RandomFlip(mode)(x, training=True))  # Keras does the same
    assert np.all(np.all(keras_out == x, axis=(1, 2, 3)) | np.all(keras_out == flipped, axis=(1, 2, 3)))


def augmenter() -> "keras.Sequential":
    """The notebook's ImageDataGenerator as Keras layers: small rotations, zooms and shifts."""
    return keras.Sequential([L.RandomRotation(0.03, fill_mode="constant"), L.RandomZoom(0.05),
                             L.RandomTranslation(0.05, 0.05, fill_mode="nearest")], name="augment")


def augmented_model() -> "keras.Model":
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, activation="relu")(augmenter()(inputs))
    x = L.MaxPooling2D()(L.BatchNormalization()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(L.Dropout(0.2)(x))))


def test_augmenting_models_match_keras_at_inference():
    assert_matches_keras(augmented_model())
    assert_matches_keras(sequential_case((12, 10, 3), L.RandomFlip("horizontal", seed=4), L.Conv2D(4, 3),
                                         L.RandomRotation((-0.2, 0.1), interpolation="nearest", seed=1)))


def test_an_augmenting_keras_file_converts_both_ways_and_trains(tmp_path, capsys, run_main, mnist_dir):
    """A data-augmentation block inside the model: converted (proven on MNIST), back to .keras with its settings
    and seeds, to .onnx and .tflite (where it is the identity), and trained by fit (where it augments)."""
    source = tmp_path / "augmented.keras"
    randomised(augmented_model(), seed=2).save(source)
    _, after = converts_and_comes_back(source, tmp_path, capsys, ("model.ckpt", "model.onnx", "model.tflite"), 300)
    rotation = next(layer for layer in after.architecture.layers if layer.type == "RandomRotation")
    assert rotation.factor == (-0.03, 0.03) and rotation.fill_mode == "constant"
    run_main("lightning_mnist", "fit", "--model.architecture", str(source), "--data.subset", "1500",
             "--trainer.max_epochs", "1", "--model.lr", "3e-3", "--trainer.enable_progress_bar", "false",
             "--trainer.limit_test_batches", "2")
    results = json.loads((tmp_path / "runs" / "lightning" / "version_0" / "results.json").read_text())
    assert results["test_acc"] > 0.3, results["test_acc"]  # chance is 0.1


@pytest.mark.parametrize("layer, shape, message", [
    (L.RandomRotation(0.1, fill_mode="wrap"), (8, 8, 1), "fill_mode must be one of reflect, constant, nearest, "
                                                         "got 'wrap'"),
    (L.RandomFlip(data_format="channels_first"), (1, 8, 8), "channels_first is not supported"),
    (L.RandomZoom(0.1), (28, 28), "needs an (H, W, C) image input, got 28x28; RandomZoom augments images"),
])
def test_augmentation_the_bridge_does_not_mirror_is_refused(layer, shape, message):
    model = keras.Sequential([keras.Input(shape), layer, L.Flatten(), L.Dense(10)])
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(keras.saving.serialize_keras_object(model), "model.keras")
    assert message in str(info.value), str(info.value)


def test_factors_are_checked_as_keras_checks_them():
    for kind, settings, message in (("RandomZoom", {"height_factor": -1.0}, "height_factor must be a number in (-1, 1]"),
                                    ("RandomTranslation", {"height_factor": 0.1, "width_factor": [0.1, 0.2, 0.3]},
                                     "width_factor must be a number or a pair of numbers"),
                                    ("RandomRotation", {"factor": 1.5}, "factor must be a number in [-1, 1]")):
        with pytest.raises(LayerError, match=message.replace("(", r"\(").replace("[", r"\[")):
            LAYER_TYPES[kind](**settings)
    assert LAYER_TYPES["RandomZoom"](height_factor=[0.3, -0.1]).height_factor == (-0.1, 0.3)  # sorted, as Keras does


def test_contrast_and_brightness_factors_are_normalised_as_keras_does():
    contrast, brightness = LAYER_TYPES["RandomContrast"], LAYER_TYPES["RandomBrightness"]
    assert contrast.from_keras(L.RandomContrast(0.2).get_config()).factor == (0.0, 0.2) == contrast(factor=0.2).factor
    assert brightness(factor=0.2, value_range=[255, 0]).value_range == (0.0, 255.0)
    with pytest.raises(LayerError, match="value_range must be"):
        contrast(factor=0.2, value_range=[1, 0])


def _factor(rng, low=-0.3, high=0.3):
    a, b = sorted(rng.uniform(low, high, 2).round(3))
    return float(a) if rng.random() < 0.3 else (float(a), float(b))


def _warp_settings(rng):
    fill = str(rng.choice(["reflect", "constant", "nearest"]))
    return dict(fill_mode=fill, interpolation=str(rng.choice(["bilinear", "nearest"])),
                fill_value=float(rng.uniform(-1, 1)) if fill == "constant" else 0.0,
                seed=None if rng.random() < 0.5 else int(rng.integers(100)))


sampler("RandomFlip")(lambda rng, shape: L.RandomFlip(str(rng.choice(["horizontal", "vertical",
                                                                       "horizontal_and_vertical"])))
                      if len(shape) == 3 else None)
sampler("RandomRotation")(lambda rng, shape: L.RandomRotation(_factor(rng), **_warp_settings(rng))
                          if len(shape) == 3 else None)
sampler("RandomZoom")(lambda rng, shape: L.RandomZoom(_factor(rng), None if rng.random() < 0.5 else _factor(rng),
                                                      **_warp_settings(rng)) if len(shape) == 3 else None)
sampler("RandomTranslation")(lambda rng, shape: L.RandomTranslation(_factor(rng), _factor(rng), **_warp_settings(rng))
                             if len(shape) == 3 else None)
sampler("RandomContrast")(lambda rng, shape: L.RandomContrast(_factor(rng, 0.0, 0.3), value_range=(0, 1))
                          if len(shape) == 3 else None)
sampler("RandomBrightness")(lambda rng, shape: L.RandomBrightness(_factor(rng), value_range=(-1, 1))
                            if len(shape) == 3 else None)
