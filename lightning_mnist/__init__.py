"""The notebook's MNIST CNN on PyTorch Lightning."""

import sys

if "tensorflow" in sys.modules and "triton" not in sys.modules:
    # See mnist_common/frameworks.py: importing triton after TensorFlow segfaults.
    raise ImportError(
        "import lightning_mnist (or torch._dynamo) before tensorflow/keras, "
        "or get Keras through mnist_common.frameworks.import_keras()"
    )
