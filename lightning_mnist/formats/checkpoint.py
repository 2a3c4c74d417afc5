"""``.ckpt``: a Lightning checkpoint, written from a ``.keras`` file (:func:`lightning_mnist.conversion.keras_to_checkpoint`).

Read everywhere a model is loaded (``lightning_mnist.checkpoints``); written here from a
Keras model, proven against Keras before it appears (``fit`` writes its own).
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.keras_file import KERAS_SUFFIX
from mnist_common.legacy_h5 import LEGACY_SUFFIXES
from lightning_mnist.checkpoints import CKPT_SUFFIX
from lightning_mnist.formats.base import Format



def write(source: Path, destination: Path, check_images: int, data_dir: str | os.PathLike | None = None) -> list[str]:
    from lightning_mnist.conversion import keras_to_checkpoint  # Keras loads here, only when asked

    report, info = keras_to_checkpoint(source, destination, check_images, data_dir)
    return [info.describe(), *info.architecture.summary().splitlines(), report.describe()]  # each line escaped


FORMAT = Format(suffix=CKPT_SUFFIX, what="a Lightning checkpoint",
                sources=(KERAS_SUFFIX, *LEGACY_SUFFIXES), write=write)
