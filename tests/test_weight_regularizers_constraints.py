"""Keras' weight regularizers (L1, L2, L1L2) and constraints (MaxNorm, NonNeg, UnitNorm, MinMaxNorm) on kernels,
biases, gamma and beta, depthwise and pointwise kernels, PReLU's alpha: read, written back, and applied as Keras
applies them.

Keras' total loss is the compiled loss plus ``sum(model.losses)``, each regularised weight's
``l1 * sum(|w|) + l2 * sum(w ** 2)``; the torch network computes the same sum
(:meth:`KerasNetwork.regularization_loss`) and the classifier adds it to every image's loss.
Keras' optimizers replace a constrained weight by its constrained value after every step, along
Keras' axes; the classifier does the same after each of its steps (:meth:`KerasNetwork.apply_constraints`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from bridge_check import (L, architecture_of, assert_matches_keras, converts_and_comes_back, keras, network_of,
                          randomised, sequential_case)
from keras_bridge.build import keras_layer
from lightning_mnist.models import MnistClassifier
from mnist_common.architecture import Architecture, ArchitectureError

R = keras.regularizers
C = keras.constraints


def every_regularised_kind() -> "keras.Model":
    return sequential_case((28, 28, 1), L.Conv2D(4, 3, kernel_regularizer=R.L2(1e-3), bias_regularizer="l1"),
                           L.BatchNormalization(gamma_regularizer=R.L1L2(l1=0.01, l2=0.02), beta_regularizer="l2"),
                           L.PReLU(alpha_regularizer="l2"), L.DepthwiseConv2D(3, depthwise_regularizer=R.L1(0.005)),
                           L.SeparableConv2D(3, 3, pointwise_regularizer="l2", depthwise_regularizer="l1"),
                           L.Conv2DTranspose(2, 3, kernel_regularizer=R.L1L2(l1=1e-4)),
                           L.LayerNormalization(gamma_regularizer="l1"), L.GroupNormalization(2, beta_regularizer="l1"),
                           L.Flatten(), L.Dense(7, kernel_regularizer=R.L2(0.1)))


def every_constrained_kind() -> "keras.Model":
    return sequential_case((28, 28, 1), L.Conv2D(4, 3, kernel_constraint=C.MaxNorm(0.5, axis=[0, 1, 2]),
                                                 bias_constraint="non_neg"),
                           L.BatchNormalization(gamma_constraint=C.MinMaxNorm(0.2, 0.8, rate=0.7),
                                                beta_constraint=C.UnitNorm()),
                           L.PReLU(alpha_constraint="non_neg"),
                           L.DepthwiseConv2D(3, depthwise_constraint=C.MaxNorm(0.3, axis=[0, 1])),
                           L.SeparableConv2D(3, 3, pointwise_constraint=C.UnitNorm(axis=2),
                                             depthwise_constraint=C.MaxNorm(1.0, axis=3)),
                           L.Conv2DTranspose(2, 3, kernel_constraint=C.MaxNorm(0.4, axis=-1)),
                           L.LayerNormalization(gamma_constraint="max_norm"), L.Flatten(),
                           L.Dense(7, kernel_constraint=C.MaxNorm(2, axis=1),  # whole numbers stay whole
                                   kernel_initializer=keras.initializers.RandomNormal(0, 1)))


def activity_regularised() -> "keras.Model":
    """Activity regularizers where Keras applies them: a convolution's outputs, an ActivityRegularization layer, a
    hidden Dense, the softmax Dense and a linear Activation after it (Keras penalises their probabilities, which the
    torch network leaves out of its logits)."""
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, activity_regularizer=R.L1(1e-3), name="conv"),
                             L.ActivityRegularization(l1=1e-4, l2=1e-3, name="penalty"), L.Flatten(),
                             L.Dense(16, activation="relu", activity_regularizer="l2", name="hidden"),
                             L.Dense(10, activation="softmax", activity_regularizer=R.L1L2(l1=0.01, l2=0.1),
                                     name="out"), L.Activation("linear", activity_regularizer="l2", name="after")])


def keras_penalty(model: "keras.Model") -> float:
    return float(sum(np.asarray(keras.ops.convert_to_numpy(loss)) for loss in model.losses))


def test_the_network_adds_what_keras_adds_for_every_regularised_weight():
    model = randomised(every_regularised_kind(), seed=2)
    _, network = network_of(model)
    assert len(network.weight_penalties) == 12
    expected = keras_penalty(model)
    assert expected > 1.0
    assert float(network.regularization_loss().detach()) == pytest.approx(expected, rel=1e-6)


def test_a_network_without_regularizers_adds_nothing():
    _, network = network_of(sequential_case((28, 28, 1), L.Conv2D(4, 3), L.Flatten(), L.Dense(10)))
    assert network.weight_penalties == () and network.regularization_loss() is None


def test_the_classifier_loss_is_keras_total_loss_and_its_gradient_has_the_penalty():
    """On one batch: cross-entropy plus the penalties, as Keras' ``compute_loss`` gives it (its probabilities'
    cross-entropy against ours on logits: within float32 rounding); the penalty's gradient reaches the weights."""
    model = randomised(sequential_case((28, 28, 1), L.Conv2D(4, 3, kernel_regularizer=R.L2(0.05)), L.Flatten(),
                                       L.Dense(10, activation="softmax", bias_regularizer=R.L1(0.2))), seed=3)
    model.compile(loss="sparse_categorical_crossentropy")
    architecture, network = network_of(model)
    classifier = MnistClassifier(architecture=architecture.to_config(), channels_last=False)
    classifier.network.load_state_dict(network.state_dict())
    classifier.eval()
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 16)
    expected = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=model(x, training=False))))
    loss, _ = classifier._shared_step((torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)), "val")
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    penalty = classifier.network.regularization_loss()
    assert float(loss.detach()) > float(penalty.detach()) > 0.1
    penalty.backward()
    [regularised] = [layer.name for layer in model.layers if getattr(layer, "bias_regularizer", None)]
    bias = dict(classifier.network.named_parameters())[f"{regularised}.bias"]
    assert torch.allclose(bias.grad, 0.2 * torch.sign(bias.detach()))


