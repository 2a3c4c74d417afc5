"""Where an architecture comes from: a preset, a description file, a mapping, or a ``.keras`` model.

Kept apart from :mod:`mnist_common.architecture` (which describes networks) and
:mod:`mnist_common.keras_file` (which reads ``.keras`` files into descriptions), so that
neither imports the other's way round.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.architecture import Architecture
from mnist_common.keras_file import KERAS_SUFFIX, read_keras_file


def load_architecture(value: str | os.PathLike | dict | Architecture | None = None) -> Architecture:
    """A preset name, a YAML/JSON description file, a ``.keras`` file (its checked architecture), or a mapping."""
    if isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() == KERAS_SUFFIX:
        return read_keras_file(value).architecture
    return Architecture.load(value)
