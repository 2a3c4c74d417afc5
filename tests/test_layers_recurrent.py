"""Recurrent layers against Keras: SimpleRNN, LSTM, GRU (both reset forms), forwards and backwards, last output or
every step's, any activations; their weights' names, shapes and storage in a ``.keras`` file; initialisation
(Orthogonal, Identity, LSTM's unit forget bias); dropout in training; refusals; a rows model through every format;
and the wrappers of Keras' rnn folder, Bidirectional and TimeDistributed (a layer on every step: Keras' hierarchical
RNN over MNIST's rows, then over their summaries).

An MNIST image as a (28, 28) map is 28 rows of 28 pixels, read one row a step: the classic Keras RNN on MNIST.
Random weights and inputs, so a gate read in the wrong order or a sequence read the wrong way changes the logits.
"""

from __future__ import annotations

import re
import numpy as np
import pytest
import torch

from bridge_check import (SAMPLERS, L, architecture_of, assert_keras_layer_refused, assert_matches_keras,
                          assert_settings_round_trip, converts_and_comes_back, keras, network_of,
                          predicts_alike_on_both_backends, randomised, sampler, sequential_case)
from lightning_mnist.models.initializers import initialize_
from lightning_mnist.models.layers import build, converter_of
from mnist_common.architecture import (LAYER_TYPES, Architecture, ArchitectureError, architecture_from_keras_config,
                                       layers)
from mnist_common.architecture.layers.recurrent import NOT_TIME_DISTRIBUTED
from mnist_common.keras_file import read_keras_file

