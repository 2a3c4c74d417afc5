"""Convolutions against Keras: Conv2D (dilated, grouped), DepthwiseConv2D, SeparableConv2D, Conv2DTranspose.

Every setting that changes the math, on odd sizes, with random weights and inputs; the weights
each description lists are the Keras layer's own; samplers for random graphs; refusals in one line.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from bridge_check import (SAMPLERS, L, architecture_of, assert_matches_keras, keras, randomised, sampler,
                          sequential_case)

from keras_bridge.build import build_model
from lightning_mnist.interop.keras_models import keras_model_from_torch, torch_weights_of
from lightning_mnist.models.layers import converter_of
from lightning_mnist.models.network import KerasNetwork
from mnist_common.architecture import Architecture, ArchitectureError, keras_snake_case
from mnist_common.architecture.keras_config import architecture_from_keras_config
from mnist_common.architecture.layers import LayerError
from mnist_common.architecture.layers.convolution import Conv2DTranspose as TransposeDescription

CASES = {
    # Conv2D: dilation (valid, same, per axis, on odd sizes) and groups
    "conv_dilated_valid": ((15, 13, 2), L.Conv2D(3, 3, dilation_rate=2)),
    "conv_dilated_same_per_axis": ((11, 14, 2), L.Conv2D(4, (3, 2), padding="same", dilation_rate=(2, 3))),
    "conv_dilated_even_kernel_same": ((9, 9, 1), L.Conv2D(2, 4, padding="same", dilation_rate=3, activation="tanh")),
    "conv_groups": ((10, 9, 4), L.Conv2D(6, 3, groups=2, strides=2)),
    "conv_groups_same_dilated": ((12, 11, 6), L.Conv2D(9, (2, 3), groups=3, padding="same", dilation_rate=2,
                                                       use_bias=False)),
    "conv_groups_per_channel": ((9, 9, 4), L.Conv2D(8, 3, groups=4, strides=(1, 2), padding="same")),
    # DepthwiseConv2D
    "depthwise": ((11, 10, 3), L.DepthwiseConv2D(3)),
    "depthwise_multiplier_same_strided": ((11, 10, 3), L.DepthwiseConv2D((4, 3), strides=2, padding="same",
                                                                         depth_multiplier=3, activation="relu")),
    "depthwise_dilated_same": ((13, 12, 2), L.DepthwiseConv2D(3, padding="same", dilation_rate=(2, 3),
                                                              depth_multiplier=2, use_bias=False)),
    "depthwise_strided_dilated_valid": ((15, 14, 2), L.DepthwiseConv2D(3, strides=2, dilation_rate=2,
                                                                       depth_multiplier=2)),
    "depthwise_strided_dilated_same": ((14, 13, 3), L.DepthwiseConv2D(2, strides=(3, 2), padding="same",
                                                                      dilation_rate=(2, 3))),
    # SeparableConv2D
    "separable": ((10, 11, 3), L.SeparableConv2D(5, 3)),
    "separable_multiplier_same_strided": ((11, 9, 2), L.SeparableConv2D(4, (2, 3), strides=2, padding="same",
                                                                        depth_multiplier=3, activation="gelu")),
    "separable_dilated_no_bias": ((13, 13, 2), L.SeparableConv2D(3, 3, dilation_rate=2, depth_multiplier=2,
                                                                 use_bias=False)),
    "separable_strided_dilated_same": ((15, 12, 3), L.SeparableConv2D(4, 3, strides=2, padding="same",
                                                                      dilation_rate=2)),
    # Conv2DTranspose: Keras' output sizes, "same" crops, output_padding zeros (then the bias), dilation
    "transpose_valid": ((7, 6, 2), L.Conv2DTranspose(3, 3)),
    "transpose_valid_strided": ((6, 5, 2), L.Conv2DTranspose(3, (3, 2), strides=2, activation="tanh")),
    "transpose_valid_stride_over_kernel": ((5, 6, 2), L.Conv2DTranspose(2, 2, strides=3)),
    "transpose_valid_output_padding": ((5, 5, 3), L.Conv2DTranspose(2, 3, strides=(2, 3), output_padding=(1, 2))),
    "transpose_same_odd_kernel": ((6, 7, 2), L.Conv2DTranspose(3, 3, strides=2, padding="same")),
    "transpose_same_even_kernel": ((5, 6, 2), L.Conv2DTranspose(3, 4, strides=2, padding="same")),
    "transpose_same_stride_over_kernel": ((4, 5, 2), L.Conv2DTranspose(2, 2, strides=3, padding="same")),
    "transpose_same_output_padding": ((5, 6, 2), L.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                                   output_padding=(0, 1))),
    "transpose_same_even_output_padding": ((5, 4, 2), L.Conv2DTranspose(2, (4, 2), strides=(2, 3), padding="same",
                                                                        output_padding=(1, 2), use_bias=True)),
    "transpose_dilated_valid": ((6, 7, 2), L.Conv2DTranspose(2, 3, dilation_rate=(2, 3), use_bias=False)),
    "transpose_dilated_same": ((6, 5, 2), L.Conv2DTranspose(3, 3, padding="same", dilation_rate=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_convolutions_match_keras(case):
    shape, layer = CASES[case]
    assert_matches_keras(sequential_case(shape, layer, name=case), source=case)


def test_a_chain_of_every_kind_matches_keras():
    """Kinds feeding each other (a transposed convolution's zeros and bias included) through a Flatten."""
    model = sequential_case((12, 11, 1), L.Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu"),
                            L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="elu"),
                            L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1),
                            L.Conv2D(6, 3, groups=2), L.SeparableConv2D(5, 2, padding="same", depth_multiplier=2))
    assert_matches_keras(model, seed=3)


