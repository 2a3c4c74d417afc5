"""Keras <-> torch for networks built from one architecture description.

``weights``: the per-layer weight mapping (torch only); ``keras_models``: Keras models holding
torch weights and back (imports Keras); ``proof``: the inputs and the report of every conversion's
check (torch only); ``parity``: both frameworks on the same inputs, the
proof every conversion gives before it writes a file.
"""
