"""Layers over the steps of a (steps, features) map against Keras: Conv1D (strides, "same" and "causal" padding,
dilation, groups), DepthwiseConv1D, SeparableConv1D, Conv1DTranspose (output padding), MaxPooling1D,
AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D; and in a whole model through every format, also
ZeroPadding1D, Cropping1D, UpSampling1D, SpatialDropout1D, Identity and UnitNormalization (their values:
test_layers_reshaping.py, test_layers_normalization.py).

An MNIST image as a (28, 28) map is 28 rows of 28 pixels: the classic "rows as a sequence" model.
Random weights and inputs, so a kernel read backwards or a pad on the wrong side changes the logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge_check import (L, assert_description_refused, assert_keras_layer_refused, assert_matches_keras,
                          converts_and_comes_back, network_of, predicts_alike_on_both_backends, randomised, sampler,
                          sequential_case)
from lightning_mnist.models.layers import converter_of

ROWS = (28, 28)
CASES = {
    "conv1d_rows": (ROWS, [L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(), L.Conv1D(4, 5)]),
    "conv1d_strided_same": (ROWS, [L.Conv1D(4, 4, strides=3, padding="same"), L.GlobalAveragePooling1D()]),
    "conv1d_causal_dilated_grouped": (ROWS, [L.Conv1D(6, 3, padding="causal", dilation_rate=3, groups=2)]),
    "conv1d_causal_strided": ((9, 5), [L.Conv1D(5, 4, strides=3, padding="causal", use_bias=False)]),
    "conv1d_softmax_over_filters": ((9, 5), [L.Conv1D(3, 2, activation="softmax"), L.Conv1D(2, 1)]),
    "adaptive_pools_1d": ((9, 5), [L.Conv1D(4, 2), L.AdaptiveMaxPooling1D(3), L.AdaptiveAveragePooling1D(7),
                                    L.AdaptiveMaxPooling1D(5)]),
    "conv1d_on_flat_pixels": ((784,), [L.Reshape((784, 1)), L.Conv1D(4, 9, strides=4, activation="tanh"),
                                       L.MaxPooling1D(4, padding="same"), L.GlobalMaxPooling1D(keepdims=True)]),
    "pooling1d_every_form": ((11, 3), [L.AveragePooling1D(3, strides=2, padding="same"), L.MaxPooling1D(2, 1),
                                       L.AveragePooling1D(2), L.MaxPooling1D(3, strides=2, padding="same")]),
    "global_pooling1d_keepdims": ((7, 4), [L.Conv1D(3, 2), L.GlobalAveragePooling1D(keepdims=True), L.Dense(5)]),
    "conv1d_after_a_dense": ((28, 28), [L.Dense(6), L.Conv1D(5, 3, padding="same", dilation_rate=2)]),
    "depthwise_conv1d_rows": (ROWS, [L.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
                                     L.DepthwiseConv1D(4, strides=2, padding="same", use_bias=False)]),
    "depthwise_conv1d_dilated": ((12, 3), [L.DepthwiseConv1D(3, dilation_rate=3, padding="same"),
                                           L.DepthwiseConv1D(3, strides=2, dilation_rate=2)]),
    "separable_conv1d_rows": (ROWS, [L.SeparableConv1D(8, 5, depth_multiplier=2, padding="same", activation="elu"),
                                     L.SeparableConv1D(4, 2, strides=3, use_bias=False)]),
    "separable_conv1d_dilated": ((12, 3), [L.SeparableConv1D(5, 3, dilation_rate=2),
                                           L.SeparableConv1D(4, 3, strides=2, dilation_rate=2, padding="same")]),
    "conv1d_transpose_strided": ((9, 4), [L.Conv1DTranspose(6, 3, strides=2), L.Conv1DTranspose(3, 4, strides=3,
                                                                                                padding="same")]),
    "conv1d_transpose_output_padding": ((9, 4), [L.Conv1DTranspose(5, 3, strides=2, output_padding=1),
                                                 L.Conv1DTranspose(2, 2, strides=3, padding="same",
                                                                   output_padding=2, activation="tanh")]),
    "conv1d_transpose_dilated": ((9, 4), [L.Conv1DTranspose(3, 3, dilation_rate=2, use_bias=False)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layers_over_steps_match_keras(case):
    shape, layers = CASES[case]
    assert_matches_keras(sequential_case(shape, *layers, name=case), source=case)


def test_conv1d_weights_have_keras_shape_and_map_both_ways():
    """Keras' kernel (k, in / groups, filters) is torch's (filters, in / groups, k), and back bit for bit."""
    model = randomised(sequential_case((9, 6), L.Conv1D(4, 3, groups=2)), seed=3)
    architecture, network = network_of(model)
    [node] = [n for n in architecture.nodes if n.layer.type == "Conv1D"]
    kernel, bias = model.get_layer(node.name).get_weights()
    assert kernel.shape == (3, 3, 4) and bias.shape == (4,)
    mapping = converter_of(node.layer).weights["kernel"]
    weight = network.state_dict()[f"{node.name}.weight"].numpy()
    assert weight.shape == (4, 3, 3) and np.array_equal(weight[1, 2, 0], kernel[0, 2, 1])
    assert np.array_equal(mapping.to_keras(weight, kernel.shape), kernel)


@pytest.mark.parametrize("layer, names, shapes", [
    (L.DepthwiseConv1D(3, depth_multiplier=2), ("kernel", "bias"), ((3, 6, 2), (12,))),
    (L.SeparableConv1D(4, 3, depth_multiplier=2), ("depthwise_kernel", "pointwise_kernel", "bias"),
     ((3, 6, 2), (1, 12, 4), (4,))),
    (L.Conv1DTranspose(4, 3), ("kernel", "bias"), ((3, 4, 6), (4,))),
])
def test_1d_kernels_have_keras_shapes_and_map_both_ways(layer, names, shapes):
    """Keras' kernels of the 1D depthwise, separable and transposed kinds, in Keras' order, and back bit for bit
    from torch's layout (a depthwise channel c * m + j from [:, c, j], as in 2D)."""
    model = randomised(sequential_case((9, 6), layer), seed=3)
    architecture, network = network_of(model)
    [node] = [n for n in architecture.nodes if n.layer.type == type(layer).__name__]
    assert node.layer.weights((9, 6)) == tuple(zip(names, shapes))
    mappings, state = converter_of(node.layer).weights, network.state_dict()
    for name, array in zip(names, model.get_layer(node.name).get_weights()):
        weight = state[f"{node.name}.{mappings[name].attribute}"].numpy()
        assert np.array_equal(mappings[name].to_keras(weight, array.shape), array)
    if isinstance(layer, L.DepthwiseConv1D):
        kernel = model.get_layer(node.name).get_weights()[0]
        assert np.array_equal(state[f"{node.name}.depthwise"].numpy()[4 * 2 + 1, 0], kernel[:, 4, 1])