@pytest.mark.parametrize("case", ["conv_groups", "depthwise_multiplier_same_strided",
                                  "separable_multiplier_same_strided", "transpose_same_even_output_padding"])
def test_weights_are_keras_own_and_round_trip_bit_for_bit(case):
    """Names, shapes and order as the Keras layer holds them; Keras -> torch -> Keras changes no bit."""
    shape, layer = CASES[case]
    model = sequential_case(shape, layer)
    spec = architecture_of(model).nodes[0].layer
    listed = spec.weights(shape)
    assert [(name, tuple(s)) for name, s in listed] == [(w.path.split("/")[-1], tuple(w.shape)) for w in layer.weights]
    rng = np.random.default_rng(0)
    for name, keras_shape in listed:
        value = rng.normal(size=keras_shape).astype(np.float32)
        mapping = converter_of(spec).weights[name]
        assert np.array_equal(mapping.to_keras(mapping.to_torch(value), keras_shape), value)


def test_keras_to_torch_to_keras_is_bit_identical():
    """A model of every kind, through the torch state dict and back: the same bits in every weight."""
    model = randomised(sequential_case((9, 9, 4), L.Conv2D(6, 3, groups=2, dilation_rate=2, padding="same"),
                                       L.DepthwiseConv2D(2, depth_multiplier=3),
                                       L.SeparableConv2D(4, 3, depth_multiplier=2, padding="same"),
                                       L.Conv2DTranspose(3, 3, strides=2, output_padding=1)))
    architecture = architecture_of(model)
    back = keras_model_from_torch(architecture, torch_weights_of(model, architecture))
    for node in architecture.nodes:
        before, after = model.get_layer(node.name).get_weights(), back.get_layer(node.name).get_weights()
        assert len(before) == len(after) and all(a.dtype == b.dtype and np.array_equal(a, b)
                                                 for a, b in zip(before, after)), node.name


def test_descriptions_round_trip_and_build_the_same_keras_layers():
    """YAML-ready config -> description -> Keras (keras_bridge) gives each layer's own Keras config back,
    with Keras' auto names (``depthwise_conv2d``, ``separable_conv2d``, ``conv2d_transpose``)."""
    for case, (shape, layer) in CASES.items():
        architecture = architecture_of(sequential_case(shape, layer, name=case))
        assert Architecture.from_config(architecture.to_config()) == architecture, case
        rebuilt = build_model(architecture).get_layer(architecture.nodes[0].name).get_config()
        assert {k: v for k, v in rebuilt.items() if k != "name"} == \
            {k: v for k, v in layer.get_config().items() if k != "name"}, case
    for layer in (L.DepthwiseConv2D(3), L.SeparableConv2D(2, 3), L.Conv2DTranspose(2, 3)):
        assert re.sub(r"_\d+$", "", layer.name) == keras_snake_case(type(layer).__name__)


