"""Keras <-> torch for networks built from one architecture description.

``weights``: the per-layer weight mapping (torch only); ``keras_models``: Keras models holding
torch weights and back (imports Keras); ``parity``: both frameworks on the same inputs, the
proof every conversion gives before it writes a file.
"""
