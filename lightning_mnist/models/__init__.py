from lightning_mnist.models.classifier import MnistClassifier
from lightning_mnist.models.ensemble import MnistEnsemble
from lightning_mnist.models.network import MnistCNN, keras_parameter_count
from lightning_mnist.models.optim import KerasAdam

__all__ = ["MnistCNN", "MnistClassifier", "MnistEnsemble", "KerasAdam", "keras_parameter_count"]
