"""Merge layers against Keras: every element-wise merge with Keras' broadcasting, Concatenate on every axis, and Dot
on every pairing of its inputs' axes."""

from __future__ import annotations

import pytest

from bridge_check import L, assert_matches_keras, classifier, keras
from mnist_common.architecture import Architecture, ArchitectureError

ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _branches(kind: str, count: int, gate: str = "same"):
    """``count`` convolutions of one input merged by ``kind``; ``gate`` makes the later ones broadcast."""
    inputs = keras.Input((9, 7, 3))
    branches = [L.Conv2D(4, 3, padding="same", activation="tanh")(inputs)]
    for _ in range(count - 1):
        x = L.Conv2D(4, 3, padding="same")(inputs)
        if gate == "pooled":  # (1, 1, C): a squeeze-and-excitation gate
            x = L.GlobalAveragePooling2D(keepdims=True)(x)
        elif gate == "vector":  # (C,): Keras adds the missing axes after the batch axis
            x = L.GlobalMaxPooling2D()(x)
        elif gate == "row":  # (1, W, C)
            x = L.AveragePooling2D((9, 1))(x)
        branches.append(x)
    return classifier(inputs, getattr(L, kind)()(branches), name=f"{kind}_{count}_{gate}")


@pytest.mark.parametrize("kind", ELEMENTWISE)
@pytest.mark.parametrize("gate", ["same", "pooled", "vector", "row"])
def test_elementwise_merges_match_keras(kind, gate):
    assert_matches_keras(_branches(kind, 2, gate), source=f"{kind} {gate}")


@pytest.mark.parametrize("kind", [k for k in ELEMENTWISE if k != "Subtract"])
def test_merges_of_three_inputs_fold_left_to_right(kind):
    assert_matches_keras(_branches(kind, 3, "pooled"), source=kind)