ROWS = (28, 28)
WRAPPERS = ("Bidirectional", "TimeDistributed")
CASES = {
    "lstm_rows": (ROWS, [L.LSTM(16)]),
    "lstm_stacked_backwards": (ROWS, [L.LSTM(8, return_sequences=True, go_backwards=True), L.LSTM(6)]),
    "lstm_other_activations": ((9, 5), [L.LSTM(6, activation="relu", recurrent_activation="hard_sigmoid",
                                               return_sequences=True), L.GlobalAveragePooling1D()]),
    "lstm_without_bias": ((9, 5), [L.LSTM(4, use_bias=False, return_sequences=True), L.Conv1D(3, 2)]),
    "gru_rows": (ROWS, [L.GRU(12, return_sequences=True), L.GRU(5)]),
    "gru_reset_before": ((9, 5), [L.GRU(7, reset_after=False, go_backwards=True)]),
    "gru_reset_before_without_bias": ((9, 5), [L.GRU(7, reset_after=False, use_bias=False)]),
    "gru_without_bias": ((9, 5), [L.GRU(6, use_bias=False, activation="softsign", recurrent_activation="tanh")]),
    "simple_rnn_irnn": (ROWS, [L.SimpleRNN(10, activation="relu", recurrent_initializer="identity")]),
    "simple_rnn_backwards_sequences": ((9, 5), [L.SimpleRNN(4, go_backwards=True, return_sequences=True),
                                                L.Flatten()]),
    "rnn_on_flat_pixels": ((784,), [L.Reshape((49, 16)), L.Conv1D(8, 3, strides=2), L.GRU(6, dropout=0.3)]),
    "dense_on_every_step": ((9, 5), [L.LSTM(5, return_sequences=True), L.Dense(3), L.SimpleRNN(4)]),
    "bidirectional_lstm_rows": (ROWS, [L.Bidirectional(L.LSTM(8, return_sequences=True)),
                                       L.Bidirectional(L.LSTM(6))]),
    "bidirectional_merges": ((9, 5), [L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode="sum"),
                                      L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="ave"),
                                      L.Bidirectional(L.GRU(3, reset_after=False), merge_mode="mul")]),
    "bidirectional_own_backward_layer": ((9, 5), [L.Bidirectional(
        L.LSTM(5, return_sequences=True), backward_layer=L.GRU(5, return_sequences=True, go_backwards=True))]),
    "bidirectional_of_a_backwards_layer": ((9, 5), [L.Bidirectional(
        L.SimpleRNN(4, go_backwards=True), backward_layer=L.SimpleRNN(4, activation="relu"), merge_mode="mul")]),
    "dense_on_each_row": (ROWS, [L.TimeDistributed(L.Dense(6, activation="relu")), L.Flatten()]),
    "conv1d_on_each_row": ((28, 28, 1), [L.TimeDistributed(L.Conv1D(4, 3, strides=2, activation="elu")),
                                         L.TimeDistributed(L.GlobalMaxPooling1D()), L.GRU(5)]),
    "bidirectional_on_each_row": ((4, 6, 3), [L.TimeDistributed(L.Bidirectional(L.GRU(3))), L.Flatten()]),
    "time_distributed_twice": ((9, 8, 3), [L.TimeDistributed(L.TimeDistributed(L.Dense(4))), L.Flatten()]),
    "time_distributed_flatten_dropout_norm": ((9, 8, 3), [L.TimeDistributed(L.Flatten()),
                                                          L.TimeDistributed(L.Dropout(0.3)),
                                                          L.TimeDistributed(L.LayerNormalization()), L.Flatten()]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recurrent_layers_match_keras(case):
    shape, layers_ = CASES[case]
    assert_matches_keras(sequential_case(shape, *layers_, name=case), source=case)


@pytest.mark.parametrize("layer, names, shapes", [
    (L.LSTM(6), ("kernel", "recurrent_kernel", "bias"), ((5, 24), (6, 24), (24,))),
    (L.GRU(6), ("kernel", "recurrent_kernel", "bias"), ((5, 18), (6, 18), (2, 18))),
    (L.GRU(6, reset_after=False), ("kernel", "recurrent_kernel", "bias"), ((5, 18), (6, 18), (18,))),
    (L.SimpleRNN(6, use_bias=False), ("kernel", "recurrent_kernel"), ((5, 6), (6, 6))),
    (L.Bidirectional(L.SimpleRNN(6), backward_layer=L.GRU(6, go_backwards=True, use_bias=False)),
     ("forward_kernel", "forward_recurrent_kernel", "forward_bias", "backward_kernel", "backward_recurrent_kernel"),
     ((5, 6), (6, 6), (6,), (5, 18), (6, 18))),
    (L.TimeDistributed(L.Dense(3)), ("kernel", "bias"), ((5, 3), (3,))),  # Keras' layer/vars/i: one step's Dense
])
def test_weights_are_keras_cells_and_map_both_ways_bit_for_bit(layer, names, shapes, tmp_path):
    """Keras' names, shapes and order (its cell's ``get_weights``; a Bidirectional's forward layer's, then its backward
    one's); a kernel (in, gates * units) is torch's (gates * units, in), gates in Keras' order; the .keras file keeps
    them under ``cell/vars/i`` (``forward_layer/cell/vars/i``, ...), read back exactly."""
    model = randomised(sequential_case((9, 5), layer), seed=4)
    architecture, network = network_of(model)
    [node] = [n for n in architecture.nodes if n.layer.type == type(layer).__name__]
    assert node.layer.weights((9, 5)) == tuple(zip(names, shapes))
    keras_weights = model.get_layer(node.name).get_weights()
    state = network.state_dict()
    mappings = converter_of(node.layer).weights
    for name, array in zip(names, keras_weights):
        torch_value = state[f"{node.name}.{mappings[name].attribute}"].numpy()
        assert np.array_equal(torch_value, array.T if array.ndim == 2 and not name.endswith("bias") else array)
        assert np.array_equal(mappings[name].to_keras(torch_value, array.shape), array)
    model.save(tmp_path / "rnn.keras")
    read = read_keras_file(tmp_path / "rnn.keras")
    assert all(np.array_equal(a, b) for a, b in zip(read.weights[node.name], keras_weights))


def test_torch_initialises_recurrent_weights_as_keras_does():
    """Orthogonal recurrent kernels (Keras' default), the Identity of the IRNN, and LSTM's forget-gate bias at one
    with the other gates' at zero (``unit_forget_bias``, Keras' default)."""
    torch.manual_seed(0)
    lstm = build(layers.LSTM(units=6), (9, 5))
    recurrent = lstm.weight_hh.detach().T  # Keras' (units, 4 * units)
    assert torch.allclose(recurrent @ recurrent.T, torch.eye(6), atol=1e-5)
    assert torch.equal(lstm.bias.detach(), torch.cat([torch.zeros(6), torch.ones(6), torch.zeros(12)]))
    plain = build(layers.LSTM(units=6, unit_forget_bias=False), (9, 5))
    assert torch.equal(plain.bias.detach(), torch.zeros(24))
    irnn = build(layers.SimpleRNN(units=4, recurrent_initializer={"class_name": "Identity",
                                                                   "config": {"gain": 0.5}}), (9, 5))
    assert torch.equal(irnn.weight_hh.detach(), 0.5 * torch.eye(4))
    tall = initialize_(torch.empty(3, 2, 4), {"class_name": "Orthogonal", "config": {"gain": 2.0}}).reshape(6, 4)
    assert torch.allclose(tall.T @ tall, 4 * torch.eye(4), atol=1e-5)  # Keras' (6, 4) matrix of a (3, 2, 4) weight
    keras_lstm = keras.Sequential([keras.Input((9, 5)), L.LSTM(6)]).layers[0]
    assert np.array_equal(keras_lstm.get_weights()[2], lstm.bias.detach().numpy())


def training_outputs(kind: str, x: np.ndarray, **settings) -> tuple[np.ndarray, np.ndarray, "keras.layers.Layer"]:
    """A seeded random ``kind`` layer on ``x`` in training, by torch and by Keras (the same weights): both outputs,
    and the Keras layer (for its outputs outside training)."""
    keras_layer = getattr(L, kind)(return_sequences=True, seed=0, **settings)
    model = randomised(keras.Sequential([keras.Input(x.shape[1:]), keras_layer]), seed=5)
    architecture, _ = network_of(sequential_case(x.shape[1:], keras_layer))
    module = build(architecture.nodes[0].layer, x.shape[1:])
    module.load_state_dict({mapping.attribute: torch.from_numpy(mapping.to_torch(value)) for mapping, value in
                            zip(converter_of(architecture.nodes[0].layer).weights.values(), keras_layer.get_weights())})
    torch.manual_seed(0)
    module.train()
    torch_out = module(torch.from_numpy(x)).detach().numpy()
    keras_out = keras.ops.convert_to_numpy(model(x, training=True))
    return torch_out, keras_out, keras_layer


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_dropout_masks_each_sample_for_all_its_steps_as_keras_does(kind):
    """In training ``dropout`` keeps or drops each input feature of a sample for all its steps (survivors times
    1 / (1 - rate)): with one feature, each sample's outputs are those of its input times 0 or times 2 outside
    training, in both frameworks, about half of each; a mask drawn per step would match neither."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, (200, 6, 1)).astype(np.float32)
    torch_out, keras_out, keras_layer = training_outputs(kind, x, units=3, dropout=0.5)
    dropped, doubled = (keras.ops.convert_to_numpy(keras_layer(x * factor)) for factor in (0.0, 2.0))
    for out in (torch_out, keras_out):
        is_dropped = np.isclose(out, dropped, atol=1e-5).all(axis=(1, 2))
        is_doubled = np.isclose(out, doubled, atol=1e-5).all(axis=(1, 2))
        assert (is_dropped ^ is_doubled).all() and 0.35 < is_dropped.mean() < 0.65


def test_simple_rnn_recurrent_dropout_masks_the_state_of_each_sample_for_all_its_steps_as_keras_does():
    """``recurrent_dropout`` keeps or drops each state unit of a sample for all its steps: with one unit, each
    sample's outputs are those of the recurrent kernel times 0 or times 2, in both frameworks."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, (200, 6, 3)).astype(np.float32)
    torch_out, keras_out, keras_layer = training_outputs("SimpleRNN", x, units=1, recurrent_dropout=0.5)
    kernel, recurrent, bias = keras_layer.get_weights()
    expected = []
    for factor in (0.0, 2.0):
        keras_layer.set_weights([kernel, recurrent * factor, bias])
        expected.append(keras.ops.convert_to_numpy(keras_layer(x)))
    for out in (torch_out, keras_out):
        is_dropped, is_doubled = (np.isclose(out, e, atol=1e-5).all(axis=(1, 2)) for e in expected)
        assert (is_dropped ^ is_doubled).all() and 0.35 < is_dropped.mean() < 0.65


@pytest.mark.parametrize("layer, message", [
    (L.LSTM(4, return_state=True), "has return_state=True: return_state (the states as extra outputs) is not supported"),
    (L.LSTM(4, recurrent_dropout=0.2), "has recurrent_dropout=0.2, which is not supported: Keras 3 then masks every "
                                       "sample with rows of one batch-wide mask"),
    (L.GRU(4, recurrent_dropout=0.1), "recurrent_dropout=0.1, which is not supported"),
    (L.Bidirectional(L.LSTM(4, activity_regularizer="l2")),
     "layer sets activity_regularizer, which is not supported inside a Bidirectional"),
    (L.LSTM(4, recurrent_activation="sparsemax"), "recurrent_activation 'sparsemax' is not supported"),
    (L.SimpleRNN(4, dropout=1.0), "dropout must be a number in [0, 1)"),
    (L.Bidirectional(L.LSTM(4), merge_mode=None), "has merge_mode=None (the two directions as two outputs), which is "
                                                  "not supported"),
    (L.Bidirectional(L.LSTM(4, recurrent_dropout=0.5)), "layer (LSTM): has recurrent_dropout=0.5, which is not "
                                                        "supported"),
    (L.Bidirectional(L.GRU(4), backward_layer=L.GRU(5, go_backwards=True)),
     "needs both directions of one size (Keras assumes the layer's for both); the layer gives 4 and the "
     "backward_layer 5"),
    (L.TimeDistributed(L.BatchNormalization()), "wraps a BatchNormalization, which is not supported here: Keras "
                                                "normalises each step by that step's batch statistics there"),
    (L.TimeDistributed(L.Dense(3, activity_regularizer="l2")),
     "layer sets activity_regularizer, which Keras never applies inside a TimeDistributed"),
])
def test_keras_layers_not_mirrored_are_refused_in_one_line(layer, message):
    assert_keras_layer_refused((9, 5), layer, message)


@pytest.mark.parametrize("kind, settings, message", [
    ("GRU", {"stateful": True}, "has stateful=True: stateful (states kept from one batch to the next) is not "
                                "supported"),
    ("LSTM", {"bias_initializer": "orthogonal"}, "bias_initializer Orthogonal fills a weight of two or more axes; "
                                                 "its bias has shape 16"),
    ("SimpleRNN", {"bias_initializer": "identity"}, "bias_initializer Identity fills a weight of two axes; its bias "
                                                    "has shape 4"),
    ("SimpleRNN", {"go_backwards": "yes"}, "go_backwards must be true or false, got 'yes'"),
    ("LSTM", {"units": 0}, "units must be a positive integer, got 0"),
    ("Bidirectional", {"layer": {"class_name": "Dense", "config": {"units": 3}}},
     "layer must be a SimpleRNN, LSTM or GRU, got 'Dense'"),
    ("Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 3}},
                       "backward_layer": {"class_name": "LSTM", "config": {"units": 3}}},
     "reads the steps forwards in both layers (go_backwards=False in each); Keras needs the two to differ"),
    ("Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 3, "return_sequences": True}},
                       "backward_layer": {"class_name": "GRU", "config": {"units": 3, "go_backwards": True}}},
     "return_sequences is True in the layer but False in the backward_layer; Keras needs them the same"),
    ("Bidirectional", {"layer": {"class_name": "SimpleRNN", "config": {"units": 3, "bias_initializer": "identity"}}},
     "layer: bias_initializer Identity fills a weight of two axes"),
    ("TimeDistributed", {"layer": {"class_name": "Sequential", "config": {"layers": []}}},
     "layer must be a supported Keras layer called on one tensor, got 'Sequential'"),
    ("TimeDistributed", {"layer": {"module": "mine", "class_name": "Dense", "config": {"units": 3}}},
     "layer is a custom class (Dense); only Keras' own layers are supported"),
    ("TimeDistributed", {"layer": {"class_name": "MultiHeadAttention", "config": {"num_heads": 2, "key_dim": 4}}},
     "layer (MultiHeadAttention) is called on several tensors; a wrapper calls its layer on one"),
    ("TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 3, "kernel_size": 2}}},
     "layer (Dense): sets kernel_size, which this bridge does not know"),
    ("TimeDistributed", {"layer": {"class_name": "LSTM", "config": {"units": 3}}},
     "layer (LSTM) on each step of 5: needs an (H, W) map input, got 5"),
    ("TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 3, "bias_initializer": "identity"}}},
     "layer: bias_initializer Identity fills a weight of two axes; its bias has shape 3"),
    ("TimeDistributed", {"layer": 3}, "layer must be a supported Keras layer called on one tensor (its Keras config "
                                      "or a description's entry), got 3"),
])
def test_configs_keras_cannot_build_or_we_do_not_mirror_are_refused_in_one_line(kind, settings, message):
    """What Keras itself fails on when it builds the layer (or later), as a ``.keras`` file's config.json holds it."""
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, 9, 5], "dtype": "float32", "name": "input_layer"}},
        {"module": "keras.layers", "class_name": kind,
         "config": {"name": "rnn", **({} if kind in WRAPPERS else {"units": 4}), **settings}},
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 10}}]}}
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(config, "model.keras")
    text = str(info.value)
    assert text.startswith(f"model.keras: layer 0 (rnn, {kind})") and message in text and "\n" not in text, text


