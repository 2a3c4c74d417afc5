"""The mirrored network: Keras' parameter count, shapes, initialisers, BatchNorm and Adam settings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from mnist_common.architecture import Architecture
from lightning_mnist.data import MNISTDataModule
from lightning_mnist.models import KerasAdam, KerasNetwork, MnistClassifier, keras_parameter_count
from lightning_mnist.models.initializers import initialize_

NOTEBOOK = Architecture.load("notebook")


def notebook_network() -> KerasNetwork:
    return KerasNetwork(NOTEBOOK)


def test_parameter_count_matches_keras():
    assert keras_parameter_count(notebook_network()) == (225_226, 192) == NOTEBOOK.parameter_count()


def test_layer_output_shapes_follow_the_notebook():
    net = notebook_network().eval()
    shapes = {}
    for name in ("conv2d", "batch_normalization", "conv2d_1", "batch_normalization_1", "flatten", "dense", "dense_1"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    out = net(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert shapes == {"conv2d": (32, 26, 26), "batch_normalization": (32, 26, 26), "conv2d_1": (64, 11, 11),
                      "batch_normalization_1": (64, 11, 11), "flatten": (1600,), "dense": (128,), "dense_1": (10,)}
    # the same shapes the description infers, channels last
    assert [NOTEBOOK.shapes[name] for name in shapes] == \
        [(26, 26, 32), (26, 26, 32), (11, 11, 64), (11, 11, 64), (1600,), (128,), (10,)]


def test_relu_comes_before_batchnorm():
    net = notebook_network().eval()
    seen = []
    for bn in (net.batch_normalization, net.batch_normalization_1):
        bn.register_forward_hook(lambda m, inputs, o: seen.append(inputs[0].min().item()))
    net(torch.rand(8, 1, 28, 28) - 0.5)
    assert len(seen) == 2 and min(seen) >= 0.0  # BatchNorm only ever sees rectified activations


def test_flatten_uses_keras_height_width_channel_order():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # N, C, H, W
    expected = x.numpy().transpose(0, 2, 3, 1).reshape(2, -1)  # what Keras flattens from N, H, W, C
    flatten = notebook_network().flatten
    assert np.array_equal(flatten(x).numpy(), expected)
    assert np.array_equal(flatten(x.contiguous(memory_format=torch.channels_last)).numpy(), expected)


def test_final_softmax_is_left_to_the_classifier():
    net = notebook_network().eval()
    x = torch.rand(16, 1, 28, 28)
    logits = net(x)
    assert not torch.allclose(logits.sum(1), torch.ones(16))  # logits, not probabilities
    assert torch.allclose(net.keras_outputs(x), torch.softmax(logits, 1))
    assert torch.allclose(MnistClassifier().eval().predict_proba(x).sum(1), torch.ones(16))


def test_keras_initialisers_and_batchnorm_settings():
    torch.manual_seed(0)
    net = notebook_network()
    for layer in (net.conv2d, net.conv2d_1, net.dense, net.dense_1):
        weight = layer.weight.detach()
        fan_in = weight[0].numel()
        fan_out = weight.shape[0] * weight[0, 0].numel() if weight.dim() == 4 else weight.shape[0]
        limit = math.sqrt(6.0 / (fan_in + fan_out))  # glorot_uniform
        assert weight.abs().max() <= limit
        assert abs(weight.std().item() - limit / math.sqrt(3)) < 0.1 * limit / math.sqrt(3)
        assert torch.count_nonzero(layer.bias) == 0
    for bn in (net.batch_normalization, net.batch_normalization_1):
        assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01)  # Keras' epsilon and momentum 0.99
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)
    assert net.dropout.p == 0.5


@pytest.mark.parametrize("initializer, expected_std", [
    ("he_normal", math.sqrt(2 / 300)), ("lecun_uniform", math.sqrt(1 / 300)), ("glorot_normal", math.sqrt(2 / 400)),
    ({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.01}}, 0.01),
    ({"class_name": "VarianceScaling", "config": {"scale": 3.0, "mode": "fan_out", "distribution": "uniform"}},
     math.sqrt(3 / 100)),
])
def test_keras_initializers_draw_with_keras_spreads(initializer, expected_std):
    """Keras' fans for a Dense kernel (in=300, out=100), in Keras' layout; truncated normals cut at two standard
    deviations."""
    torch.manual_seed(0)
    weight = initialize_(torch.empty(300, 100), initializer)
    assert abs(weight.std().item() - expected_std) < 0.05 * expected_std
    if isinstance(initializer, str) and initializer.endswith("normal"):
        assert weight.abs().max() <= 2 * expected_std / 0.87962566 + 1e-6


def test_optimizer_is_adam_with_keras_epsilon():
    plain = MnistClassifier(lr=1e-4).configure_optimizers()
    assert type(plain) is torch.optim.Adam
    assert plain.defaults["lr"] == 1e-4 and plain.defaults["eps"] == 1e-7
    assert isinstance(MnistClassifier(keras_adam=True).configure_optimizers(), KerasAdam)


def test_keras_adam_matches_keras_update_rule():
    """Keras: lr_t = lr*sqrt(1-b2^t)/(1-b1^t); w -= lr_t*m/(sqrt(v)+eps) (epsilon on the uncorrected v)."""
    rng = np.random.default_rng(0)
    grads = rng.normal(scale=1e-6, size=(30, 5))  # tiny gradients: where the two epsilons differ most
    lr, b1, b2, eps = 1e-4, 0.9, 0.999, 1e-7
    w_ref, m, v = np.zeros(5), np.zeros(5), np.zeros(5)
    param = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    keras_adam = KerasAdam([param], lr=lr, eps=eps)
    torch_param = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    torch_adam = torch.optim.Adam([torch_param], lr=lr, eps=eps)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w_ref -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        for p, opt in ((param, keras_adam), (torch_param, torch_adam)):
            p.grad = torch.from_numpy(g.copy())
            opt.step()
    np.testing.assert_allclose(param.detach().numpy(), w_ref, rtol=1e-9, atol=1e-15)
    assert np.abs(torch_param.detach().numpy() - w_ref).max() > 1e-6  # plain torch Adam really differs


@pytest.mark.parametrize("fused", [False, True])
def test_keras_adam_counts_steps_on_the_host_and_resumes_a_state_saved_without_the_count(fused):
    """The step count behind Keras' epsilon lives in the parameter group (a fused Adam's own count is a device
    tensor, and reading it would wait for a GPU each step); a state saved before it had one resumes at its step."""
    grads = torch.from_numpy(np.random.default_rng(1).normal(scale=1e-6, size=(5, 4)))
    runs = {}
    for name in ("straight", "resumed"):
        param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        optimizer = KerasAdam([param], lr=1e-4, fused=fused)
        for t, g in enumerate(grads):
            if name == "resumed" and t == 3:
                state = optimizer.state_dict()
                assert state["param_groups"][0]["keras_step"] == 3
                del state["param_groups"][0]["keras_step"]  # as a checkpoint of an earlier release has it
                optimizer = KerasAdam([param], lr=1e-4, fused=fused)
                optimizer.load_state_dict(state)
            param.grad = g.clone()
            optimizer.step()
        runs[name] = (param.detach().clone(), optimizer.param_groups[0]["eps"])
    torch.testing.assert_close(runs["resumed"][0], runs["straight"][0], rtol=0, atol=0)
    assert runs["resumed"][1] == runs["straight"][1] == pytest.approx(1e-7 / math.sqrt(1 - 0.999**5))


def test_epoch_metrics_cover_every_batch_of_the_epoch(mnist_dir, tmp_path):
    """Metrics are logged once per epoch; the values must still be over all images, not the first batch."""
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=2000, eval_batch_size=64)  # 200 images, 4 batches
    model = MnistClassifier()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    for _ in range(2):  # a second run must start from fresh metric states
        logged = trainer.validate(model, datamodule=data, verbose=False)[0]
    images, labels = data.datasets["val"].tensors
    with torch.no_grad():
        logits = model.eval()(images)
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    expected_acc = (logits.argmax(1) == labels).float().mean().item()
    assert len(labels) == 200
    assert math.isclose(logged["val/loss"], expected_loss, rel_tol=1e-5)
    assert math.isclose(logged["val/acc"], expected_acc, abs_tol=1e-6)


def test_the_test_report_describes_the_images_its_test_pass_scored_without_scoring_them_again(mnist_dir, tmp_path):
    """fit and test write their confusion matrix and mistakes from the probabilities their test pass gave (one pass
    over the test set, not two): all 10,000 images, or the first batches ``limit_test_batches`` kept, so that the
    matrix's right answers are always the ones test/acc counted; with no test pass the report scores every image."""
    from lightning_mnist.training.reports import write_test_report

    data = MNISTDataModule(data_dir=str(mnist_dir), eval_batch_size=1000)
    model = MnistClassifier()
    passes = []
    model.network.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    for limit, tested_images in ((None, 10_000), (2, 2000)):
        trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                          limit_test_batches=limit)
        tested = trainer.test(model, datamodule=data, verbose=False)[0]
        passes.clear()
        report = write_test_report(model, data, tmp_path / str(limit), "a report")
        assert sum(passes) == 0  # no second pass
        matrix = torch.tensor(report.confusion)
        assert matrix.sum() == tested_images and matrix.trace().item() == round(tested["test/acc"] * tested_images)
        images, labels = data.datasets["test"].tensors
        with torch.inference_mode():  # the same right answers as a separate forward pass over those images
            predicted = torch.cat([model.eval()(x) for x in images[:tested_images].split(1000)]).argmax(1)
        assert matrix.trace().item() == (predicted == labels[:tested_images]).sum().item()
        mistakes = json.loads((tmp_path / str(limit) / "mistakes.json").read_text())
        assert len(mistakes) == report.mistakes_count == tested_images - matrix.trace().item()
        assert max(m["index"] for m in mistakes) < tested_images
        assert ("the first 2000 of the 10000 test images" in report.describe()) is (limit is not None)
    model.tested_probabilities = []  # as after training, or for a model never tested: every image scored here
    passes.clear()
    report = write_test_report(model, data, tmp_path / "untested", "a report")
    assert sum(passes) == 10_000 and torch.tensor(report.confusion).sum() == 10_000