def test_each_kernel_is_drawn_with_its_own_initializer_in_keras_layout():
    """The torch network made from a description starts from the layer's Keras initializers, mapped."""
    def constant(value):
        return {"class_name": "Constant", "config": {"value": value}}

    architecture = Architecture.from_config({"input_shape": [8, 8, 2], "layers": [
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "depthwise_initializer": constant(0.5),
         "bias_initializer": constant(0.25)},
        {"type": "SeparableConv2D", "filters": 3, "kernel_size": 2, "depthwise_initializer": constant(2.0),
         "pointwise_initializer": constant(-1.0), "bias_initializer": constant(3.0)},
        {"type": "Conv2DTranspose", "filters": 2, "kernel_size": 2, "kernel_initializer": constant(4.0)},
        {"type": "Flatten"}, {"type": "Dense", "units": 10}]})
    state = KerasNetwork(architecture).state_dict()
    expected = {"depthwise_conv2d.depthwise": 0.5, "depthwise_conv2d.bias": 0.25, "separable_conv2d.depthwise": 2.0,
                "separable_conv2d.pointwise": -1.0, "separable_conv2d.bias": 3.0, "conv2d_transpose.weight": 4.0,
                "conv2d_transpose.bias": 0.0}
    for key, value in expected.items():
        assert torch.all(state[key] == value), key


# --- samplers: random valid layers for random graphs -------------------------------------------------


def _window(rng: np.random.Generator, shape, strided_dilation: bool):
    """kernel_size, strides, padding, dilation_rate that fit an (H, W, C) input, or None."""
    if len(shape) != 3:
        return None
    kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, 2)) if rng.random() < 0.4 else (1, 1)
    strides = tuple(int(s) for s in rng.integers(1, 4, 2)) if rng.random() < 0.5 else (1, 1)
    if not strided_dilation and max(dilation) > 1:
        strides = (1, 1)
    padding = str(rng.choice(["valid", "same"]))
    if padding == "valid" and any((k - 1) * d + 1 > size for k, d, size in zip(kernel, dilation, shape)):
        padding = "same"
    return {"kernel_size": kernel, "strides": strides, "padding": padding, "dilation_rate": dilation,
            "activation": str(rng.choice(["linear", "relu", "tanh"])), "use_bias": bool(rng.random() < 0.7)}


@sampler("Conv2D")
def random_conv2d(rng, shape):
    window = _window(rng, shape, strided_dilation=False)
    if window is None:
        return None
    divisors = [g for g in range(1, shape[-1] + 1) if shape[-1] % g == 0]
    groups = int(rng.choice(divisors))
    return L.Conv2D(groups * int(rng.integers(1, 4)), groups=groups, **window)


@sampler("DepthwiseConv2D")
def random_depthwise_conv2d(rng, shape):
    window = _window(rng, shape, strided_dilation=True)
    return None if window is None else L.DepthwiseConv2D(depth_multiplier=int(rng.integers(1, 4)), **window)


@sampler("SeparableConv2D")
def random_separable_conv2d(rng, shape):
    window = _window(rng, shape, strided_dilation=True)
    if window is None:
        return None
    return L.SeparableConv2D(int(rng.integers(1, 6)), depth_multiplier=int(rng.integers(1, 3)), **window)


@sampler("Conv2DTranspose")
def random_conv2d_transpose(rng, shape):
    window = _window(rng, shape, strided_dilation=False)
    if window is None or max(shape[:2]) > 16:  # keep the output small
        return None
    output_padding = tuple(int(rng.integers(0, s)) for s in window["strides"]) if rng.random() < 0.5 else None
    try:
        TransposeDescription(filters=1, output_padding=output_padding, **window).output_shape(shape)
    except LayerError:  # a "same" output size TensorFlow cannot compute (see the refusals below)
        output_padding = None
    return L.Conv2DTranspose(int(rng.integers(1, 5)), output_padding=output_padding, **window)


