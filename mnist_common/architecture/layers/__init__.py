"""The supported Keras layers, as framework-free descriptions named and set the way Keras names them.

One module per family, as Keras' own ``layers/`` folder groups them (``convolution``,
``pooling``, ``normalization``, ``merging``, ``reshaping``, ...); :mod:`.base` holds what they
share. Every module of this package is imported here, so a new family is one new file and
a new kind one class decorated with :func:`~.base.layer_type`; ``LAYER_TYPES`` then has it,
and so has this package's namespace (``layers.Conv2D``).

Adding a layer kind: its description here, and on the torch side its module, builder and
weight mapping in one file of ``lightning_mnist.models.layers`` (``tests/test_bridge.py``
fails while a described kind has none). The Keras side builds
``getattr(keras.layers, spec.type).from_config(spec.settings())`` and needs nothing. Keras
operations between layers (``x + y``, ``keras.ops.mean``) are kinds too (:mod:`.operations`,
types ``ops.add``, ...), made by Keras from their serialised form; ``KERAS_LAYERS`` are the
others, by class name.
"""

from __future__ import annotations

import importlib
import pkgutil

from mnist_common.architecture.layers.base import (  # noqa: F401  (the package's public names)
    ACTIVATIONS,
    DTYPE_POLICIES,
    FLOAT32,
    INITIALIZER_NAMES,
    INITIALIZERS,
    LAYER_TYPES,
    MAX_RANK,
    VARIANCE_SCALING_PRESETS,
    Layer,
    LayerError,
    Shape,
    initializer,
    layer_type,
    same_padding,
    shape_text,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
KERAS_LAYERS = {kind: cls for kind, cls in LAYER_TYPES.items() if kind.isidentifier()}  # operations' are ops.<name>
globals().update(KERAS_LAYERS)

from mnist_common.architecture.layers import operations  # noqa: E402  (ops.add, ...: the Keras operations)
from mnist_common.architecture.layers.activations import (applies_softmax, gives_one_distribution,  # noqa: E402
                                                          is_identity)
from mnist_common.architecture.layers.operations import Operation  # noqa: E402

__all__ = ["ACTIVATIONS", "DTYPE_POLICIES", "FLOAT32", "INITIALIZERS", "INITIALIZER_NAMES", "KERAS_LAYERS",
           "LAYER_TYPES", "MAX_RANK", "VARIANCE_SCALING_PRESETS", "Layer", "LayerError", "Operation", "Shape",
           "applies_softmax", "gives_one_distribution", "is_identity", "initializer", "layer_type", "operations",
           "same_padding", "shape_text", *KERAS_LAYERS]
