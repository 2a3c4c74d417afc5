"""The one place that imports Keras, so torch and TensorFlow can share a process.

With torch's CUDA build (which ships triton) and TensorFlow in one process,
``import tensorflow`` followed by anything that imports triton (``torch._dynamo``,
so ``torch.optim.Adam`` or ``torch.compile``) ends in a segmentation fault, while
the opposite order works. So before Keras is imported we import ``torch._dynamo``
whenever torch is installed. Code of this project must get Keras from here.
"""

from __future__ import annotations

import importlib.util
import os


def _preload_torch_dynamo() -> None:
    if importlib.util.find_spec("torch") is not None:
        import torch._dynamo  # noqa: F401  (must come before tensorflow, see above)


def import_keras():
    """Return the ``keras`` module on the TensorFlow backend, imported safely."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner quiet
    _preload_torch_dynamo()
    import keras

    return keras