def test_a_sequence_too_long_to_run_step_by_step_is_refused_in_one_line():
    """A crafted file's million steps would run for hours: more than MAX_STEPS is refused before anything is built."""
    config = {"input_shape": [9, 5], "layers": [{"type": "UpSampling1D", "size": 500}, {"type": "LSTM", "units": 4},
                                                {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert "layer 1 (lstm, LSTM): reads 4,500 steps, more than this bridge runs a recurrent layer over (4,096: one " \
           "small operator group per step)" in str(info.value) and "\n" not in str(info.value)


def nested_wrappers(depth: int) -> dict:
    """A Dense in ``depth`` TimeDistributed wrappers, as Keras serialises them."""
    layer = {"class_name": "Dense", "config": {"units": 4}}
    for _ in range(depth):
        layer = {"class_name": "TimeDistributed", "config": {"layer": layer}}
    return layer


def test_a_time_distributed_layer_needs_steps_of_one_axis_or_more():
    """Over a flat vector each step would be one number, which Keras refuses (it needs inputs of three axes or
    more); a layer giving one number a step is refused too."""
    for config, message in (
            ({"input_shape": [784], "layers": [{"type": "TimeDistributed", "layer": {"type": "Dense", "units": 4}}]},
             "needs steps of at least one axis each ((steps, features) or (steps, ..., channels)), got 784"),
            ({"input_shape": [9, 5], "layers": [{"type": "TimeDistributed", "layer": {"type": "ops.sum"}}]},
             "layer must be a supported Keras layer called on one tensor, got 'ops.sum'"),
            # a crafted file's wrappers 200 deep ran the parser past Python's stack (hostile round 7)
            ({"input_shape": [9, 5], "layers": [{"type": "TimeDistributed", "layer": nested_wrappers(200)}]},
             "layer wraps layers in wrappers more than 8 deep"),
            ({"input_shape": [9, 5], "layers": [{"type": "TimeDistributed", "layer": {"class_name": "Dense",
                                                                                       "config": "units=4"}}]},
             "layer (Dense) has a config that is no mapping (str)")):
        with pytest.raises(ArchitectureError) as info:
            Architecture.from_config({**config, "layers": [*config["layers"], {"type": "Flatten"},
                                                           {"type": "Dense", "units": 10}]})
        assert re.search(r"layer 0 \((time_distributed, )?TimeDistributed\): " + re.escape(message), str(info.value))
        assert "\n" not in str(info.value)


def test_a_time_distributed_layers_softmax_or_sigmoid_is_read_as_its_layers():
    """A TimeDistributed(Dense(10, activation="softmax")) at the output gives probabilities, as its layer does: they
    were read as logits and softmaxed again by predict, .onnx, test and fit (Keras' P(7) 0.892 became 0.211; zoo
    round 7), its sigmoid taken for logits, and a dropout of softmax probabilities inside one called a change."""
    flat = keras.Input((784,))
    one_step = L.Reshape((1, 16))(L.Dense(16, activation="relu")(flat))
    rows = keras.Input((28, 28))
    softmaxes = {
        "dense": keras.Model(flat, L.Flatten()(L.TimeDistributed(L.Dense(10, activation="softmax"))(one_step))),
        "softmax_layer": keras.Model(flat, L.Flatten()(L.TimeDistributed(L.Softmax())(
            L.Reshape((1, 10))(L.Dense(10)(flat))))),
        "mean_of_the_rows": keras.Model(rows, L.GlobalAveragePooling1D()(L.TimeDistributed(L.Dense(
            10, activation="softmax"))(rows))),
        "dropout_inside": keras.Model(flat, L.Flatten()(L.TimeDistributed(L.Dropout(0.5))(L.Reshape((1, 10))(
            L.Dense(10, activation="softmax")(flat))))),
        "each_rows_softmax_dropped_out": keras.Model(rows, L.GlobalAveragePooling1D()(L.TimeDistributed(
            L.Dropout(0.3))(L.TimeDistributed(L.Dense(10, activation="softmax"))(rows)))),
        "one_distribution_along_the_steps": keras.Model(flat, L.Flatten()(L.TimeDistributed(L.Dropout(0.5))(
            L.Softmax(axis=1)(L.Reshape((10, 1))(L.Dense(10)(flat)))))),
    }
    for name, model in softmaxes.items():
        architecture = architecture_of(model)
        assert architecture.outputs_probabilities and architecture.probabilities_changed is None, name
        assert_matches_keras(model, source=name)
    sigmoid = keras.Model(flat, L.Flatten()(L.TimeDistributed(L.Dense(10, activation="sigmoid"))(one_step)))
    assert architecture_of(sigmoid).independent_probabilities_from.layer.type == "TimeDistributed"
    with pytest.raises(ArchitectureError, match=r"^predict give one softmax over the classes; .*'s layer \(time_"
                                                r"distributed(_\d+)?\) applies sigmoid, whose values are the outputs: "
                                                r"independent per-class probabilities"):  # an AttributeError (zoo 8)
        architecture_of(sigmoid).require_one_distribution("predict")
    over_steps = keras.Model(rows, L.Flatten()(L.TimeDistributed(L.Softmax(axis=1))(L.Reshape((1, 28, 28))(rows))))
    assert architecture_of(over_steps).nodes[-2].layer.softmax_axis() == 2  # a step's axis 1 is the output's 2


@pytest.mark.parametrize("frozen, trains", [("wrapper", True), ("layer", False)])
def test_a_time_distributed_layer_trains_as_its_layer_says_as_in_keras(frozen, trains):
    """Keras gathers the trainable weights from the layer that holds them: ``TimeDistributed(Dense(3),
    trainable=False)`` still trains its Dense (as a Bidirectional's own flag does nothing), ``Dense(3,
    trainable=False)`` inside it does not. The description says what Keras' model does, and torch's parameters too."""
    model = sequential_case((9, 5), L.TimeDistributed(L.Dense(3, trainable=frozen != "layer"),
                                                      trainable=frozen != "wrapper"))
    architecture, network = network_of(model)
    node = architecture.nodes[0]
    keras_trains = [f"/{node.name}/" in f"/{weight.path}" for weight in model.trainable_weights].count(True)
    assert keras_trains == (2 if trains else 0)
    assert all(node.layer.trains(name) is trains for name in ("kernel", "bias"))
    own = [p.requires_grad for name, p in network.named_parameters() if name.startswith(f"{node.name}.")]
    assert own == [trains, trains]


def test_a_recurrent_layer_on_an_image_is_refused_in_one_line():
    config = {"input_shape": [28, 28, 1], "layers": [{"type": "LSTM", "units": 4}, {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert "layer 0 (lstm, LSTM): needs an (H, W) map input, got 28x28x1; LSTM reads a sequence of (steps, " \
           "features)" in str(info.value) and "\n" not in str(info.value)


def test_settings_round_trip_through_a_description(tmp_path):
    for layer in (L.LSTM(5, activation="relu", unit_forget_bias=False, dropout=0.1, seed=3, go_backwards=True,
                         recurrent_initializer={"class_name": "Orthogonal", "config": {"gain": 0.5, "seed": 2}}),
                  L.GRU(4, reset_after=False, return_sequences=True, recurrent_activation="hard_sigmoid",
                        kernel_regularizer="l2", recurrent_constraint="max_norm"),
                  L.SimpleRNN(3, recurrent_initializer="identity", recurrent_dropout=0.25, use_bias=False),
                  L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode="ave"),
                  L.Bidirectional(L.GRU(4), backward_layer=L.SimpleRNN(4, go_backwards=True)),
                  L.TimeDistributed(L.Dense(4, kernel_regularizer="l2", bias_constraint="non_neg"), trainable=False),
                  L.TimeDistributed(L.Dropout(0.25, seed=4)), L.TimeDistributed(L.Activation("gelu"))):
        assert_settings_round_trip((9, 5), [layer], tmp_path)
    for layer in (L.TimeDistributed(L.LSTM(3, go_backwards=True)), L.TimeDistributed(L.Bidirectional(L.GRU(2))),
                  L.TimeDistributed(L.TimeDistributed(L.PReLU(shared_axes=[1])))):
        assert_settings_round_trip((6, 5, 4), [layer], tmp_path)


def test_recurrent_models_over_mnist_rows_convert_to_every_format_and_back(tmp_path, capsys, seed_png):
    """The classic rows model (a GRU over the rows, an LSTM over its steps backwards, a bidirectional LSTM, a
    SimpleRNN) beside Keras' hierarchical RNN (an LSTM over each row's pixels, TimeDistributed, of a pooled image: the
    LiteRT export unrolls every row's), a Conv1D on every row, a convolution's code repeated on every row
    (RepeatVector) and the rows attended by their similarities (Dot, ops.matmul), as one .keras
    file: .ckpt, .pt2, .onnx and .tflite
    proven on MNIST, back to .keras bit for bit, and one digit on both backends. The rows are those of the image
    pooled to 14x14: every recurrent layer is unrolled in the exported graphs, and 28 steps took twice as long to
    export (about 100 s of this test's time) for nothing more tested."""
    inputs = keras.Input((28, 28, 1))
    pooled = L.MaxPooling2D(2)(inputs)  # 14 rows of 14
    rows = L.LSTM(12, return_sequences=True, go_backwards=True)(L.GRU(16, return_sequences=True)(
        L.Reshape((14, 14))(pooled)))
    each_row = L.UpSampling1D(2)(L.TimeDistributed(L.LSTM(8))(L.MaxPooling2D(2)(pooled)))  # 7 rows of 7
    strokes = L.TimeDistributed(L.Flatten())(L.TimeDistributed(L.Conv1D(2, 5, strides=4))(pooled))
    code = L.RepeatVector(14)(L.GlobalAveragePooling2D()(L.Conv2D(3, 3)(inputs)))  # the image's code on every row
    similar = L.Dot(axes=2, normalize=True)([rows, rows])  # the rows' cosine similarities, an attention's weights
    attended = keras.ops.matmul(keras.ops.softmax(similar, axis=-1), rows)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True))(L.Concatenate()([rows, each_row, strokes, code, attended]))
    x = L.SimpleRNN(8, activation="relu")(x)
    model = randomised(keras.Model(inputs, L.Dense(10, activation="softmax")(x), name="rows"), seed=2)
    model.save(tmp_path / "rows.keras")
    converts_and_comes_back(tmp_path / "rows.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.pt2", "model.onnx", "model.tflite"))
    predicts_alike_on_both_backends(tmp_path / "model.ckpt", seed_png, capsys)


@sampler("SimpleRNN")
def make_simple_rnn(rng: np.random.Generator, shape: tuple[int, ...]):
    return L.SimpleRNN(int(rng.integers(2, 9)), activation=str(rng.choice(["tanh", "relu", "sigmoid"])),
                       return_sequences=bool(rng.random() < 0.5), go_backwards=bool(rng.random() < 0.3)) \
        if len(shape) == 2 else None


@sampler("LSTM")
def make_lstm(rng: np.random.Generator, shape: tuple[int, ...]):
    return L.LSTM(int(rng.integers(2, 9)), recurrent_activation=str(rng.choice(["sigmoid", "hard_sigmoid"])),
                  use_bias=bool(rng.random() < 0.8), return_sequences=bool(rng.random() < 0.5),
                  go_backwards=bool(rng.random() < 0.3)) if len(shape) == 2 else None


@sampler("GRU")
def make_gru(rng: np.random.Generator, shape: tuple[int, ...]):
    return L.GRU(int(rng.integers(2, 9)), reset_after=bool(rng.random() < 0.6), use_bias=bool(rng.random() < 0.8),
                 return_sequences=bool(rng.random() < 0.5), go_backwards=bool(rng.random() < 0.3)) \
        if len(shape) == 2 else None


@sampler("Bidirectional")
def make_bidirectional(rng: np.random.Generator, shape: tuple[int, ...]):
    inner = (make_simple_rnn, make_lstm, make_gru)[int(rng.integers(3))](rng, shape)
    if inner is None:
        return None
    inner.go_backwards = False
    return L.Bidirectional(inner, merge_mode=str(rng.choice(["concat", "sum", "mul", "ave"])))


@sampler("TimeDistributed")
def make_time_distributed(rng: np.random.Generator, shape: tuple[int, ...]):
    """Another layer kind's random layer (no operation: Keras wraps layers) for one step of ``shape`` (its first axis
    the steps), on every step."""
    kinds = sorted(kind for kind in SAMPLERS if kind not in (*NOT_TIME_DISTRIBUTED, "TimeDistributed")
                   and kind.isidentifier() and LAYER_TYPES[kind].INPUTS == 1 and not LAYER_TYPES[kind].CALL_TENSORS)
    inner = SAMPLERS[kinds[int(rng.integers(len(kinds)))]](rng, shape[1:]) if len(shape) >= 2 else None
    return None if inner is None else L.TimeDistributed(inner)


def returning_sequences(layer: "keras.layers.Layer") -> "keras.layers.Layer":
    """The same layer (a Bidirectional: both of its layers) giving every step's output."""
    config = layer.get_config()
    for settings in ([config["layer"]["config"], config["backward_layer"]["config"]] if "layer" in config
                     else [config]):
        settings["return_sequences"] = True
    return type(layer).from_config(config)


@pytest.mark.parametrize("seed", range(4))
def test_random_recurrent_layers_match_keras(seed):
    """Each sampler's layers in a row on a (steps, features) input: the torch network gives Keras' outputs."""
    rng = np.random.default_rng(seed)
    drawn = [make(rng, (8, 6)) for make in (make_simple_rnn, make_lstm, make_bidirectional, make_gru)]
    drawn = [*map(returning_sequences, drawn[:-1]), drawn[-1]]  # each one's sequences feed the next
    assert_matches_keras(sequential_case((8, 6), *drawn), seed, source=f"recurrent seed {seed}")