def test_the_classifier_loss_adds_what_keras_activity_regularizers_add(tmp_path, capsys):
    """Keras adds ``l1 * sum(|y|) + l2 * sum(y ** 2)`` of each regularised layer's outputs over the batch, divided by
    its size, at every call (evaluation too): the classifier's loss on one batch is Keras' ``compute_loss`` after
    the call, within float32 rounding; without those penalties it would be far off. ``forward`` computes none (what
    exported files run); a k-fold ensemble adds its members'. The settings come back from a ``.keras`` round trip,
    and the converted file penalises as the first."""
    from lightning_mnist.models import MnistEnsemble
    from lightning_mnist.models.network import probabilities_as_logits

    model = randomised(activity_regularised(), seed=3)
    model.compile(loss="sparse_categorical_crossentropy")
    architecture, network = network_of(model)
    assert network.activity_penalties == {"conv": (pytest.approx(1e-3), 0.0, False),
                                          "penalty": (pytest.approx(1e-4), pytest.approx(1e-3), False),
                                          "hidden": (0.0, pytest.approx(0.01), False),
                                          "out": (pytest.approx(0.01), pytest.approx(0.1), True),
                                          "after": (0.0, pytest.approx(0.01), True)}
    classifier = MnistClassifier(architecture=architecture.to_config(), channels_last=False)
    classifier.network.load_state_dict(network.state_dict())
    classifier.eval()
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 16)
    y_pred = model(x, training=False)
    penalties = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    expected = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))
    images, labels = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)
    with torch.no_grad():
        loss, logits = classifier._shared_step((images, labels), "val")
        assert float(loss) == pytest.approx(expected, rel=1e-5) and penalties > 0.5
        assert torch.equal(classifier.network(images), logits)  # the forward: the same logits, no penalty
        twice = MnistEnsemble([network, network]).eval()
        ensemble_loss, _ = twice._shared_step((images, labels), "test")
        mean_probabilities = probabilities_as_logits(torch.softmax(logits, 1))  # (floored as Keras floors them)
        assert float(ensemble_loss) == pytest.approx(
            float(torch.nn.functional.cross_entropy(mean_probabilities, labels)) + 2 * penalties, rel=1e-5)
    model.save(tmp_path / "activity.keras")
    before, after = converts_and_comes_back(tmp_path / "activity.keras", tmp_path, capsys)
    again = keras.saving.load_model(tmp_path / "again.keras", compile=False)
    again(x, training=False)
    assert sum(float(keras.ops.convert_to_numpy(loss)) for loss in again.losses) == pytest.approx(penalties, rel=1e-6)