def test_epoch_means_agree_with_torchmetrics_over_uneven_batches_and_dtypes():
    """The classifier's lean epoch means give what MeanMetric and MulticlassAccuracy give (the classes they replace),
    with a short last batch weighing its images, bfloat16 losses summed in float32, and a reset starting over."""
    from torchmetrics.aggregation import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    from lightning_mnist.models.metrics import EpochMean

    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(n, generator=generator) * 3, torch.randn(n, 10, generator=generator),
                torch.randint(0, 10, (n,), generator=generator)) for n in (32, 32, 7)]
    loss, acc = EpochMean(), EpochMean()
    for _ in range(2):  # the second pass after a reset must give the same
        loss.reset(), acc.reset()
        reference_loss, reference_acc = MeanMetric(), MulticlassAccuracy(10, average="micro")
        for losses, logits, labels in batches:
            loss.update(losses), acc.update(logits.argmax(1) == labels)
            reference_loss.update(losses), reference_acc.update(logits, labels)
        assert math.isclose(loss.compute().item(), reference_loss.compute().item(), rel_tol=1e-6)
        assert math.isclose(acc.compute().item(), reference_acc.compute().item(), abs_tol=1e-7)
        assert acc.count.item() == 71  # images, not batches
    in_bf16 = EpochMean()
    for losses, _, _ in batches:
        in_bf16.update(losses.bfloat16())
    exact = torch.cat([losses.bfloat16().double() for losses, _, _ in batches]).mean().item()
    assert in_bf16.total.dtype == torch.float32 and math.isclose(in_bf16.compute().item(), exact, rel_tol=1e-6)


