"""Frozen layers (Keras' ``layer.trainable = False``), the way a Keras user fine-tunes: read, written back, trained as
Keras trains them, and ``fit --weights`` to go on training a model from its file.

Keras keeps a frozen layer's weights out of ``trainable_weights``: its optimizer does not change
or constrain them, its ``losses`` leave out their regularizers, and a frozen BatchNormalization
normalises with its moving statistics in training too (and does not update them). A frozen
model's ``.keras`` file says so in each layer's config (``"trainable": false``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import main_error

from bridge_check import L, converts_and_comes_back, keras, network_of, randomised
from keras_bridge.build import keras_layer
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.checkpoints import keras_file_network
from lightning_mnist.interop.keras_models import torch_weights_of
from lightning_mnist.models.network import KerasNetwork, keras_parameter_count
from mnist_common.architecture import Architecture, ArchitectureError
from mnist_common.keras_file import read_keras_file

R = keras.regularizers


def fine_tuning_model(head_batch_norm: bool = True) -> "keras.Model":
    """A frozen feature extractor (a nested Sequential, as ``base.trainable = False`` leaves it: every layer's config
    says false) with a regularised kernel and a BatchNormalization, under a trainable head; a frozen Dense of the
    graph too."""
    base = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(6, 3, activation="relu", kernel_regularizer=R.L2(0.01)),
                             L.BatchNormalization(), L.MaxPooling2D(), L.Conv2D(8, 3, strides=2)], name="base")
    base.trainable = False
    inputs = keras.Input((28, 28, 1))
    x = L.Flatten()(base(inputs))
    x = L.Dense(16, activation="relu", kernel_regularizer=R.L2(0.02), name="head")(x)
    if head_batch_norm:
        x = L.BatchNormalization(name="head_bn")(x)
    x = L.Dense(12, activation="tanh", name="frozen_dense", trainable=False, bias_regularizer="l1")(x)
    return keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x), name="fine_tuning")


FROZEN = 5  # the base's four layers (Keras names them) and frozen_dense


def keras_counts(model: "keras.Model") -> tuple[int, int]:
    return (sum(int(np.prod(v.shape)) for v in model.trainable_weights),
            sum(int(np.prod(v.shape)) for v in model.non_trainable_weights))


def keras_penalty(model: "keras.Model") -> float:
    return float(sum(np.asarray(keras.ops.convert_to_numpy(loss)) for loss in model.losses))


def test_frozen_layers_are_read_counted_and_frozen_in_torch():
    model = randomised(fine_tuning_model(), seed=3)
    architecture, network = network_of(model)
    frozen = {node.name for node in architecture.nodes if not node.layer.trainable}
    assert "frozen_dense" in frozen and len(frozen) == FROZEN
    assert architecture.parameter_count() == keras_parameter_count(network) == keras_counts(model)
    for name, parameter in network.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] not in frozen), name
    # Keras' losses leave out a frozen layer's regularizer: only the head's kernel is penalised, in both
    assert len(network.weight_penalties) == 1
    assert float(network.regularization_loss().detach()) == pytest.approx(keras_penalty(model), rel=1e-6)
    entries = {layer["name"]: layer for layer in architecture.to_config()["layers"]}
    assert {name for name, layer in entries.items() if layer.get("trainable") is False} == frozen
    assert all("trainable" not in layer for name, layer in entries.items() if name not in frozen)


def test_a_frozen_batch_normalization_uses_its_moving_statistics_in_training():
    """In training mode both frameworks give the same outputs: the frozen BatchNormalization normalises with its
    moving statistics (and keeps them), the head's with the batch's (and updates them). Computed as if frozen
    layers trained, the outputs differ: the check can fail."""
    model = randomised(fine_tuning_model(), seed=4)
    architecture, network = network_of(model)
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    expected = keras.ops.convert_to_numpy(model(x.permute(0, 2, 3, 1).numpy(), training=True))
    frozen_bn = next(n.name for n in architecture.nodes
                     if n.layer.type == "BatchNormalization" and not n.layer.trainable)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    network.train()
    with torch.no_grad():
        got = torch.softmax(network(x), 1).numpy()
    assert np.abs(got - expected).max() < 1e-5
    after = network.state_dict()
    assert torch.equal(after[f"{frozen_bn}.running_mean"], before[f"{frozen_bn}.running_mean"])
    assert not torch.equal(after["head_bn.running_mean"], before["head_bn.running_mean"])
    unfrozen = Architecture.from_config({**architecture.to_config(), "layers": [
        {k: v for k, v in layer.items() if k != "trainable"} for layer in architecture.to_config()["layers"]]})
    trained_as_if_unfrozen = KerasNetwork(unfrozen)
    trained_as_if_unfrozen.load_state_dict(before)
    trained_as_if_unfrozen.train()
    with torch.no_grad():
        assert np.abs(torch.softmax(trained_as_if_unfrozen(x), 1).numpy() - expected).max() > 1e-3


def test_one_optimizer_step_changes_what_keras_changes():
    """One SGD step on one batch, Keras' ``train_on_batch`` against the torch network's loss (cross-entropy plus its
    penalties) and torch's SGD over the parameters that require gradients: the frozen weights come out bit for
    bit as they were, the others as Keras leaves them."""
    model = randomised(fine_tuning_model(head_batch_norm=False), seed=5)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy")
    architecture, network = network_of(model)
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 32)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    model.train_on_batch(x, y)
    network.train()
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.5)
    logits = network(torch.from_numpy(x).permute(0, 3, 1, 2))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)) + network.regularization_loss()
    loss.backward()
    optimizer.step()
    expected = torch_weights_of(model, architecture)
    frozen = {node.name for node in architecture.nodes if not node.layer.trainable}
    changed = set()
    for key, value in network.state_dict().items():
        if key.split(".")[0] in frozen:
            assert torch.equal(value, before[key]) and torch.equal(expected[key], before[key]), key
        else:
            assert torch.allclose(value, expected[key], rtol=0, atol=1e-5), key
            changed |= {key} if not torch.equal(value, before[key]) else set()
    assert changed == {"head.weight", "head.bias", "out.weight", "out.bias"}


def test_a_keras_file_with_frozen_layers_converts_both_ways_and_stays_frozen(tmp_path, capsys):
    model = randomised(fine_tuning_model(), seed=6)
    model.save(tmp_path / "fine_tuning.keras")
    converts_and_comes_back(tmp_path / "fine_tuning.keras", tmp_path, capsys)
    again = keras.saving.load_model(tmp_path / "again.keras", compile=False)
    assert keras_counts(again) == keras_counts(model)

    def flags(holder) -> dict[str, bool]:  # every layer's, nested models' layers too
        return {name: trains for layer in holder.layers if not isinstance(layer, L.InputLayer) for name, trains in
                (flags(layer).items() if isinstance(layer, keras.Model) else [(layer.name, layer.trainable)])}

    assert flags(again) == flags(model) and sum(not trains for trains in flags(model).values()) == FROZEN


@pytest.mark.parametrize("freeze", ["wrapper's flag", "wrapper", "forward"])
def test_a_frozen_bidirectional_or_one_of_its_sides(freeze, tmp_path):
    """``bidirectional.trainable = False`` (Keras writes False into both layers: neither trains), only its forward
    layer frozen, or only the wrapper's own flag (``Bidirectional(..., trainable=False)``: Keras gathers the weights
    from the two layers, which still train): counted and frozen as Keras counts them, its settings written back as
    Keras wrote them."""
    layer = L.Bidirectional(L.LSTM(5, return_sequences=True), trainable=freeze != "wrapper's flag")
    inputs = keras.Input((28, 28))
    x = layer(inputs)
    if freeze == "wrapper":
        layer.trainable = False
    elif freeze == "forward":
        layer.forward_layer.trainable = False
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(x)))
    architecture, network = network_of(randomised(model, seed=7))
    assert architecture.parameter_count() == keras_parameter_count(network) == keras_counts(model)
    assert keras_counts(model)[1] == {"wrapper's flag": 0, "wrapper": 2 * 680, "forward": 680}[freeze]
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(architecture.to_config()))
    again = Architecture.load(tmp_path / "net.yaml")
    assert again == architecture
    config = keras_layer(again.nodes[0].layer).get_config()
    assert config["trainable"] == (freeze == "forward")
    assert [config[side]["config"]["trainable"] for side in ("layer", "backward_layer")] == \
        {"wrapper's flag": [True, True], "wrapper": [False, False], "forward": [False, True]}[freeze]


def test_descriptions_take_trainable_and_refuse_what_is_not_a_flag():
    architecture = Architecture.from_config({"input_shape": [8], "layers": [
        {"type": "Dense", "units": 4, "trainable": False}, {"type": "Dense", "units": 2}]})
    assert architecture.parameter_count() == (10, 36)
    with pytest.raises(ArchitectureError, match="trainable must be true or false, got 'no'"):
        Architecture.from_config({"input_shape": [8], "layers": [{"type": "Dense", "units": 2, "trainable": "no"}]})
    everything_frozen = Architecture.from_config({"input_shape": [28, 28, 1], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax", "trainable": False}]})
    with pytest.raises(ArchitectureError, match=r"`fit` needs a weight to train; .* none that trains: its layers "
                                                r"with weights are frozen \(trainable: false: dense\)"):
        everything_frozen.require_trainable("`fit`")


def test_fit_goes_on_training_a_keras_model_from_its_file(run_main, tmp_path):
    """``fit --weights model.keras``: the run's network is the file's, it starts from the file's weights, the frozen
    layers (their BatchNormalization's moving statistics too) end as they began, the rest trains."""
    model = fine_tuning_model()  # Keras' initial weights: random features a head can learn from
    model.save(tmp_path / "fine_tuning.keras")
    printed = run_main("lightning_mnist", "fit", "--weights", "fine_tuning.keras", "--data.subset", "2000",
                       "--trainer.max_epochs", "1", "--model.lr", "3e-3", "--trainer.enable_progress_bar", "false",
                       "--trainer.limit_test_batches", "2")
    assert "starting from the weights of fine_tuning.keras" in printed.out
    run = tmp_path / "runs" / "lightning" / "version_0"
    start = keras_file_network(tmp_path / "fine_tuning.keras").state_dict()
    trained = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    weights = {k.removeprefix("network."): v for k, v in trained["state_dict"].items()}
    frozen = {layer["name"] for layer in trained["hyper_parameters"]["architecture"]["layers"]
              if layer.get("trainable") is False}
    assert len(frozen) == FROZEN
    for key, value in start.items():
        assert torch.equal(weights[key], value) == (key.split(".")[0] in frozen), key
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["weights"] == "fine_tuning.keras" and results["test_acc"] > 0.3


def test_the_keras_reference_goes_on_training_a_keras_model_from_its_file(run_main, tmp_path):
    """``keras_reference train --weights model.keras``, the same: Keras' own fit leaves the frozen layers as the
    file has them and trains the rest."""
    fine_tuning_model().save(tmp_path / "fine_tuning.keras")
    printed = run_main("keras_reference", "train", "--weights", "fine_tuning.keras", "--data.subset", "2000",
                       "--trainer.max_epochs", "1", "--model.lr", "3e-3")
    assert "starting from the weights of fine_tuning.keras" in printed.out
    run = tmp_path / "runs" / "keras" / "version_0"
    start, trained = read_keras_file(tmp_path / "fine_tuning.keras"), read_keras_file(run / "model.keras")
    frozen = {node.name for node in start.architecture.nodes if not node.layer.trainable}
    assert len(frozen) == FROZEN and trained.weights.keys() == start.weights.keys()
    for layer, arrays in start.weights.items():
        same = [np.array_equal(a, b) for a, b in zip(arrays, trained.weights[layer])]
        assert all(same) if layer in frozen else not any(same), layer
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["weights"] == "fine_tuning.keras" and results["test_acc"] > 0.3


def test_keras_reference_weights_refusals_are_one_line(tmp_path, monkeypatch, capsys):
    from keras_reference.__main__ import main

    monkeypatch.chdir(tmp_path)
    keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(10, activation="softmax")]).save(
        tmp_path / "model.keras")
    for argv, message in ((["--weights", "model.ckpt"], "--weights model.ckpt: the Keras reference starts from a "
                                                        ".keras file (a Lightning checkpoint converts to one"),
                          (["--weights", "model.keras", "--model.architecture", "lenet5"],
                           "--model.architecture lenet5: model.keras holds"),
                          (["--weights", ""], "--weights '': empty; give a .keras file")):
        code, error, _ = main_error(main, ["train", *argv], capsys)
        assert code == 2 and message in error, error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["fit", "--weights", "frozen.keras"], "`fit` needs a weight to train"),
    (["test", "--weights", "model.keras", "--ckpt_path", "model.keras"],
     "--weights model.keras: only fit starts from a model's weights; `test` takes a checkpoint with --ckpt_path"),
    (["fit", "--weights", "model.keras", "--model.architecture", "notebook"],
     "--model.architecture notebook: model.keras holds"),
    (["fit", "--weights", "missing.keras"], "--weights: missing.keras: no such file"),
    (["fit", "--weights", ""], "--weights: '': an empty name"),
    (["fit", "--weights", "model.keras", "--ckpt_path", "model.ckpt"], "--weights model.keras with --ckpt_path"),
])
def test_fit_weights_refusals_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(10, activation="softmax")]).save("model.keras")
    keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(),
                      L.Dense(10, activation="softmax", trainable=False)]).save("frozen.keras")
    Path("model.ckpt").write_bytes(b"")
    code, line, _ = main_error(command_line, [*argv, "--output_dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and message in line, line
    assert not (tmp_path / "runs" / "lightning").exists() or not any((tmp_path / "runs" / "lightning").iterdir())
