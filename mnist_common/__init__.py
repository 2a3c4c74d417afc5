"""Framework-free code shared by ``lightning_mnist`` and ``keras_reference``.

Nothing in here imports torch or Keras at module level, so both packages see the
same pixels, the same split indices and write results in the same schema.
"""
