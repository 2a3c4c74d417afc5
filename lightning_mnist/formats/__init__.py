"""The registry of model file formats the project writes: one module per format, one row per module here.

Each module says its suffix, what the file is, which files it is written from, and how it is
written from one of them, proven before it appears (its ``FORMAT``). ``convert`` asks
:func:`format_for` for the destination's format; a new format is a module and a row in ``FORMATS``.

===========  ==============================  ======================================  ==============================
suffix       file                            written from                            proven against the source with
===========  ==============================  ======================================  ==============================
``.ckpt``    a Lightning checkpoint          ``.keras``, ``.h5``                     Keras (read back weights-only)
``.keras``   a Keras 3 model                 ``.ckpt``, ``.h5``                      Keras (``safe_mode=True``)
``.pt2``     a ``torch.export`` program      ``.ckpt``, ``.keras``, ``.h5``, k-fold  ``torch.export.load``
``.onnx``    an ONNX model                   ``.ckpt``, ``.keras``, ``.h5``, k-fold  ONNX Runtime
``.tflite``  a LiteRT model (Keras' export)  ``.ckpt``, ``.keras``, ``.h5``, k-fold  LiteRT's interpreter
===========  ==============================  ======================================  ==============================

``.h5`` (or ``.hdf5``): a legacy HDF5 model file (Keras 2's ``model.save``), read through Keras after the checks of
:mod:`mnist_common.legacy_h5`; it is a source only.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.errors import UserError
from lightning_mnist.formats import checkpoint, exported_program, keras_model, litert_model, onnx_model
from lightning_mnist.formats.base import Format

FORMATS: dict[str, Format] = {module.FORMAT.suffix: module.FORMAT
                              for module in (checkpoint, keras_model, exported_program, onnx_model, litert_model)}
RESULTS_SOURCE = ".json"  # a k-fold run's cv_results.json, in a format's sources


def _suffix_text(suffix: str) -> str:
    return "a k-fold cv_results.json" if suffix == RESULTS_SOURCE else suffix


def formats_text() -> str:
    """Every format and what it is written from, for messages: ".ckpt from .keras; ..."."""
    return "; ".join(f"{f.suffix} from {', '.join(map(_suffix_text, f.sources))}" for f in FORMATS.values())


def runnable_format(path: str | os.PathLike) -> Format | None:
    """The format of ``path`` if predict and serve run such a file as it is (``.onnx``: ONNX Runtime), else None."""
    found = FORMATS.get(Path(path).suffix.lower())
    return found if found is not None and found.backend is not None else None


def format_for(source: str | os.PathLike, destination: str | os.PathLike) -> Format:
    """The format ``destination`` names by its suffix, if it can be written from ``source``; else a one-line UserError."""
    src, dst = Path(source).suffix.lower(), Path(destination).suffix.lower()
    found = FORMATS.get(dst)
    if found is None or src not in found.sources:
        raise UserError(f"cannot convert {src or 'a file without extension'} to {dst or 'a file without extension'}"
                        f": the formats written are {formats_text()}")
    return found