@pytest.mark.parametrize("axis", [-1, 1, 2, 3, -2])
def test_concatenate_on_every_axis_matches_keras(axis):
    inputs = keras.Input((6, 6, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    b = L.Conv2D(3, 3, padding="same")(inputs)
    model = classifier(inputs, L.Concatenate(axis=axis)([a, b, inputs if axis in (-1, 3) else a]),
                       name=f"concat_{axis}")
    assert_matches_keras(model, source=f"axis {axis}")


def test_concatenate_of_flat_vectors_and_merges_of_dense_outputs():
    inputs = keras.Input((12,))
    a, b = L.Dense(5, activation="relu")(inputs), L.Dense(5)(inputs)
    x = L.Concatenate()([L.Add()([a, b]), L.Multiply()([a, b]), inputs])
    assert_matches_keras(classifier(inputs, x, name="flat"), source="flat")


def _dot_inputs(kind: str, inputs):
    """Two tensors of ``inputs`` (a (12, 5) map) for a Dot: (12, 4) maps, (6,) vectors, one of each, or a map and
    its transpose."""
    a, b = L.Dense(4, activation="tanh")(inputs), L.Dense(4)(inputs)
    vector, other = (L.Dense(6)(L.Flatten()(inputs)) for _ in range(2))
    return {"maps": [a, b], "vectors": [vector, other], "map_vector": [a, L.Dense(4)(vector)],
            "vector_map": [L.Dense(4)(vector), a], "map_transposed": [a, L.Permute((2, 1))(b)]}[kind]


@pytest.mark.parametrize("kind, axes, normalize", [
    ("maps", 2, False), ("maps", -1, True), ("maps", (1, 1), False), ("maps", [2, 2], True),
    ("vectors", 1, False), ("vectors", -1, True), ("map_vector", (2, 1), False), ("map_vector", (-1, -1), True),
    ("vector_map", (1, 2), True), ("map_transposed", (2, 1), False), ("map_transposed", (1, 2), True)])
def test_dot_matches_keras(kind, axes, normalize):
    """Each example's dot products (cosine similarities where ``normalize``) along any pairing of axes: an
    attention's scores of two maps, two vectors' one product (Keras keeps it as a (1,) axis), a map against a
    vector, a map against a transposed one."""
    inputs = keras.Input((12, 5))
    x = L.Dot(axes=axes, normalize=normalize)(_dot_inputs(kind, inputs))
    assert_matches_keras(classifier(inputs, x, name=f"dot_{kind}"), source=f"{kind} {axes} {normalize}")


def _description(*layers, input_shape=(8, 8, 3)):
    return {"input_shape": list(input_shape), "layers": list(layers)}


@pytest.mark.parametrize("layers, message", [
    ([{"type": "Conv2D", "name": "a", "filters": 4, "kernel_size": 3},
      {"type": "Add", "inputs": ["a", "input"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "layer 1 (add, Add): cannot merge inputs of shapes 6x6x4, 8x8x3"),
    ([{"type": "Subtract", "inputs": ["input", "input", "input"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "subtracts exactly two inputs, got 3"),
    ([{"type": "Add", "inputs": ["input"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "layer 0 (add, Add): merges two or more inputs, got 1"),
    ([{"type": "Conv2D", "name": "a", "filters": 4, "kernel_size": 3},
      {"type": "Concatenate", "inputs": ["a", "input"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "differ on an axis other than the concatenation axis -1"),
    ([{"type": "Flatten", "name": "f"}, {"type": "Concatenate", "inputs": ["f", "input"]},
      {"type": "Dense", "units": 2}], "concatenates inputs of one rank"),
    ([{"type": "Concatenate", "axis": 0, "inputs": ["input", "input"]}, {"type": "Flatten"},
      {"type": "Dense", "units": 2}], "axis must be a non-zero integer (0 is the batch axis)"),
    ([{"type": "Concatenate", "axis": 4, "inputs": ["input", "input"]}, {"type": "Flatten"},
      {"type": "Dense", "units": 2}], "axis 4 does not exist on inputs of 3 axes"),
    ([{"type": "Add", "inputs": ["input", "nowhere"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "takes 'nowhere', which is neither the input (input) nor a layer of the model"),
    ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 2, "name": "a"},
      {"type": "Dense", "units": 2, "inputs": ["f"]}], "the model has 2 outputs (a, dense)"),
    # a layer called on itself: was "no layer takes the input 'input'" where it is the first layer
    ([{"type": "Flatten", "name": "f", "inputs": ["f"]}, {"type": "Dense", "units": 2}],
     "layer 0 (f, Flatten): takes its own output; a layer's inputs are the input or other layers"),
    ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 2, "name": "d", "inputs": ["d"]},
      {"type": "Add", "inputs": ["f", "d"]}], "layer 1 (d, Dense): takes its own output"),
    ([{"type": "Flatten", "name": "f"}, {"type": "Dense", "units": 2, "name": "a", "inputs": ["b"]},
      {"type": "Dense", "units": 2, "name": "b", "inputs": ["a"]}, {"type": "Add", "inputs": ["f", "b"]}],
     "layer 1 (a, Dense): is part of a cycle"),
    ([{"type": "Dot", "axes": 3, "inputs": ["input", "input"]}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "layer 0 (dot, Dot): takes inputs of one or two axes besides the batch ((features,) or (steps, features)), got "
     "8x8x3, 8x8x3; reshape an image to (positions, channels) first"),
    ([{"type": "Reshape", "name": "r", "target_shape": [64, 3]}, {"type": "Dot", "axes": [1, 2], "inputs": ["r", "r"]},
      {"type": "Flatten"}, {"type": "Dense", "units": 2}],
     "axes (1, 2): the inputs 64x3, 64x3 have 64 and 3 values along them; they must agree"),
    ([{"type": "Reshape", "name": "r", "target_shape": [64, 3]}, {"type": "Dot", "axes": 3, "inputs": ["r", "r"]},
      {"type": "Flatten"}, {"type": "Dense", "units": 2}], "axes 3: axis 3 does not exist on an input of 2 axes"),
    ([{"type": "Reshape", "name": "r", "target_shape": [64, 3]}, {"type": "Dot", "axes": 0, "inputs": ["r", "r"]},
      {"type": "Flatten"}, {"type": "Dense", "units": 2}], "axes must be a non-zero integer or a pair of them"),
    ([{"type": "Reshape", "name": "r", "target_shape": [64, 3]}, {"type": "Dot", "axes": 2, "inputs": ["r", "r", "r"]},
      {"type": "Flatten"}, {"type": "Dense", "units": 2}], "takes the dot products of two inputs, got 3"),
])
def test_bad_merges_are_refused_naming_the_layer(layers, message):
    with pytest.raises(ArchitectureError) as refusal:
        Architecture.from_config(_description(*layers))
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)
