"""Keras CNNs on PyTorch Lightning: the notebook's by default, any supported architecture on request."""

from lightning_mnist.frameworks import check_import_order

check_import_order()  # a one-line ImportError, not an abort later (see frameworks.py)
