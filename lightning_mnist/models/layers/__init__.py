"""The torch side of every supported Keras layer kind: one module per kind, with its builder and weight mapping.

One file per family, as the descriptions in ``mnist_common.architecture.layers`` are
grouped; each module class is registered with its description class and the mapping of
its Keras weights (:mod:`.registry`). Every module of this package is imported here, so a
new family is one new file. Tensors are torch's layout (:mod:`.layout`): (N, C, H, W) for
Keras' (H, W, C), as is for one or two axes.
"""

from __future__ import annotations

import importlib
import pkgutil

from lightning_mnist.models.layers.registry import (
    CONVERTERS,
    Converter,
    WeightMap,
    build,
    converter,
    converter_of,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CONVERTERS", "Converter", "WeightMap", "build", "converter", "converter_of"]
