"""The Keras half of the bridge: a Keras model from an architecture description, its weights by layer name,
and ``.keras`` files loaded only after the project's own checks. Imports Keras, never torch.

``build`` makes the model (a ``Sequential`` for a chain, a Functional model for a graph),
``files`` loads and saves ``.keras`` files, ``backend`` is the one place Keras is imported.
The torch half is ``lightning_mnist.models`` (modules) and ``lightning_mnist.interop``
(mapping, parity); ``keras_reference`` trains with this package as any application would.
Importing this package does not import Keras.
"""
