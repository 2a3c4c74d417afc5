"""Preprocessing layers against Keras: Normalization (adapted mean and variance, weights with Keras' int64
``count``, and values given as settings, on every kind of kept axes, and its ``invert``), Resizing and CenterCrop
(every interpolation and aspect-ratio setting, shrinking, growing, odd surpluses).

Adapted layers get random means and variances (and a random count, which must come back as it was); inputs
have odd, unequal sizes, so that a mean on the wrong axis or transposed shows. Rescaling, the other
preprocessing layer, is checked with the layers that move values (``test_layers_reshaping.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge_check import (L, assert_description_refused, assert_keras_layer_refused, assert_matches_keras,
                          assert_settings_round_trip, converts_and_comes_back, keras, network_of,
                          predicts_alike_on_both_backends, randomised, sampler, sequential_case)
from lightning_mnist.models import KerasNetwork, MnistClassifier, keras_parameter_count
from lightning_mnist.models.layers.layout import to_keras_layout, to_torch_layout

IMAGE = (6, 5, 3)  # height, width and channels all differ
CASES = {
    # adapted: weights of the kept axes' sizes, whichever axes and however Keras counts them
    "adapted_channels": (IMAGE, [L.Normalization()]),
    "adapted_one_for_all": (IMAGE, [L.Normalization(axis=None)]),
    "adapted_height_width": (IMAGE, [L.Normalization(axis=(1, 2))]),
    "adapted_height_channels": (IMAGE, [L.Normalization(axis=(3, 1))]),
    "adapted_every_axis": (IMAGE, [L.Normalization(axis=(1, 2, 3))]),
    "adapted_negative_axes": (IMAGE, [L.Normalization(axis=(-2, 1))]),
    "adapted_inverted": (IMAGE, [L.Normalization(axis=(1, 3), invert=True)]),
    "adapted_mnist_pixels": ((28, 28, 1), [L.Normalization(axis=(1, 2)), L.Conv2D(3, 3, strides=2)]),
    "adapted_rows": ((28, 28), [L.Normalization(axis=1), L.Dense(5)]),
    "adapted_flat": ((784,), [L.Normalization(), L.Dense(7)]),
    "adapted_after_a_convolution": ((9, 7, 2), [L.Conv2D(4, 3), L.Normalization(axis=(2, 3))]),
    # given: a number, or values broadcast from the last kept axis backwards
    "given_mnist_statistics": ((28, 28, 1), [L.Normalization(mean=0.1307, variance=0.3081 ** 2), L.Conv2D(2, 3)]),
    "given_per_channel": (IMAGE, [L.Normalization(mean=[0.5, -1.0, 2.0], variance=[0.25, 4.0, 1.0])]),
    "given_per_width": (IMAGE, [L.Normalization(axis=(1, 2), mean=np.arange(5.0), variance=np.arange(5.0) + 0.5)]),
    "given_per_height_width": (IMAGE, [L.Normalization(axis=(1, 2), mean=np.ones((6, 5)),
                                                       variance=np.full((6, 5), 3.0))]),
    "given_one_row_broadcast": (IMAGE, [L.Normalization(axis=(2, 3), mean=[[1.0, 2.0, 3.0]],
                                                        variance=[[1.0, 2.0, 3.0]], invert=True)]),
    "given_one_for_all_flat": ((12,), [L.Normalization(axis=None, mean=3.0, variance=2.0), L.Dense(4)]),
}
RESIZE_CASES = {
    # Resizing: up, down, by factors that are no integers, each interpolation, the aspect-ratio crop and padding
    "resizing_up_to_32": ((28, 28, 1), [L.Resizing(32, 32), L.Conv2D(2, 5, strides=2)]),
    "resizing_down_to_14": ((28, 28, 1), [L.Resizing(14, 14), L.Conv2D(2, 3)]),
    "resizing_odd_factors": ((9, 7, 3), [L.Resizing(5, 11)]),
    "resizing_nearest": ((9, 7, 3), [L.Resizing(13, 4, interpolation="nearest")]),
    "resizing_antialiased_down": ((28, 28, 1), [L.Resizing(10, 12, antialias=True)]),
    "resizing_antialiased_up": ((6, 5, 2), [L.Resizing(11, 9, antialias=True)]),
    # torch's one-pass antialiased kernel is wrong for one channel resized to one column (two passes are right)
    "resizing_antialiased_to_one_column": ((28, 28, 1), [L.Resizing(14, 1, antialias=True)]),
    "resizing_antialiased_odd_to_one_column": ((9, 7, 1), [L.Resizing(20, 1, antialias=True)]),
    "resizing_antialiased_to_one_row": ((9, 7, 1), [L.Resizing(1, 5, antialias=True)]),
    "resizing_crop_to_aspect": ((9, 7, 3), [L.Resizing(4, 6, crop_to_aspect_ratio=True)]),
    "resizing_crop_to_aspect_nearest": ((28, 28, 1), [L.Resizing(20, 30, crop_to_aspect_ratio=True,
                                                                 interpolation="nearest")]),
    "resizing_pad_to_aspect": ((9, 7, 3), [L.Resizing(6, 8, pad_to_aspect_ratio=True, fill_value=0.7)]),
    "resizing_pad_rows": ((28, 28, 1), [L.Resizing(30, 20, pad_to_aspect_ratio=True, fill_value=-1.5)]),
    "resizing_in_a_chain": ((784,), [L.Reshape((28, 28, 1)), L.Conv2D(3, 3), L.Resizing(16, 16), L.Conv2D(2, 3)]),
    # CenterCrop: a slice (odd surpluses at the bottom and right), or Keras' smart_resize when the image is smaller
    "center_crop_even": ((28, 28, 1), [L.CenterCrop(24, 24), L.Conv2D(2, 3)]),
    "center_crop_odd_surplus": ((9, 8, 3), [L.CenterCrop(6, 5)]),
    "center_crop_same_size": ((6, 5, 2), [L.CenterCrop(6, 5)]),
    "center_crop_larger_grows": ((6, 5, 2), [L.CenterCrop(8, 9)]),
    "center_crop_larger_on_one_axis": ((9, 7, 3), [L.CenterCrop(4, 10)]),
}
CASES.update(RESIZE_CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_normalization_matches_keras(case):
    shape, case_layers = CASES[case]
    assert_matches_keras(sequential_case(shape, *case_layers, name=case), source=case)


@pytest.mark.parametrize("case", list(CASES))
@torch.no_grad()
def test_the_layer_alone_gives_what_keras_gives(case):
    """Its output on random values, the layer's own: as Keras' within one float32 rounding (TensorFlow divides by
    a broadcast tensor its own way), its values where Keras puts them."""
    shape, case_layers = CASES[case]
    model = randomised(sequential_case(shape, *case_layers))
    architecture, network = network_of(model)
    [node] = [n for n in architecture.nodes if n.layer.type in ("Normalization", "Resizing", "CenterCrop")]
    layer = model.get_layer(node.name)
    [before] = architecture.input_shapes_of(node)
    x = np.random.default_rng(1).normal(1.0, 2.0, size=(4, *before)).astype(np.float32)
    expected = np.asarray(layer(x))
    got = to_keras_layout(dict(network.named_modules())[node.name](to_torch_layout(torch.from_numpy(x)))).numpy()
    assert got.shape == expected.shape == (4, *architecture.shapes[node.name])
    if node.layer.type == "CenterCrop" and node.layer.fits(before) or getattr(node.layer, "interpolation", "") \
            == "nearest":
        assert np.array_equal(got, expected)  # values moved, none computed
    else:  # tf.image.resize weighs its neighbours in its own float32 order
        np.testing.assert_allclose(got, expected, rtol=3e-7, atol=1e-6 if node.layer.type == "Normalization"
                                   else 2e-5)


@torch.no_grad()
def test_a_zero_variance_divides_by_keras_epsilon():
    """A standard deviation below Keras' epsilon (1e-7) is that epsilon, not a division by zero."""
    model = sequential_case(IMAGE, L.Normalization(mean=[0.5, -1.0, 2.0], variance=[0.0, 1e-16, 4.0]))
    architecture, network = network_of(model)
    [node] = architecture.nodes[:1]
    x = np.random.default_rng(2).normal(size=(3, *IMAGE)).astype(np.float32)
    expected = np.asarray(model.get_layer(node.name)(x))
    got = to_keras_layout(dict(network.named_modules())[node.name](to_torch_layout(torch.from_numpy(x)))).numpy()
    assert np.isfinite(got).all() and np.abs(got[..., 0]).max() > 1e5
    np.testing.assert_allclose(got, expected, rtol=3e-7)


