"""``python -m lightning_mnist convert SRC DST``: Lightning checkpoint <-> the notebook's ``.keras`` file.

The direction follows the file types: ``.ckpt -> .keras`` or ``.keras -> .ckpt``.

A ``.keras`` file is checked before anything in it is trusted: it must be a zip
holding exactly ``config.json``, ``model.weights.h5`` and ``metadata.json``; its
config may name only standard Keras layers (a ``Lambda`` layer, which carries
Python code, and custom layers are refused by reading ``config.json`` before
Keras sees the file); the layers must be the notebook's, in its order and with its
settings (compared with :func:`keras_reference.model.build_model`); the weights
must have the notebook's shapes, be float32 and finite, with non-negative moving
variances. Only then is it loaded, with ``safe_mode=True``. The optimizer named in
its compile config (the notebook's file names none, so Keras would build RMSprop)
is reported and ignored: only weights are converted.

Every conversion checks itself before the output file appears: both frameworks
predict the first ``--check-images`` MNIST test images (all 10,000 by default) and
the conversion fails, leaving no file, when any probability differs by more than
1e-5. The weight mapping itself is in :mod:`lightning_mnist.keras_weights`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mnist_common.errors import ArgumentParser, UserError, exit_on_user_error
from lightning_mnist.keras_weights import (
    KERAS_WEIGHT_NAMES, WEIGHTED_LAYERS, keras_to_state_dict, keras_weight_shapes, network_state_dict,
    state_dict_to_keras,
)

if TYPE_CHECKING:  # imported where used: importing this module does not load Lightning
    from lightning_mnist.models import MnistClassifier

CHECK_TOLERANCE = 1e-5  # largest |p_torch - p_keras| a conversion accepts
DEFAULT_CHECK_IMAGES = 10_000
CHECK_BATCH_SIZE = 1000
CKPT_SUFFIX = ".ckpt"
KERAS_SUFFIX = ".keras"

KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 64 << 20
# The standard Keras layers the notebook's model is made of; anything else is refused unread.
STANDARD_LAYERS = ("InputLayer", "Conv2D", "BatchNormalization", "MaxPooling2D", "Flatten", "Dense", "Dropout")
# Per layer class, the config entries that define the architecture; their values must equal
# those of keras_reference.model.build_model()'s config.
ARCHITECTURE_KEYS = {
    "InputLayer": ("batch_shape",),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "Flatten": ("data_format",),
    "Dense": ("units", "activation", "use_bias"),
    "Dropout": ("rate",),
}
# Config entries that must be absent, null or false: the Lightning model has no counterpart.
MUST_BE_UNSET = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                 "bias_constraint", "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint",
                 "quantization_config", "noise_shape", "renorm", "lora_rank")
# Keras' names of the six weighted layers inside model.weights.h5 (snake-case class name, numbered
# in order), which is how Keras 3 lays out a Sequential's weights whatever the layers are called.
H5_LAYER_PATHS = ("layers/conv2d", "layers/batch_normalization", "layers/conv2d_1",
                  "layers/batch_normalization_1", "layers/dense", "layers/dense_1")


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass
class KerasFileInfo:
    """What was read from a ``.keras`` file before Keras loaded it."""

    path: Path
    keras_version: str
    date_saved: str
    optimizer: str  # a description of the compile config's optimizer, which is ignored
    optimizer_variables: int  # saved optimizer state variables (not imported)
    layer_weights: list[list[np.ndarray]]  # the six weighted layers' arrays, Keras layout, from the h5 file

    def describe(self) -> str:
        return (f"{self.path}: Keras {self.keras_version} file saved {self.date_saved}; optimizer: {self.optimizer}"
                f"{f', {self.optimizer_variables} saved optimizer variables' if self.optimizer_variables else ''}"
                f" (ignored, only the weights are converted)")


@dataclass
class ParityReport:
    """Both frameworks on the same MNIST test images."""

    images: int
    max_prob_diff: float  # max |p_torch - p_keras|
    max_logit_diff: float  # max |z_torch - z_keras|, z = the input of the final softmax
    argmax_equal: int
    correct_torch: int
    correct_keras: int

    @property
    def acc_torch(self) -> float:
        return self.correct_torch / self.images

    @property
    def acc_keras(self) -> float:
        return self.correct_keras / self.images

    @property
    def ok(self) -> bool:
        return self.max_prob_diff <= CHECK_TOLERANCE

    def describe(self) -> str:
        return (f"check on {self.images} MNIST test images: max |p_torch - p_keras| = {self.max_prob_diff:.2e} "
                f"(limit {CHECK_TOLERANCE:.0e}), max logit difference {self.max_logit_diff:.2e}, "
                f"argmax equal {self.argmax_equal}/{self.images}, accuracy Lightning {self.acc_torch:.2%} "
                f"({self.correct_torch}), Keras {self.acc_keras:.2%} ({self.correct_keras})")


# ---------------------------------------------------------------------------------------------
# Reading and checking a .keras file


def _keras():
    from mnist_common.frameworks import import_keras

    return import_keras()


def _reference_layers() -> list[dict[str, Any]]:
    """keras_reference.model.build_model()'s layer configs, JSON-normalised (tuples become lists)."""
    from keras_reference.model import build_model

    return json.loads(json.dumps(build_model().get_config()["layers"]))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _read_keras_zip(path: Path) -> tuple[dict, dict, bytes]:
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a .keras file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if sorted(names) != sorted(KERAS_MEMBERS):
                raise UserError(f"{path} is not a Keras 3 model file: it holds {', '.join(names) or 'nothing'}, "
                                f"expected exactly {', '.join(KERAS_MEMBERS)}")
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            if sizes["config.json"] > MAX_CONFIG_BYTES or sizes["metadata.json"] > MAX_CONFIG_BYTES \
                    or sizes["model.weights.h5"] > MAX_WEIGHTS_BYTES:
                raise UserError(f"{path}: members are far larger than this model's ({sizes})")
            raw = {name: archive.read(name) for name in KERAS_MEMBERS}  # checks every member's CRC-32
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as err:
        raise UserError(f"{path} is corrupt ({_one_line(err)})") from None
    try:
        config = json.loads(raw["config.json"])
        metadata = json.loads(raw["metadata.json"])
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise UserError(f"{path} is corrupt (config.json or metadata.json is not JSON: {_one_line(err)})") from None
    if not isinstance(config, dict) or not isinstance(metadata, dict):
        raise UserError(f"{path} is corrupt (config.json or metadata.json is not a JSON object)")
    return config, metadata, raw["model.weights.h5"]


