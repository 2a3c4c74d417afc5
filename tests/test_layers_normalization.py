"""Normalisation and regularisation layers against Keras: LayerNormalization, GroupNormalization, UnitNormalization,
SpatialDropout2D, SpatialDropout1D, AlphaDropout, GaussianNoise, GaussianDropout.

Each case is a Keras model with random weights (gamma and beta included) whose torch network,
built from the model's own config, must give Keras' probabilities and logits. The inputs
have odd, unequal sizes so that a wrong axis, a transposed gamma or another grouping of the
channels shows.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bridge_check import (L, architecture_of, assert_description_refused, assert_matches_keras, classifier, keras,
                          sampler, sequential_case)
from keras_bridge.build import layer_weights
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.interop.keras_models import keras_model_from_torch, torch_weights_of
from lightning_mnist.models.layers import build
from mnist_common.architecture import Architecture, ArchitectureError, layers
from mnist_common.architecture.keras_config import architecture_from_keras_config
from mnist_common.keras_file import read_keras_file

# Keras warns that rms_scaling is deprecated (it still computes it, and so does the bridge): quiet, in the
# cases made on import and in the tests.
RMS_DEPRECATED = "You passed `rms_scaling=True`"
warnings.filterwarnings("ignore", RMS_DEPRECATED, UserWarning)
pytestmark = pytest.mark.filterwarnings(f"ignore:{RMS_DEPRECATED}:UserWarning")

MAP = (9, 7, 2)  # a Conv2D(6, 3) makes it 7x5x6: height, width and channels all differ


def conv(*layers_after):
    return [L.Conv2D(6, 3), *layers_after]


CASES = {
    # LayerNormalization: the last axis, several axes (sorted by Keras, gamma of their sizes), every setting
    "layer_norm_default": (MAP, conv(L.LayerNormalization())),
    "layer_norm_all_axes": (MAP, conv(L.LayerNormalization(axis=[3, 1, 2], center=False))),
    "layer_norm_height_width": (MAP, conv(L.LayerNormalization(axis=[1, 2], scale=False))),
    "layer_norm_height_channels": (MAP, conv(L.LayerNormalization(axis=[1, 3], epsilon=0.5))),
    "layer_norm_negative_axes": (MAP, conv(L.LayerNormalization(axis=[-3, -1], center=False, scale=False))),
    "layer_norm_one_inner_axis": (MAP, conv(L.LayerNormalization(axis=-2))),
    # Keras sorts [-1, 1] as integers: gamma is (C, H), reshaped (not transposed) to (1, H, 1, C)
    "layer_norm_mixed_signs": (MAP, conv(L.LayerNormalization(axis=[-1, 1]))),
    "layer_norm_rms_scaling": (MAP, conv(L.LayerNormalization(axis=[1, 3], rms_scaling=True))),
    "layer_norm_rms_scaling_keeps_gamma": (MAP, conv(L.LayerNormalization(rms_scaling=True, scale=False))),
    "layer_norm_on_rows": ((9, 7), [L.LayerNormalization(axis=1, epsilon=1e-5)]),
    "layer_norm_on_a_matrix": ((9, 7), [L.Dense(5), L.LayerNormalization(axis=[1, 2])]),
    "layer_norm_on_features": ((11,), [L.Dense(13), L.LayerNormalization(), L.Dense(7, activation="relu"),
                                        L.LayerNormalization(axis=1, center=False, epsilon=0.1)]),
    "layer_norm_after_strides": ((28, 28, 1), [L.Conv2D(5, 4, strides=3, padding="same"),
                                               L.LayerNormalization(axis=[1, 2, 3]), L.MaxPooling2D(),
                                               L.LayerNormalization()]),
    # GroupNormalization: consecutive channels form a group, normalised over them and all positions
    "group_norm_three_groups": (MAP, conv(L.GroupNormalization(3))),
    "group_norm_instance": (MAP, conv(L.GroupNormalization(-1, scale=False))),
    "group_norm_one_group": (MAP, conv(L.GroupNormalization(1, center=False, epsilon=0.5))),
    "group_norm_no_gamma_beta": (MAP, conv(L.GroupNormalization(2, center=False, scale=False, epsilon=1e-5))),
    "group_norm_on_a_matrix": ((9, 14), [L.GroupNormalization(7)]),
    "group_norm_last_axis_by_number": (MAP, conv(L.GroupNormalization(2, axis=3))),  # the same axis as -1
    "group_norm_on_features": ((12,), [L.GroupNormalization(4), L.Dense(6), L.GroupNormalization(2)]),
    "group_norm_after_strides": ((28, 28, 1), [L.Conv2D(12, 3, strides=2, padding="same"), L.GroupNormalization(4),
                                               L.Conv2D(8, 2, strides=3), L.GroupNormalization(8)]),
    # UnitNormalization: over one axis or several, any rank
    "unit_norm_default": (MAP, conv(L.UnitNormalization())),
    "unit_norm_height_width": (MAP, conv(L.UnitNormalization(axis=[1, 2]))),
    "unit_norm_all_axes_negative": (MAP, conv(L.UnitNormalization(axis=[-3, -2, -1]))),
    "unit_norm_on_rows": ((9, 7), [L.UnitNormalization(axis=1), L.Dense(5), L.UnitNormalization()]),
    "unit_norm_on_features": ((11,), [L.Dense(13), L.UnitNormalization(), L.Dense(7, activation="relu")]),
    # RMSNormalization: the last axis or axes (Keras lines its scale up with them)
    "rms_norm_default": (MAP, conv(L.RMSNormalization())),
    "rms_norm_last_two": (MAP, conv(L.RMSNormalization(axis=[-2, -1], epsilon=0.1))),
    "rms_norm_all_axes": (MAP, conv(L.RMSNormalization(axis=[1, 2, 3]))),
    "rms_norm_on_rows": ((9, 7), [L.RMSNormalization(axis=2), L.Dense(5), L.RMSNormalization(axis=[1, 2])]),
    "rms_norm_on_features": ((11,), [L.Dense(13), L.RMSNormalization(epsilon=1e-3), L.Dense(7, activation="relu")]),
    # SpatialDropout2D: the identity at inference, whatever the rate
    "spatial_dropout": (MAP, conv(L.SpatialDropout2D(0.5), L.Conv2D(3, 2), L.SpatialDropout2D(0.0))),
    "spatial_dropout_1d": ((9, 6), [L.SpatialDropout1D(0.5), L.Conv1D(3, 2), L.SpatialDropout1D(0.2, seed=1)]),
    "alpha_dropout": ((9, 6), [L.Dense(5, activation="selu"), L.AlphaDropout(0.3, seed=2), L.Dense(4)]),
    # Dropout with a noise_shape (EfficientNet's stochastic depth): the identity at inference too
    "dropout_noise_shape": (MAP, conv(L.Dropout(0.2, noise_shape=(None, 1, 1, 1)), L.Conv2D(3, 2),
                                      L.Dropout(0.5, noise_shape=[1, None, 1, 3]), L.Flatten(),
                                      L.Dropout(0.1, noise_shape=(None, 1)))),
    # GaussianNoise and GaussianDropout: the identity at inference too
    "gaussian_noise_and_dropout": (MAP, conv(L.GaussianNoise(0.5), L.Conv2D(3, 2), L.GaussianDropout(0.3),
                                             L.Flatten(), L.GaussianNoise(1.0, seed=3), L.Dense(4),
                                             L.GaussianDropout(0.0))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layer_matches_keras(case):
    shape, case_layers = CASES[case]
    assert_matches_keras(sequential_case(shape, *case_layers, name=case), source=case)


def test_weights_have_keras_names_shapes_and_order_and_round_trip_bit_identical():
    """The description's weights are those Keras builds; Keras -> torch -> Keras changes no bit, nor any setting."""
    model = sequential_case(MAP, *conv(L.LayerNormalization(axis=[-1, 1]), L.LayerNormalization(axis=[1, 2, 3]),
                                       L.LayerNormalization(rms_scaling=True, scale=False), L.GroupNormalization(3),
                                       L.GroupNormalization(-1, center=False), L.SpatialDropout2D(0.2),
                                       L.RMSNormalization(axis=[2, 3])))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    architecture = architecture_of(model)
    described = {node.name: weights for node, _, weights in architecture.weight_shapes()}
    for layer in model.layers:
        assert described.get(layer.name, ()) == tuple((v.name, tuple(v.shape)) for v in layer.weights), layer.name
    again = keras_model_from_torch(architecture, torch_weights_of(model, architecture))
    assert architecture_of(again).layers == architecture.layers
    before, after = layer_weights(model, architecture), layer_weights(again, architecture)
    for name in before:
        assert [w.tobytes() for w in before[name]] == [w.tobytes() for w in after[name]], name
    assert architecture.layers[1].axis == (-1, 1)  # as Keras sorts and saves it
    assert architecture.layers[5].groups == 6  # Keras saves groups=-1 as the number of channels


