"""Legacy HDF5 model files (``model.save("model.h5")``) into the bridge: Keras 2's (real tf.keras 2.21 files in
tests/data/keras2, which tests/data/keras2/make_files.py wrote) and Keras 3's own, converted to every format and run
by predict and test, after checks that refuse what Keras must not read (mnist_common/legacy_h5.py)."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from bridge_check import keras
from conftest import REPO, main_error, run_python_module
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.checkpoints import load_networks
from lightning_mnist.formats import onnx_model
from lightning_mnist.models.network import Probabilities
from mnist_common.keras_file import MAX_H5_LINKS

KERAS2 = REPO / "tests" / "data" / "keras2"


def convert(source, destination, mnist_dir, capsys, images: int = 1000) -> str:
    command_line(["convert", str(source), str(destination), "--check_images", str(images), "--data_dir",
                  str(mnist_dir)])
    return capsys.readouterr().out


@pytest.mark.parametrize("name", ["keras2_cnn", "keras2_residual", "keras2_mixed", "keras2_tf_ops", "keras2_tf_shapes",
                                  "keras2_tf_images", "keras2_nested", "keras2_nested_sequential", "keras2_fcn",
                                  "keras2_hrnn"])
def test_keras2_files_convert_to_keras_3_and_a_checkpoint_that_compute_what_tf_keras_2_computed(
        name, tmp_path, mnist_dir, mnist, capsys):
    """A Sequential CNN (BatchNormalization, Dropout); a Functional graph (an Add of a separable convolution's output,
    a strided depthwise convolution); a chain of the layers whose Keras 2 settings Keras 3 refuses (a transposed
    convolution, RandomFlip, SpatialDropout2D, LSTM, GRU), left out of a copy Keras reads, never out of the file; a
    graph of TensorFlow functions on Keras tensors (``tf.nn.relu``, ``(a + b) * 0.5 - 0.1``, ``2.0 * h / 4.0``,
    ``tf.math.sigmoid``: TFOpLambda layers), and one of those that move, merge and reduce tensors (``tf.cast``,
    ``tf.expand_dims`` and ``tf.reshape`` of a (28, 28) input, ``tf.concat``, ``tf.nn.leaky_relu``, ``tf.maximum``,
    ``tf.clip_by_value``, ``tf.transpose``, ``tf.reduce_mean``/``tf.reduce_max`` over the image, ``tf.squeeze``,
    ``tf.minimum``), and those of transfer-learning recipes (``tf.pad`` to 32 x 32, ``tf.image.resize`` bilinear and
    nearest, ``tf.image.grayscale_to_rgb``, ``tf.tile``, an exact ``tf.nn.gelu``, ``tf.nn.log_softmax`` out),
    rewritten as the Keras 3 layers they equal; models nested in models (a Sequential block and a
    Functional one holding TensorFlow functions, in a Functional model; a Functional block in a Sequential model),
    which Keras 2 numbered and listed otherwise than Keras 3 reads them; a fully convolutional network for images
    of any size (``keras.Input((None, None, 1))``, pooled by ``tf.reduce_mean``), kept so; Keras 2's hierarchical
    RNN example (an LSTM over each row's pixels in a ``TimeDistributed``, then one over the rows). Each written as
    ``.keras`` and ``.ckpt``, proven, and compared with what tf.keras 2 itself predicted."""
    source = tmp_path / f"{name}.H5"  # a suffix in capitals, as Windows users name files
    shutil.copyfile(KERAS2 / f"{name}.h5", source)
    before = source.read_bytes()
    out = convert(source, tmp_path / f"{name}.keras", mnist_dir, capsys)
    assert f"{source}: Keras 2.21.0 legacy HDF5 file, architecture {name}" in out, out
    assert "optimizer: Adam (lr 0.001) (ignored, only the weights are converted)" in out, out
    assert re.search(r"argmax equal 1000/1000, accuracy Lightning (\S+)% \(\d+\), Keras \1% ", out), out
    out = convert(source, tmp_path / f"{name}.ckpt", mnist_dir, capsys)
    assert f"wrote {tmp_path / name}.ckpt, a Lightning checkpoint" in out, out
    if name == "keras2_tf_ops":  # renamed: a Keras 3 layer name holds no "."
        for layer in ("tf_nn_relu (Activation)", "tf_operators_add (Add)", "tf_math_multiply (Rescaling)",
                      "tf_math_truediv (Rescaling)", "tf_math_sigmoid (Activation)"):
            assert layer in out, out
    if name == "keras2_tf_shapes":
        for layer in ("tf_cast (Identity)", "tf_expand_dims (Reshape)", "tf_reshape (Reshape)",
                      "tf_concat (Concatenate)", "tf_nn_leaky_relu (LeakyReLU)", "tf_math_maximum (Maximum)",
                      "tf_clip_by_value (ReLU)", "tf_compat_v1_transpose (Permute)",
                      "tf_math_reduce_mean (GlobalAveragePooling2D)", "tf_math_reduce_max (GlobalMaxPooling2D)",
                      "tf_compat_v1_squeeze (Reshape)", "tf_math_maximum_1 (ReLU)", "tf_math_minimum (Minimum)"):
            assert layer in out, out
    if name == "keras2_tf_images":
        for layer in ("tf_compat_v1_pad (ZeroPadding2D)", "tf_image_resize (Resizing)", "tf_image_resize_1 (Resizing)",
                      "tf_image_grayscale_to_rgb (Concatenate)", "tf_tile (Concatenate)", "tf_nn_gelu (Activation)",
                      "tf_nn_log_softmax (Activation)"):
            assert layer in out, out
    if name == "keras2_fcn":
        assert re.search(r"\(Input\) +NonexNonex1, built at 28x28x1", out), out
        assert keras.saving.load_model(tmp_path / f"{name}.keras").input_shape == (None, None, None, 1)
    assert source.read_bytes() == before

    x = mnist.test_images[:100, ..., None].astype("float32") / 255.0
    [network] = load_networks(tmp_path / f"{name}.ckpt")
    with torch.no_grad():
        torch_p = Probabilities([network.eval()])(torch.from_numpy(x)).numpy()
    as_probabilities = np.exp if name == "keras2_tf_images" else np.asarray  # its outputs: log-probabilities
    keras2_p = as_probabilities(np.load(KERAS2 / f"{name}_predictions.npy"))  # tf.keras 2.21's own
    assert np.abs(torch_p - keras2_p).max() <= 1e-5
    written = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)  # plain Keras 3 reads it
    assert np.abs(as_probabilities(written.predict(x, verbose=0)) - torch_p).max() <= 1e-5
    if name == "keras2_cnn":
        assert (torch_p.argmax(1) == mnist.test_labels[:100]).mean() >= 0.85  # trained weights, not noise


def test_a_keras3_h5_file_exports_and_predict_and_test_read_it(seed_keras, tmp_path, mnist_dir, mnist, capsys):
    """Keras 3 still writes the legacy format when the name ends in .h5: the notebook's model so saved goes to an
    ONNX file straight from the .h5, and predict (both backends) and test take the .h5 as they take a .keras file."""
    source = tmp_path / "notebook.h5"
    keras.saving.load_model(seed_keras, compile=False).save(source)
    out = convert(source, tmp_path / "notebook.onnx", mnist_dir, capsys, images=500)
    assert "max |p_source - p_onnx|" in out and "accuracy source 99." in out, out
    assert onnx_model.load(tmp_path / "notebook.onnx")(
        mnist.test_images[:1, ..., None].astype("float32") / 255.0).argmax() == mnist.test_labels[0]

    picture = tmp_path / "digit.png"
    Image.fromarray(255 - mnist.test_images[0]).save(picture)  # dark ink on white, as a scan is
    for backend in ("keras", "torch"):
        command_line(["predict", "--weights", str(source), "--backend", backend, str(picture)])
        assert f"digit.png: {mnist.test_labels[0]} (probability" in capsys.readouterr().out
    command_line(["test", "--ckpt_path", str(source), "--data.data_dir", str(mnist_dir), "--data.eval_batch_size",
                  "500", "--trainer.limit_test_batches", "2", "--output_dir", str(tmp_path / "runs")])
    assert re.search(r"test/acc\s*│\s*0\.99", capsys.readouterr().out)  # the notebook's 99 %, from the .h5


def _with_config(tmp_path, config) -> str:
    path = tmp_path / "edited.h5"
    shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = json.dumps(config)
    return path.name


def _with_setting(kind: str, key: str, value):
    """The CNN's first layer of class ``kind`` with its setting ``key`` set to ``value``."""
    def make(tmp_path) -> str:
        with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
            config = json.loads(h5.attrs["model_config"])
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == kind)["config"][key] = value
        return _with_config(tmp_path, config)
    return make