def test_adapted_weights_keep_keras_names_shapes_dtypes_and_count():
    """mean and variance of the kept axes' sizes, count an int64 scalar: non-trainable as Keras counts them, in the
    state dict (a random count included) and back."""
    model = randomised(sequential_case(IMAGE, L.Normalization(axis=(1, 3)), L.Conv2D(2, 3)), seed=4)
    architecture, network = network_of(model)
    [layer] = [layer for layer in model.layers if isinstance(layer, L.Normalization)]
    assert [(v.name, tuple(v.shape), v.dtype) for v in layer.weights] == [
        ("mean", (6, 3), "float32"), ("variance", (6, 3), "float32"), ("count", (), "int64")]
    state = network.state_dict()
    assert state[f"{layer.name}.count"].dtype == torch.int64 and int(state[f"{layer.name}.count"]) == \
        int(layer.get_weights()[2]) != 0
    assert np.array_equal(state[f"{layer.name}.mean"].numpy(), layer.get_weights()[0])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    assert architecture.parameter_count() == keras_parameter_count(network) == (trainable, frozen) == (trainable, 37)
    fresh = KerasNetwork(architecture)  # built as Keras builds an adapt-less layer: the identity
    assert fresh.state_dict()[f"{layer.name}.count"].dtype == torch.int64
    assert torch.equal(fresh.state_dict()[f"{layer.name}.variance"], torch.ones(6, 3))


