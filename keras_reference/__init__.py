"""The original notebook's Keras model and training, kept as the reference the Lightning port is checked against.

``model`` builds the network (also used by the Lightning <-> ``.keras`` conversion),
``data`` and ``augment`` feed it the shared splits, ``train`` and ``cv`` are the two
commands of ``python -m keras_reference``. Importing this package does not import Keras.
"""