# the CNN's Dense with Keras 2's hard_sigmoid, which Keras 3 would compute with another slope
_with_hard_sigmoid = _with_setting("Dense", "activation", "hard_sigmoid")


def _with_units(units: int):
    """The CNN's Dense declaring ``units`` beside its real weights: Keras allocated the layer first (2,000,000 units
    took 14 GB before Keras found the weights do not fit)."""
    def make(tmp_path) -> str:
        with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
            config = json.loads(h5.attrs["model_config"])
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["units"] = units
        return _with_config(tmp_path, config)
    return make


def _with_class(kind: str):
    """The CNN's Dense renamed a layer class Keras 3 removed (Keras' own refusal advised registering a custom
    object)."""
    def make(tmp_path) -> str:
        with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
            config = json.loads(h5.attrs["model_config"])
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")["class_name"] = kind
        return _with_config(tmp_path, config)
    return make


def _with_weights_of(dtype):
    """The CNN's last kernel stored as ``dtype`` (complex: its imaginary parts were dropped without a word)."""
    def make(tmp_path) -> str:
        path = tmp_path / "linked.h5"
        shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
        with h5py.File(path, "r+") as h5:
            values = h5["model_weights/dense/dense/kernel:0"][...]
            del h5["model_weights/dense/dense/kernel:0"]
            h5["model_weights/dense/dense/kernel:0"] = values.astype(dtype) + 1j
        return path.name
    return make