def test_torch_initialises_gamma_and_beta_as_keras_does():
    inputs = keras.Input((4, 5, 6))
    constant = keras.initializers.Constant(0.5)
    norms = [L.LayerNormalization(axis=[1, 3], gamma_initializer=constant, beta_initializer="ones"),
             L.GroupNormalization(3, gamma_initializer="zeros", beta_initializer=constant)]
    for norm in norms:
        spec = architecture_of(classifier(inputs, norm(inputs))).layers[0]
        module = build(spec, (4, 5, 6))
        torch_values = [module.weight.detach().numpy(), module.bias.detach().numpy()]
        for mine, theirs in zip(torch_values, norm.get_weights(), strict=True):
            assert mine.shape == theirs.shape and (mine == theirs).all(), norm.name


def test_spatial_dropout_drops_whole_channels_and_scales_the_rest_as_keras_does():
    """In training both frameworks zero whole (example, channel) maps and multiply the others by 1 / (1 - rate)."""
    rate, (n, h, w, c) = 0.4, (64, 5, 6, 8)
    keep = np.float32(1 / (1 - rate))
    module = build(layers.SpatialDropout2D(rate=rate), (h, w, c))
    torch.manual_seed(0)
    ones = torch.ones(n, c, h, w)
    module.train()
    torch_maps = module(ones).numpy().transpose(0, 2, 3, 1)  # as Keras lays them out: (N, H, W, C)
    keras_maps = keras.ops.convert_to_numpy(L.SpatialDropout2D(rate, seed=0)(np.ones((n, h, w, c), np.float32),
                                                                             training=True))
    for out in (torch_maps, keras_maps):
        per_map = out.reshape(n, h * w, c)
        assert (per_map == per_map[:, :1]).all()  # one value per (example, channel): whole maps
        values = set(np.unique(per_map).tolist())
        assert values == {0.0, float(keep)}, values
        assert 0.2 < (per_map[:, 0] == 0).mean() < 0.6  # about `rate` of them are dropped
    module.eval()
    assert torch.equal(module(ones), ones)