def test_training_leaves_the_statistics_as_they_are():
    """Neither Keras' fit nor a torch training step changes them: buffers, not parameters."""
    model = randomised(sequential_case((28, 28, 1), L.Normalization(axis=(1, 2)), L.Conv2D(2, 3)), seed=2)
    _, network = network_of(model)
    before = {k: v.clone() for k, v in network.state_dict().items() if k.startswith("normalization")}
    assert before and not any(name.startswith("normalization") for name, _ in network.named_parameters())
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    network.train()
    loss = network(torch.rand(8, 1, 28, 28)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    assert all(torch.equal(network.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("case", ["adapted_height_channels", "given_per_width", "given_mnist_statistics",
                                  "adapted_one_for_all"])
def test_settings_round_trip_as_keras_spells_them(case, tmp_path):
    assert_settings_round_trip(*CASES[case], tmp_path)


def test_an_adapted_mnist_model_converts_both_ways_and_predicts_alike(tmp_path, capsys, mnist, seed_png):
    """A model that adapts Normalization to MNIST's training pixels, as a .keras file: convert proves .ckpt, .onnx
    and .tflite on MNIST, .ckpt -> .keras gives every weight back bit for bit (count too), and predict gives one
    digit on both backends."""
    images = mnist.train_images[:2000].astype(np.float32)[..., None] / 255.0
    norm = L.Normalization(axis=None)
    model = sequential_case((28, 28, 1), norm, L.Conv2D(8, 3, strides=2, activation="relu"),
                            L.Normalization(axis=-1, invert=True), L.MaxPooling2D())
    norm.adapt(images)
    model.save(tmp_path / "adapted.keras")
    before, _ = converts_and_comes_back(tmp_path / "adapted.keras", tmp_path, capsys,
                                       targets=("model.ckpt", "model.onnx", "model.tflite"))
    mean, variance, count = before.weights[norm.name]
    assert count.dtype == np.int64 and mean.shape == variance.shape == ()
    assert abs(float(mean) - images.mean()) < 1e-6
    predicts_alike_on_both_backends(tmp_path / "model.ckpt", seed_png, capsys)


@pytest.mark.parametrize("antialias, targets", [(True, ("model.ckpt", "model.onnx", "model.pt2")),
                                                 (False, ("model.ckpt", "model.tflite"))])
def test_a_resizing_model_converts_to_every_format_and_back(antialias, targets, tmp_path, capsys):
    """Resizing and CenterCrop in a .keras file: each format proven on MNIST, and back to .keras with every
    setting. TensorFlow Lite has no antialiased resize (``tf.ScaleAndTranslate``): that export is refused in one
    line naming the layer, and writes nothing."""
    from lightning_mnist.__main__ import main as command_line

    model = randomised(sequential_case((28, 28, 1), L.Resizing(20, 24, antialias=antialias, crop_to_aspect_ratio=True),
                                       L.Conv2D(4, 3, activation="relu"), L.Resizing(32, 32, pad_to_aspect_ratio=True),
                                       L.CenterCrop(30, 29), L.MaxPooling2D(3)), seed=6)
    model.save(tmp_path / "resizing.keras")
    before, after = converts_and_comes_back(tmp_path / "resizing.keras", tmp_path, capsys, targets=targets)
    assert [n.layer for n in after.architecture.nodes if n.layer.type in ("Resizing", "CenterCrop")] == \
        [n.layer for n in before.architecture.nodes if n.layer.type in ("Resizing", "CenterCrop")]
    if antialias:
        with pytest.raises(SystemExit) as exit_info:
            command_line(["convert", str(tmp_path / "resizing.keras"), str(tmp_path / "model.tflite")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "Resizing) cannot be exported to .tflite" in err
        assert not (tmp_path / "model.tflite").exists()


@torch.no_grad()
def test_training_from_a_keras_file_keeps_what_normalization_adapted(tmp_path, mnist):
    """``fit``/``keras_reference train --model.architecture file.keras`` train the file's network afresh, but
    Normalization's adapted mean and variance are the data's statistics, not weights to train: the architecture
    they train keeps them as settings (nested in a block too), which both frameworks then compute with."""
    from keras_bridge.build import build_model
    from mnist_common.model_files import load_architecture

    pixels = mnist.train_images[:3000].astype(np.float32)[..., None]  # 0-255, as many Keras users feed them
    inner = L.Normalization(axis=(1, 2), name="per_pixel")
    block = keras.Sequential([keras.Input((28, 28, 1)), inner, L.Conv2D(4, 3)], name="block")
    inputs = keras.Input((28, 28, 1))
    outer = L.Normalization(name="overall")
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(block(outer(inputs)))))
    outer.adapt(pixels)
    inner.adapt((pixels - pixels.mean()) / pixels.std())
    model.save(tmp_path / "adapted.keras")
    architecture = load_architecture(tmp_path / "adapted.keras")
    layers = {node.name: node.layer for node in architecture.nodes}
    assert np.asarray(layers["overall"].mean, np.float32) == pytest.approx(outer.get_weights()[0])
    assert np.array_equal(np.asarray(layers["per_pixel"].variance, np.float32), inner.get_weights()[1])
    assert architecture.parameter_count()[1] == 0  # no weights left to them: nothing to reset
    recorded = MnistClassifier(architecture=str(tmp_path / "adapted.keras")).hparams["architecture"]["layers"][0]
    assert np.array_equal(recorded["mean"], layers["overall"].mean)  # what the run's checkpoints say it trained
    x = pixels[:5]
    keras_fresh, torch_fresh = build_model(architecture), KerasNetwork(architecture).eval()
    for name, layer in (("overall", outer), ("per_pixel", inner)):
        before = x if name == "overall" else np.asarray(outer(x))
        expected = np.asarray(layer(before))
        assert np.array_equal(np.asarray(keras_fresh.get_layer(name)(before)), expected)
        got = getattr(torch_fresh, name)(torch.from_numpy(before).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, expected, rtol=3e-7, atol=1e-6)


# --- the samplers and refusals ----------------------------------------------------------------------


@sampler("Normalization")
def make_normalization(rng: np.random.Generator, shape: tuple[int, ...]):
    rank = len(shape)
    axes = [a for a in range(1, rank + 1) if rng.random() < 0.5]
    axes = [a - rank - 1 if rng.random() < 0.5 else a for a in axes]  # Keras also counts from the end
    axis = None if not axes else axes[0] if len(axes) == 1 and rng.random() < 0.5 else tuple(axes)
    invert = bool(rng.random() < 0.3)
    if rng.random() < 0.5:
        return L.Normalization(axis=axis, invert=invert)  # adapted: randomised() draws its statistics
    kept = tuple(shape[a % (rank + 1) - 1] for a in sorted(a % (rank + 1) for a in axes))
    given = kept[len(kept) - int(rng.integers(0, len(kept) + 1)):]  # the last kept axes, or a number
    return L.Normalization(axis=axis, invert=invert, mean=rng.normal(0.0, 1.0, given),
                           variance=rng.uniform(0.2, 3.0, given))


@sampler("Resizing")
def make_resizing(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 3:
        return None
    aspect = rng.choice(["none", "crop", "pad"])
    # up to a few rows and columns more: enough to grow and shrink, small enough for the random graphs' runs
    return L.Resizing(int(rng.integers(2, shape[0] + 4)), int(rng.integers(2, shape[1] + 4)),
                      interpolation=str(rng.choice(["bilinear", "nearest"])), antialias=bool(rng.random() < 0.3),
                      crop_to_aspect_ratio=bool(aspect == "crop"), pad_to_aspect_ratio=bool(aspect == "pad"),
                      fill_value=float(rng.normal()))


@sampler("CenterCrop")
def make_center_crop(rng: np.random.Generator, shape: tuple[int, ...]):
    if len(shape) != 3:
        return None
    return L.CenterCrop(int(rng.integers(1, shape[0] + 3)), int(rng.integers(1, shape[1] + 3)))


@pytest.mark.parametrize("shape, layer, message", [
    ((8, 8, 2), L.Resizing(4, 4, interpolation="bicubic"), "interpolation must be one of bilinear, nearest, got "),
    ((8, 8, 2), L.Resizing(4, 4, interpolation="lanczos3"), "interpolation must be one of bilinear, nearest"),
    ((8, 8, 2), L.Resizing(4, 4, interpolation="area"), "interpolation must be one of bilinear, nearest"),
    ((8, 8, 2), L.Resizing(4, 4, data_format="channels_first"), "Resizing) has data_format='channels_first'"),
    ((8, 8, 2), L.CenterCrop(4, 4, data_format="channels_first"), "CenterCrop) has data_format='channels_first'"),
    ((28, 28), L.Resizing(32, 32), "Resizing): needs an (H, W, C) image input, got 28x28; Keras reads any other"),
    ((28, 28), L.CenterCrop(20, 20), "CenterCrop): needs an (H, W, C) image input, got 28x28"),
])
def test_keras_image_layers_outside_what_is_mirrored_are_refused_in_one_line(shape, layer, message):
    assert_keras_layer_refused(shape, layer, message)


@pytest.mark.parametrize("layer, message", [
    ({"type": "Resizing", "height": 4, "width": 4, "crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True},
     "crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be true"),
    ({"type": "Resizing", "height": 0, "width": 4}, "height must be a positive integer, got 0"),
    ({"type": "Resizing", "height": 4}, "Resizing): needs width"),
    ({"type": "Resizing", "height": 4, "width": 4, "fill_mode": "reflect"}, "fill_mode must be one of constant"),
    ({"type": "CenterCrop", "height": 4, "width": 2.5}, "width must be a positive integer, got 2.5"),
    ({"type": "Resizing", "height": 4, "width": 4, "pad_to_aspect_ratio": True, "fill_value": 1e39},
     "fill_value must be within float32's range"),
    ({"type": "Normalization", "mean": [1.0, 1e39, 0.0], "variance": 1.0}, "mean must be within float32's range"),
    ({"type": "Normalization", "mean": 1.0, "variance": 3.5e38}, "variance must be within float32's range"),
    ({"type": "Rescaling", "scale": 1.0, "offset": [0.0, -1e39, 0.0]}, "offset must be within float32's range"),
    ({"type": "RandomRotation", "factor": 0.1, "fill_mode": "constant", "fill_value": -1e300},
     "fill_value must be within float32's range"),
    ({"type": "Normalization", "mean": 0.5}, "mean and variance must be given together"),
    ({"type": "Normalization", "mean": [1.0, 2.0], "variance": [1.0]}, "mean has shape (2,) and variance (1,)"),
    ({"type": "Normalization", "mean": 1.0, "variance": -1.0}, "variance holds negative values"),
    ({"type": "Normalization", "mean": "0.1", "variance": 1.0}, "mean must be a number or a nested list of numbers"),
    ({"type": "Normalization", "mean": [1.0, None], "variance": [1.0, 1.0]}, "mean must be a number or a nested"),
    ({"type": "Normalization", "mean": float("nan"), "variance": 1.0}, "mean must be a number or a nested list"),
    ({"type": "Normalization", "axis": -1, "mean": [[1.0]], "variance": [[1.0]]},
     "mean has 2 axes, more than the 1 axis [-1] keeps"),
    ({"type": "Normalization", "axis": -1, "mean": [1.0, 2.0], "variance": [1.0, 2.0]},
     "mean and variance of shape (2,) do not broadcast to the kept axes [-1] of a 9x8x3 input (3)"),
    ({"type": "Normalization", "axis": 0}, "axis [0] keeps the batch axis (0)"),
    ({"type": "Normalization", "axis": 4}, "axis 4 is not an axis of a 9x8x3 input"),
    ({"type": "Normalization", "axis": [1, -3]}, "axis [1, -3] names an axis of a 9x8x3 input twice"),
    ({"type": "Normalization", "axis": "last"}, "axis must be an integer, a list of integers or null"),
    ({"type": "Normalization", "invert": "yes"}, "invert must be true or false"),
])
def test_descriptions_outside_what_keras_computes_are_refused_in_one_line(layer, message):
    assert_description_refused([9, 8, 3], layer, message)


def test_a_count_of_another_dtype_or_a_negative_variance_in_a_file_is_refused(tmp_path, capsys):
    """The file's weights are checked before Keras loads them: count must be a non-negative int64, variances
    non-negative."""
    import h5py
    import zipfile

    from lightning_mnist.__main__ import main as command_line

    model = randomised(sequential_case((28, 28, 1), L.Normalization(axis=(1, 2), name="norm"), L.Conv2D(2, 3)), seed=5)
    model.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for number, (name, change, message) in enumerate((
            ("count", lambda h5, key: (h5.__delitem__(key), h5.create_dataset(key, data=np.float32(3.0))),
             "norm count is stored as float32, expected int64"),
            ("variance", lambda h5, key: h5[key].__setitem__((0, 0), -1.0),
             "norm variance holds negative variances"),
            ("count", lambda h5, key: h5[key].write_direct(np.array(-5, dtype=np.int64)),
             "norm count is negative, a count of examples"))):
        (tmp_path / "weights.h5").write_bytes(members["model.weights.h5"])
        with h5py.File(tmp_path / "weights.h5", "r+") as h5:
            change(h5, f"layers/normalization/vars/{ {'count': 2, 'variance': 1}[name] }")
        with zipfile.ZipFile(tmp_path / f"{name}{number}.keras", "w") as archive:
            for member, data in members.items():
                archive.writestr(member, (tmp_path / "weights.h5").read_bytes() if member == "model.weights.h5"
                                 else data)
        with pytest.raises(SystemExit) as exit_info:
            command_line(["convert", str(tmp_path / f"{name}{number}.keras"), str(tmp_path / f"{name}{number}.ckpt")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / f"{name}{number}.ckpt").exists()