def _check_objects(node: Any, path: Path, where: str = "config") -> None:
    """Every serialized object in the config must be a built-in Keras one (no custom or registered classes)."""
    if isinstance(node, dict):
        if "class_name" in node:
            module = node.get("module")
            registered = node.get("registered_name")
            if node["class_name"] == "Lambda":
                raise UserError(f"{path}: {where} holds a Lambda layer (Python code); refusing to load it")
            if (module is not None and not (module == "keras" or str(module).startswith("keras.")))\
                    or registered not in (None, node["class_name"]):
                raise UserError(f"{path}: {where} holds a custom object {registered or node['class_name']!r} "
                                f"(module {module!r}), not a standard Keras one; refusing to load it")
        for key, value in node.items():
            _check_objects(value, path, where)
    elif isinstance(node, list):
        for value in node:
            _check_objects(value, path, where)


def _layer_list(config: dict, path: Path) -> list[dict]:
    if config.get("class_name") != "Sequential" or config.get("module") not in ("keras", "keras.models", None):
        raise UserError(f"{path} holds a {config.get('module')}.{config.get('class_name')} model, "
                        f"expected the notebook's keras Sequential")
    layers = (config.get("config") or {}).get("layers")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise UserError(f"{path} is corrupt (its config has no layer list)")
    for i, layer in enumerate(layers):
        name = (layer.get("config") or {}).get("name", "?")
        cls = layer.get("class_name")
        if cls == "Lambda":
            raise UserError(f"{path}: layer {i} ({name}) is a Lambda layer, which holds Python code; "
                            f"refusing to load it")
        if cls not in STANDARD_LAYERS or layer.get("module") != "keras.layers" or layer.get("registered_name"):
            raise UserError(f"{path}: layer {i} ({name}) is {layer.get('registered_name') or cls!r} from module "
                            f"{layer.get('module')!r}, not one of the standard Keras layers of this model "
                            f"({', '.join(STANDARD_LAYERS)}); refusing to load it")
    _check_objects(config, path)
    return layers


