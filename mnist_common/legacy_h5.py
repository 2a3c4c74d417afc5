"""Check a legacy HDF5 model file (``model.save("model.h5")``, Keras 2's default) before Keras reads it.

Keras 3 still reads the files Keras 2 (``tf.keras``) and Keras 3 itself save in the legacy format:
one HDF5 file whose attribute ``model_config`` is the model's JSON and whose group ``model_weights``
holds the weights. It is the bridge's way in for such a file: Keras reads it, then the model is
written as a Keras 3 ``.keras`` file, which the bridge reads as any other. Nothing in it is trusted
until:

* it is an HDF5 file of a sane size whose every object and byte is inside it
  (:func:`mnist_common.keras_file.check_storage`: no external storage, virtual dataset, soft or
  external link, or filter other than HDF5's built-in ones);
* ``model_config`` is JSON naming a Sequential or Functional model (a file of weights alone, which
  ``save_weights`` writes, is refused, saying so);
* no layer holds Python code: a ``Lambda`` (Keras 2 kept its function as marshalled bytecode, which
  Keras would run) is refused, naming the layer, before Keras sees the file, and so is Keras 2's
  ``SlicingOpLambda`` (``x[:, 1:]`` on a Keras tensor). Its ``TFOpLambda`` layers (a TensorFlow function applied
  to Keras tensors: ``a + b``, ``x * 0.5``, ``tf.nn.relu(x)``), which Keras 3 cannot read, are rewritten as the Keras
  3 layers they equal, or refused naming the function (:mod:`mnist_common.keras2_tf_ops`).

Settings Keras 2 saved but never used, which Keras 3 refuses (:data:`KERAS2_UNUSED`), are left out
of the config Keras reads (a copy of the file's; the file is never changed). One activation changed its
meaning between the two: Keras 2's ``hard_sigmoid`` is ``clip(0.2 * x + 0.5, 0, 1)``, Keras 3's
``clip(x / 6 + 0.5, 0, 1)``; a Keras 2 file using it (as an activation or an LSTM's recurrent one) is refused,
since Keras 3 would compute another network than the one trained.

Only then may Keras load it (``keras_bridge.files.load_legacy_h5``, with ``safe_mode=True`` and
without compiling); the layers it holds are then checked as a ``.keras`` file's are.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mnist_common.architecture.description import MAX_ACTIVATIONS
from mnist_common.architecture.keras_config import MAX_NESTING, MODEL_CLASSES
from mnist_common.errors import UserError, escaped, one_line
from mnist_common.keras2_tf_ops import model_layers, nested_models, rewrite_tf_ops
from mnist_common.keras_file import MAX_JSON_BYTES, MAX_WEIGHTS_BYTES, check_file, check_storage, describe_optimizer

MAX_CONFIG_DEPTH = 100  # lists and dicts in a model config: a real one's are under 50 (8 nested models deep)
LEGACY_SUFFIXES = (".h5", ".hdf5")  # the suffixes Keras reads as its legacy HDF5 format
# Layer settings that size a layer's weights: each weight value they count is one the file must hold for the layer
# (a Dense of 2,000,000 units, declared in a 1 MB file beside its real weights, took 14 GB in Keras' build)
SIZE_SETTINGS = ("units", "filters", "output_dim", "input_dim", "depth_multiplier", "num_heads", "key_dim",
                 "value_dim")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Keras 2 layers that hold Python code or a TensorFlow function this bridge does not rewrite -> what to do instead
CODE_LAYERS = {
    "Lambda": "a Lambda layer holds Python code, which is never run here",
    "SlicingOpLambda": "Keras 2 recorded a slice of a Keras tensor (x[:, 1:]) as a TensorFlow function, which Keras 3 "
                       "cannot read: rebuild it with a Cropping or Reshape layer and save it again",
}

# Keras 2 layers Keras 3 no longer has (its advice for an unknown class, to register a custom object, would mislead)
REMOVED_LAYERS = {
    "ThresholdedReLU": "Keras 3 has no ThresholdedReLU (ReLU(threshold=theta) computes it but at x == theta): rebuild "
                       "it with ReLU(threshold=...) and save it again",
    **{kind: "Keras 3 has no locally connected layers (a convolution whose weights differ at each position)"
       for kind in ("LocallyConnected1D", "LocallyConnected2D")},
}


# Settings Keras 2 saved for a layer that Keras 3's refuses: class -> {setting: the value that means what Keras 3
# does, or ANY}. Keras 2's depthwise, separable and transposed convolutions kept their base convolution's groups (the
# separable ones its kernel settings too, unused); its recurrent layers, time_major (batch-major is Keras 3's only
# layout); its random augmentation layers, the kind of random generator (Keras 3 has its own; inference is the
# identity either way); its spatial dropouts, a dropout's trainable and noise_shape, which Keras 3's do not take.
ANY = object()
KERAS2_UNUSED = {
    **{kind: {"groups": 1} for kind in ("DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose")},
    **{kind: {"groups": 1, "kernel_initializer": ANY, "kernel_regularizer": None, "kernel_constraint": None}
       for kind in ("SeparableConv1D", "SeparableConv2D")},
    **{kind: {"time_major": False} for kind in ("SimpleRNN", "LSTM", "GRU")},
    **{kind: {"rng_type": ANY} for kind in ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                                            "RandomContrast", "RandomBrightness", "RandomCrop")},
    **{kind: {"trainable": True, "noise_shape": None} for kind in ("SpatialDropout1D", "SpatialDropout2D")},
}


@dataclass(frozen=True)
class LegacyH5:
    """What a checked legacy HDF5 model file says of itself."""

    path: Path
    model_class: str  # Sequential or Functional
    name: str
    keras_version: str  # of the Keras that saved it (2.x: tf.keras)
    backend: str
    config: dict[str, Any]  # the model config Keras 3 can read: Keras 2's unused settings (KERAS2_UNUSED) left out
    config_changed: bool  # whether that differs from the file's
    optimizer: str  # its training config's optimizer, described (ignored)


def is_legacy_h5(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a legacy HDF5 model file, by its suffix (as Keras tells the formats apart)."""
    return Path(path).suffix.lower() in LEGACY_SUFFIXES


