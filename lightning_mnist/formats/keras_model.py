"""``.keras``: a Keras 3 model file, written from a checkpoint (:func:`lightning_mnist.conversion.checkpoint_to_keras`)
or from a legacy HDF5 model file (``.h5``: :func:`lightning_mnist.conversion.legacy_h5_to_keras`).

It loads in a plain Keras (no torch, no project code) with ``keras.saving.load_model(path,
safe_mode=True)`` and trains further there; it is proven against the checkpoint's network, or the
``.h5`` model as Keras reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.keras_file import KERAS_SUFFIX
from mnist_common.legacy_h5 import LEGACY_SUFFIXES, is_legacy_h5
from lightning_mnist.checkpoints import CKPT_SUFFIX
from lightning_mnist.formats.base import Format


def write(source: Path, destination: Path, check_images: int, data_dir: str | os.PathLike | None = None) -> list[str]:
    from lightning_mnist.conversion import checkpoint_to_keras, legacy_h5_to_keras  # Keras loads here, when asked

    if is_legacy_h5(source):
        report, info = legacy_h5_to_keras(source, destination, check_images, data_dir)
        return [info.describe(), report.describe()]
    return [checkpoint_to_keras(source, destination, check_images, data_dir).describe()]


FORMAT = Format(suffix=KERAS_SUFFIX, what="a Keras 3 model",
                sources=(CKPT_SUFFIX, *LEGACY_SUFFIXES), write=write)