def test_a_rows_as_sequence_model_converts_both_ways_and_predicts_alike(tmp_path, capsys, seed_png):
    """A (28, 28) Conv1D model as a .keras file: .ckpt, .onnx and .tflite proven on MNIST, back to .keras bit for
    bit, and one digit on both backends."""
    model = randomised(sequential_case(ROWS, L.Conv1D(16, 3, padding="causal", activation="relu"),
                                       L.MaxPooling1D(2), L.Conv1D(8, 3, strides=2, padding="same"),
                                       L.GlobalAveragePooling1D()), seed=1)
    model.save(tmp_path / "rows.keras")
    converts_and_comes_back(tmp_path / "rows.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.onnx", "model.tflite"))
    predicts_alike_on_both_backends(tmp_path / "model.ckpt", seed_png, capsys)


def test_1d_depthwise_separable_and_transposed_convolutions_convert_to_every_format(tmp_path, capsys, seed_png):
    """DepthwiseConv1D, SeparableConv1D and Conv1DTranspose in a rows model, as a .keras file: .ckpt, .pt2, .onnx and
    .tflite proven on MNIST, back to .keras bit for bit, and one digit on both backends."""
    model = randomised(sequential_case(ROWS, L.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
                                       L.SeparableConv1D(8, 3, strides=2, padding="same"),
                                       L.Conv1DTranspose(6, 3, strides=2, output_padding=1), L.MaxPooling1D(2),
                                       L.GlobalAveragePooling1D()), seed=5)
    model.save(tmp_path / "rows.keras")
    converts_and_comes_back(tmp_path / "rows.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.pt2", "model.onnx", "model.tflite"))
    predicts_alike_on_both_backends(tmp_path / "model.ckpt", seed_png, capsys)


