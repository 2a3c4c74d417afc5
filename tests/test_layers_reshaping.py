"""Layers that move values against Keras: Reshape, Permute, ZeroPadding2D, Cropping2D, UpSampling2D, their 1D
kinds (ZeroPadding1D, Cropping1D, UpSampling1D), Identity, RepeatVector, and the preprocessing layer Rescaling.

Each kind in whole models (random weights and inputs, so a value in the wrong place changes
the logits), and each layer's own output against Keras' on the same values, value for value;
samplers for random graphs; refusals in one line naming the layer and the setting.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bridge_check import (SAMPLERS, L, architecture_of, assert_description_refused, assert_keras_layer_refused,
                          assert_matches_keras, assert_settings_round_trip, keras, sampler, sequential_case)

from keras_bridge.build import keras_layer
from lightning_mnist.models.layers import build
from lightning_mnist.models.layers.layout import to_keras_layout, to_torch_layout
from mnist_common.architecture import LAYER_TYPES

FAMILY = ("Reshape", "Permute", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Rescaling", "ZeroPadding1D",
          "Cropping1D", "UpSampling1D", "Identity", "RepeatVector")
# name -> (input shape, layers); every case ends in Flatten (where needed) and a softmax Dense.
CASES = {
    # Reshape: Keras' row-major order of its channels-last values, whatever the ranks
    "reshape_flat_mnist_to_image": ((784,), [L.Reshape((28, 28, 1)), L.Conv2D(3, 3, strides=2)]),
    "reshape_image_to_image": ((6, 4, 3), [L.Reshape((4, 9, 2)), L.Conv2D(3, (2, 3))]),
    "reshape_image_to_map_inferred": ((5, 6, 2), [L.Reshape((-1, 4)), L.Dense(3)]),
    "reshape_map_to_image_inferred": ((28, 28), [L.Reshape((14, -1, 2)), L.Conv2D(2, 3, padding="same")]),
    "reshape_image_to_flat": ((7, 5, 3), [L.Reshape((105,)), L.Dense(4)]),
    "reshape_map_to_map": ((6, 5), [L.Reshape((5, 6)), L.Dense(3)]),
    "reshape_image_to_image_channels_first_looking": ((4, 5, 6), [L.Reshape((6, 4, 5)), L.Conv2D(2, 3)]),
    # Permute: Keras' axes, counted from 1
    "permute_image_swap_rows_columns": ((7, 5, 3), [L.Permute((2, 1, 3)), L.Conv2D(2, 3)]),
    "permute_image_channels_first": ((7, 5, 3), [L.Permute((3, 1, 2)), L.Conv2D(2, 2)]),
    "permute_image_channels_to_rows": ((6, 4, 3), [L.Permute((3, 2, 1)), L.Dense(3)]),
    "permute_map": ((6, 5), [L.Permute((2, 1)), L.Dense(3)]),
    "permute_flat_identity": ((9,), [L.Permute((1,))]),
    # ZeroPadding2D: every form of the setting, uneven sides, before and after values that are not zero
    "zero_padding_default": ((5, 6, 2), [L.ZeroPadding2D(), L.Conv2D(2, 3, activation="tanh")]),
    "zero_padding_rows_columns": ((5, 6, 2), [L.ZeroPadding2D((2, 0)), L.Conv2D(3, 3)]),
    "zero_padding_each_side": ((7, 4, 3), [L.Conv2D(2, 2), L.ZeroPadding2D(((0, 3), (2, 1))), L.Conv2D(2, 3)]),
    "zero_padding_mixed_forms": ((4, 5, 1), [L.ZeroPadding2D((1, (0, 2))), L.MaxPooling2D(2)]),
    # Cropping2D: every form, one side only (Keras slices those differently), odd sizes
    "cropping_int": ((9, 8, 2), [L.Cropping2D(2), L.Conv2D(2, 3)]),
    "cropping_rows_columns": ((9, 7, 2), [L.Cropping2D((1, 3)), L.Conv2D(2, 1)]),
    "cropping_each_side": ((11, 9, 3), [L.Cropping2D(((3, 1), (0, 4)))]),
    "cropping_tops_only": ((8, 7, 2), [L.Cropping2D(((2, 0), (1, 0)))]),
    "cropping_bottoms_only": ((8, 7, 2), [L.Cropping2D(((0, 5), (0, 1)))]),
    "cropping_nothing": ((5, 4, 2), [L.Cropping2D()]),
    # UpSampling2D: repeats, and tf.image.resize's bilinear on odd sizes, edges included
    "upsampling_nearest_default": ((5, 4, 2), [L.UpSampling2D(), L.Conv2D(2, 3)]),
    "upsampling_nearest_per_axis": ((3, 5, 2), [L.UpSampling2D((3, 1)), L.Conv2D(2, (3, 1), strides=2)]),
    "upsampling_bilinear": ((5, 7, 2), [L.UpSampling2D(2, interpolation="bilinear"), L.Conv2D(2, 3)]),
    "upsampling_bilinear_per_axis": ((3, 4, 3), [L.UpSampling2D((3, 2), interpolation="bilinear")]),
    "upsampling_bilinear_one_pixel": ((1, 1, 2), [L.UpSampling2D(3, interpolation="bilinear")]),
    "upsampling_bilinear_rows_only": ((4, 3, 1), [L.Conv2D(3, 1), L.UpSampling2D((4, 1), interpolation="BILINEAR")]),
    # the 1D kinds on (steps, features) maps: every form of the settings, uneven ends, around Conv1D and pooling
    "zero_padding_1d_default": ((28, 28), [L.ZeroPadding1D(), L.Conv1D(3, 3, activation="tanh")]),
    "zero_padding_1d_uneven": ((9, 4), [L.Conv1D(3, 2), L.ZeroPadding1D((0, 3)), L.Conv1D(2, 3)]),
    "zero_padding_1d_before_only": ((6, 5), [L.ZeroPadding1D([2, 0]), L.MaxPooling1D(2)]),
    "cropping_1d_default": ((9, 3), [L.Cropping1D(), L.Conv1D(2, 3)]),
    "cropping_1d_uneven": ((11, 4), [L.Cropping1D((3, 0)), L.Dense(3)]),
    "cropping_1d_after_only": ((8, 2), [L.Conv1D(3, 2), L.Cropping1D((0, 5))]),
    "upsampling_1d_default": ((5, 3), [L.UpSampling1D(), L.Conv1D(2, 3)]),
    "upsampling_1d_three": ((4, 2), [L.Conv1D(3, 2, activation="relu"), L.UpSampling1D(3), L.AveragePooling1D(2)]),
    "upsampling_1d_one": ((6, 2), [L.UpSampling1D(1)]),
    # RepeatVector: a vector as steps, for the recurrent and 1D layers after it
    "repeat_vector_into_lstm": ((784,), [L.Dense(8, activation="relu"), L.RepeatVector(5), L.LSTM(6)]),
    "repeat_vector_image_code_to_gru_steps": ((12, 10, 1), [L.Conv2D(3, 3), L.GlobalAveragePooling2D(),
                                                            L.RepeatVector(4), L.GRU(5, return_sequences=True)]),
    "repeat_vector_conv1d": ((9,), [L.RepeatVector(3), L.Conv1D(4, 2, activation="tanh")]),
    "repeat_vector_once": ((7,), [L.RepeatVector(1), L.Dense(3)]),
    # Identity on every rank
    "identity_image": ((6, 5, 2), [L.Identity(), L.Conv2D(2, 3), L.Identity()]),
    "identity_map": ((6, 5), [L.Identity(), L.Dense(3)]),
    "identity_flat": ((784,), [L.Identity()]),
    # Rescaling: scalars, and lists broadcast over the last axis
    "rescaling_to_unit": ((28, 28, 1), [L.Rescaling(1 / 255), L.Conv2D(2, 3)]),
    "rescaling_scale_offset": ((6, 5, 2), [L.Rescaling(1 / 127.5, offset=-1), L.Conv2D(2, 3)]),
    "rescaling_per_channel": ((6, 5, 3), [L.Rescaling([0.5, -2.0, 3.0], offset=[0.1, 0.2, -0.3]), L.Conv2D(2, 3)]),
    "rescaling_one_entry_list": ((6, 5, 3), [L.Rescaling([2.5], offset=0.5), L.Conv2D(2, 3)]),
    "rescaling_map_per_column": ((4, 3), [L.Rescaling(2.0, offset=[1.0, -1.0, 0.5]), L.Dense(3)]),
    "rescaling_flat_int_scale": ((7,), [L.Rescaling(3, offset=-2), L.Dense(3)]),
    "rescaling_numpy_arrays": ((5, 4, 3), [L.Rescaling(np.array([0.3, -1.7, 2.0]), offset=np.float64(0.1))]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layers_that_move_values_match_keras(case):
    shape, layers = CASES[case]
    assert_matches_keras(sequential_case(shape, *layers, name=case), source=case)


def test_a_chain_of_every_kind_matches_keras():
    """A flat MNIST input rescaled, made an image, padded, upsampled, cropped and permuted, through convolutions."""
    model = sequential_case((784,), L.Rescaling(1 / 255, offset=-0.5), L.Reshape((28, -1, 1)),
                            L.Conv2D(3, 3, strides=2, activation="relu"), L.ZeroPadding2D(((1, 0), (2, 1))),
                            L.UpSampling2D((1, 2), interpolation="bilinear"), L.Cropping2D(((2, 1), (3, 4))),
                            L.Permute((2, 1, 3)), L.Conv2D(4, 3), L.UpSampling2D(2), L.MaxPooling2D(3),
                            L.Rescaling([1.0, -1.0, 2.0, 0.5]), L.Reshape((-1, 8)), L.Permute((2, 1)), L.Dense(5))
    assert_matches_keras(model, seed=3)


@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_each_layer_puts_every_value_where_keras_does(case):
    """Each of the case's layers of this family alone on random values: its output equals Keras' (exactly, but
    for bilinear upsampling's arithmetic)."""
    shape, layers = CASES[case]
    architecture = architecture_of(sequential_case(shape, *layers))
    rng = np.random.default_rng(0)
    for node in architecture.nodes:
        if node.layer.type not in FAMILY:
            continue
        [before] = architecture.input_shapes_of(node)
        x = rng.normal(size=(4, *before)).astype(np.float32)
        expected = np.asarray(keras_layer(node.layer)(x))
        got = to_keras_layout(build(node.layer, before)(to_torch_layout(torch.from_numpy(x)))).numpy()
        assert got.shape == expected.shape == (4, *architecture.shapes[node.name])
        if getattr(node.layer, "interpolation", None) == "bilinear":
            np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
        else:
            assert np.array_equal(got, expected), node.layer


@pytest.mark.parametrize("case", ["zero_padding_mixed_forms", "cropping_each_side", "reshape_image_to_map_inferred",
                                  "rescaling_per_channel", "upsampling_bilinear_per_axis",
                                  "permute_image_channels_first", "zero_padding_1d_uneven", "cropping_1d_uneven",
                                  "upsampling_1d_three", "identity_image", "repeat_vector_into_lstm"])
def test_settings_round_trip_as_keras_spells_them(case, tmp_path):
    assert_settings_round_trip(*CASES[case], tmp_path)


def test_a_flat_mnist_model_converts_both_ways_through_the_command_line(tmp_path, capsys, mnist_dir):
    """A (784,) model that rescales and reshapes to 28x28x1, as a .keras file: ``convert`` checks it on the MNIST
    test images, and .keras -> .ckpt -> .keras gives back every setting and every weight bit for bit."""
    from lightning_mnist.__main__ import main as command_line
    from mnist_common.keras_file import read_keras_file

    model = sequential_case((784,), L.Rescaling(2.0, offset=-1.0), L.Reshape((28, 28, 1)), L.ZeroPadding2D((1, 2)),
                            L.Conv2D(4, 3, strides=2, activation="relu"), L.UpSampling2D(2, interpolation="bilinear"),
                            L.Cropping2D(((1, 0), (2, 3))), L.Permute((2, 1, 3)), L.MaxPooling2D(4))
    model.save(tmp_path / "flat.keras")
    for source, target in (("flat.keras", "flat.ckpt"), ("flat.ckpt", "again.keras")):
        command_line(["convert", str(tmp_path / source), str(tmp_path / target), "--check_images", "1000"])
        [check] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("check on ")]
        assert check.startswith("check on 1000 MNIST test images") and "argmax equal 1000/1000" in check, check
    before, after = read_keras_file(tmp_path / "flat.keras"), read_keras_file(tmp_path / "again.keras")
    assert before.architecture.layers == after.architecture.layers
    assert before.weights.keys() == after.weights.keys()
    for layer in before.weights:
        for a, b in zip(before.weights[layer], after.weights[layer], strict=True):
            assert a.tobytes() == b.tobytes(), layer


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, layer, message", [
    ((8, 8, 2), L.ZeroPadding2D(1, data_format="channels_first"),
     "ZeroPadding2D) has data_format='channels_first'"),
    ((8, 8, 4), L.Cropping2D(1, data_format="channels_first"), "Cropping2D) has data_format="),
    ((8, 8, 2), L.UpSampling2D(data_format="channels_first"), "UpSampling2D) has data_format="),
    ((8, 8, 2), L.UpSampling2D(interpolation="bicubic"),
     "UpSampling2D): interpolation must be one of nearest, bilinear, got 'bicubic'"),
    ((8, 8, 2), L.UpSampling2D(interpolation="lanczos3"), "interpolation must be one of nearest, bilinear"),
    ((8, 8, 2), L.UpSampling2D(interpolation="area"), "interpolation must be one of nearest, bilinear"),
    ((784,), L.Reshape((7, 4, 7, 4)), "Reshape): target_shape [7, 4, 7, 4] has 4 axes; 1 to 3"),
    ((8, 8, 2), L.Rescaling([[1.0], [2.0]]), "Rescaling): scale must be a number or a flat list"),
    ((8, 8, 2), L.Rescaling(1.0, offset=[0.1, 0.2, 0.3]), "Rescaling): offset has 3 entries; an input "
                                                           "of 8x8x2 takes 1 or 2"),
    ((8, 8, 2), L.Rescaling(1.0, dtype="float16"), "Rescaling) computes in float16"),
    ((8, 4), L.ZeroPadding1D(1, data_format="channels_first"), "ZeroPadding1D) has data_format='channels_first'"),
])
def test_keras_layers_outside_what_is_mirrored_are_refused_in_one_line(shape, layer, message):
    assert_keras_layer_refused(shape, layer, message)