def _dtype_name(layer_config: dict) -> str | None:
    dtype = layer_config.get("dtype")
    if isinstance(dtype, dict):
        return (dtype.get("config") or {}).get("name")
    return dtype


def _check_architecture(layers: list[dict], path: Path) -> None:
    reference = _reference_layers()
    got = [layer["class_name"] for layer in layers]
    expected = [layer["class_name"] for layer in reference]
    if got != expected:
        raise UserError(f"{path} holds another architecture: layers {', '.join(got)}; "
                        f"the notebook's are {', '.join(expected)}")
    for i, (layer, ref) in enumerate(zip(layers, reference)):
        cls, cfg, ref_cfg = layer["class_name"], layer.get("config") or {}, ref["config"]
        label = f"layer {i} ({cls} {cfg.get('name', '?')})"
        for key in ARCHITECTURE_KEYS[cls]:
            if cfg.get(key) != ref_cfg.get(key):
                raise UserError(f"{path} holds another architecture: {label} has {key}={cfg.get(key)!r}, "
                                f"the notebook's has {ref_cfg.get(key)!r}")
        for key in MUST_BE_UNSET:
            if cfg.get(key):
                raise UserError(f"{path}: {label} sets {key}, which the Lightning model has no counterpart for")
        if _dtype_name(cfg) not in ("float32", None):
            raise UserError(f"{path}: {label} computes in {_dtype_name(cfg)}, expected float32")