def _text(value: Any) -> str | None:
    """An HDF5 attribute's text (h5py gives str or bytes); None for anything else a hand-made file holds there (an
    array, a number)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _layers(config: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, entry) for every dict naming a ``class_name`` in the config, at any depth (nested models, wrapped
    layers, initializers)."""
    if isinstance(config, dict):
        if "class_name" in config:
            inner = config.get("config") if isinstance(config.get("config"), dict) else {}
            yield str(inner.get("name") or config.get("name") or path or "the model"), config
        for key, value in config.items():
            yield from _layers(value, f"{path}/{key}" if path else str(key))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from _layers(value, f"{path}[{index}]")


def check_legacy_h5(path: str | os.PathLike) -> LegacyH5:
    """Check ``path`` as the module docstring says; :class:`UserError` naming what is wrong."""
    import h5py

    path = check_file(path)
    with path.open("rb") as file:
        if file.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise UserError(f"{path} is not a legacy Keras model file (not an HDF5 file)")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes, larger than any model this bridge converts")
    try:
        with h5py.File(path, "r") as h5:
            check_storage(h5, path, "the file")
            attributes = {key: h5.attrs.get(key) for key in ("model_config", "keras_version", "backend",
                                                               "training_config")}
            # Keras 2's save_weights: layer groups named by "layer_names"; Keras 3's (".weights.h5"): layers/, vars/
            has_weights = "model_weights" in h5 or "layer_names" in h5.attrs or "layers" in h5
            stored = _stored_values(h5, path)
    except UserError:
        raise
    except Exception as err:  # h5py's errors for a damaged file are of several kinds
        raise UserError(f"{path} is corrupt ({one_line(err)})") from None
    if attributes["model_config"] is None:
        what = "weights alone (save_weights), without the model" if has_weights else "no Keras model"
        raise UserError(f"{path} holds {what}: save the model itself (model.save), or load these weights into it "
                        f"in Keras and save it as .keras")
    raw = _text(attributes["model_config"])
    if raw is None:
        raise UserError(f"{path} is corrupt (its model config is a {type(attributes['model_config']).__name__}, "
                        f"not JSON text)")
    if len(raw) > MAX_JSON_BYTES:
        raise UserError(f"{path}: its model config ({len(raw):,} bytes) is larger than any model this bridge converts")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise UserError(f"{path} is corrupt (its model config is not JSON: {one_line(err)})") from None
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise UserError(f"{path} holds a {kind}, not a Keras Sequential or Functional model")
    if _json_depth(config) > MAX_CONFIG_DEPTH:  # every walk of it (ours, Keras') recurses that deep
        raise UserError(f"{path} is corrupt (its model config nests more than {MAX_CONFIG_DEPTH} levels deep, "
                        f"deeper than any model's)")
    if _nesting_depth(config) > MAX_NESTING:  # Keras would recurse through them all (past Python's recursion limit)
        raise UserError(f"{path}: nests models more than {MAX_NESTING} deep; refusing it")
    keras_version = _text(attributes["keras_version"]) or "?"
    for where, entry in _layers(config):
        if not isinstance(entry["class_name"], str):
            raise UserError(f"{path} is corrupt (layer {where} has a class_name that is a "
                            f"{type(entry['class_name']).__name__}, not a name)")
        settings = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        # by its name, or in the form Keras serialises a function ({"class_name": "function", "config": ...})
        changed_meaning = [key for key in ("activation", "recurrent_activation")
                           if "hard_sigmoid" in json.dumps(settings.get(key)) and not keras_version.startswith("3.")]
        if changed_meaning:
            raise UserError(f"{path}: layer {where} has {changed_meaning[0]}='hard_sigmoid', which Keras "
                            f"{keras_version} computed as clip(0.2 * x + 0.5, 0, 1) and Keras 3 computes as "
                            f"clip(x / 6 + 0.5, 0, 1): read by Keras 3 it would be another network than the one "
                            f"trained, so it is refused")
        if entry.get("class_name") in CODE_LAYERS:
            kind = entry["class_name"]
            raise UserError(f"{path}: layer {where} ({kind}) is refused: {CODE_LAYERS[kind]}")
        if entry.get("class_name") in REMOVED_LAYERS:
            raise UserError(f"{path}: layer {where} ({entry['class_name']}) is refused: "
                            f"{REMOVED_LAYERS[entry['class_name']]}")
        # a layer inside a wrapper keeps its weights under another name (Bidirectional's forward_lstm): all of them
        held = stored.get(where, stored.get("", 0))
        kernel = settings.get("kernel_size")  # kernel values: at least the window's (Conv2D (1000, 1000): 2 GB)
        window = math.prod(kernel) if isinstance(kernel, list) and all(
            isinstance(k, int) and not isinstance(k, bool) for k in kernel) else kernel
        shape = settings.get("batch_input_shape", settings.get("batch_shape"))  # an input of 4000 x 4000 x 1 made
        values = math.prod(size for size in shape[1:] if isinstance(size, int) and not isinstance(size, bool)) \
            if isinstance(shape, list) else 0  # Keras allocate a Dense kernel of 7,968,032 x 10 before refusing it
        if values > MAX_ACTIVATIONS:
            raise UserError(f"{path}: layer {where} declares an input of {values:,} values, more than this bridge "
                            f"builds ({MAX_ACTIVATIONS:,})")
        for key, size in (*((key, settings.get(key)) for key in SIZE_SETTINGS), ("kernel_size", window)):
            if isinstance(size, int) and not isinstance(size, bool) and size > held:
                raise UserError(f"{path}: layer {where} declares {key} {size:,}, but the file holds {held:,} weight "
                                f"values for it (Keras would allocate the layer before finding that its weights do "
                                f"not fit)")
    changed = rewrite_tf_ops(config, path)  # Keras 2's x + y, x * 0.5, tf.nn.relu(x) as the Keras 3 layers they are
    if keras_version.startswith("2."):
        changed = _nested_models_for_keras3(config) or changed
    for where, entry in _layers(config):
        unused, settings = KERAS2_UNUSED.get(entry.get("class_name"), {}), entry.get("config")
        for key, value in unused.items():
            if isinstance(settings, dict) and key in settings and (value is ANY or settings[key] == value):
                del settings[key]
                changed = True
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    return LegacyH5(path=path, model_class=str(config["class_name"]), name=str(inner.get("name") or "model"),
                    keras_version=keras_version,
                    backend=_text(attributes["backend"]) or "?", config=config, config_changed=changed,
                    optimizer=_optimizer(attributes["training_config"]))


