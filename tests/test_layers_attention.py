"""MultiHeadAttention against Keras: self- and cross-attention over sequences and images, its settings, how a file
records its call, its initial weights, and what is refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
import yaml

from bridge_check import L, architecture_of, assert_matches_keras, classifier, converts_and_comes_back, keras
from conftest import both_frameworks_learn
from keras_bridge.build import build_model
from lightning_mnist.models.network import KerasNetwork
from mnist_common.architecture import Architecture, ArchitectureError


def _self_attention(shape=(28, 28), **settings):
    inputs = keras.Input(shape)
    x = L.Dense(12, name="embed")(inputs)
    x = L.Add()([x, L.MultiHeadAttention(**{"num_heads": 3, "key_dim": 4, **settings}, name="attention")(x, x)])
    return classifier(inputs, L.LayerNormalization()(x), name="self_attention")


@pytest.mark.parametrize("settings", [
    {}, {"value_dim": 7}, {"use_bias": False}, {"dropout": 0.3}, {"num_heads": 1, "key_dim": 16},
    {"kernel_initializer": "he_normal", "bias_initializer": "ones", "kernel_regularizer": "l2"},
])
def test_self_attention_over_a_sequence_matches_keras(settings):
    assert_matches_keras(_self_attention(**settings), source=str(settings))


@pytest.mark.parametrize("axes", [None, [1, 2], [-3, -2]])
def test_attention_over_an_images_positions_matches_keras(axes):
    """An (H, W, C) map attended over all H x W positions (the query's output in the image's layout again)."""
    inputs = keras.Input((5, 4, 3))
    x = L.Conv2D(6, 3, padding="same")(inputs)
    y = L.MultiHeadAttention(2, 5, attention_axes=axes, output_shape=8)(x, x)
    assert_matches_keras(classifier(inputs, L.Conv2D(3, 1)(y), name="image"), source=str(axes))


def test_cross_attention_with_its_own_key_and_keywords_matches_keras():
    """Queries from one branch, values and keys from others of other widths and another length; one call positional,
    one by keyword (``mha(query=..., value=..., key=...)``), as a file records either."""
    inputs = keras.Input((28, 28))
    rows = L.Dense(10, name="rows")(inputs)  # 28 steps of 10
    pooled = L.Dense(6, name="pooled")(L.MaxPooling1D(2)(inputs))  # 14 steps of 6
    keys = L.Dense(9, name="keys")(L.AveragePooling1D(2)(inputs))  # 14 steps of 9
    a = L.MultiHeadAttention(2, 4, value_dim=3, name="a")(rows, pooled, keys)
    b = L.MultiHeadAttention(4, 2, output_shape=(5,), name="b")(query=a, value=pooled, key=keys)
    c = L.MultiHeadAttention(2, 3, name="c")(query=b, value=rows)
    model = classifier(inputs, L.GlobalAveragePooling1D()(c), name="cross")
    architecture = architecture_of(model)
    assert [node.inputs for node in architecture.nodes if node.layer.type == "MultiHeadAttention"] == [
        ("rows", "pooled", "keys"), ("a", "pooled", "keys"), ("b", "rows")]
    assert_matches_keras(model, source="cross")


def test_the_initial_weights_are_drawn_with_keras_fans():
    """Keras draws each EinsumDense kernel with the fans of its input and output axes (a (features, heads, dim)
    projection: features in, heads x dim out); torch draws the same distribution, not one of the kernel's last two
    axes (which Keras' generic fans would give)."""
    description = architecture_of(_self_attention((28, 40), num_heads=4, key_dim=16, value_dim=16))
    keras_model = build_model(description)
    torch.manual_seed(0)
    network = KerasNetwork(description)
    mha = keras_model.get_layer("attention")
    node = description.nodes[1]
    for index, (name, _) in enumerate(node.layer.weights(*description.input_shapes_of(node))):
        if not name.endswith("kernel"):
            continue
        keras_std = float(np.std(mha.get_weights()[index]))
        side = name.removesuffix("_kernel")
        torch_std = float(getattr(network.attention, side).weight.std())
        assert abs(torch_std - keras_std) / keras_std < 0.1, (name, torch_std, keras_std)


def test_a_vision_transformer_converts_both_ways_and_to_every_format(tmp_path, capsys, mnist):
    """Patches by a strided convolution, a transformer block (attention, a residual, layer normalisation, an MLP),
    pooled: trained a little in Keras, then .ckpt, .onnx, .pt2 and .tflite, and back to the same .keras."""
    inputs = keras.Input((28, 28, 1))
    x = L.Reshape((16, 24))(L.Conv2D(24, 7, strides=7)(inputs))
    x = L.LayerNormalization()(L.Add()([x, L.MultiHeadAttention(4, 6, dropout=0.1)(x, x)]))
    x = L.LayerNormalization()(L.Add()([x, L.Dense(24)(L.Dense(48, activation="gelu")(x))]))
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling1D()(x)), name="vit")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist.train_images[:2000, ..., None] / 255.0, mnist.train_labels[:2000], epochs=1, verbose=0)
    model.save(tmp_path / "vit.keras")
    before, _ = converts_and_comes_back(tmp_path / "vit.keras", tmp_path, capsys,
                                        ("model.ckpt", "model.onnx", "model.pt2", "model.tflite"), check_images=300)
    assert [len(arrays) for layer, arrays in before.weights.items() if "attention" in layer] == [8]
    with zipfile.ZipFile(tmp_path / "again.keras") as archive:
        config = json.loads(archive.read("config.json"))
    [entry] = [e for e in config["config"]["layers"] if e["class_name"] == "MultiHeadAttention"]
    assert len(entry["inbound_nodes"][0]["args"]) == 2  # called on (x, x) again