def _read_weights(h5_bytes: bytes, path: Path) -> tuple[list[list[np.ndarray]], int]:
    """The six weighted layers' arrays from model.weights.h5, checked; and the number of optimizer variables."""
    import h5py

    shapes = keras_weight_shapes()
    try:
        with h5py.File(io.BytesIO(h5_bytes), "r") as h5:
            datasets: dict[str, Any] = {}
            h5.visititems(lambda name, obj: datasets.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
            layer_sets = {name for name in datasets if not name.startswith("optimizer/")}
            expected_sets = {f"{layer}/vars/{i}" for layer, layer_shapes in zip(H5_LAYER_PATHS, shapes)
                             for i in range(len(layer_shapes))}
            if layer_sets != expected_sets:
                extra = sorted(layer_sets - expected_sets)
                missing = sorted(expected_sets - layer_sets)
                raise UserError(f"{path}: model.weights.h5 does not hold this model's weights "
                                f"(missing {missing[:3] or 'none'}, unexpected {extra[:3] or 'none'})")
            weights = []
            for (torch_name, kind), layer, layer_shapes in zip(WEIGHTED_LAYERS, H5_LAYER_PATHS, shapes):
                arrays = []
                for i, (shape, weight_name) in enumerate(zip(layer_shapes, KERAS_WEIGHT_NAMES[kind])):
                    dataset = datasets[f"{layer}/vars/{i}"]
                    label = f"{layer.split('/')[1]} {weight_name}"
                    if dataset.dtype != np.float32:
                        raise UserError(f"{path}: {label} is stored as {dataset.dtype}, expected float32")
                    if tuple(dataset.shape) != shape:
                        raise UserError(f"{path} holds another architecture: {label} has shape "
                                        f"{tuple(dataset.shape)}, expected {shape}")
                    value = np.asarray(dataset[()], dtype=np.float32)
                    if not np.isfinite(value).all():
                        raise UserError(f"{path}: {label} holds NaN or infinite values")
                    if weight_name == "moving_variance" and (value < 0).any():
                        raise UserError(f"{path}: {label} holds negative variances")
                    arrays.append(value)
                weights.append(arrays)
            optimizer_variables = len(datasets) - len(layer_sets)
    except UserError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, ValueError... on damaged files
        raise UserError(f"{path} is corrupt (model.weights.h5 cannot be read: {_one_line(err)})") from None
    return weights, optimizer_variables


def _describe_optimizer(config: dict) -> str:
    compile_config = config.get("compile_config") or {}
    optimizer = compile_config.get("optimizer")
    if not compile_config:
        return "none (the model was saved uncompiled)"
    if optimizer is None:
        return "the compile config names none, so Keras would build its default RMSprop (lr 0.001)"
    if isinstance(optimizer, str):
        return f"{optimizer} (default settings)"
    if isinstance(optimizer, dict):
        lr = (optimizer.get("config") or {}).get("learning_rate")
        return f"{optimizer.get('class_name')}" + (f" (lr {lr:.3g})" if isinstance(lr, (int, float)) else "")
    return repr(optimizer)[:80]


def inspect_keras_file(path: str | os.PathLike) -> KerasFileInfo:
    """Check a ``.keras`` file without letting Keras deserialize it; :class:`UserError` unless it is the notebook's.

    Imports Keras (for the reference architecture) only after the zip and its
    config have passed the checks that need no Keras.
    """
    path = Path(path)
    config, metadata, h5_bytes = _read_keras_zip(path)
    try:
        layers = _layer_list(config, path)
        _check_architecture(layers, path)
    except (AttributeError, TypeError, KeyError) as err:  # JSON of an unexpected shape
        raise UserError(f"{path} is corrupt (unexpected config.json structure: {_one_line(err)})") from None
    weights, optimizer_variables = _read_weights(h5_bytes, path)
    return KerasFileInfo(path=path, keras_version=str(metadata.get("keras_version", "?")),
                         date_saved=str(metadata.get("date_saved", "?")), optimizer=_describe_optimizer(config),
                         optimizer_variables=optimizer_variables, layer_weights=weights)


def _load_checked_keras(path: str | os.PathLike) -> tuple[Any, KerasFileInfo]:
    """Validate, then ``keras.saving.load_model(safe_mode=True, compile=False)``; check it holds the file's weights."""
    info = inspect_keras_file(path)
    keras = _keras()
    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as err:  # whatever Keras says about a file that passed our checks
        raise UserError(f"{path}: Keras cannot load it ({_one_line(err)})") from None
    loaded = _keras_layer_weights(model)
    for expected, got in zip(info.layer_weights, loaded):
        if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
            raise UserError(f"{path}: the weights Keras loaded differ from those in model.weights.h5")
    return model, info


def _keras_layer_weights(model) -> list[list[np.ndarray]]:
    layers = [layer for layer in model.layers if layer.weights]
    if len(layers) != len(WEIGHTED_LAYERS):
        raise UserError(f"expected {len(WEIGHTED_LAYERS)} layers with weights, found {len(layers)}")
    return [[np.asarray(w, dtype=np.float32) for w in layer.get_weights()] for layer in layers]


# ---------------------------------------------------------------------------------------------
# Reading a checkpoint


def _read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(MnistCNN state_dict without prefix, MnistClassifier hyper-parameters) of a checkpoint, checked.

    Loaded with ``weights_only=True``: a checkpoint cannot run code while it is read.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or holds objects weights_only refuses
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({_one_line(err)})") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a checkpoint of MnistClassifier (it holds a {type(checkpoint).__name__})")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict):
        raise UserError(f"{path} is not a checkpoint of MnistClassifier (no state_dict)")
    weights = network_state_dict(state_dict, str(path))
    saved = checkpoint.get("hyper_parameters")
    return weights, _classifier_hparams(saved if isinstance(saved, dict) else {})


def _classifier_hparams(saved: dict[str, Any]) -> dict[str, Any]:
    """The saved hyper-parameters MnistClassifier takes (plain values only; LightningCLI's extras dropped)."""
    import inspect

    from lightning_mnist.models import MnistClassifier

    accepted = set(inspect.signature(MnistClassifier.__init__).parameters) - {"self", "network"}
    return {key: value for key, value in saved.items()
            if key in accepted and isinstance(value, (bool, int, float, str))}


# ---------------------------------------------------------------------------------------------
# Building one framework's model from the other's weights


def classifier_from_weights(weights: dict[str, torch.Tensor], **hparams) -> MnistClassifier:
    """A MnistClassifier in eval mode holding ``weights`` (MnistCNN keys, with or without ``network.``)."""
    from lightning_mnist.models import MnistClassifier

    try:
        classifier = MnistClassifier(**hparams)
    except (TypeError, ValueError) as err:
        raise UserError(f"the checkpoint's hyper-parameters {hparams} are not MnistClassifier's "
                        f"({_one_line(err)})") from None
    weights = network_state_dict(weights, "weights")
    classifier.network.load_state_dict(weights, strict=True)
    return classifier.eval()