@pytest.mark.parametrize("build", [every_regularised_kind, every_constrained_kind])
def test_settings_round_trip_as_keras_spells_them(build, tmp_path):
    """Keras' config -> description -> YAML -> description -> Keras layer: Keras' own regularizers and constraints
    again, for every such layer (initializers too, a whole number written back as one: MaxNorm(2)'s 2 was 2.0);
    string forms become Keras' classes with their defaults; unset ones stay out of the description."""
    model = build()
    architecture = architecture_of(model)
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(architecture.to_config()))
    again = Architecture.load(tmp_path / "net.yaml")
    assert again == architecture
    settings = ("_regularizer", "_constraint", "_initializer")
    as_json = lambda config: json.dumps({k: v for k, v in config.items()  # noqa: E731 (text: 2 == 2.0 in Python)
                                         if k.endswith(settings)}, sort_keys=True)
    for node in again.nodes:
        assert as_json(keras_layer(node.layer).get_config()) == as_json(model.get_layer(node.name).get_config())
    first = again.nodes[0].layer.to_config()
    if build is every_regularised_kind:
        assert first["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": pytest.approx(1e-3)}}
        assert first["bias_regularizer"] == {"class_name": "L1", "config": {"l1": pytest.approx(0.01)}}
    else:
        assert first["bias_constraint"] == {"class_name": "NonNeg", "config": {}}
    assert "kernel_regularizer" not in again.nodes[-1].layer.to_config()  # the classifier's own softmax Dense
    plain = Architecture.from_config({"input_shape": [4], "layers": [{"type": "Dense", "units": 2}]})
    assert "kernel_regularizer" not in plain.nodes[0].layer.to_config()


@pytest.mark.parametrize("build", [every_regularised_kind, every_constrained_kind])
def test_a_keras_file_converts_both_ways_keeping_its_regularizers_and_constraints(build, tmp_path, capsys):
    model = randomised(build(), seed=1)
    model.save(tmp_path / "regularised.keras")
    before, after = converts_and_comes_back(tmp_path / "regularised.keras", tmp_path, capsys)
    assert [n.layer for n in after.architecture.nodes] == [n.layer for n in before.architecture.nodes]
    reloaded = keras.saving.load_model(tmp_path / "again.keras", compile=False)
    assert keras_penalty(reloaded) == pytest.approx(keras_penalty(model), rel=1e-6)


@torch.no_grad()
def test_a_sigmoid_layer_with_settings_of_its_own_reads_as_a_hidden_layer():
    """A textbook MLP: a sigmoid hidden layer with an L2 regularizer object (a dict among its settings) made predict,
    test, fit and the deploy formats a traceback (``unhashable type: 'dict'``, zoo round 8) while looking for a
    sigmoid output; its outputs are the softmax's, as Keras' are."""
    model = keras.Sequential([keras.Input((784,)), L.Dense(16, activation="sigmoid", name="hidden",
                                                           kernel_regularizer=keras.regularizers.L2(1e-4),
                                                           kernel_constraint=keras.constraints.MaxNorm(2.0)),
                              L.Dropout(0.1), L.Dense(10, activation="softmax")])
    architecture = architecture_of(model)
    assert architecture.independent_probabilities_from is None and architecture.outputs_probabilities
    architecture.require_one_distribution("predict")
    assert_matches_keras(model, source="sigmoid_hidden")


def test_constraints_give_what_keras_optimizers_leave_after_a_step():
    """Each constrained weight, constrained in torch, equals Keras' constraint applied to it (along Keras' axes,
    whatever torch's layout), within float32 rounding; the others are untouched."""
    from lightning_mnist.interop.keras_models import torch_weights_of

    model = randomised(every_constrained_kind(), seed=5)
    architecture, network = network_of(model)
    assert len(network.weight_constraints) == 11
    before = {key: value.clone() for key, value in network.state_dict().items()}
    network.apply_constraints()
    for layer in model.layers:
        for variable in layer.trainable_weights:
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable))
    expected = torch_weights_of(model, architecture)
    changed = 0
    for key, value in network.state_dict().items():
        assert torch.allclose(value, expected[key], rtol=0, atol=2e-7), key
        changed += not torch.equal(value, before[key])
    assert changed == 11


