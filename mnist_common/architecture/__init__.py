"""The architecture description both frameworks build from: framework-free, named as Keras names things.

``Architecture.load("notebook")`` (a preset), ``Architecture.load("my_net.yaml")`` or
``Architecture.from_config({...})`` (``mnist_common.model_files.load_architecture`` also
reads ``.keras`` files); see
:mod:`~mnist_common.architecture.description` for the format and
:mod:`~mnist_common.architecture.layers` for the supported layers.
"""

from mnist_common.architecture.description import (
    DEFAULT_PRESET, MNIST_CLASSES, MNIST_INPUT_SHAPE, MNIST_LAYOUTS, MNIST_PIXELS, Architecture,
    ArchitectureError, Node, SharedCall, fixed_input_shape, is_mnist_layout, keras_snake_case, layer_label, presets,
)
from mnist_common.architecture.keras_config import architecture_from_keras_config
from mnist_common.architecture.layers import (
    ACTIVATIONS, LAYER_TYPES, Layer, LayerError, Shape, Softmax, applies_softmax, same_padding, shape_text,
)

__all__ = [
    "ACTIVATIONS", "Architecture", "ArchitectureError", "DEFAULT_PRESET", "LAYER_TYPES", "Layer", "LayerError",
    "MNIST_CLASSES", "MNIST_INPUT_SHAPE", "MNIST_LAYOUTS", "MNIST_PIXELS", "Node", "Shape", "SharedCall", "Softmax",
    "applies_softmax", "architecture_from_keras_config", "fixed_input_shape", "is_mnist_layout", "keras_snake_case",
    "layer_label", "presets", "same_padding", "shape_text",
]