def keras_model_from_weights(weights: dict[str, torch.Tensor] | list[list[np.ndarray]]):
    """The notebook's Sequential (keras_reference.model), filled with ``weights`` and compiled as the notebook did."""
    from keras_reference.model import build_model, compile_model

    layer_weights = state_dict_to_keras(weights) if isinstance(weights, dict) else weights
    model = build_model()
    for layer, arrays in zip([layer for layer in model.layers if layer.weights], layer_weights, strict=True):
        layer.set_weights(arrays)
    compile_model(model)
    # Create Adam's (zero) moments now, so the saved file holds the optimizer's full state and
    # loading it with compile=True restores the optimizer instead of warning that it skips it.
    model.optimizer.build(model.trainable_variables)
    return model


def load_classifier(path: str | os.PathLike) -> MnistClassifier:
    """A MnistClassifier in eval mode from a Lightning ``.ckpt`` or a (checked) notebook ``.keras`` file."""
    suffix = Path(path).suffix.lower()
    if suffix == CKPT_SUFFIX:
        weights, hparams = _read_checkpoint(path)
        return classifier_from_weights(weights, **hparams)
    if suffix == KERAS_SUFFIX:
        _check_exists(Path(path))
        info = inspect_keras_file(path)
        return classifier_from_weights(keras_to_state_dict(info.layer_weights))
    raise UserError(f"{path}: expected a {CKPT_SUFFIX} or {KERAS_SUFFIX} file")


def load_keras_model(path: str | os.PathLike):
    """The notebook's Keras model, compiled as the notebook did (Adam 1e-4), from a ``.keras`` or ``.ckpt`` file.

    A ``.keras`` file is checked and loaded with ``safe_mode=True``; a checkpoint is converted in memory.
    """
    suffix = Path(path).suffix.lower()
    if suffix == KERAS_SUFFIX:
        _check_exists(Path(path))
        from keras_reference.model import compile_model

        model, _ = _load_checked_keras(path)
        return compile_model(model)
    if suffix == CKPT_SUFFIX:
        weights, _ = _read_checkpoint(path)
        return keras_model_from_weights(weights)
    raise UserError(f"{path}: expected a {KERAS_SUFFIX} or {CKPT_SUFFIX} file")


# ---------------------------------------------------------------------------------------------
# The check both directions run


def keras_on_cpu():
    """A context in which Keras (TensorFlow) computes on the CPU.

    The check compares both frameworks on the CPU in plain float32: on a GPU, TF32
    convolutions (on by default in TensorFlow and for cuDNN in torch) would add
    differences of about 1e-3 that say nothing about the conversion.
    """
    _keras()
    import tensorflow as tf  # only after import_keras, see mnist_common.frameworks

    return tf.device("/CPU:0")


def keras_logits_and_probs(model, images_nhwc: np.ndarray, batch_size: int = CHECK_BATCH_SIZE):
    """(logits, probabilities) of the notebook's Keras model; logits = the final softmax's input.

    The logits are the last Dense layer recomputed (float32) from the penultimate output,
    which a sub-model returns together with the softmax probabilities in one pass.
    """
    keras = _keras()
    last = model.layers[-1]
    with keras_on_cpu():
        both = keras.Model(model.inputs, [model.layers[-2].output, model.outputs[0]])
        features, probs = both.predict(images_nhwc, batch_size=batch_size, verbose=0)
    kernel, bias = (np.asarray(w, dtype=np.float32) for w in last.get_weights())
    return features.astype(np.float32) @ kernel + bias, probs


@torch.inference_mode()
def torch_logits(classifier: MnistClassifier, images_nchw: torch.Tensor, batch_size: int = CHECK_BATCH_SIZE):
    classifier.eval()
    return torch.cat([classifier(images_nchw[i:i + batch_size]) for i in range(0, len(images_nchw), batch_size)])


