"""The architecture description both frameworks build from: framework-free, named as Keras names things.

``Architecture.load("notebook")`` (a preset), ``Architecture.load("my_net.yaml")``,
``Architecture.load("model.keras")`` or ``Architecture.from_config({...})``; see
:mod:`~mnist_common.architecture.description` for the format and
:mod:`~mnist_common.architecture.layers` for the supported layers.
"""

from mnist_common.architecture.description import (
    DEFAULT_PRESET, MNIST_CLASSES, MNIST_INPUT_SHAPE, Architecture, ArchitectureError, keras_snake_case, layer_label,
    presets,
)
from mnist_common.architecture.keras_config import architecture_from_keras_config
from mnist_common.architecture.layers import (
    ACTIVATIONS, LAYER_TYPES, Layer, LayerError, Shape, Softmax, applies_softmax, same_padding,
)

__all__ = ["ACTIVATIONS", "DEFAULT_PRESET", "LAYER_TYPES", "MNIST_CLASSES", "MNIST_INPUT_SHAPE", "Architecture",
           "ArchitectureError", "Layer", "LayerError", "Shape", "Softmax", "applies_softmax", "architecture_from_keras_config",
           "keras_snake_case", "layer_label", "presets", "same_padding"]