@pytest.mark.parametrize("noise_shape, shared", [((None, 1, 1, 1), (1, 2, 3)), ((None, 1, 1, None), (1, 2)),
                                                  ((1, None, None, None), (0,)), ((None, 5, 1, 8), (2,))],
                         ids=["whole samples", "whole channels", "one mask for the batch", "whole columns"])
def test_a_dropout_noise_shape_drops_what_keras_drops(noise_shape, shared):
    """In training, a ``noise_shape`` broadcasts one mask over the axes where it holds 1 (Keras' axes ``shared``):
    EfficientNet's stochastic depth drops whole samples; the survivors scaled by 1 / (1 - rate) in both."""
    rate, (n, h, w, c) = 0.4, (64, 5, 6, 8)
    module = build(layers.Dropout(rate=rate, noise_shape=noise_shape), (h, w, c))
    torch.manual_seed(0)
    module.train()
    torch_out = module(torch.ones(n, c, h, w)).numpy().transpose(0, 2, 3, 1)  # as Keras lays them out
    keras_out = keras.ops.convert_to_numpy(L.Dropout(rate, noise_shape=noise_shape, seed=0)(
        np.ones((n, h, w, c), np.float32), training=True))
    for out in (torch_out, keras_out):
        for axis in shared:  # the same value along every axis the mask is broadcast over
            assert (out == out.take([0], axis=axis)).all(), axis
        assert set(np.unique(out).tolist()) == {0.0, float(np.float32(1 / (1 - rate)))}
        assert 0.15 < (out == 0).mean() < 0.65
    module.eval()
    assert torch.equal(module(torch.ones(n, c, h, w)), torch.ones(n, c, h, w))