def compare_frameworks(classifier: MnistClassifier, keras_model, images: int = DEFAULT_CHECK_IMAGES,
                       data_dir: str | os.PathLike | None = None) -> ParityReport:
    """Run both models on the first ``images`` MNIST test images; compare probabilities, logits, argmax.

    Both run on the CPU (see :func:`keras_on_cpu`); the classifier is moved there if needed.
    """
    from mnist_common.mnist import load_mnist
    from lightning_mnist.data.datamodule import to_tensor

    classifier = classifier.cpu()
    mnist = load_mnist(data_dir)
    if not 1 <= images <= len(mnist.test_images):
        raise UserError(f"--check-images must be between 1 and {len(mnist.test_images)}, got {images}")
    x = to_tensor(mnist.test_images[:images])  # (N, 1, 28, 28) float32 in [0, 1]
    labels = mnist.test_labels[:images].astype(np.int64)
    z_torch = torch_logits(classifier, x).float().numpy()
    p_torch = torch.softmax(torch.from_numpy(z_torch), dim=1).numpy()
    z_keras, p_keras = keras_logits_and_probs(keras_model, x.permute(0, 2, 3, 1).numpy())  # identical pixels, NHWC
    return ParityReport(
        images=images,
        max_prob_diff=float(np.abs(p_torch - p_keras).max()),
        max_logit_diff=float(np.abs(z_torch - z_keras).max()),
        argmax_equal=int((p_torch.argmax(1) == p_keras.argmax(1)).sum()),
        correct_torch=int((p_torch.argmax(1) == labels).sum()),
        correct_keras=int((p_keras.argmax(1) == labels).sum()),
    )


class ConversionCheckFailed(UserError):
    """The converted model does not predict what the source model predicts; nothing was written."""


def _verify(report: ParityReport, destination: Path) -> ParityReport:
    if not math.isfinite(report.max_prob_diff) or not report.ok:
        raise ConversionCheckFailed(f"conversion check failed, {destination} not written: "
                                    f"max |p_torch - p_keras| = {report.max_prob_diff:.3g} > {CHECK_TOLERANCE:g} "
                                    f"on {report.images} test images")
    return report


# ---------------------------------------------------------------------------------------------
# The two conversions


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a file")


def _temporary_twin(destination: Path) -> Path:
    """An unused file name next to ``destination``, with its suffix (Keras insists on ``.keras``)."""
    if not destination.parent.is_dir():
        raise UserError(f"output directory {destination.parent} does not exist")
    try:
        fd, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.stem}.", suffix=destination.suffix)
    except OSError as err:
        raise UserError(f"cannot write to {destination.parent}: {err.strerror or err}") from None
    os.close(fd)
    return Path(name)


def _write_atomically(destination: Path, write, check) -> Any:
    """``write(tmp)``, ``check(tmp)``, then rename to ``destination``; on any failure nothing is left behind."""
    tmp = _temporary_twin(destination)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        result = check(tmp)
        os.replace(tmp, destination)
        return result
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_to_keras(ckpt_path: str | os.PathLike, keras_path: str | os.PathLike,
                        check_images: int = DEFAULT_CHECK_IMAGES,
                        data_dir: str | os.PathLike | None = None) -> ParityReport | None:
    """Write the notebook's ``.keras`` model holding a Lightning checkpoint's weights.

    The file is compiled like the notebook (Adam 1e-4, categorical cross-entropy,
    accuracy), so Keras can keep training it. Before it appears at ``keras_path``
    it is reloaded with ``safe_mode=True`` and checked against the checkpoint on
    ``check_images`` test images (0 skips the check). Returns the check's report.
    """
    ckpt_path, keras_path = Path(ckpt_path), Path(keras_path)
    weights, hparams = _read_checkpoint(ckpt_path)
    classifier = classifier_from_weights(weights, **hparams)
    model = keras_model_from_weights(weights)
    keras = _keras()

    def check(tmp: Path) -> ParityReport | None:
        inspect_keras_file(tmp)  # the file passes the importer's own checks
        if not check_images:
            return None
        reloaded = keras.saving.load_model(str(tmp), safe_mode=True)
        return _verify(compare_frameworks(classifier, reloaded, check_images, data_dir), keras_path)

    return _write_atomically(keras_path, lambda tmp: model.save(str(tmp)), check)


def save_checkpoint(classifier: MnistClassifier, path: str | os.PathLike, **extra) -> None:
    """A checkpoint ``MnistClassifier.load_from_checkpoint`` and ``Trainer.test(ckpt_path=...)`` accept."""
    import lightning

    torch.save({
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()},
        "hyper_parameters": dict(classifier.hparams),
        "hparams_name": "kwargs",
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        **extra,
    }, path)


