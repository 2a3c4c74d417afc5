from lightning_mnist.data.augment import NotebookAugmentation
from lightning_mnist.data.datamodule import MNISTDataModule

__all__ = ["MNISTDataModule", "NotebookAugmentation"]