def _json_depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value``, counted no further than past :data:`MAX_CONFIG_DEPTH` (a walk
    that does not recurse itself)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_CONFIG_DEPTH:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return deepest


def _nesting_depth(config: dict[str, Any], depth: int = 1) -> int:
    """How deep models are nested in the model ``config`` (1: none), counted no further than past
    :data:`MAX_NESTING`."""
    if depth > MAX_NESTING:
        return depth
    return max([depth, *(_nesting_depth(entry, depth + 1) for entry in nested_models(config))])


def _renumbered(value: Any, models: set[str]) -> Any:
    """``value`` with every reference to a call of one of ``models`` ([name, node, tensor, ...]) one node lower."""
    if isinstance(value, list):
        if (len(value) >= 3 and isinstance(value[0], str) and value[0] in models and isinstance(value[1], int)
                and not isinstance(value[1], bool) and value[1] >= 1):
            return [value[0], value[1] - 1, *(_renumbered(v, models) for v in value[2:])]
        return [_renumbered(v, models) for v in value]
    if isinstance(value, dict):
        return {key: _renumbered(v, models) for key, v in value.items()}
    return value


def _nested_models_for_keras3(config: dict[str, Any]) -> bool:
    """Two ways Keras 2 recorded a model nested in another (a block called as a layer) that Keras 3 reads otherwise:

    * it numbered the nested model's calls from 1 where the model was built on an Input of its own (its first node,
      from that Input to its outputs, is left out of the file): ``[block, 1, 0]`` for its first call, which Keras 3,
      numbering from 0, cannot resolve ("the graph ... has loops or disconnected nodes");
    * it listed a Functional block's one input and one output as lists of one (``[[conv, 0, 0]]``), which Keras 3
      then hands to the next layer as a list ("MaxPooling2D.call()" in a Sequential model).

    Both are rewritten, in this model and in every model nested in it; whether anything was."""
    nested = nested_models(config)
    changed = any([_nested_models_for_keras3(entry) for entry in nested])
    for entry in nested:
        inner = entry["config"]
        for key in ("input_layers", "output_layers"):
            one = inner.get(key)
            if isinstance(one, list) and len(one) == 1 and isinstance(one[0], list) and one[0] \
                    and isinstance(one[0][0], str):
                inner[key] = one[0]
                changed = True
    built = {str(entry.get("name") or entry["config"].get("name")) for entry in nested
             if isinstance(entry["config"].get("layers"), list) and entry["config"]["layers"]
             and isinstance(entry["config"]["layers"][0], dict)
             and entry["config"]["layers"][0].get("class_name") == "InputLayer"}
    if not built:
        return changed
    model, layers = model_layers(config)
    for entry in layers:
        if isinstance(entry, dict) and "inbound_nodes" in entry:
            entry["inbound_nodes"] = _renumbered(entry["inbound_nodes"], built)
    if "output_layers" in model:
        model["output_layers"] = _renumbered(model["output_layers"], built)
    return True