def _with_deep_config(tmp_path) -> str:
    """A setting of lists 150 deep: every walk of the config recursed past Python's limit (a traceback)."""
    with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
        config = json.loads(h5.attrs["model_config"])
    deep: list = []
    for _ in range(150):
        deep = [deep]
    config["config"]["layers"][1]["config"]["extra"] = deep
    return _with_config(tmp_path, config)


def _with_nested_models(depth: int):
    """The CNN inside ``depth`` Sequential models, one in the other: Keras recursed through 200 of them past
    Python's limit before the bridge's own limit on nesting was reached (a traceback)."""
    def make(tmp_path) -> str:
        with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
            config = json.loads(h5.attrs["model_config"])
        for level in range(depth):
            config = {"class_name": "Sequential", "config": {"name": f"outer_{level}", "layers": [config]}}
        return _with_config(tmp_path, config)
    return make


def _with_attribute(key: str, value):
    """The CNN's file with the HDF5 attribute ``key`` set to ``value`` (an array where Keras wrote text)."""
    def make(tmp_path) -> str:
        path = tmp_path / "edited.h5"
        shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
        with h5py.File(path, "r+") as h5:
            h5.attrs[key] = value
        return path.name
    return make


def _with_external_link(tmp_path) -> str:
    path = tmp_path / "linked.h5"
    shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["secret"] = np.arange(8, dtype="float32")
    with h5py.File(path, "r+") as h5:
        h5["model_weights/extra"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "secret")
    return path.name


def _with_many_names(tmp_path) -> str:
    """Each HDF5 name costs ~0.2 ms to check: a million of them took minutes before the refusal."""
    path = tmp_path / "names.h5"
    shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
    with h5py.File(path, "r+") as h5:
        h5["spare/0"] = np.zeros(1, np.float32)
        for index in range(1, MAX_H5_LINKS):
            h5[f"spare/{index}"] = h5["spare/0"]
    return path.name


def _weights_only(tmp_path) -> str:
    keras.saving.load_model(KERAS2 / "keras2_cnn.h5", compile=False).save_weights(tmp_path / "model.weights.h5")
    return "model.weights.h5"


def _with_operations(tmp_path) -> str:
    inputs = keras.Input((6, 6, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(keras.ops.relu(inputs) * 2.0))).save(
        tmp_path / "operations.h5")  # Keras 3 writes it, and cannot read it back
    return "operations.h5"


def _with_nan_weights(tmp_path) -> str:
    """Was refused only after the conversion, naming its temporary file (``.out.x1y2.keras``)."""
    path = tmp_path / "nan.h5"
    shutil.copyfile(KERAS2 / "keras2_cnn.h5", path)
    with h5py.File(path, "r+") as h5:
        kernels = []
        h5["model_weights"].visititems(lambda name, obj: kernels.append(obj) if "kernel" in name and isinstance(
            obj, h5py.Dataset) else None)
        kernels[-1][...] = np.nan
    return path.name