@pytest.mark.parametrize("input_shape, layer, message", [
    ([9, 8, 2], {"type": "Cropping2D", "cropping": 4}, "cropping [4, 4] leaves nothing of the input's width (8)"),
    ([9, 8, 2], {"type": "Cropping2D", "cropping": [[5, 4], [0, 0]]}, "leaves nothing of the input's height (9)"),
    ([9, 8, 2], {"type": "Cropping2D", "cropping": [1, -1]}, "cropping must be a non-negative integer, a pair"),
    ([9, 8, 2], {"type": "ZeroPadding2D", "padding": [[1, 2, 3], [0, 0]]}, "padding must be a non-negative integer"),
    ([9, 8], {"type": "ZeroPadding2D"}, "(zero_padding2d, ZeroPadding2D): needs an (H, W, C) image input, got 9x8"),
    ([72], {"type": "UpSampling2D"}, "(up_sampling2d, UpSampling2D): needs an (H, W, C) image input, got 72"),
    ([9, 8, 2], {"type": "UpSampling2D", "size": 0}, "size must be a positive integer or a pair of them"),
    ([9, 8, 2], {"type": "Reshape", "target_shape": [12, 13]}, "cannot reshape 9x8x2 (144 values) to 12x13 (156"),
    ([9, 8, 2], {"type": "Reshape", "target_shape": [5, 5]}, "cannot reshape 9x8x2 (144 values) to 5x5 (25 values)"),
    ([9, 8, 2], {"type": "Reshape", "target_shape": [-1, 5]}, "144 is not a multiple of 5"),
    ([9, 8, 2], {"type": "Reshape", "target_shape": [-1, -1]}, "target_shape must be positive sizes with at most"),
    ([9, 8, 2], {"type": "Reshape", "target_shape": [0, 144]}, "target_shape must be positive sizes"),
    ([9, 8, 2], {"type": "Reshape"}, "layer 0 (Reshape): needs target_shape"),
    ([9, 8, 2], {"type": "Permute", "dims": [0, 1, 2]}, "dims must be a permutation of 1..3 (Keras counts from 1)"),
    ([9, 8, 2], {"type": "Permute", "dims": [2, 1]}, "dims [2, 1] permute 2 axes, but the input 9x8x2 has 3"),
    ([9, 8, 2], {"type": "Rescaling", "scale": "1/255"}, "scale must be a number or a flat list of numbers"),
    ([9, 8, 2], {"type": "Rescaling", "scale": 1.0, "offset": None}, "offset must be a number or a flat list"),
    ([9, 8, 2], {"type": "Rescaling", "scale": []}, "scale must be a number or a flat list of numbers"),
    ([9, 8, 2], {"type": "Rescaling", "scale": [1.0, float("nan")]}, "scale must be a number or a flat list"),
    ([9, 8], {"type": "ZeroPadding1D", "padding": [1, 2, 3]}, "padding must be a non-negative integer or a pair"),
    ([9, 8], {"type": "ZeroPadding1D", "padding": -1}, "padding must be a non-negative integer or a pair"),
    ([9, 8, 2], {"type": "ZeroPadding1D"}, "needs an (H, W) map input, got 9x8x2; 1D padding works on (steps"),
    ([9, 8], {"type": "Cropping1D", "cropping": [5, 4]}, "cropping [5, 4] leaves nothing of the input's 9 steps"),
    ([72], {"type": "Cropping1D"}, "needs an (H, W) map input, got 72; 1D cropping works on (steps, features)"),
    ([9, 8], {"type": "Cropping1D", "cropping": [1.5, 0]}, "cropping must be a non-negative integer or a pair"),
    ([9, 8], {"type": "UpSampling1D", "size": 0}, "size must be a positive integer, got 0"),
    ([9, 8, 2], {"type": "UpSampling1D"}, "needs an (H, W) map input, got 9x8x2; 1D upsampling works on (steps"),
    ([9, 8], {"type": "RepeatVector", "n": 3}, "needs a flat vector input, got 9x8; RepeatVector repeats a"),
    ([9], {"type": "RepeatVector", "n": 0}, "n must be a positive integer, got 0"),
    ([9], {"type": "RepeatVector"}, "layer 0 (RepeatVector): needs n"),
])
def test_descriptions_outside_what_keras_computes_are_refused_in_one_line(input_shape, layer, message):
    assert_description_refused(input_shape, layer, message)