def test_a_checkpoint_with_another_releases_epoch_metrics_resumes_without_them():
    """A mid-epoch checkpoint of a release that kept torchmetrics' own states (other names) loads; its epoch
    means start at the resume. Ours come back exactly."""
    from lightning_mnist.models.classifier import EPOCH_IN_PROGRESS

    model = MnistClassifier()
    model.metrics["train/loss"].update(torch.tensor([1.0, 2.0, 6.0]))
    model._training_epoch_open = True
    saved: dict = {}
    model.on_save_checkpoint(saved)
    assert set(saved[EPOCH_IN_PROGRESS]["train/loss"]) == {"total", "count"}
    resumed = MnistClassifier()
    resumed.on_load_checkpoint(saved)
    assert resumed.metrics["train/loss"].compute().item() == 3.0
    older = MnistClassifier()
    older.on_load_checkpoint({EPOCH_IN_PROGRESS: {"train/loss": {"mean_value": torch.tensor(9.0),
                                                                 "weight": torch.tensor(3.0)},
                                                  "train/acc": {"tp": torch.tensor([5]), "fp": torch.tensor([1]),
                                                                "tn": torch.tensor([0]), "fn": torch.tensor([1])}}})
    assert older.metrics["train/loss"].count.item() == 0 and older.metrics["train/acc"].count.item() == 0