def test_1d_reshaping_dropout_identity_and_unit_norm_convert_to_every_format(tmp_path, capsys, seed_png):
    """ZeroPadding1D, UpSampling1D, Cropping1D, Identity, SpatialDropout1D and UnitNormalization in a rows model,
    as a .keras file: .ckpt, .pt2, .onnx and .tflite proven on MNIST, back to .keras bit for bit, and one digit on
    both backends. (Each layer's values against Keras': tests/test_layers_reshaping.py and
    tests/test_layers_normalization.py.)"""
    model = randomised(sequential_case(ROWS, L.ZeroPadding1D((2, 1)), L.Conv1D(8, 3, activation="relu"),
                                       L.SpatialDropout1D(0.3), L.UpSampling1D(2), L.Cropping1D((3, 4)),
                                       L.Identity(), L.UnitNormalization(axis=[1, 2]), L.MaxPooling1D(3),
                                       L.Conv1D(6, 3, strides=2), L.GlobalMaxPooling1D()), seed=2)
    model.save(tmp_path / "rows.keras")
    converts_and_comes_back(tmp_path / "rows.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.pt2", "model.onnx", "model.tflite"))
    predicts_alike_on_both_backends(tmp_path / "model.ckpt", seed_png, capsys)


@torch.no_grad()
def test_causal_padding_sees_no_later_step():
    """A change at step t moves no output before t (Keras' "causal"), while "same" lets it reach back."""
    for padding, reaches_back in (("causal", False), ("same", True)):
        model = randomised(sequential_case((12, 2), L.Conv1D(3, 5, padding=padding, dilation_rate=2)), seed=4)
        architecture, network = network_of(model)
        conv = dict(network.named_modules())[architecture.nodes[0].name]
        x = torch.rand(1, 12, 2)
        changed = x.clone()
        changed[0, 6] += 1.0
        moved = (conv(changed) - conv(x)).abs().amax(-1)[0] > 0
        assert bool(moved[:6].any()) == reaches_back and bool(moved[6])


# --- samplers and refusals -------------------------------------------------------------------------