def keras_to_checkpoint(keras_path: str | os.PathLike, ckpt_path: str | os.PathLike,
                        check_images: int = DEFAULT_CHECK_IMAGES,
                        data_dir: str | os.PathLike | None = None) -> ParityReport | None:
    """Write a Lightning checkpoint holding the weights of the notebook's ``.keras`` file.

    The file is checked (see :func:`inspect_keras_file`) and loaded with
    ``safe_mode=True, compile=False``; its optimizer is ignored. The checkpoint is
    read back and checked against the Keras model on ``check_images`` test images
    (0 skips the check) before it appears at ``ckpt_path``.
    """
    return _keras_to_checkpoint(keras_path, ckpt_path, check_images, data_dir)[0]


def _keras_to_checkpoint(keras_path, ckpt_path, check_images, data_dir) -> tuple[ParityReport | None, KerasFileInfo]:
    keras_path, ckpt_path = Path(keras_path), Path(ckpt_path)
    _check_exists(keras_path)
    model, info = _load_checked_keras(keras_path)
    classifier = classifier_from_weights(keras_to_state_dict(info.layer_weights))
    source = {"path": str(keras_path), "keras_version": info.keras_version, "date_saved": info.date_saved,
              "optimizer_ignored": info.optimizer}

    def check(tmp: Path) -> ParityReport | None:
        reloaded = load_classifier(tmp)
        if not check_images:
            return None
        return _verify(compare_frameworks(reloaded, model, check_images, data_dir), ckpt_path)

    report = _write_atomically(ckpt_path, lambda tmp: save_checkpoint(classifier, tmp, keras_source=source), check)
    return report, info


# ---------------------------------------------------------------------------------------------
# Command line




def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_mnist convert",
        description="Convert between a Lightning checkpoint (.ckpt) and the notebook's Keras model (.keras). "
                    "The direction follows the file types. The result is checked on MNIST test images "
                    f"(max |p_torch - p_keras| <= {CHECK_TOLERANCE:g}) before it is written.")
    parser.add_argument("src", help="a .ckpt of MnistClassifier, or a .keras file of the notebook's model")
    parser.add_argument("dst", help="the .keras or .ckpt file to write")
    parser.add_argument("--check-images", type=int, default=DEFAULT_CHECK_IMAGES,
                        help="check on the first N MNIST test images, 1 to 10000 (%(default)s)")
    parser.add_argument("--data-dir", default=None, help="holds MNIST/raw ($MNIST_DATA_DIR, else ./data)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    pair = (src.suffix.lower(), dst.suffix.lower())
    if pair not in ((CKPT_SUFFIX, KERAS_SUFFIX), (KERAS_SUFFIX, CKPT_SUFFIX)):
        raise UserError(f"cannot convert {src.suffix or 'a file without extension'} to "
                        f"{dst.suffix or 'a file without extension'}: use .ckpt -> .keras or .keras -> .ckpt")
    if not 1 <= args.check_images <= DEFAULT_CHECK_IMAGES:
        raise UserError(f"--check-images must be between 1 and {DEFAULT_CHECK_IMAGES}, got {args.check_images}")
    _check_exists(src)
    if not dst.parent.is_dir():
        raise UserError(f"output directory {dst.parent} does not exist")
    if dst.is_dir():
        raise UserError(f"{dst} is a directory; name the file to write")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError("source and destination are the same file")
    started = time.perf_counter()
    if pair[0] == KERAS_SUFFIX:
        report, info = _keras_to_checkpoint(src, dst, args.check_images, args.data_dir)
        print(info.describe())
    else:
        report = checkpoint_to_keras(src, dst, args.check_images, args.data_dir)
    print(report.describe())
    print(f"wrote {dst} ({time.perf_counter() - started:.1f} s)")


__all__ = ["CHECK_TOLERANCE", "ConversionCheckFailed", "KerasFileInfo", "ParityReport", "checkpoint_to_keras",
           "classifier_from_weights", "compare_frameworks", "inspect_keras_file", "keras_model_from_weights",
           "keras_on_cpu", "keras_to_checkpoint", "load_classifier", "load_keras_model", "main", "save_checkpoint",
           "torch_logits"]