def test_the_training_order_is_random_samplers_and_resumes_at_the_next_batch():
    """The same batches and random draws as DataLoader(shuffle=True); a state taken after some batches gives the
    rest of that epoch in another loader, without one more draw from torch's generator."""
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_mnist.data.resumable import EpochOrder, ResumableDataLoader

    data = TensorDataset(torch.arange(100))
    torch.manual_seed(7)
    shuffled = [batch[0].tolist() for _ in range(3) for batch in DataLoader(data, batch_size=32, shuffle=True)]
    after_shuffled = torch.rand(3)
    torch.manual_seed(7)
    order = EpochOrder(100)
    ours = [batch[0].tolist() for _ in range(3) for batch in ResumableDataLoader(data, batch_size=32, sampler=order)]
    assert ours == shuffled and torch.equal(torch.rand(3), after_shuffled)

    torch.manual_seed(3)
    loader = ResumableDataLoader(data, batch_size=32, sampler=order)
    epoch = [batch[0].tolist() for batch in loader]
    rng_after = torch.get_rng_state()
    torch.manual_seed(3)
    first = iter(loader)
    for _ in range(2):  # the loop takes two batches (the loader may have fetched more)
        order.taken(len(next(first)[0]))
    state = loader.state_dict()
    assert state["used"] == 64 and state["batches"] == 2
    resumed = ResumableDataLoader(data, batch_size=32, sampler=EpochOrder(100))
    resumed.load_state_dict(state)
    assert [batch[0].tolist() for batch in resumed] == epoch[2:]
    assert torch.equal(torch.get_rng_state(), rng_after)  # where the epoch never stopped leaves it


class AutomaticClassifier(MnistClassifier):
    """The classifier under Lightning's automatic optimization, which it used before stepping its optimizer itself."""

    @property
    def automatic_optimization(self) -> bool:
        return True


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_the_classifier_steps_as_lightnings_automatic_loop_would(mnist_dir, tmp_path, clip):
    """Stepping the optimizer in training_step (and the per-batch one-cycle schedule) gives the same weights,
    learning rates and logged metrics as Lightning's automatic optimization; a Trainer that clips gradients gets
    the automatic loop back (it alone clips), so that run is the same too."""
    from lightning.pytorch import seed_everything

    runs = {}
    for name, model_class in (("automatic", AutomaticClassifier), ("classifier", MnistClassifier)):
        seed_everything(0, verbose=False)
        data = MNISTDataModule(data_dir=str(mnist_dir), subset=1000, batch_size=64)
        model = model_class(lr=3e-3, lr_schedule="onecycle")
        trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=clip,
                          default_root_dir=tmp_path)
        trainer.fit(model, datamodule=data)
        runs[name] = (model, trainer)
    (automatic, auto_trainer), (classifier, trainer) = runs["automatic"], runs["classifier"]
    assert classifier.automatic_optimization is (clip is not None)
    assert trainer.global_step == auto_trainer.global_step == 2 * math.ceil(900 / 64)
    assert trainer.optimizers[0].param_groups[0]["lr"] == auto_trainer.optimizers[0].param_groups[0]["lr"] < 1e-4
    for (name, ours), theirs in zip(classifier.state_dict().items(), automatic.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)
    assert trainer.callback_metrics.keys() == auto_trainer.callback_metrics.keys()
    for key, value in trainer.callback_metrics.items():
        torch.testing.assert_close(value, auto_trainer.callback_metrics[key], rtol=0, atol=1e-5, msg=key)