def _stored_values(h5: Any, path: Path) -> dict[str, int]:
    """The weight values the file holds under each group name in ``model_weights`` (a layer's, at any depth: a nested
    model's layers are inside its group), each dataset counted for every group above it, and under "" all of them;
    refused when the arrays declare more bytes than any model this bridge converts (a small file may declare huge
    compressed arrays)."""
    import h5py

    weights = h5.get("model_weights")
    counts: dict[str, int] = {}
    total = 0

    def visit(name: str, item: Any) -> None:
        nonlocal total
        if isinstance(item, h5py.Dataset):
            if item.dtype.kind not in "fiu":  # complex: the imaginary parts would be dropped without a word
                raise UserError(f"{path}: weight {escaped(name)} holds {item.dtype} values, not real numbers")
            size = int(item.size or 0)
            total += size * item.dtype.itemsize
            for group in {"", *name.split("/")[:-1]}:  # dense/dense/kernel: once for "dense"; "": every value
                counts[group] = counts.get(group, 0) + size

    if isinstance(weights, h5py.Group):
        weights.visititems(visit)
    if total > MAX_WEIGHTS_BYTES:
        raise UserError(f"{path}: its weights declare {total:,} bytes, more than any model this bridge converts")
    return counts


def _optimizer(training_config: Any) -> str:
    """The optimizer the file's training config names (Keras 2 saved it with a compiled model), described."""
    try:
        optimizer = json.loads(_text(training_config) or "null").get("optimizer_config")
    except (ValueError, AttributeError, RecursionError):
        optimizer = None
    if not isinstance(optimizer, dict):
        return "none (the model was saved uncompiled)"
    name = str(optimizer.get("class_name", "")).removeprefix("Custom>")  # Keras 2's registered name of its own
    return describe_optimizer({"compile_config": {"optimizer": {**optimizer, "class_name": name}}})
