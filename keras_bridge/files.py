"""Loading a ``.keras`` file (or a legacy ``.h5`` one) only after it passed the project's own checks, and saving
atomically."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_bridge.backend import import_keras
from keras_bridge.build import DICT_KEY_ADVICE, layer_weights
from mnist_common.architecture.description import MAX_PARAMETERS
from mnist_common.architecture.keras_config import read_keras_config
from mnist_common.errors import UserError, one_line
from mnist_common.files import temporary_folder, write_atomically
from mnist_common.keras_file import KERAS_SUFFIX, KerasFile, check_weight_values, read_keras_file
from mnist_common.legacy_h5 import LEGACY_SUFFIXES, LegacyH5, check_legacy_h5

keras = import_keras()


def load_checked(path: str | os.PathLike) -> tuple["keras.Model", KerasFile]:
    """Check ``path`` (:func:`mnist_common.keras_file.read_keras_file`), then load it with ``safe_mode=True``.

    The model is not compiled (its optimizer is reported and ignored). The weights Keras
    loaded are compared with those the checks read: they must be the same arrays.
    """
    info = read_keras_file(path)
    with temporary_folder() as folder:
        model = on_its_tensors(_keras_load(_named_for_keras(info.path, (KERAS_SUFFIX,), folder), info.path))
    loaded = layer_weights(model, info.architecture, info.keras_paths)
    for name, arrays in info.weights.items():
        if not all(np.array_equal(a, b) for a, b in zip(arrays, loaded[name], strict=True)):
            raise UserError(f"{info.path}: the weights Keras loaded differ from those in model.weights.h5")
    return model, info


def on_its_tensors(model: "keras.Model") -> "keras.Model":
    """``model``, or where it was built on a dict or list of its one input or output (``keras.Model(inputs,
    {"digits": outputs})``), a model of the same layers on those tensors themselves: Keras' ``predict`` of it gave
    a dict, where every caller here (the conversion's proof, the predictors) takes the array the bridge reads the
    model as giving."""
    if isinstance(model, keras.Sequential) or (isinstance(model.input, keras.KerasTensor)
                                               and isinstance(model.output, keras.KerasTensor)):
        return model  # (a Sequential is on its tensors, and has no inputs to ask for until it is called)
    return keras.Model(model.inputs[0], model.outputs[0], name=model.name)


def load_legacy_h5(path: str | os.PathLike) -> tuple["keras.Model", KerasFile]:
    """Check a legacy HDF5 model file (:func:`mnist_common.legacy_h5.check_legacy_h5`), load it with Keras' legacy
    reader (``safe_mode=True``, not compiled: its optimizer is ignored), and read the model Keras made as a
    ``.keras`` file's config is read (its layers must be the bridge's). The model, and what it holds as a
    :class:`KerasFile`, its weights as Keras loaded them."""
    info = check_legacy_h5(path)
    model = _keras_legacy_load(info)
    graph = read_keras_config(keras.saving.serialize_keras_object(model), str(info.path))
    weights = layer_weights(model, graph.architecture, graph.keras_paths)
    check_weight_values(graph.architecture, weights, info.path)  # as a .keras file's are, before any conversion
    return model, KerasFile(path=info.path, architecture=graph.architecture, weights=weights,
                            keras_version=info.keras_version, date_saved="", optimizer=info.optimizer,
                            optimizer_variables=0, keras_paths=graph.keras_paths, kind="legacy HDF5 file")


UNKNOWN_LAYER = "Unknown layer"  # Keras' words for a class it cannot find: what a Keras operation becomes in a .h5


def _keras_legacy_load(info: LegacyH5) -> "keras.Model":
    """Keras' own reading of a checked legacy file: the file itself, or a copy of it holding the config Keras 3
    reads (:attr:`LegacyH5.config`)."""
    import h5py

    with temporary_folder() as folder:
        readable = _named_for_keras(info.path, LEGACY_SUFFIXES, folder)
        if info.config_changed:  # a copy holding the config Keras 3 reads
            readable = Path(folder) / f"copy{LEGACY_SUFFIXES[0]}"
            shutil.copyfile(info.path, readable)
            with h5py.File(readable, "r+") as h5:
                h5.attrs["model_config"] = json.dumps(info.config)
        hint = ("; Keras 3 writes Keras operations between layers (x * 0.5, ops.relu) into a legacy file it cannot "
                "read back: save the model as .keras" if info.keras_version.startswith("3.") else "")
        with warnings.catch_warnings():  # Keras' advice to use .keras: what this conversion does
            warnings.simplefilter("ignore")
            # the sizes a legacy file declares are known only once Keras builds its layers (a crafted 10 KB file's
            # Dense kernel of 16 million inputs by 1,000: 64 GB), so they are counted first, without allocating
            declared = _keras_load(readable, info.path, hint, hint_when=UNKNOWN_LAYER, count_only=True)
            if declared > MAX_PARAMETERS:
                raise UserError(f"{info.path}: its layers declare {declared:,} weight values, more than this bridge "
                                f"builds ({MAX_PARAMETERS:,})")
            return _keras_load(readable, info.path, hint, hint_when=UNKNOWN_LAYER)


def _named_for_keras(path: Path, suffixes: tuple[str, ...], folder: str) -> Path:
    """``path`` if its suffix is one Keras reads it by (in lower case only), else a link to it in ``folder`` that
    has one: 'MODEL.KERAS' is a link away."""
    if path.suffix in suffixes:
        return path
    link = Path(folder) / f"model{suffixes[0]}"
    link.symlink_to(path.resolve())
    return link


def _keras_load(readable: Path, path: Path, hint: str = "", hint_when: str = "", count_only: bool = False):
    """``keras.saving.load_model`` of a file that passed our checks (``path``, read as ``readable``): not compiled,
    ``safe_mode=True``; what Keras says against it, in one line (``hint``: what to do, after it, where Keras' words
    hold ``hint_when``). ``count_only``: the number of weight values the model has, not the model, counted without
    allocating them (:func:`_declared_weight_values`). Keras' warnings on the way are shown once it has loaded the
    model: before a refusal they were lines of its own ahead of the one error line."""
    with warnings.catch_warnings(record=True) as warned:
        try:
            loaded = _declared_weight_values(readable) if count_only else keras.saving.load_model(
                str(readable), safe_mode=True, compile=False)
        except Exception as err:  # whatever Keras says; what follows the config it prints, where it prints one
            said = one_line(err, after="Exception encountered: ")
            raise UserError(f"{path}: Keras cannot load it ({said}){hint if hint_when in said else ''}") from None
    for warning in warned:
        if not str(warning.message).startswith(DICT_KEY_ADVICE):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return loaded


def _declared_weight_values(readable: Path) -> int:
    """How many weight values the model in ``readable`` has, read by Keras in a ``StatelessScope`` that leaves its
    variables unallocated (their initialisers deferred, the file's values recorded, not assigned), in a thread of
    its own: Keras keeps the variables left to initialise in the thread's state, which ends with it, so no later
    scope allocates them."""
    def count() -> int:
        with keras.StatelessScope(initialize_variables=False):
            model = keras.saving.load_model(str(readable), safe_mode=True, compile=False)
            return sum(math.prod(weight.shape) for weight in model.weights)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(count).result()


def save_model(model: "keras.Model", path: str | os.PathLike, check=None):
    """``model.save`` to ``path`` atomically (temporary file, then rename); ``check(tmp)`` before the rename."""
    return write_atomically(path, lambda tmp: model.save(str(tmp)), check)