# --- samplers: random valid layers for random graphs -------------------------------------------------


# The most values a sampler's layer may give: a random graph's final Dense sums them all, and float32 sums of many
# more terms differ between the frameworks by more than the logits' tolerance.
LARGEST = 28 * 28 * 4


def _image(shape) -> bool:
    return len(shape) == 3


def _divisor(rng: np.random.Generator, n: int) -> int:
    return int(rng.choice([d for d in range(1, n + 1) if n % d == 0]))


@sampler("Reshape")
def random_reshape(rng, shape):
    """A random factorisation of the input's size into one to three axes, one of them sometimes left as -1."""
    size, target = math.prod(shape), []
    for _ in range(int(rng.integers(0, 3))):
        target.append(_divisor(rng, size // math.prod(target)))
    target.append(size // math.prod(target))
    if rng.random() < 0.4:
        target[int(rng.integers(len(target)))] = -1
    return L.Reshape(tuple(target))


@sampler("Permute")
def random_permute(rng, shape):
    return L.Permute(tuple(int(d) + 1 for d in rng.permutation(len(shape))))


@sampler("ZeroPadding2D")
def random_zero_padding(rng, shape):
    pads = rng.integers(0, 3, 4).tolist()
    if not _image(shape) or (shape[0] + 4) * (shape[1] + 4) * shape[2] > LARGEST:
        return None
    return L.ZeroPadding2D([[pads[0], pads[1]], [pads[2], pads[3]]] if rng.random() < 0.7 else pads[0])


@sampler("Cropping2D")
def random_cropping(rng, shape):
    if not _image(shape) or min(shape[:2]) < 3:
        return None
    crops = [[int(rng.integers(0, min(3, (size - 1) // 2 + 1))) for _ in range(2)] for size in shape[:2]]
    return L.Cropping2D(crops)


@sampler("UpSampling2D")
def random_upsampling(rng, shape):
    size = tuple(int(s) for s in rng.integers(1, 4, 2))
    if not _image(shape) or math.prod(shape) * math.prod(size) > LARGEST:
        return None
    return L.UpSampling2D(size, interpolation=str(rng.choice(["nearest", "bilinear"])))


@sampler("Rescaling")
def random_rescaling(rng, shape):
    """Factors of about one, either sign (chains of them must not blow the logits up), or one per channel."""
    count = 1 if rng.random() < 0.5 else shape[-1]
    scale = (rng.uniform(0.5, 1.5, count) * rng.choice([-1.0, 1.0], count)).tolist()
    offset = rng.normal(0.0, 0.5, count).tolist()
    return L.Rescaling(scale[0], offset=offset[0]) if rng.random() < 0.5 else L.Rescaling(scale, offset=offset)


@sampler("ZeroPadding1D")
def random_zero_padding_1d(rng, shape):
    if len(shape) != 2 or (shape[0] + 4) * shape[1] > LARGEST:
        return None
    pads = rng.integers(0, 3, 2).tolist()
    return L.ZeroPadding1D(pads if rng.random() < 0.7 else pads[0])


@sampler("Cropping1D")
def random_cropping_1d(rng, shape):
    if len(shape) != 2 or shape[0] < 3:
        return None
    return L.Cropping1D([int(rng.integers(0, min(3, (shape[0] - 1) // 2 + 1))) for _ in range(2)])


@sampler("UpSampling1D")
def random_upsampling_1d(rng, shape):
    size = int(rng.integers(1, 4))
    if len(shape) != 2 or math.prod(shape) * size > LARGEST:
        return None
    return L.UpSampling1D(size)


@sampler("RepeatVector")
def random_repeat_vector(rng, shape):
    n = int(rng.integers(1, 5))
    if len(shape) != 1 or shape[0] * n > LARGEST:
        return None
    return L.RepeatVector(n)


@sampler("Identity")
def random_identity(rng, shape):
    return L.Identity()


@pytest.mark.parametrize("shape", [(9, 8, 3), (28, 28, 1), (6, 5), (7,), (784,), (1, 1, 4)])
def test_samplers_give_layers_keras_builds_and_the_bridge_mirrors(shape):
    """Each sampler's layers, on the shapes it takes: Keras builds them, and the description gives Keras' shape."""
    rng = np.random.default_rng(sum(shape))
    for kind in FAMILY:
        for _ in range(5):
            layer = SAMPLERS[kind](rng, shape)
            if layer is not None:
                spec = LAYER_TYPES[kind].from_keras(layer.get_config())
                assert spec.output_shape(shape) == tuple(layer(keras.Input(shape)).shape[1:]), layer.get_config()