def _keras3_with_unknown_setting(tmp_path) -> str:
    """A Keras 3 .h5 that Keras refuses for another reason than a Keras operation: its advice about operations
    followed every Keras error on such a file."""
    inputs = keras.Input((6, 6, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(tmp_path / "unknown.h5")
    with h5py.File(tmp_path / "unknown.h5", "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["bogus_setting"] = 1
        h5.attrs["model_config"] = json.dumps(config)
    return "unknown.h5"


def _copy(name):
    def make(tmp_path) -> str:
        shutil.copyfile(KERAS2 / name, tmp_path / name)
        return name
    return make


def _written(content: bytes, name: str = "model.h5"):
    def make(tmp_path) -> str:
        (tmp_path / name).write_bytes(content)
        return name
    return make


@pytest.mark.parametrize("make, message", [
    (_copy("keras2_lambda.h5"), "layer lambda (Lambda) is refused: a Lambda layer holds Python code, which is "
                                "never run here"),
    (_copy("keras2_tfop.h5"), "layer tf.math.square (TFOpLambda tf.math.square) is refused: Keras 3 cannot read "
                              "Keras 2's TensorFlow-function layers, and this bridge rewrites only +, -, *, / (of "
                              "tensors, or a tensor and a number), tf.maximum, tf.minimum, tf.clip_by_value, "
                              "tf.nn.leaky_relu, the activations (relu, relu6, sigmoid, tanh, softmax, elu, selu, "
                              "softplus, silu, swish, gelu, exp, log_softmax), tf.concat"),
    (_with_external_link, "refused, the file does not keep its weights inside itself: model_weights/extra is a "
                          "ExternalLink"),
    (_with_many_names, f"names.h5: the file holds more than {MAX_H5_LINKS:,} HDF5 names, more than any model this "
                       f"bridge converts stores"),
    (_weights_only, "holds weights alone (save_weights), without the model: save the model itself"),
    (lambda tmp_path: _with_config(tmp_path, {"class_name": "Dense", "config": {"units": 3}}),
     "holds a Dense, not a Keras Sequential or Functional model"),
    (_with_hard_sigmoid, "layer dense has activation='hard_sigmoid', which Keras 2.21.0 computed as clip(0.2 * x + "
                         "0.5, 0, 1) and Keras 3 computes as clip(x / 6 + 0.5, 0, 1)"),
    (_written(b"\x89HDF\r\n\x1a\n" + bytes(200)), "is corrupt"),
    (_written(b"GIF89a, not HDF5" * 10), "is not a legacy Keras model file (not an HDF5 file)"),
    (_with_operations, "Keras cannot load it (ValueError: Unknown layer: 'Relu'. Please ensure you are using a "
                       "`keras.utils.custom_object_scope` and that this object is included in the scope. See "),
    (_with_nan_weights, "nan.h5: dense kernel holds NaN or infinite values"),
    (_keras3_with_unknown_setting, "unknown.h5: Keras cannot load it ("),
    (_with_units(2_000_000), "edited.h5: layer dense declares units 2,000,000, but the file holds 2,010 weight values "
                             "for it (Keras would allocate the layer before finding that its weights do not fit)"),
    (_with_class("ThresholdedReLU"), "edited.h5: layer dense (ThresholdedReLU) is refused: Keras 3 has no "
                                     "ThresholdedReLU (ReLU(threshold=theta) computes it but at x == theta)"),
    (_with_class("LocallyConnected2D"), "edited.h5: layer dense (LocallyConnected2D) is refused: Keras 3 has no "
                                        "locally connected layers"),
    (_with_class(["Dense"]), "edited.h5 is corrupt (layer dense has a class_name that is a list, not a name)"),
    # the same activation in the form Keras serialises a function: converted into another network, silently
    (_with_setting("Dense", "activation", {"module": "keras.activations", "class_name": "function",
                                           "config": "hard_sigmoid", "registered_name": "hard_sigmoid"}),
     "layer dense has activation='hard_sigmoid', which Keras 2.21.0 computed as clip(0.2 * x + 0.5, 0, 1)"),
    # sizes Keras allocates before it finds that the weights do not fit (2 GB for this kernel)
    (_with_setting("Conv2D", "kernel_size", [1000, 1000]), "edited.h5: layer conv2d declares kernel_size 1,000,000, "
                                                           "but the file holds 80 weight values for it"),
    (_with_setting("InputLayer", "batch_input_shape", [None, 5000, 5000, 1]), "edited.h5: layer conv2d_input "
     "declares an input of 25,000,000 values, more than this bridge builds (20,000,000)"),
    (_with_weights_of(np.complex64), "linked.h5: weight dense/dense/kernel:0 holds complex64 values, not real numbers"),
    (_with_deep_config, "edited.h5 is corrupt (its model config nests more than 100 levels deep, deeper than any "
                        "model's)"),
    (_with_nested_models(10), "edited.h5: nests models more than 8 deep; refusing it"),
    (_with_attribute("model_config", np.arange(3)), "edited.h5 is corrupt (its model config is a ndarray, not JSON "
                                                    "text)"),
], ids=["lambda", "tf_op", "external_link", "many_names", "weights_only", "not_a_model", "hard_sigmoid", "corrupt",
        "not_hdf5", "keras_operations", "nan_weights", "keras3_unknown_setting", "declared_units", "thresholded_relu",
        "locally_connected", "class_name_list", "hard_sigmoid_function", "kernel_size", "input_shape",
        "complex_weights", "deep_config", "nested_10_deep", "config_array"])
def test_legacy_files_keras_must_not_or_cannot_read_are_refused_in_one_line(make, message, tmp_path, mnist_dir,
                                                                             capsys):
    """Python code and a file reaching outside itself are refused before Keras opens the file; what Keras itself
    cannot read is said in Keras' words, its pages of config left out. Nothing is written."""
    name = make(tmp_path)
    code, error, _ = main_error(command_line, ["convert", str(tmp_path / name), str(tmp_path / "out.keras"),
                                               "--data_dir", str(mnist_dir)], capsys)
    assert code == 2 and message in error and len(error) < 800, error
    assert error.endswith("save the model as .keras") == (make is _with_operations), error  # Keras 3's own files
    assert not (tmp_path / "out.keras").exists()


def test_sizes_a_legacy_file_declares_are_counted_before_keras_allocates_them(tmp_path, mnist_dir, capsys,
                                                                             monkeypatch):
    """A 20 KB file whose input (4000 x 4000, under the input bound) and Dense (1,000 units, under the values the
    file holds for it) declare a 32 GB kernel between them: Keras allocated it before finding that the file's
    weights do not fit. Its layers are now built without allocating first, in a process held to 12 GB of address
    space (without the count: TensorFlow's out-of-memory error, or the machine's memory spent). And a real file's
    count is held to the bridge's bound on weights."""
    import resource

    with h5py.File(KERAS2 / "keras2_cnn.h5", "r") as h5:
        config = json.loads(h5.attrs["model_config"])
    layers = config["config"]["layers"]
    for layer in layers[:2]:  # Keras 2 writes the Sequential's input shape on its first layer too
        layer["config"]["batch_input_shape"] = [None, 4000, 4000, 1]
    next(layer for layer in layers if layer["class_name"] == "Dense")["config"]["units"] = 1000
    _with_config(tmp_path, config)

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))

    proc = run_python_module(mnist_dir, "lightning_mnist", "convert", "edited.h5", "out.ckpt", cwd=tmp_path,
                             check=False, preexec_fn=limit_memory)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: edited.h5: Keras cannot load it (ValueError: Shape mismatch in layer #3 (named dense)"), proc.stderr
    assert "Weight expects shape (7968032, 1000)" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.h5"]

    import keras_bridge.files

    monkeypatch.setattr(keras_bridge.files, "MAX_PARAMETERS", 2_000)
    code, error, _ = main_error(command_line, ["convert", str(KERAS2 / "keras2_cnn.h5"), str(tmp_path / "out.ckpt"),
                                               "--data_dir", str(mnist_dir)], capsys)
    assert code == 2 and error == (f"error: {KERAS2 / 'keras2_cnn.h5'}: its layers declare 2,706 weight values, "
                                   f"more than this bridge builds (2,000)"), error


@pytest.mark.parametrize("argv, message", [
    (["fit", "--ckpt_path", "{h5}"], "a .h5 file has no training state (start from its weights with --weights"),
    (["fit", "--model.architecture", "{h5}"], "a legacy HDF5 Keras model; convert it to a .keras file first "
                                              "(python -m lightning_mnist convert {h5} keras2_cnn.keras)"),
], ids=["resume", "architecture"])
def test_what_a_legacy_file_cannot_be_for_fit_is_said(argv, message, tmp_path, capsys):
    h5 = str(KERAS2 / "keras2_cnn.h5")
    code, error, _ = main_error(command_line, [a.format(h5=h5) for a in argv] + ["--output_dir", str(tmp_path)], capsys)
    assert code == 2 and message.format(h5=h5) in error, error


def test_the_keras_reference_asks_for_the_keras_file_a_legacy_one_converts_to(tmp_path, capsys):
    from keras_reference.__main__ import main as keras_main

    h5 = KERAS2 / "keras2_cnn.h5"
    code, error, _ = main_error(keras_main, ["train", "--weights", str(h5), "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and error == (f"error: --weights {h5}: the Keras reference starts from a .keras file (a legacy "
                                   f"HDF5 model converts to one: python -m lightning_mnist convert {h5} "
                                   f"keras2_cnn.keras)"), error


@pytest.mark.parametrize("function, node, expected", [
    ("math.subtract", ["_CONSTANT_VALUE", -1, 1.0, {"y": ["a", 0, 0]}], ("Rescaling", {"scale": -1.0, "offset": 1.0})),
    ("math.subtract", ["a", 0, 0, {"y": ["b", 0, 0]}], ("Subtract", {})),
    ("math.multiply", ["a", 0, 0, {"y": ["b", 0, 0]}], ("Multiply", {})),
    ("math.add", ["a", 0, 0, {"y": 3}], ("Rescaling", {"scale": 1.0, "offset": 3.0})),
    ("math.add", [["a", 0, 0, {}], ["b", 0, 0, {}], ["c", 0, 0, {}]], "only of two tensors, or a tensor and a number"),
    ("nn.relu", 5, "only where it is called once"),
    ("math.truediv", ["a", 0, 0, {"y": ["b", 0, 0]}], "only for a tensor divided by a number"),
    ("math.truediv", ["_CONSTANT_VALUE", -1, 1.0, {"y": ["a", 0, 0]}], "not a number by a tensor"),
    ("nn.softmax", ["a", 0, 0, {"axis": 1}], ("Softmax", {"axis": 1})),  # the last axis of (batch, classes)
    ("nn.elu", ["a", 0, 0, {"axis": 1}], "only over the last axis (this one is over axis 1)"),
    ("nn.softmax", ["a", 0, 0, {"axis": -1, "name": None}], ("Activation", {"activation": "softmax"})),
    ("nn.relu", ["a", 0, 0, {"features": 1}], "only of one tensor (not with features)"),
    ("math.maximum", ["c", 0, 0, {"y": 0.0, "name": None}], ("ReLU", {})),
    ("math.maximum", ["_CONSTANT_VALUE", -1, 0.0, {"y": ["c", 0, 0]}], ("ReLU", {})),
    ("math.maximum", ["c", 0, 0, {"y": 2.0}], "only of two tensors (or the maximum of a tensor and 0)"),
    ("math.minimum", ["a", 0, 0, {"y": ["b", 0, 0], "name": None}], ("Minimum", {})),
    ("nn.leaky_relu", ["c", 0, 0, {}], ("LeakyReLU", {"negative_slope": 0.2})),  # TensorFlow's default alpha
    ("clip_by_value", ["c", 0, 0, {"clip_value_min": 0.0, "clip_value_max": 6.0}], ("ReLU", {"max_value": 6.0})),
    ("clip_by_value", ["c", 0, 0, {"clip_value_min": -1.0, "clip_value_max": 1.0}], "only from 0 to a positive"),
    ("concat", [["a", 0, 0, {"axis": -1}], ["b", 0, 0, {"axis": -1}]], ("Concatenate", {"axis": -1})),
    ("concat", [["a", 0, 0, {"axis": 0}], ["b", 0, 0, {"axis": 0}]], "along an axis other than the batch's"),
    ("concat", [["a", 0, 0, {"axis": -3}], ["b", 0, 0, {"axis": -3}]], "from 1 to 2 or from -1 to -2 (not the batch"),
    ("reshape", ["c", 0, 0, {"shape": [-1, 784]}], ("Reshape", {"target_shape": [784]})),
    ("reshape", ["c", 0, 0, {"shape": [32, 784]}], "only to a list of sizes whose first is -1 (the batch)"),
    ("expand_dims", ["a", 0, 0, {"axis": -1}], ("Reshape", {"target_shape": [28, 28, 1]})),  # a: Input((28, 28))
    ("expand_dims", ["a", 0, 0, {"axis": 1}], ("Reshape", {"target_shape": [1, 28, 28]})),
    ("expand_dims", ["a", 0, 0, {"axis": 0}], "only at an axis from 1 to 3 or from -1 to -3"),
    ("expand_dims", ["c", 0, 0, {"axis": -1}], "only of a tensor of a known rank"),  # c: a layer's output
    ("compat.v1.squeeze", ["a", 0, 0, {"axis": [1]}], "only of axes of size 1"),  # a's axis 1 holds 28
    ("compat.v1.squeeze", ["g", 0, 0, {"axis": [1, 2]}], ("Reshape", {"target_shape": [-1]})),  # g: (1, 1, C)
    ("squeeze", ["g", 0, 0, {}], ("Reshape", {"target_shape": [-1]})),
    ("squeeze", ["g", 0, 0, {"axis": [0, 1]}], "only of axes of size 1, not the batch"),
    ("compat.v1.transpose", ["a", 0, 0, {"perm": [0, 2, 1], "conjugate": False}], ("Permute", {"dims": [2, 1]})),
    ("transpose", ["a", 0, 0, {"perm": [1, 0, 2]}], "only with a permutation that keeps the batch axis first"),
    ("math.reduce_mean", ["c", 0, 0, {"axis": [1, 2], "keepdims": True}],
     ("GlobalAveragePooling2D", {"keepdims": True})),
    ("math.reduce_max", ["a", 0, 0, {"axis": [1]}], ("GlobalMaxPooling1D", {"keepdims": False})),
    ("math.reduce_mean", ["a", 0, 0, {"axis": [1, 2]}], "global pooling"),  # a holds no channels axis
    ("math.reduce_mean", ["c", 0, 0, {"axis": -1}], "only over axes 1 and 2 of an image's"),
    ("cast", ["c", 0, 0, {"dtype": "float32"}], ("Identity", {})),
    ("cast", ["c", 0, 0, {"dtype": "int32"}], "only to float32"),
    ("compat.v1.pad", ["c", 0, 0, {"paddings": [[0, 0], [2, 2], [1, 3], [0, 0]], "mode": "CONSTANT", "name": None,
                                   "constant_values": 0}], ("ZeroPadding2D", {"padding": [[2, 2], [1, 3]]})),
    ("pad", ["a", 0, 0, {"paddings": [[0, 0], [1, 2], [0, 0]]}], ("ZeroPadding1D", {"padding": [1, 2]})),
    ("pad", ["c", 0, 0, {"paddings": [[0, 0], [2, 2], [2, 2], [0, 0]], "mode": "REFLECT"}], "only with zeros"),
    ("pad", ["c", 0, 0, {"paddings": [[0, 0], [2, 2], [2, 2], [0, 0]], "constant_values": 1.0}], "only with zeros"),
    ("pad", ["c", 0, 0, {"paddings": [[1, 0], [2, 2], [2, 2], [0, 0]]}], "only with zeros"),  # the batch padded
    ("pad", ["a", 0, 0, {"paddings": [[0, 0], [2, 2], [2, 2], [0, 0]]}], "a pair of paddings for each of the input"),
    ("image.resize", ["c", 0, 0, {"size": [32, 30]}],
     ("Resizing", {"height": 32, "width": 30, "interpolation": "bilinear", "antialias": False})),
    ("image.resize", ["c", 0, 0, {"size": [14, 14], "method": "nearest", "antialias": True}],
     ("Resizing", {"interpolation": "nearest", "antialias": True})),
    ("image.resize", ["c", 0, 0, {"size": [32, 32], "method": "bicubic"}], "only to a size [height, width], bilinear"),
    ("image.resize", ["c", 0, 0, {"size": [32, 32], "preserve_aspect_ratio": True}], "the aspect ratio not preserved"),
    ("image.resize", ["a", 0, 0, {"size": [32, 32]}], "only of images (height, width, channels)"),
    ("image.grayscale_to_rgb", ["c", 0, 0, {}], ("Concatenate", {"axis": -1})),
    ("image.grayscale_to_rgb", ["a", 0, 0, {}], "only of images of one channel"),
    ("tile", ["c", 0, 0, {"multiples": [1, 1, 1, 3], "name": None}], ("Concatenate", {"axis": 3})),
    ("tile", ["c", 0, 0, {"multiples": [1, 1, 1, 1]}], ("Identity", {})),
    ("tile", ["c", 0, 0, {"multiples": [1, 2, 1, 3]}], "only with multiples of 1 but one"),
    ("tile", ["c", 0, 0, {"multiples": [2, 1, 1, 1]}], "on an axis other than the batch's"),
    ("tile", ["c", 0, 0, {"multiples": [1, 1, 1, 10**6]}], "only with multiples of 1 but one (at most 64)"),
    ("tile", ["a", 0, 0, {"multiples": [1, 1, 1, 3]}], "for each of the input's axes"),
    ("nn.gelu", ["c", 0, 0, {"approximate": False}], ("Activation", {"activation": "gelu"})),
    ("nn.gelu", ["c", 0, 0, {"approximate": True}], "only exactly (approximate=False"),
    ("nn.log_softmax", ["c", 0, 0, {}], ("Activation", {"activation": "log_softmax"})),
    ("math.reduce_sum", ["c", 0, 0, {"axis": [1, 2]}], "is refused: Keras 3 cannot read Keras 2's TensorFlow-function"),
    # numbers and lists a hand-made file holds (each a traceback before): 10**400, NaN, a permutation of text
    ("math.multiply", ["_CONSTANT_VALUE", -1, 10**400, {"y": ["a", 0, 0]}], "only of tensors and finite numbers"),
    ("math.add", ["a", 0, 0, {"y": float("nan")}], "only of two tensors, or a tensor and a finite number"),
    ("math.truediv", ["a", 0, 0, {"y": 10**400}], "only of two tensors, or a tensor and a finite number"),
    ("clip_by_value", ["c", 0, 0, {"clip_value_min": 0, "clip_value_max": 10**400}], "only from 0 to a positive"),
    ("nn.leaky_relu", ["c", 0, 0, {"alpha": -10**400}], "only with a number alpha of 0 or more"),
    ("transpose", ["a", 0, 0, {"perm": [0, "2", 1]}], "only with a permutation that keeps the batch axis first"),
    ("transpose", ["a", 0, 0, {"perm": [0, None, 1]}], "only with a permutation that keeps the batch axis first"),
])
def test_each_tensorflow_function_keras_2_recorded_becomes_its_keras_3_layer_or_is_refused(function, node, expected):
    """The cases the tf.keras 2 files above do not hold: a number minus a tensor, two tensors, a number divided by
    a tensor (no Keras layer computes it), a softmax over another axis, and each function called in a way no Keras
    layer computes (a concatenation or a reshape of the batch axis, an axis of a rank not known here). ``a`` and
    ``b`` are inputs of shape (28, 28), ``c`` another layer's output, ``g`` a global pooling's (keepdims)."""
    from mnist_common.errors import UserError
    from mnist_common.keras2_tf_ops import rewrite_tf_ops

    inputs = [{"class_name": "InputLayer", "name": name, "config": {"batch_input_shape": [None, 28, 28],
                                                                  "name": name}, "inbound_nodes": []}
              for name in ("a", "b")]
    inputs.append({"class_name": "GlobalMaxPooling2D", "name": "g", "config": {"name": "g", "keepdims": True},
                   "inbound_nodes": [[["c", 0, 0, {}]]]})
    config = {"class_name": "Functional", "config": {"layers": [
        *inputs, {"class_name": "TFOpLambda", "name": f"tf.{function}", "inbound_nodes": [node],
                  "config": {"name": f"tf.{function}", "function": function}}],
        "output_layers": [[f"tf.{function}", 0, 0]]}}
    if isinstance(expected, str):
        with pytest.raises(UserError, match=re.escape(expected)):
            rewrite_tf_ops(config, "model.h5")
        return
    assert rewrite_tf_ops(config, "model.h5")
    layer = config["config"]["layers"][-1]
    kind, settings = expected
    name = f"tf_{function.replace('.', '_')}"
    assert layer["class_name"] == kind and layer["name"] == name and config["config"]["output_layers"] == [[name, 0, 0]]
    assert {key: layer["config"][key] for key in settings} == settings
    if function in ("image.grayscale_to_rgb", "tile"):  # copies of the one input, side by side
        copies = 3 if function == "image.grayscale_to_rgb" else max(node[3]["multiples"])
        assert layer["inbound_nodes"] == [[["c", 0, 0, {}]] * copies]


@pytest.mark.parametrize("key, value", [("keras_version", np.arange(2)), ("backend", np.arange(2)),
                                        ("training_config", json.dumps({"optimizer_config": {
                                            "class_name": "Adam", "config": [1, 2]}})),
                                        ("training_config", json.dumps({"optimizer_config": {
                                            "class_name": "Adam", "config": {"learning_rate": 10**400}}})),
                                        ("training_config", np.arange(2))],
                         ids=["keras_version_array", "backend_array", "optimizer_config_list", "huge_lr",
                              "training_config_array"])
def test_odd_attributes_a_legacy_file_need_not_hold_are_read_as_unknown(key, value, tmp_path, mnist_dir, capsys):
    """The file's Keras version, backend and training config are only reported: an array or a list where Keras
    wrote text, or a learning rate of 10**400, made a traceback; now they read as unknown and the file converts."""
    name = _with_attribute(key, value)(tmp_path)
    out = convert(tmp_path / name, tmp_path / "out.ckpt", mnist_dir, capsys, images=100)
    assert f"wrote {tmp_path / 'out.ckpt'}" in out, out
    assert ("Keras ? legacy HDF5 file" in out) == (key == "keras_version"), out
    if key == "training_config":
        assert "optimizer: none (the model was saved uncompiled)" in out or "optimizer: Adam (ignored" in out, out


def test_a_tensorflow_function_of_a_name_too_long_to_read_is_named_in_a_line_of_sane_length():
    """A hand-made file's function name of 100,000 characters made an error line of 100,580 bytes."""
    from mnist_common.errors import UserError
    from mnist_common.keras2_tf_ops import rewrite_tf_ops

    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "TFOpLambda", "name": "tf.x", "inbound_nodes": [], "config": {"function": "a" * 100_000}}]}}
    with pytest.raises(UserError) as info:
        rewrite_tf_ops(config, "model.h5")
    assert len(str(info.value)) < 1000 and "(TFOpLambda tf.aaaa" in str(info.value) and "a...a" in str(info.value)