def test_steps_per_execution_trains_the_same_steps_as_one_batch_a_step(mnist_dir, tmp_path):
    """Keras' ``steps_per_execution`` in Lightning: each batch Lightning takes holds 8 batches of 32 (an epoch's
    last what is left: 1,800 images make 57 steps, the last execution one batch of 8), the classifier steps on
    each; the same images in the same order, so the same weights, step count, one-cycle schedule and epoch
    metrics as one batch a step, with a loss logged per execution."""
    from lightning.pytorch import seed_everything

    runs = {}
    for steps in (1, 8):
        seed_everything(0, verbose=False)
        data = MNISTDataModule(data_dir=str(mnist_dir), subset=2000, batch_size=32, steps_per_execution=steps)
        model = MnistClassifier(lr=3e-3, lr_schedule="onecycle")
        trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                          default_root_dir=tmp_path)
        trainer.fit(model, datamodule=data)
        runs[steps] = (model, trainer)
    (single, single_trainer), (grouped, trainer) = runs[1], runs[8]
    assert trainer.num_training_batches == math.ceil(1800 / 256) == 8 and single_trainer.num_training_batches == 57
    assert trainer.global_step == single_trainer.global_step == 2 * 57
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 2 * 57  # the schedule spans optimizer steps
    assert trainer.optimizers[0].param_groups[0]["lr"] == single_trainer.optimizers[0].param_groups[0]["lr"] < 1e-4
    for (name, ours), theirs in zip(grouped.state_dict().items(), single.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        torch.testing.assert_close(trainer.callback_metrics[key], single_trainer.callback_metrics[key], rtol=0,
                                   atol=1e-5, msg=key)
    assert "train/loss_step" in trainer.callback_metrics

    seed_everything(0, verbose=False)  # max_steps inside an execution: no step past it, the schedule spans it
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=2000, batch_size=32, steps_per_execution=8)
    trainer = Trainer(accelerator="cpu", max_epochs=2, max_steps=20, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(MnistClassifier(lr=3e-3, lr_schedule="onecycle"), datamodule=data)
    assert trainer.global_step == 20 and trainer.lr_scheduler_configs[0].scheduler.total_steps == 20


def test_an_execution_is_the_batches_of_one_augmented_draw_in_order(mnist_dir):
    """The data module's training batches with ``steps_per_execution``: one loader batch of 3 x 32 images,
    augmented as one draw, handed on as 3 (images, labels) batches in loader order; evaluation batches stay
    whole; the optimizer steps of an epoch's first loader batches count what they hold."""
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=500, batch_size=32, steps_per_execution=3, augment=True)
    data.setup("fit")

    class Training:  # what the data module reads of its Trainer
        training, world_size = True, 1

    data.trainer = Training()
    images, labels = data.datasets["train"].tensors[0][:96], data.datasets["train"].tensors[1][:96]
    torch.manual_seed(1)
    augmented = data.augmentation(images)
    torch.manual_seed(1)
    execution = data.on_after_batch_transfer((images, labels), 0)
    assert isinstance(execution, list) and [len(y) for _, y in execution] == [32, 32, 32]
    assert torch.equal(torch.cat([x for x, _ in execution]), augmented)
    assert torch.equal(torch.cat([y for _, y in execution]), labels)
    assert not torch.equal(augmented, images)
    assert data.train_dataloader().batch_size == 96
    assert [data.optimizer_steps(n) for n in (1, 4, 5)] == [3, 12, 15]  # 450 images: 15 steps an epoch
    Training.training = False  # validation and test batches are not grouped (nor augmented)
    assert data.on_after_batch_transfer((images, labels), 0)[0] is images


def test_a_large_validation_batch_is_scored_in_parts_with_the_same_numbers(monkeypatch):
    """A network holding millions of values an image is validated and tested in parts of the batch (500 images of
    one of 15.7 million values asked for 31 GB: hostile round 12): the same logits, losses and activity penalty."""
    from lightning_mnist.models import classifier

    model = MnistClassifier(architecture={"name": "penalised", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activity_regularizer": {"class_name": "L1L2", "config": {
            "l1": 0.01, "l2": 0.1}}},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}).eval()
    assert Architecture.load("notebook").activation_values * 500 <= classifier.SCORED_VALUES  # its batches: whole
    images = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        whole = model._scored_in_parts(images)
        monkeypatch.setattr(classifier, "SCORED_VALUES", 7 * model.architecture.activation_values)  # parts of 7
        parts = model._scored_in_parts(images)
    assert whole[1] is not None and torch.allclose(parts[0], whole[0], atol=1e-6)
    assert torch.allclose(parts[1], whole[1], rtol=1e-5)
