"""The network, the LightningModule and their helpers.

The names are imported lazily (PEP 562): ``from lightning_mnist.models import KerasNetwork``
(or ``lightning_mnist.models.network``) loads torch only, so commands that just run the
network, such as ``predict``, do not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> submodule that defines it
_SUBMODULES = {
    "MnistClassifier": "classifier",
    "MnistEnsemble": "ensemble",
    "MeanProbabilities": "ensemble",
    "KerasNetwork": "network",
    "Probabilities": "network",
    "keras_parameter_count": "network",
    "KerasAdam": "optim",
}

__all__ = list(_SUBMODULES)

if TYPE_CHECKING:
    from lightning_mnist.models.classifier import MnistClassifier
    from lightning_mnist.models.ensemble import MeanProbabilities, MnistEnsemble
    from lightning_mnist.models.network import KerasNetwork, Probabilities, keras_parameter_count
    from lightning_mnist.models.optim import KerasAdam


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULES[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
