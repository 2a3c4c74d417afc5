"""Torch and TensorFlow in one process: the import order that works, enforced where it can be.

With a torch that ships triton, TensorFlow must come after triton (see
``keras_reference/backend.py``, which orders them when torch is already imported).
:func:`check_import_order` runs when ``lightning_mnist`` is imported: if TensorFlow is
already there and triton would load later, the process would abort at its first
``torch.optim`` step, so it stops at once with a one-line ImportError that says what to
do. Where torch has no triton (CPU-only wheels, macOS) there is nothing to order.
"""

from __future__ import annotations

import sys

from keras_bridge import backend
from keras_bridge.backend import triton_installed

__all__ = ["WRONG_ORDER", "check_import_order", "import_keras", "triton_installed"]

# (``import lightning_mnist`` alone loads neither torch nor triton: a script that then imports keras gets this too)
WRONG_ORDER = ("TensorFlow was imported before torch's triton, which would then abort the process: take Keras from "
               "lightning_mnist.frameworks.import_keras() (it imports triton first) before anything imports "
               "tensorflow, keras or keras_reference")


def check_import_order() -> None:
    if "tensorflow" in sys.modules and "triton" not in sys.modules and triton_installed():
        raise ImportError(WRONG_ORDER)


def import_keras():
    """Keras for a process that uses torch too: torch (with its triton half) is imported first."""
    check_import_order()
    import torch  # noqa: F401  (keras_bridge.backend then loads triton before TensorFlow)

    return backend.import_keras()