def test_fit_and_keras_reference_train_a_regularised_constrained_file(run_main, tmp_path):
    """Both frameworks train it afresh from its architecture (their loss includes the penalties, an activity one too)
    and record the regularizers and constraints with the run; Lightning's weights end within their MaxNorm, on its
    own step and on Lightning's automatic one (gradient clipping asked for)."""
    model = sequential_case((28, 28, 1), L.Conv2D(8, 3, activation="relu", kernel_regularizer=R.L2(1e-3),
                                                  kernel_constraint=C.MaxNorm(0.3, axis=[0, 1, 2]),
                                                  activity_regularizer=R.L1(1e-6)),
                            L.MaxPooling2D(), L.Flatten(), L.Dense(10, activation="softmax",
                                                                   kernel_regularizer=R.L1L2(l1=1e-5, l2=1e-4),
                                                                   kernel_constraint=C.NonNeg()))
    model.save(tmp_path / "regularised.keras")
    common = ["--model.architecture", "regularised.keras", "--data.subset", "1500", "--trainer.max_epochs", "1",
              "--model.lr", "3e-3"]
    run_main("lightning_mnist", "fit", *common, "--trainer.enable_progress_bar", "false",
             "--trainer.limit_test_batches", "2")
    run_main("lightning_mnist", "fit", *common, "--trainer.enable_progress_bar", "false",
             "--trainer.limit_test_batches", "2", "--trainer.gradient_clip_val", "1.0")
    run_main("keras_reference", "train", *common)
    for framework, version in (("lightning", 0), ("lightning", 1), ("keras", 0)):
        results = json.loads((tmp_path / "runs" / framework / f"version_{version}" / "results.json").read_text())
        assert results["test_acc"] > 0.3, (framework, results["test_acc"])
    for version in (0, 1):
        checkpoint = torch.load(tmp_path / "runs" / "lightning" / f"version_{version}" / "checkpoints" / "last.ckpt",
                                weights_only=True)
        layers = checkpoint["hyper_parameters"]["architecture"]["layers"]
        assert layers[0]["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": pytest.approx(1e-3)}}
        assert layers[0]["activity_regularizer"] == {"class_name": "L1", "config": {"l1": pytest.approx(1e-6)}}
        assert layers[0]["kernel_constraint"] == {"class_name": "MaxNorm", "config": {"max_value": pytest.approx(0.3),
                                                                                     "axis": [0, 1, 2]}}
        weights = checkpoint["state_dict"]
        kernel = next(v for k, v in weights.items() if k.endswith(f"{layers[0]['name']}.weight"))
        assert kernel.flatten(1).norm(dim=1).max() <= 0.3 + 1e-6  # torch's (out, in, kh, kw): one norm per filter
        dense = next(v for k, v in weights.items() if k.endswith(f"{layers[3]['name']}.weight"))
        assert dense.min() >= 0.0


@pytest.mark.parametrize("layer, message", [
    (L.Dense(3, kernel_regularizer=R.OrthogonalRegularizer(0.1)),
     "kernel_regularizer 'OrthogonalRegularizer' is not supported (supported: L1, L2, L1L2"),
    (L.Dense(3, activity_regularizer=R.OrthogonalRegularizer(0.1)),
     "activity_regularizer 'OrthogonalRegularizer' is not supported (supported: L1, L2, L1L2"),
])
def test_what_keras_regularises_otherwise_is_refused_in_one_line(layer, message):
    model = keras.Sequential([keras.Input((8,)), layer])
    with pytest.raises(ArchitectureError) as info:
        architecture_of(model, "model.keras")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value, message", [
    ({"class_name": "L2", "config": {"l2": -0.1}}, "kernel_regularizer l2 must be a number in [0, inf]"),
    ({"class_name": "L2", "config": {"l2": "0.1"}}, "kernel_regularizer l2 must be a number"),
    ({"class_name": "L2", "config": {"l2": 0.1, "l3": 1}}, "kernel_regularizer L2 sets l3, which is not supported"),
    ({"class_name": "L2", "module": "mine", "config": {}},
     "kernel_regularizer is a custom class (L2); only Keras' L1, L2, L1L2 are supported"),
    ("l3", "kernel_regularizer 'l3' is not supported"),
])
def test_descriptions_refuse_regularizers_keras_would_not_compute(value, message):
    config = {"input_shape": [8], "layers": [{"type": "Dense", "units": 3, "kernel_regularizer": value}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value, message", [
    ({"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 2}},
     "kernel_constraint axis 2 is not an axis of its kernel of shape 8x3 (Keras' layout)"),
    ({"class_name": "MaxNorm", "config": {"max_value": -1.0}}, "kernel_constraint max_value must be a number in [0"),
    ({"class_name": "MaxNorm", "config": {"axis": "rows"}}, "kernel_constraint axis must be an integer or a list"),
    ({"class_name": "MinMaxNorm", "config": {"min_value": 2.0, "max_value": 1.0}}, "needs min_value <= max_value"),
    ({"class_name": "NonNeg", "module": "mine", "config": {}}, "kernel_constraint is a custom class (NonNeg)"),
    ({"class_name": "RadialConstraint", "config": {}}, "kernel_constraint 'RadialConstraint' is not supported"),
])
def test_descriptions_refuse_constraints_keras_would_not_apply(value, message):
    config = {"input_shape": [8], "layers": [{"type": "Dense", "units": 3, "kernel_constraint": value}]}
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)
