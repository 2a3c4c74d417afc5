"""The environment every command reads before any work, refused in one line where a run could not use it.

OpenMP's thread settings are checked in :mod:`mnist_common.threads`; Keras' backend here. Both would
otherwise fail (or be ignored with a warning) deep inside a command, after its work had begun.
"""

from __future__ import annotations

import os

from mnist_common.errors import UserError
from mnist_common.threads import check_thread_settings

KERAS_BACKEND_ENV = "KERAS_BACKEND"
KERAS_BACKEND = "tensorflow"  # the reference trains on it and the bridge reads and writes its files with it


def check_keras_backend(environ: dict[str, str] | None = None) -> None:
    """A ``KERAS_BACKEND`` other than TensorFlow: Keras would refuse it (or lack it) only where a command first
    imports Keras, with a traceback; the reference's input pipeline and the bridge need TensorFlow's."""
    environ = os.environ if environ is None else environ
    backend = environ.get(KERAS_BACKEND_ENV)
    if backend is not None and backend != KERAS_BACKEND:
        raise UserError(f"{KERAS_BACKEND_ENV}={backend!r}: this project runs Keras on TensorFlow; set "
                        f"{KERAS_BACKEND_ENV}={KERAS_BACKEND} or unset it")


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Every environment variable a command of either package reads before its work: threads, then Keras' backend."""
    check_thread_settings(environ)
    check_keras_backend(environ)