@pytest.mark.parametrize("kind", ["Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"])
def test_random_layers_of_each_sampler_match_keras(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    for trial in range(5):
        shape = (int(rng.integers(5, 13)), int(rng.integers(5, 13)), int(rng.integers(1, 5)))
        layer = SAMPLERS[kind](rng, shape)
        assert layer is not None
        assert_matches_keras(sequential_case(shape, layer, name=f"{kind}_{trial}"), seed=trial,
                             source=f"{kind} {trial} on {shape}: {layer.get_config()}")
    assert SAMPLERS[kind](rng, (10,)) is None


# --- refusals ------------------------------------------------------------------------------------------


def _keras_config(cls: str, config: dict, input_shape=(12, 12, 4)) -> dict:
    """A Sequential's config.json with one layer of ``cls`` (name l0) then Flatten and a softmax Dense."""
    entries = [{"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": [None, *input_shape], "dtype": "float32", "name": "input_layer"}}]
    entries += [{"module": "keras.layers", "class_name": c, "config": {"name": f"l{i}", **settings},
                 "registered_name": None}
                for i, (c, settings) in enumerate([(cls, config), ("Flatten", {}),
                                                   ("Dense", {"units": 10, "activation": "softmax"})])]
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": entries}}


@pytest.mark.parametrize("cls, config, message", [
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     "strides=[2, 2] with dilation_rate=[2, 2]: Keras refuses strides > 1 together with dilation_rate > 1"),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3}, "groups=3 does not divide the input's 4 channels"),
    ("Conv2D", {"filters": 5, "kernel_size": 3, "groups": 2}, "filters=5 is not a multiple of groups=2"),
    ("Conv2D", {"filters": 4, "kernel_size": 5, "dilation_rate": 3},
     "dilated kernel height 13 is larger than its input (12) with padding='valid'"),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "dilation_rate": 0}, "dilation_rate must be a positive integer"),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "data_format": "channels_first"},
     "data_format other than channels_last is not supported"),
    ("DepthwiseConv2D", {"kernel_size": 3, "data_format": "channels_first"}, "data_format other than channels_last"),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 0}, "depth_multiplier must be a positive integer"),
    ("DepthwiseConv2D", {"kernel_size": 3, "depthwise_constraint": {"class_name": "RadialConstraint"}},
     "depthwise_constraint 'RadialConstraint' is not supported"),
    ("DepthwiseConv2D", {"kernel_size": 3, "depthwise_regularizer": {"class_name": "L3"}},
     "depthwise_regularizer 'L3' is not supported"),
    ("DepthwiseConv2D", {"kernel_size": 3, "depthwise_initializer": "stft"},
     "depthwise_initializer 'stft' is not supported"),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "pointwise_constraint": {"class_name": "UnitNorm",
                                                                                 "config": {"axis": 4}}},
     "pointwise_constraint axis 4 is not an axis of its pointwise_kernel of shape 1x1x"),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 13}, "kernel height 13 is larger than its input (12)"),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, "data_format"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "output_padding": 2},
     "output_padding=[2, 2] must be less than strides=[2, 2] on each axis"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "output_padding": -1}, "output_padding must be null"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same", "output_padding": 0},
     "output_padding=[0, 0] with kernel_size=[4, 4] and padding='same' gives a height of 22 from 12"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     "Keras refuses strides > 1 together with dilation_rate > 1"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, "data_format"),
    ("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "groups": 2}, "sets groups, which this bridge does not know"),
])
def test_convolutions_outside_what_is_mirrored_are_refused_in_one_line(cls, config, message):
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(_keras_config(cls, config), "model.keras")
    text = str(info.value)
    assert text.startswith(f"model.keras: layer 0 (l0, {cls})") and message in text and "\n" not in text, text


def test_a_refused_transpose_padding_is_one_keras_cannot_run_either():
    """The output size refused above is one TensorFlow refuses too (not a limit of the torch side)."""
    layer = L.Conv2DTranspose(4, 4, strides=2, padding="same", output_padding=0)
    with pytest.raises(Exception):  # noqa: B017  (TensorFlow's own error class)
        keras.Sequential([keras.Input((12, 12, 4)), layer])(np.zeros((1, 12, 12, 4), np.float32))