def _call_recorded(model_config: dict, **kwargs) -> dict:
    """A config.json of a model whose attention call records ``kwargs`` besides its tensors (a hand-made file's)."""
    for entry in model_config["config"]["layers"]:
        if entry["class_name"] == "MultiHeadAttention":
            entry["inbound_nodes"][0]["kwargs"].update(kwargs)
    return model_config


@pytest.mark.parametrize("change, message", [
    (lambda m: m, None),
    (lambda m: _call_recorded(m, use_causal_mask=False, return_attention_scores=False, training=False), None),
    (lambda m: _call_recorded(m, attention_mask=[[1]]), "is called with attention_mask; only its query, value, key"),
    (lambda m: _call_recorded(m, return_attention_scores=True), "is called with return_attention_scores"),
])
def test_the_call_a_file_records_is_read_or_refused(change, message):
    config = change(keras.saving.serialize_keras_object(_self_attention()))
    if message is None:
        assert architecture_of(keras.Model.from_config(config["config"])).nodes[1].inputs == ("embed", "embed")
        return
    from mnist_common.architecture import architecture_from_keras_config

    with pytest.raises(ArchitectureError, match=message):
        architecture_from_keras_config(config, "model.keras")


@pytest.mark.parametrize("input_shape, layer, message", [
    ([6, 5, 3], {"attention_axes": [1]}, "attends over axes [1]; only all axes but the batch and the features ([1, 2]"),
    ([6, 5, 3], {"output_shape": [4, 4]}, "output_shape [4, 4] has 2 sizes; only one"),
    ([6, 5, 3], {"num_heads": 0}, "num_heads must be"),
    ([6, 5, 3], {"dropout": 1.0}, "dropout must be a number in [0, 1)"),
    ([6, 5, 3], {"inputs": ["input"]}, "is called on a query and a value (and a key), got 1 input"),
    ([30], {}, "needs a sequence (steps, features) or an image (H, W, C) as its query, got 30"),
    # an image's 784 positions attend to each other: 32 heads of scores and probabilities are 39 million values
    ([28, 28, 4], {"num_heads": 32}, "the layers up to here hold 39,"),
    ([6, 5, 3], {"use_causal_mask": True}, "has use_causal_mask over an image's positions (6x5x3); a causal mask is "
                                           "supported over sequences (steps, features)"),
    ([6, 5], {"use_causal_mask": 1}, "use_causal_mask must be true or false, got 1"),
    # taken modulo the query's axes (torch answered where Keras fails with an IndexError)
    ([6, 5], {"attention_axes": [4]}, "attention_axes [4]: axis 4 does not exist on its 6x5 query (axes 1 to 2, or "
                                      "-1 to -2; 0 is the batch)"),
    ([6, 5, 3], {"attention_axes": [5, 6]}, "attention_axes [5, 6]: axis 5 does not exist"),
    ([6, 5], {"attention_axes": -3}, "attention_axes [-3]: axis -3 does not exist"),
])
def test_descriptions_keras_cannot_build_are_refused(input_shape, layer, message):
    config = {"input_shape": input_shape, "layers": [
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 4, "inputs": ["input", "input"], **layer},
        {"type": "Flatten"}, {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and str(info.value).startswith("layer 0 (") and "MultiHeadAttention)" in str(
        info.value) and "\n" not in str(info.value)


def test_gated_attention_is_refused_naming_it():
    inputs = keras.Input((6, 5))
    model = classifier(inputs, L.MultiHeadAttention(2, 3, use_gate=True)(inputs, inputs))
    with pytest.raises(ArchitectureError, match=r"has use_gate=True: gated attention \(use_gate\) is not supported"):
        architecture_of(model, "model.keras")


def test_a_description_reads_like_keras_and_round_trips():
    """``output_shape`` is Keras' name for the setting in a description too."""
    config = {"input_shape": [28, 28], "layers": [
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 8, "output_shape": 16, "inputs": ["input", "input"]},
        {"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
    architecture = Architecture.from_config(config)
    assert architecture.shapes["multi_head_attention"] == (28, 16)
    written = architecture.to_config()["layers"][0]
    assert written["output_shape"] == 16 and "output_size" not in written and written["value_dim"] == 8
    assert Architecture.from_config(architecture.to_config()) == architecture
    model = build_model(architecture)
    assert model.get_layer("multi_head_attention").get_config()["output_shape"] == (16,)  # Keras' own form


def test_a_transformer_over_rows_trains_in_both_frameworks(run_main, tmp_path):
    """``fit`` and ``keras_reference train`` train a described transformer over MNIST's rows afresh: each framework
    builds the attention (the Keras side calls it on its query and value) and learns well above chance."""
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump({"input_shape": [28, 28], "layers": [
        {"type": "Dense", "name": "embed", "units": 32},
        {"type": "MultiHeadAttention", "name": "attention", "num_heads": 4, "key_dim": 8, "inputs": ["embed", "embed"]},
        {"type": "Add", "inputs": ["embed", "attention"]}, {"type": "LayerNormalization"},
        {"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}))
    both_frameworks_learn(run_main, tmp_path, "rows.yaml", subset=1500, minimum=0.3)  # chance is 0.1


def _rows_attention(layer, with_key: bool = False):
    """An LSTM's states over MNIST-like rows attended by ``layer`` (its queries a Dense of them, another length)."""
    inputs = keras.Input((12, 9))
    states = L.LSTM(6, return_sequences=True)(inputs)
    queries = L.Dense(6)(L.MaxPooling1D(3)(inputs))  # 4 steps
    values = L.Dense(5)(states)
    called = [queries, values, states] if with_key else [queries, states]
    return classifier(inputs, L.GlobalAveragePooling1D()(layer(called)), name="rows_attention")


@pytest.mark.parametrize("layer", [
    lambda: L.Attention(), lambda: L.Attention(use_scale=True), lambda: L.Attention(score_mode="concat"),
    lambda: L.Attention(use_scale=True, score_mode="concat", dropout=0.2), lambda: L.AdditiveAttention(),
    lambda: L.AdditiveAttention(use_scale=False, dropout=0.1)])
@pytest.mark.parametrize("with_key", [False, True])
def test_dot_product_and_additive_attention_match_keras(layer, with_key):
    made = layer()
    assert_matches_keras(_rows_attention(made, with_key), source=f"{made.get_config()} key={with_key}")


@pytest.mark.parametrize("input_shape, called, message", [
    ([5, 4], ["input", "narrow"], "the query's features the key's"),
    ([5, 4], ["input", "input", "pooled"], "the key's steps the value's"),
    ([5, 4, 2], ["input", "input"], "needs sequences (steps, features)"),
    ([5, 4], ["input"], "is called on [query, value] or [query, value, key], got 1 input"),
])
def test_attention_keras_cannot_build_is_refused(input_shape, called, message):
    branches = [{"type": "Dense", "name": "narrow", "units": 3}, {"type": "MaxPooling1D", "name": "pooled",
                                                                   "inputs": ["input"]}]
    config = {"input_shape": input_shape, "layers": [
        *[entry for entry in branches if entry["name"] in called],
        {"type": "Attention", "inputs": called}, {"type": "Flatten"}, {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and "(attention, Attention)" in str(info.value)


def test_an_attention_lstm_over_rows_converts_both_ways_and_to_every_format(tmp_path, capsys, mnist):
    """Keras' recurrent "attention LSTM": an LSTM's states over MNIST's rows, Bahdanau's attention of its last state
    over all of them (``AdditiveAttention()([query, value])``) and Luong's with a scale, trained a little in Keras;
    then .ckpt, .onnx, .pt2 and .tflite, and back to the same .keras."""
    inputs = keras.Input((28, 28))
    states = L.LSTM(16, return_sequences=True)(inputs)
    last = L.Reshape((1, 16))(L.Cropping1D((27, 0))(states))
    context = L.AdditiveAttention()([last, states])
    scaled = L.Attention(use_scale=True)([states, states])
    x = L.Concatenate()([L.Flatten()(context), L.GlobalAveragePooling1D()(scaled)])
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(x), name="attention_lstm")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(mnist.train_images[:2000] / 255.0, mnist.train_labels[:2000], epochs=1, verbose=0)
    model.save(tmp_path / "attention_lstm.keras")
    before, _ = converts_and_comes_back(tmp_path / "attention_lstm.keras", tmp_path, capsys,
                                        ("model.ckpt", "model.onnx", "model.pt2", "model.tflite"), check_images=300)
    assert [arrays[0].shape for layer, arrays in before.weights.items() if "attention" in layer] == [(16,), ()]


def _convert(capsys, source, target) -> str:
    from bridge_check import command_line

    command_line(["convert", str(source), str(target), "--check_images", "100"])
    out = capsys.readouterr().out
    assert "max |p_" in out
    return out


def test_a_file_whose_calls_give_tensors_by_keyword_converts(tmp_path, capsys):
    """Keras stores a graph's weights in the order of ``model.layers``, which its walk of each call's tensors decides:
    positional ones first, then keywords alphabetically (``mha(query=q, value=v, key=k)`` walks k, q, v). Branches of
    one width made in the order k, q, v and called by keyword were refused ("the weights Keras loaded differ"), and
    of other widths, as a kernel of the wrong shape; ``layer(inputs=x)`` was refused as a call on no tensor."""
    inputs = keras.Input((28, 28))
    k, q, v = (L.Dense(16, name=name)(inputs) for name in ("k", "q", "v"))
    a = L.MultiHeadAttention(2, 8, name="a")(query=q, value=v, key=k)
    b = L.Attention(name="b")(inputs=[a, v])
    x = L.Concatenate(name="c")(inputs=[L.Dense(8, name="d")(inputs=b), L.Dense(4, name="e")(a)])
    model = classifier(inputs, x, name="keywords")
    keras.utils.set_random_seed(1)
    model.set_weights([np.random.default_rng(i).normal(0, 0.3, w.shape) for i, w in enumerate(model.get_weights())])
    model.save(tmp_path / "keywords.keras")
    assert [layer.name for layer in model.layers][1:4] == ["k", "q", "v"]
    assert [node.inputs for node in architecture_of(model).nodes if node.name in "ab"] == [("q", "v", "k"), ("a", "v")]
    _convert(capsys, tmp_path / "keywords.keras", tmp_path / "keywords.ckpt")
    _convert(capsys, tmp_path / "keywords.ckpt", tmp_path / "again.keras")
    _convert(capsys, tmp_path / "keywords.keras", tmp_path / "keywords.onnx")
    again = keras.saving.load_model(tmp_path / "again.keras")
    x = np.random.default_rng(0).random((8, 28, 28), np.float32)
    assert np.abs(again.predict(x, verbose=0) - model.predict(x, verbose=0)).max() <= 1e-6
    for layer in model.layers:  # every weight back under its layer's name
        for a, b in zip(layer.get_weights(), again.get_layer(layer.name).get_weights(), strict=True):
            assert a.tobytes() == b.tobytes(), layer.name


def test_attention_over_an_images_positions_exports_to_every_format(tmp_path, capsys):
    """The query's output put back in the image's layout by a reshape to the batch size fixed the batch in
    ``torch.export`` ("Constraints violated (batch)"): the .pt2 export failed for every image attention."""
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 4, strides=4)(inputs)  # 7 x 7 x 8
    model = classifier(inputs, L.Conv2D(4, 1)(L.MultiHeadAttention(2, 4)(x, L.MaxPooling2D()(x))), name="image")
    model.save(tmp_path / "image.keras")
    for suffix in (".ckpt", ".pt2", ".onnx", ".tflite"):
        _convert(capsys, tmp_path / "image.keras", tmp_path / f"image{suffix}")


def test_causal_masks_match_keras_and_come_back_in_every_format(tmp_path, capsys):
    """``use_causal_mask=True`` in the call (query step i attends to key steps up to i): self-attention, attention to
    a shorter sequence (a mask of 28 x 14), Luong's and Bahdanau's; the same numbers as Keras, each format proven, and
    back to the same .keras (the calls record it again); a description says it as the call does."""
    inputs = keras.Input((28, 28))
    x = L.Dense(12, name="embed")(inputs)
    shorter = L.MaxPooling1D(2)(x)
    y = L.MultiHeadAttention(3, 4, name="self")(x, x, use_causal_mask=True)
    y = L.MultiHeadAttention(2, 4, name="cross")(query=y, value=shorter, use_causal_mask=True)
    z = L.Attention(use_scale=True, name="luong")([x, y], use_causal_mask=True)
    w = L.AdditiveAttention(name="bahdanau")([z, shorter], use_causal_mask=True)
    model = classifier(inputs, w, name="causal")
    assert_matches_keras(model, source="causal")
    architecture = architecture_of(model)
    assert [node.layer.use_causal_mask for node in architecture.nodes if "Attention" in node.layer.type] == [True] * 4
    model.save(tmp_path / "causal.keras")
    converts_and_comes_back(tmp_path / "causal.keras", tmp_path, capsys,
                            ("model.ckpt", "model.onnx", "model.pt2", "model.tflite"), check_images=100)
    with zipfile.ZipFile(tmp_path / "again.keras") as archive:
        config = json.loads(archive.read("config.json"))
    assert [e["inbound_nodes"][0]["kwargs"].get("use_causal_mask") for e in config["config"]["layers"]
            if "Attention" in e["class_name"]] == [True] * 4
    described = Architecture.from_config(yaml.safe_load(yaml.safe_dump(architecture.to_config())))
    assert described == architecture and "use_causal_mask" not in build_model(described).get_layer("self").get_config()
    unmasked = Architecture.from_config({**architecture.to_config(), "layers": [
        {key: value for key, value in layer.items() if key != "use_causal_mask"}
        for layer in architecture.to_config()["layers"]]})
    assert unmasked != architecture  # the mask is part of the network


def test_settings_keras_takes_in_one_case_only_are_refused_in_another():
    """Attention's ``score_mode="CONCAT"``, Bidirectional's ``merge_mode="SUM"``: Keras refuses them, and the
    bridge lower-cased them and ran them in torch. A convolution's padding, which Keras lower-cases itself, is
    still taken in any case."""
    rows = {"input_shape": [5, 4], "layers": [
        {"type": "Attention", "score_mode": "CONCAT", "inputs": ["input", "input"]}, {"type": "Flatten"},
        {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError, match=r"score_mode must be one of dot, concat, got 'CONCAT'"):
        Architecture.from_config(rows)
    with pytest.raises(ArchitectureError, match=r"merge_mode must be one of .*, got 'SUM'"):
        Architecture.from_config({"input_shape": [5, 4], "layers": [
            {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2}, "merge_mode": "SUM"},
            {"type": "Dense", "units": 10}]})
    padded = Architecture.from_config({"input_shape": [6, 6, 1], "layers": [
        {"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "SAME"}, {"type": "Flatten"},
        {"type": "Dense", "units": 10}]})
    assert padded.layers[0].padding == "same" and padded.shapes["conv2d"] == (6, 6, 2)
