"""Where an architecture comes from: a preset, a description file, a mapping, or a ``.keras`` model.

Kept apart from :mod:`mnist_common.architecture` (which describes networks) and
:mod:`mnist_common.keras_file` (which reads ``.keras`` files into descriptions), so that
neither imports the other's way round.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.architecture import Architecture
from mnist_common.errors import UserError
from mnist_common.keras_file import KERAS_SUFFIX, read_keras_file
from mnist_common.legacy_h5 import is_legacy_h5


def load_architecture(value: str | os.PathLike | dict | Architecture | None = None) -> Architecture:
    """A preset name, a YAML/JSON description file, a ``.keras`` file, or a mapping: the architecture to train.

    A ``.keras`` file gives its checked architecture with what its layers adapted to data (Normalization's mean
    and variance) kept as settings (:meth:`Architecture.with_adapted`): a run trains the file's network afresh, but
    a statistic of the data is no weight to train. Converting a file keeps its weights as they are (it reads the
    file itself, :func:`read_keras_file`)."""
    if isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() == KERAS_SUFFIX:
        info = read_keras_file(value)
        return info.architecture.with_adapted(info.weights)
    if isinstance(value, (str, os.PathLike)) and is_legacy_h5(value):  # only Keras reads one
        raise UserError(f"{value}: a legacy HDF5 Keras model; convert it to a .keras file first (python -m "
                        f"lightning_mnist convert {value} {Path(value).with_suffix(KERAS_SUFFIX).name}), or start from "
                        f"its weights with --weights {value}")
    return Architecture.load(value)
