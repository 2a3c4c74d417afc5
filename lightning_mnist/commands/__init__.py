"""The commands of ``python -m lightning_mnist`` other than the Trainer ones: thin programs over the floors below."""