@torch.no_grad()
def test_unit_normalization_keeps_an_all_zero_example_zero_as_keras_does():
    """Keras caps rsqrt(0) at 1e12 (``ops.normalize``'s epsilon): zeros stay zeros, where a plain division would
    give NaN; a tiny example is scaled by the cap, as Keras scales it."""
    x = np.zeros((3, 4, 5), np.float32)
    x[1] = 1e-14
    x[2] = np.arange(20, dtype=np.float32).reshape(4, 5)
    module = build(layers.UnitNormalization(axis=(1, 2)), (4, 5))
    got = module(torch.from_numpy(x)).numpy()
    expected = keras.ops.convert_to_numpy(L.UnitNormalization(axis=[1, 2])(x))
    assert not np.isnan(got).any() and (got[0] == 0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


def test_spatial_dropout_1d_drops_whole_features_and_scales_the_rest_as_keras_does():
    """In training both frameworks zero whole (example, feature) columns of a (steps, features) map and multiply
    the others by 1 / (1 - rate)."""
    rate, (n, steps, features) = 0.4, (64, 7, 8)
    keep = np.float32(1 / (1 - rate))
    module = build(layers.SpatialDropout1D(rate=rate), (steps, features))
    torch.manual_seed(0)
    ones = torch.ones(n, steps, features)
    module.train()
    torch_maps = module(ones).numpy()
    dropout = L.SpatialDropout1D(rate, seed=0)
    keras_maps = keras.ops.convert_to_numpy(dropout(np.ones((n, steps, features), np.float32), training=True))
    for out in (torch_maps, keras_maps):
        assert (out == out[:, :1]).all()  # one value per (example, feature): whole columns over the steps
        values = set(np.unique(out).tolist())
        assert values == {0.0, float(keep)}, values
        assert 0.2 < (out[:, 0] == 0).mean() < 0.6  # about `rate` of them are dropped
    module.eval()
    assert torch.equal(module(ones), ones)


def test_gaussian_noise_and_dropout_draw_keras_noise_in_training_only():
    """In training, GaussianNoise adds N(0, stddev) and GaussianDropout multiplies by N(1, sqrt(rate / (1 - rate)))
    in both frameworks (their moments over 200,000 values); outside training both are the identity."""
    ones = np.ones((100, 2000), np.float32)
    for layer, (mean, stddev) in ((L.GaussianNoise(0.3, seed=0), (1.0, 0.3)),
                                  (L.GaussianDropout(0.2, seed=0), (1.0, (0.2 / 0.8) ** 0.5))):
        module = build(layers.LAYER_TYPES[type(layer).__name__].from_keras(layer.get_config()), (2000,))
        torch.manual_seed(0)
        module.train()
        torch_out = module(torch.from_numpy(ones)).numpy()
        keras_out = keras.ops.convert_to_numpy(layer(ones, training=True))
        for out in (torch_out, keras_out):
            assert abs(out.mean() - mean) < 0.01 and abs(out.std() - stddev) < 0.01, (layer.name, out.std())
        module.eval()
        assert np.array_equal(module(torch.from_numpy(ones)).numpy(), ones)



def test_alpha_dropout_keeps_selu_moments_as_keras_does():
    """In training, AlphaDropout sets about ``rate`` of the values to SELU's saturation ``-alpha * scale`` and maps
    every value v to ``a * v + b`` (Keras' formula, both frameworks): two values on an input of ones, in the
    proportion of the rate; outside training both are the identity."""
    rate, alpha_p = 0.2, -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    kept, dropped = a * 1.0 + (-a * alpha_p * rate), a * alpha_p + (-a * alpha_p * rate)
    ones = np.ones((100, 2000), np.float32)
    layer = L.AlphaDropout(rate, seed=0)
    module = build(layers.AlphaDropout.from_keras(layer.get_config()), (2000,))
    torch.manual_seed(0)
    module.train()
    for out in (module(torch.from_numpy(ones)).numpy(), keras.ops.convert_to_numpy(layer(ones, training=True))):
        is_kept, is_dropped = np.isclose(out, kept, atol=1e-6), np.isclose(out, dropped, atol=1e-6)
        assert (is_kept | is_dropped).all() and abs(is_dropped.mean() - rate) < 0.01
    module.eval()
    assert np.array_equal(module(torch.from_numpy(ones)).numpy(), ones)


# The samplers never normalise single values: Keras' output there is beta plus the rounding noise of
# x * inv - mean * inv, which its compiled predict rounds otherwise than its eager ops (torch matches the
# latter bit for bit), and a later normalisation would blow that noise up to 1e-4.


@sampler("LayerNormalization")
def make_layer_norm(rng: np.random.Generator, shape: tuple[int, ...]):
    rank = len(shape)
    order = [int(a) for a in rng.permutation(np.arange(1, rank + 1))]
    count = int(rng.integers(1, rank + 1))
    while count < rank and np.prod([shape[a - 1] for a in order[:count]]) < 2:
        count += 1
    axes = order[:count]
    if np.prod([shape[a - 1] for a in axes]) < 2:
        return None
    axes = [a - rank - 1 if rng.random() < 0.5 else a for a in axes]  # Keras also counts from the end
    return L.LayerNormalization(axis=axes[0] if len(axes) == 1 else axes, epsilon=float(rng.choice([1e-3, 1e-5, 0.3])),
                                center=bool(rng.random() < 0.7), scale=bool(rng.random() < 0.7),
                                rms_scaling=bool(rng.random() < 0.15))


@sampler("GroupNormalization")
def make_group_norm(rng: np.random.Generator, shape: tuple[int, ...]):
    channels, positions = shape[-1], int(np.prod(shape[:-1]))
    groups = [g for g in range(1, channels + 1) if channels % g == 0 and channels // g * positions > 1]
    groups += [-1] if positions > 1 else []
    if not groups:
        return None
    return L.GroupNormalization(int(rng.choice(groups)), epsilon=float(rng.choice([1e-3, 1e-5, 0.3])),
                                center=bool(rng.random() < 0.7), scale=bool(rng.random() < 0.7))


@sampler("SpatialDropout2D")
def make_spatial_dropout(rng: np.random.Generator, shape: tuple[int, ...]):
    return L.SpatialDropout2D(float(rng.uniform(0.0, 0.9))) if len(shape) == 3 else None


@sampler("UnitNormalization")
def make_unit_norm(rng: np.random.Generator, shape: tuple[int, ...]):
    rank = len(shape)
    axes = [int(a) for a in rng.permutation(np.arange(1, rank + 1))[:int(rng.integers(1, rank + 1))]]
    return L.UnitNormalization(axis=axes[0] if len(axes) == 1 else axes)


@sampler("RMSNormalization")
def make_rms_norm(rng: np.random.Generator, shape: tuple[int, ...]):
    rank = len(shape)
    axes = list(range(rank - int(rng.integers(1, rank + 1)) + 1, rank + 1))  # the last ones, as Keras needs
    if rng.random() < 0.5:  # Keras also counts from the end (all of them: [2, -1] sorts as [-1, 2], which it fails on)
        axes = [a - rank - 1 for a in axes]
    return L.RMSNormalization(axis=axes[0] if len(axes) == 1 else axes, epsilon=float(rng.choice([1e-6, 1e-3, 0.3])))


def test_rms_normalization_over_other_axes_is_refused_in_one_line():
    """Keras multiplies by a scale of the axes' sizes (in its sorted order: [-1, 2] is channels then width) lined up
    with the *last* axes: other axes fail in Keras' own call (checked with Keras 3.15: "Dimensions must be equal");
    refused before Keras is asked."""
    assert_description_refused([9, 7, 6], {"type": "RMSNormalization", "axis": 1},
                               "normalises axis [1] of a 9x7x6 input; Keras lines its scale up with the last axes")
    assert_description_refused([9, 7, 6], {"type": "RMSNormalization", "axis": [1, 3]}, "only the last axis or axes")
    assert_description_refused([9, 7, 6], {"type": "RMSNormalization", "axis": [-1, 2]}, "only the last axis or axes")


@sampler("SpatialDropout1D")
def make_spatial_dropout_1d(rng: np.random.Generator, shape: tuple[int, ...]):
    return L.SpatialDropout1D(float(rng.uniform(0.0, 0.9))) if len(shape) == 2 else None


sampler("GaussianNoise")(lambda rng, shape: L.GaussianNoise(float(rng.uniform(0.0, 1.0))))
sampler("ActivityRegularization")(lambda rng, shape: L.ActivityRegularization(*map(float, rng.uniform(0.0, 0.1, 2))))
sampler("AlphaDropout")(lambda rng, shape: L.AlphaDropout(float(rng.uniform(0.0, 0.6))))
sampler("GaussianDropout")(lambda rng, shape: L.GaussianDropout(float(rng.uniform(0.0, 0.6))))


@pytest.mark.parametrize("shape", [(7, 5, 6), (6, 9), (12,)])
def test_random_layers_of_each_sampler_match_keras(shape):
    """Each sampler's layers, three by kind and shape, in a row: the torch network gives Keras' outputs."""
    rng = np.random.default_rng(sum(shape))
    drawn = [make(rng, shape) for make in (make_layer_norm, make_group_norm, make_spatial_dropout) for _ in range(3)]
    assert all(layer is None for layer in drawn[6:]) is (len(shape) != 3)
    assert_matches_keras(sequential_case(shape, *(layer for layer in drawn if layer is not None)), source=str(shape))


def _keras_config(layer, input_shape=(7, 5, 6)):
    """A Keras 3 Sequential config as ``config.json`` holds it: ``layer`` then a classifier head."""
    entries = [{"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": [None, *input_shape], "dtype": "float32", "name": "input_layer"}}]
    entries += [{"module": "keras.layers", "class_name": cls, "config": {"name": name, **config},
                 "registered_name": None}
                for name, (cls, config) in zip(("norm", "flatten", "dense"),
                                               (layer, ("Flatten", {}), ("Dense", {"units": 10})))]
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": entries}}


@pytest.mark.parametrize("layer, input_shape, message", [
    (("LayerNormalization", {"axis": [0]}), (7, 5, 6),
     "axis 0 is not an axis of a 7x5x6 input: Keras counts the batch as axis 0, so its axes are 1..3 or -3..-1"),
    (("LayerNormalization", {"axis": 4}), (7, 5, 6), "axis 4 is not an axis of a 7x5x6 input"),
    (("LayerNormalization", {"axis": [-3, 2]}), (7, 5), "axis -3 is not an axis of a 7x5 input"),
    (("LayerNormalization", {"axis": [-1, 3]}), (7, 5, 6), "axis [-1, 3] names an axis of a 7x5x6 input twice"),
    (("LayerNormalization", {"axis": [2, 2]}), (7, 5, 6), "axis [2, 2] names an axis twice"),
    (("LayerNormalization", {"axis": "last"}), (7, 5, 6), "axis must be an integer or a list of integers"),
    (("LayerNormalization", {"epsilon": 0}), (7, 5, 6), "epsilon must be a number in (0, inf]"),
    (("LayerNormalization", {"rms_scaling": "yes"}), (7, 5, 6), "rms_scaling must be true or false"),
    (("LayerNormalization", {"gamma_constraint": {"class_name": "RadialConstraint"}}), (7, 5, 6),
     "gamma_constraint 'RadialConstraint' is not supported"),
    (("LayerNormalization", {"beta_constraint": {"class_name": "MaxNorm", "config": {"axis": 1}}}), (7, 5, 6),
     "beta_constraint axis 1 is not an axis of its beta of shape 6"),
    (("UnitNormalization", {"axis": [0]}), (7, 5, 6), "axis 0 is not an axis of a 7x5x6 input"),
    (("UnitNormalization", {"axis": [1, -3]}), (7, 5, 6), "axis [-3, 1] names an axis of a 7x5x6 input twice"),
    (("UnitNormalization", {"axis": 1.5}), (7, 5, 6), "axis must be an integer or a list of integers"),
    (("GroupNormalization", {"groups": 2, "axis": 1}), (7, 5, 6),
     "normalises axis 1 of a 4-D input; only the channel (last) axis, -1, is supported"),
    (("GroupNormalization", {"groups": 2, "axis": 1}), (7, 6), "normalises axis 1 of a 3-D input"),
    (("GroupNormalization", {"groups": 4}), (7, 5, 6), "groups=4 does not divide the 6 channels of its 7x5x6 input"),
    (("GroupNormalization", {}), (7, 5, 6), "groups=32 does not divide the 6 channels"),  # Keras' default
    (("GroupNormalization", {"groups": 0}), (7, 5, 6), "groups must be a positive integer or -1"),
    (("GroupNormalization", {"groups": 2, "gamma_initializer": "orthogonal"}), (7, 5, 6),
     "gamma_initializer Orthogonal fills a weight of two or more axes; its gamma has shape 6"),
    (("SpatialDropout2D", {"rate": 0.5, "data_format": "channels_first"}), (7, 5, 6),
     "has data_format='channels_first': data_format other than channels_last is not supported"),
    (("SpatialDropout2D", {"rate": 0.5}), (35,), "needs an (H, W, C) image input, got 35"),
    (("SpatialDropout2D", {"rate": 1.0}), (7, 5, 6), "rate must be a number in [0, 1)"),
    (("SpatialDropout1D", {"rate": 0.5}), (7, 5, 6), "needs an (H, W) map input, got 7x5x6"),
    (("SpatialDropout1D", {"rate": -0.1}), (7, 5), "rate must be a number in [0, 1)"),
    (("Dropout", {"rate": 0.5, "seed": -1}), (7, 5, 6), "seed must be a non-negative integer or null, got -1"),
    (("Dropout", {"rate": 0.5, "noise_shape": [None, 1, 1]}), (7, 5, 6),
     "noise_shape [None, 1, 1] does not fit its input 7x5x6: it needs the batch axis (null or 1) and then"),
    (("Dropout", {"rate": 0.5, "noise_shape": [None, 1, 2, 1]}), (7, 5, 6), "noise_shape [None, 1, 2, 1] does not"),
    (("Dropout", {"rate": 0.5, "noise_shape": [32, 1, 1, 1]}), (7, 5, 6), "noise_shape [32, 1, 1, 1] does not fit"),
    (("Dropout", {"rate": 0.5, "noise_shape": "x"}), (7, 5, 6), "noise_shape must be null or a list of positive"),
    (("SpatialDropout2D", {"rate": 0.5, "noise_shape": [None, 1, 1, 6]}), (7, 5, 6),
     "sets noise_shape, which is not supported"),
    (("BatchNormalization", {"synchronized": "yes"}), (7, 5, 6), "synchronized must be true or false, got 'yes'"),
    (("BatchNormalization", {"gamma_initializer": {"class_name": "GlorotUniform", "config": {"seed": 1.5}}}),
     (7, 5, 6), "gamma_initializer seed must be a non-negative integer or null, got 1.5"),
])
def test_keras_configs_outside_what_is_mirrored_are_refused_in_one_line(layer, input_shape, message):
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(_keras_config(layer, input_shape), "model.keras")
    text = str(info.value)
    assert text.startswith(f"model.keras: layer 0 (norm, {layer[0]})") and message in text and "\n" not in text, text


def test_descriptions_spell_settings_as_keras_saves_them_and_round_trip():
    architecture = Architecture.from_config({"input_shape": [7, 5, 6], "layers": [
        {"type": "LayerNormalization", "axis": [3, -3, 2], "rms_scaling": True},
        {"type": "LayerNormalization", "axis": [2]}, {"type": "GroupNormalization", "groups": -1, "center": False},
        {"type": "SpatialDropout2D", "rate": 0.25}, {"type": "Flatten"}, {"type": "Dense", "units": 10}]})
    first, second, group, dropout = architecture.to_config()["layers"][:4]
    assert first["axis"] == [-3, 2, 3] and second["axis"] == 2 and group["groups"] == -1 and dropout["rate"] == 0.25
    weights = [w for _, _, w in architecture.weight_shapes()][:3]
    assert weights == [(("gamma", (7, 5, 6)),), (("gamma", (5,)), ("beta", (5,))), (("gamma", (6,)),)]
    assert Architecture.from_config(architecture.to_config()) == architecture


def test_descriptions_refuse_in_one_line_naming_the_layer():
    config = {"input_shape": [7, 5, 6], "layers": [{"type": "GroupNormalization", "groups": 4}, {"type": "Flatten"},
                                                   {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError, match=r"layer 0 \(group_normalization, GroupNormalization\): groups=4 "
                                                r"does not divide the 6 channels"):
        Architecture.from_config(config)
    config["layers"][0] = {"type": "LayerNormalization", "axis": [1, 2, 3, 4]}
    with pytest.raises(ArchitectureError, match=r"layer 0 \(layer_normalization, LayerNormalization\): axis 4"):
        Architecture.from_config(config)


def test_a_keras_file_converts_both_ways_bit_identically(tmp_path, capsys):
    """The real ``convert`` command, .keras -> .ckpt -> .keras: every setting and every weight bit kept."""
    model = sequential_case((12, 10, 3), L.Conv2D(8, 3), L.LayerNormalization(axis=[-1, 1]), L.SpatialDropout2D(0.3),
                            L.GroupNormalization(4, epsilon=1e-5), L.Conv2D(4, 2, strides=2),
                            L.LayerNormalization(axis=[1, 2, 3], center=False), L.GroupNormalization(-1))
    for layer in model.layers:
        layer.set_weights([np.random.default_rng(3).normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    model.save(tmp_path / "norms.keras")
    for source, target in (("norms.keras", "norms.ckpt"), ("norms.ckpt", "again.keras")):
        command_line(["convert", str(tmp_path / source), str(tmp_path / target)])
        assert "check on " in capsys.readouterr().out
    before, after = read_keras_file(tmp_path / "norms.keras"), read_keras_file(tmp_path / "again.keras")
    assert before.architecture.layers == after.architecture.layers
    assert {name: [w.tobytes() for w in ws] for name, ws in before.weights.items()} == \
        {name: [w.tobytes() for w in ws] for name, ws in after.weights.items()}