@pytest.mark.parametrize("layer_config", ["nn.relu", ["nn.relu"], 5])
def test_a_tensorflow_function_layer_whose_config_is_not_a_dict_is_refused_in_one_line(layer_config):
    """A hand-made file's TFOpLambda whose config is text, a list or a number (a traceback before)."""
    from mnist_common.errors import UserError
    from mnist_common.keras2_tf_ops import rewrite_tf_ops

    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "TFOpLambda", "name": "tf.nn.relu", "inbound_nodes": [], "config": layer_config}]}}
    with pytest.raises(UserError, match=re.escape("layer tf.nn.relu (TFOpLambda tf.) is refused: Keras 3 cannot")):
        rewrite_tf_ops(config, "model.h5")


@pytest.mark.parametrize("nodes", [5, "x", None, [], [["a", 0, 0, {}], ["a", 0, 0, {}]]])
def test_a_tensorflow_function_layer_of_calls_not_keras_2s_is_refused_in_one_line(nodes):
    """``inbound_nodes`` that is not one call (a number, text, nothing, two calls), as a hand-made file may hold."""
    from mnist_common.errors import UserError
    from mnist_common.keras2_tf_ops import rewrite_tf_ops

    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "TFOpLambda", "name": "tf.nn.relu", "inbound_nodes": nodes,
         "config": {"name": "tf.nn.relu", "function": "nn.relu"}}]}}
    with pytest.raises(UserError, match=re.escape("tf.nn.relu as a Keras layer only where it is called once")):
        rewrite_tf_ops(config, "model.h5")


@pytest.mark.parametrize("destination", ["out.onnx", "out.ckpt", "out.keras"])
def test_a_missing_data_folder_is_refused_before_a_legacy_file_is_converted(destination, tmp_path, capsys):
    """As for any source: the MNIST folder the proof reads is checked before anything else (no download is tried
    into a mistyped folder), whichever format the legacy file goes to."""
    missing = tmp_path / "no_such_folder"
    code, error, _ = main_error(command_line, ["convert", str(KERAS2 / "keras2_cnn.h5"), str(tmp_path / destination),
                                               "--data_dir", str(missing)], capsys)
    assert code == 2 and error == (f"error: data folder {missing}: no such folder (give --data_dir the folder holding "
                                   f"MNIST/raw, or set $MNIST_DATA_DIR)"), error
    assert not missing.exists() and not (tmp_path / destination).exists()
