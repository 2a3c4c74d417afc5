"""Loading a ``.keras`` file only after it passed the project's own checks, and saving atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from keras_bridge.backend import import_keras
from keras_bridge.build import layer_weights
from mnist_common.errors import UserError, one_line
from mnist_common.files import write_atomically
from mnist_common.keras_file import KERAS_SUFFIX, KerasFile, read_keras_file

keras = import_keras()


def load_checked(path: str | os.PathLike) -> tuple["keras.Model", KerasFile]:
    """Check ``path`` (:func:`mnist_common.keras_file.read_keras_file`), then load it with ``safe_mode=True``.

    The model is not compiled (its optimizer is reported and ignored). The weights Keras
    loaded are compared with those the checks read: they must be the same arrays.
    """
    info = read_keras_file(path)
    with tempfile.TemporaryDirectory() as folder:
        readable = info.path
        if readable.suffix != KERAS_SUFFIX:  # Keras reads only '.keras' in lower case: 'MODEL.KERAS' is a link away
            readable = Path(folder) / f"model{KERAS_SUFFIX}"
            readable.symlink_to(info.path.resolve())
        try:
            model = keras.saving.load_model(str(readable), safe_mode=True, compile=False)
        except Exception as err:  # whatever Keras says about a file that passed our checks
            raise UserError(f"{info.path}: Keras cannot load it ({one_line(err)})") from None
    loaded = layer_weights(model, info.architecture, info.keras_paths)
    for name, arrays in info.weights.items():
        if not all(np.array_equal(a, b) for a, b in zip(arrays, loaded[name], strict=True)):
            raise UserError(f"{info.path}: the weights Keras loaded differ from those in model.weights.h5")
    return model, info


def save_model(model: "keras.Model", path: str | os.PathLike, check=None):
    """``model.save`` to ``path`` atomically (temporary file, then rename); ``check(tmp)`` before the rename."""
    return write_atomically(path, lambda tmp: model.save(str(tmp)), check)