@sampler("Conv1D")
def make_conv1d(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 2:
        return None
    padding = str(rng.choice(["valid", "same", "causal"]))
    kernel = int(rng.integers(1, min(5, shape[0]) + 1))
    strided = rng.random() < 0.5
    dilation = 1 if strided or padding == "valid" else int(rng.integers(1, 4))
    groups = int(rng.choice([g for g in (1, 2, 3) if shape[-1] % g == 0]))
    return L.Conv1D(groups * int(rng.integers(1, 4)), kernel, strides=int(rng.integers(1, 4)) if strided else 1,
                    padding=padding, dilation_rate=dilation, groups=groups,
                    activation=str(rng.choice(["linear", "relu", "tanh", "softmax"])),
                    use_bias=bool(rng.random() < 0.8))


@sampler("DepthwiseConv1D")
def make_depthwise_conv1d(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 2:
        return None
    return L.DepthwiseConv1D(int(rng.integers(1, min(4, shape[0]) + 1)), strides=int(rng.integers(1, 3)),
                             padding=str(rng.choice(["valid", "same"])), depth_multiplier=int(rng.integers(1, 3)),
                             activation=str(rng.choice(["linear", "relu"])), use_bias=bool(rng.random() < 0.8))


@sampler("SeparableConv1D")
def make_separable_conv1d(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 2:
        return None
    return L.SeparableConv1D(int(rng.integers(1, 6)), int(rng.integers(1, min(4, shape[0]) + 1)),
                             strides=int(rng.integers(1, 3)), padding=str(rng.choice(["valid", "same"])),
                             depth_multiplier=int(rng.integers(1, 3)), activation=str(rng.choice(["linear", "tanh"])))


@sampler("Conv1DTranspose")
def make_conv1d_transpose(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 2 or shape[0] > 16:  # keep the random graphs' sequences short
        return None
    strides = int(rng.integers(1, 3))
    return L.Conv1DTranspose(int(rng.integers(1, 6)), int(rng.integers(1, 4)), strides=strides,
                             padding=str(rng.choice(["valid", "same"])), use_bias=bool(rng.random() < 0.8))


def pooling_1d_sampler(kind: str) -> None:
    @sampler(kind)
    def make(rng: np.random.Generator, shape: tuple[int, ...]):
        if len(shape) != 2:
            return None
        padding = str(rng.choice(["valid", "same"]))
        size = int(rng.integers(1, min(3, shape[0]) + 1))
        return getattr(L, kind)(size, strides=int(rng.integers(1, 3)), padding=padding)


pooling_1d_sampler("MaxPooling1D")
pooling_1d_sampler("AveragePooling1D")


sampler("GlobalAveragePooling1D")(lambda rng, shape: L.GlobalAveragePooling1D(keepdims=bool(rng.random() < 0.3))
                                  if len(shape) == 2 else None)
sampler("GlobalMaxPooling1D")(lambda rng, shape: L.GlobalMaxPooling1D(keepdims=bool(rng.random() < 0.3))
                              if len(shape) == 2 else None)

sampler("AdaptiveAveragePooling1D")(lambda rng, shape: L.AdaptiveAveragePooling1D(int(rng.integers(2, shape[0] + 3)))
                                    if len(shape) == 2 and shape[0] > 1 else None)
sampler("AdaptiveMaxPooling1D")(lambda rng, shape: L.AdaptiveMaxPooling1D(int(rng.integers(2, shape[0] + 3)))
                                if len(shape) == 2 and shape[0] > 1 else None)


@pytest.mark.parametrize("shape, layer, message", [
    ((28, 28), L.Conv1D(4, 3, data_format="channels_first"), "Conv1D) has data_format='channels_first'"),
    ((28, 28), L.MaxPooling1D(data_format="channels_first"), "MaxPooling1D) has data_format='channels_first'"),
    ((28, 28), L.GlobalAveragePooling1D(data_format="channels_first"), "has data_format='channels_first'"),
])
def test_keras_layers_outside_what_is_mirrored_are_refused_in_one_line(shape, layer, message):
    assert_keras_layer_refused(shape, layer, message)


@pytest.mark.parametrize("input_shape, layer, message", [
    ([28, 28, 1], {"type": "Conv1D", "filters": 4, "kernel_size": 3},
     "needs an (H, W) map input, got 28x28x1; a Conv1D slides along the first axis of (steps, features)"),
    ([28, 28], {"type": "Conv1D", "filters": 4, "kernel_size": [3, 3]}, "kernel_size must be a positive integer or a "
                                                                        "list of 1, got [3, 3]"),
    ([28, 28], {"type": "Conv1D", "filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     "Keras refuses strides > 1 together with dilation_rate > 1"),
    ([28, 28], {"type": "Conv1D", "filters": 4, "kernel_size": 30}, "kernel steps 30 is larger than its input (28)"),
    ([28, 28], {"type": "Conv1D", "filters": 4, "kernel_size": 3, "padding": "full"},
     "padding must be one of valid, same, causal"),
    ([28, 28], {"type": "Conv1D", "filters": 3, "kernel_size": 3, "groups": 2},
     "filters=3 is not a multiple of groups"),
    ([28, 27], {"type": "Conv1D", "filters": 4, "kernel_size": 3, "groups": 2}, "groups=2 does not divide the input"),
    ([28, 28], {"type": "MaxPooling1D", "pool_size": 30}, "pool steps 30 is larger than its input (28)"),
    ([28, 28], {"type": "AveragePooling1D", "pool_size": 2, "padding": "causal"}, "padding must be one of valid, same"),
    ([784], {"type": "GlobalAveragePooling1D"}, "needs an (H, W) map input, got 784; a 1D global pooling takes"),
    ([28, 28], {"type": "AdaptiveMaxPooling1D", "output_size": 1},
     "output_size [1]: Keras' adaptive pooling cannot run where a side it pools from or to is 1 (here the steps, 28 "
     "to 1)"),
    ([1, 28], {"type": "AdaptiveAveragePooling1D", "output_size": 3}, "(here the steps, 1 to 3)"),
    ([28, 28], {"type": "AdaptiveAveragePooling1D", "output_size": [2, 2]},
     "output_size must be a positive integer or a list of 1, got [2, 2]"),
    ([28, 28, 1], {"type": "DepthwiseConv1D", "kernel_size": 3},
     "needs an (H, W) map input, got 28x28x1; a DepthwiseConv1D slides along the first axis of (steps, features)"),
    ([28, 28], {"type": "SeparableConv1D", "filters": 4, "kernel_size": 3, "padding": "causal"},
     "padding must be one of valid, same, got 'causal'"),
    ([28, 28], {"type": "Conv1DTranspose", "filters": 4, "kernel_size": 3, "strides": 2, "output_padding": 2},
     "output_padding=[2] must be less than strides=[2] on each axis"),
    ([28, 28], {"type": "Conv1DTranspose", "filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     "Keras refuses strides > 1 together with dilation_rate > 1"),
    ([28, 28], {"type": "Conv1DTranspose", "filters": 4, "kernel_size": 3, "output_padding": [1, 1]},
     "output_padding must be null, a non-negative integer or a list of 1, got [1, 1]"),
])
def test_descriptions_outside_what_keras_computes_are_refused_in_one_line(input_shape, layer, message):
    assert_description_refused(input_shape, layer, message)
