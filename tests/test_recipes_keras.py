"""One recipe config, both frameworks: ``python -m keras_reference train --config configs/fast.yaml`` (and best.yaml)
trains with Lightning's one-cycle schedule, optimizer, loss and checkpoint choice.

The learning rate (and Adam's beta_1, which torch's one-cycle cycles too) is compared with torch's
``OneCycleLR`` at every step, and a short real run of each recipe config records what reached the Keras
trainer. Real MNIST, 600 images, one epoch: a few seconds each on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Callback
from torch.optim.lr_scheduler import OneCycleLR

from conftest import REPO, main_error
from keras_bridge.build import build_model
from keras_reference import train as train_module
from keras_reference.__main__ import main
from lightning_mnist.training.cli import MnistCLI
from keras_reference.config import ModelSettings
from keras_reference.cv import scores
from keras_reference.data import to_inputs, to_targets
from keras_reference.model import PLAIN_LOSS, compile_model, keras
from keras_reference.schedules import OneCycleAdamW, OneCycleSchedule
from mnist_common.results import RESULTS_FILE
from mnist_common.schedules import ONE_CYCLE, steps_per_epoch

SUBSET, VAL_FRACTION, EPOCHS = 600, 0.1, 2  # 540 training images: 5 batches of 128 per epoch
LR_RTOL = 1e-6


def torch_one_cycle(max_lr: float, total_steps: int, weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """(learning rate, beta_1) of every step as Lightning's ``configure_optimizers`` makes them (AdamW or Adam,
    ``OneCycleLR`` stepped after every batch), on a dummy parameter."""
    params = [torch.zeros(2, 2, requires_grad=True)]
    optimizer = torch.optim.AdamW(params, lr=max_lr, weight_decay=weight_decay) if weight_decay \
        else torch.optim.Adam(params, lr=max_lr)
    schedule = OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **ONE_CYCLE.torch_kwargs())
    lrs, betas = [], []
    for step in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        if step < total_steps - 1:
            schedule.step()
    return np.array(lrs), np.array(betas)


class OptimizerRecorder(keras.callbacks.Callback):
    """The optimizer's learning rate and beta_1 as each batch starts (the values that batch's update uses)."""

    def on_train_begin(self, logs=None):
        self.optimizer, self.lrs, self.betas = self.model.optimizer, [], []
        self.loss_config = self.model.loss.get_config()

    def on_train_batch_begin(self, batch, logs=None):
        self.lrs.append(float(self.optimizer.learning_rate.numpy()))
        self.betas.append(float(np.asarray(self.optimizer.beta_1)))


def max_rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))


@pytest.mark.parametrize("total_steps", [1, 2, 7, 1688, 12660])  # 1688: fast.yaml on all images; 12660: best.yaml
def test_schedule_is_torchs_one_cycle_at_every_step(total_steps):
    lrs, betas = torch_one_cycle(5e-3, total_steps, 0.0)
    schedule = OneCycleSchedule.for_run(5e-3, total_steps)
    steps = np.arange(total_steps)
    assert max_rel(schedule(steps), lrs) <= LR_RTOL
    assert max_rel(schedule.momentum(steps), betas) <= LR_RTOL
    assert float(schedule(total_steps + 5)) == pytest.approx(lrs[-1], rel=LR_RTOL)  # past the end: the last rate


class LightningRates(Callback):
    """The optimizer's learning rate and beta_1 in a Lightning run as each batch starts (that batch's update's)."""

    def __init__(self):
        self.lrs, self.betas = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        group = trainer.optimizers[0].param_groups[0]
        self.lrs.append(group["lr"])
        self.betas.append(group["betas"][0])


@pytest.mark.parametrize("recipe", ["fast", "best"])
def test_a_recipe_steps_with_the_same_learning_rate_in_both_frameworks(recipe, tmp_path, mnist_dir, monkeypatch):
    """A short real run of the recipe config in each framework (600 images, 2 epochs): the learning rate and Adam's
    beta_1 of every optimizer step are the same (relative 1e-6), and the config's settings reached the Keras
    trainer (its optimizer, its loss, the batches, the checkpoint choice)."""
    config_file = REPO / "configs" / f"{recipe}.yaml"
    config = yaml.safe_load(config_file.read_text())
    # one batch per execution: both recorders read the rate as each batch starts, which grouped batches
    # (fast.yaml's steps_per_execution) would show once per group; test_model.py and test_keras_reference.py
    # show that grouping steps on the same rates
    shortened = ["--config", str(config_file), "--data.subset", str(SUBSET), "--trainer.max_epochs", str(EPOCHS),
                 "--data.data_dir", str(mnist_dir), "--data.steps_per_execution", "1"]
    lightning = LightningRates()
    monkeypatch.chdir(tmp_path)
    MnistCLI(args=["fit", *shortened, "--trainer.enable_progress_bar", "false", "--output_dir", "lightning"],
             trainer_defaults={"callbacks": [lightning]})
    recorder, run = OptimizerRecorder(), train_module.train
    monkeypatch.setattr(train_module, "train", lambda settings, verbose: run(settings, (recorder,), verbose=0))
    main(["train", *shortened, "--output_dir", str(tmp_path / "keras")])

    steps = EPOCHS * steps_per_epoch(round(SUBSET * (1 - VAL_FRACTION)), config["data"]["batch_size"])
    assert steps == 10 and len(recorder.lrs) == len(lightning.lrs) == steps  # batches of 128, two epochs
    assert max_rel(recorder.lrs, lightning.lrs) <= LR_RTOL and max_rel(recorder.betas, lightning.betas) <= LR_RTOL
    print(f"{recipe}: max relative lr difference Keras/Lightning {max_rel(recorder.lrs, lightning.lrs):.2e}")
    # ... and both are torch's OneCycleLR curve, not merely the same wrong one
    lrs, betas = torch_one_cycle(config["model"]["lr"], steps, config["model"].get("weight_decay", 0.0))
    assert max_rel(lightning.lrs, lrs) <= LR_RTOL and max_rel(lightning.betas, betas) <= LR_RTOL

    model = config["model"]
    optimizer = recorder.optimizer
    assert isinstance(optimizer, OneCycleAdamW) and optimizer.one_cycle.total_steps == steps
    assert optimizer.weight_decay == pytest.approx(model.get("weight_decay", 0.0))
    assert optimizer.epsilon == 1e-7
    assert recorder.loss_config["label_smoothing"] == model.get("label_smoothing", 0.0)
    # the weights tested are those of the lowest val_loss, as Lightning's fit tests its best checkpoint
    results = json.loads(next((tmp_path / "keras").rglob(RESULTS_FILE)).read_text())
    best = min(range(len(results["history"])), key=lambda e: results["history"][e]["val_loss"])
    assert results["best_epoch"] == best


# configs Keras refuses, and what its one line names: none today, every config runs in both frameworks
KERAS_REFUSES: dict[str, str] = {}


def leaves(config: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """Every setting of a config file, keyed by its path (section, key, ...)."""
    found = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found.update(leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


def lookup(settings: dict, path: tuple):
    for key in path:
        settings = settings[key]
    return settings


@pytest.mark.parametrize("config_file", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_setting_of_a_recipe_config_reaches_both_trainers(config_file, tmp_path, mnist_dir, monkeypatch, capsys):
    """Each configs/*.yaml as both command lines resolve it: every setting the file names is Lightning's resolved
    value, and is either the very settings the Keras trainer is handed or refused by Keras in one ``error:`` line
    that names it (never read and dropped)."""
    wanted = leaves(yaml.safe_load(config_file.read_text()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as printed:
        MnistCLI(args=["fit", "--config", str(config_file), "--print_config"])
    assert printed.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    for path, value in wanted.items():
        assert lookup(resolved, path) == value, ("lightning", path)

    handed = []

    def hand_over(settings, callbacks=(), verbose=0):  # what the Keras trainer would train with; nothing runs
        handed.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train", hand_over)
    with pytest.raises(SystemExit) as done:
        main(["train", "--config", str(config_file), "--data.data_dir", str(mnist_dir)])
    err = capsys.readouterr().err
    refusals = [line for line in err.splitlines() if line.startswith("error:")]
    if handed:  # run: everything the file says is what the trainer got
        assert done.value.code in (0, None) and not refusals, err
        got = dataclasses.asdict(handed[0])
        for path, value in wanted.items():
            assert lookup(got, path) == value, ("keras", path)
    else:  # refused: in one line, naming the setting of the file that Keras cannot do
        assert done.value.code == 2 and len(refusals) == 1 and "Traceback" not in err, err
        assert KERAS_REFUSES[config_file.name] in refusals[0], refusals
    assert bool(handed) == (config_file.name not in KERAS_REFUSES)


def test_weight_decay_is_on_kernels_only():
    """AdamW decays what Lightning decays (parameters of 2 axes or more): with zero gradients Adam moves nothing,
    so only the decay step changes the weights."""
    model = build_model()
    compile_model(model, settings=ModelSettings(lr=5e-3, lr_schedule="onecycle", weight_decay=0.05), total_steps=10)
    before = [np.array(v) for v in model.trainable_variables]
    model.optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    lr = 5e-3 / ONE_CYCLE.div_factor  # step 0 of the one-cycle curve
    for old, var in zip(before, model.trainable_variables):
        factor = 1 - lr * 0.05 if len(var.shape) > 1 else 1.0
        np.testing.assert_allclose(np.array(var), old * np.float32(factor), rtol=1e-6, err_msg=var.path)
    assert sum(len(v.shape) > 1 for v in model.trainable_variables) == 4  # the notebook's 2 conv and 2 dense kernels


def test_label_smoothing_smooths_the_training_loss_only(tmp_path, mnist_dir, mnist, monkeypatch):
    """Lightning smooths the training loss; its val/loss (early stopping, the checkpoint) and test/loss stay plain."""
    recorder, run = OptimizerRecorder(), train_module.train
    monkeypatch.setattr(train_module, "train", lambda settings, verbose: run(settings, (recorder,), verbose=0))
    main(["train", "--model.label_smoothing", "0.1", "--data.subset", str(SUBSET), "--trainer.max_epochs", "2",
          "--data.data_dir", str(mnist_dir), "--output_dir", str(tmp_path)])
    assert recorder.loss_config["label_smoothing"] == 0.1
    run_dir = tmp_path / "keras" / "version_0"
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    model = keras.saving.load_model(run_dir / results["model_path"], safe_mode=True, compile=False)
    plain_loss, _ = scores(model.predict(to_inputs(mnist.test_images), batch_size=1000, verbose=0),
                           to_targets(mnist.test_labels))
    assert results["test_loss"] == pytest.approx(plain_loss, rel=1e-4)
    history = recorder.model.history.history
    assert [row["val_loss"] for row in results["history"]] == pytest.approx(history[f"val_{PLAIN_LOSS}"])
    assert history[f"val_{PLAIN_LOSS}"] != pytest.approx(history["val_loss"])  # the smoothed one is not recorded


def test_the_checkpoint_is_chosen_as_lightning_chooses_it(tmp_path, mnist_dir):
    """--checkpoint.monitor val/acc (mode max) tests and saves the epoch of the best validation accuracy, the first of
    equals, as Lightning's ModelCheckpoint keeps it, while early stopping watches val/loss; --checkpoint.save_last
    keeps the last epoch too, as Lightning's last.ckpt."""
    main(["train", "--data.subset", str(SUBSET), "--trainer.max_epochs", "3", "--checkpoint.monitor", "val/acc",
          "--checkpoint.mode", "max", "--checkpoint.save_last", "true", "--model.lr", "3e-3",
          "--data.data_dir", str(mnist_dir), "--output_dir", str(tmp_path)])
    run_dir = tmp_path / "keras" / "version_0"
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    accuracies = [row["val_acc"] for row in results["history"]]
    assert results["best_epoch"] == accuracies.index(max(accuracies))
    assert results["config"]["checkpoint"] == {"monitor": "val/acc", "mode": "max", "save_top_k": 1, "save_last": True}
    best, last = (keras.saving.load_model(run_dir / name, safe_mode=True, compile=False)
                  for name in (results["model_path"], "last.keras"))
    x, y = to_inputs(mnist_images(mnist_dir)[0]), to_targets(mnist_images(mnist_dir)[1])
    assert scores(best.predict(x, verbose=0), y)[1] == pytest.approx(max(accuracies), abs=1e-6)
    assert scores(last.predict(x, verbose=0), y)[1] == pytest.approx(accuracies[-1], abs=1e-6)


def test_every_epoch_is_kept_as_lightning_keeps_it_with_save_top_k_minus_one(tmp_path, mnist_dir):
    """--checkpoint.save_top_k -1 (Lightning's "every epoch") keeps each epoch's weights as
    checkpoints/epochNN.keras, numbered from 0 as Lightning's checkpoints are; each scores its epoch's
    validation accuracy, and the best one is still the model tested and saved."""
    main(["train", "--data.subset", str(SUBSET), "--trainer.max_epochs", "2", "--checkpoint.save_top_k", "-1",
          "--model.lr", "3e-3", "--data.data_dir", str(mnist_dir), "--output_dir", str(tmp_path)])
    run_dir = tmp_path / "keras" / "version_0"
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch00.keras", "epoch01.keras"]
    x, y = to_inputs(mnist_images(mnist_dir)[0]), to_targets(mnist_images(mnist_dir)[1])
    for epoch, row in enumerate(results["history"]):
        kept = keras.saving.load_model(run_dir / "checkpoints" / f"epoch{epoch:02d}.keras", safe_mode=True,
                                       compile=False)
        assert scores(kept.predict(x, verbose=0), y)[1] == pytest.approx(row["val_acc"], abs=1e-6)
    best = keras.saving.load_model(run_dir / results["model_path"], safe_mode=True, compile=False)
    best_row = results["history"][results["best_epoch"]]
    assert scores(best.predict(x, verbose=0), y)[0] == pytest.approx(best_row["val_loss"], rel=1e-5)


def test_cv_refuses_keeping_every_epoch_in_one_line(tmp_path, capsys, mnist_dir):
    code, line, _ = main_error(main, ["cv", "--checkpoint.save_top_k", "-1", "--data.data_dir", str(mnist_dir),
                                      "--output_dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "--checkpoint.save_top_k -1: `cv` keeps each fold's chosen epoch only" in line, line
    assert not (tmp_path / "runs").exists()


def mnist_images(mnist_dir):
    """The validation images of the runs above (600 of the training images, 10 % held out)."""
    from mnist_common.mnist import load_mnist
    from mnist_common.splits import make_split

    mnist = load_mnist(mnist_dir)
    split = make_split(mnist.train_labels, subset=SUBSET, val_fraction=VAL_FRACTION)
    return mnist.train_images[split.val], mnist.train_labels[split.val]


class WeightsRecorder(keras.callbacks.Callback):
    """Every variable of the model (BatchNorm's moving statistics too) after each step, and as validation begins."""

    def on_train_begin(self, logs=None):
        self.stepped, self.validated = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.stepped.append([v.numpy().copy() for v in self.model.weights])

    def on_test_begin(self, logs=None):
        self.validated.append([v.numpy().copy() for v in self.model.weights])


def test_an_ema_of_the_weights_is_lightnings(tmp_path, mnist_dir, monkeypatch):
    """A config's EMAWeightAveraging runs in Keras as in Lightning: torch's EMA update (the function Lightning's
    callback averages with) of every variable, BatchNorm statistics included, after every step; validation scores
    the average, and the average of the best epoch is what is tested and saved."""
    from torch.optim.swa_utils import get_ema_avg_fn

    config = tmp_path / "ema.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: lightning_mnist.training.callbacks.EMAWeightAveraging\n"
                      "      init_args: {decay: 0.9}\n")
    recorder, run = WeightsRecorder(), train_module.train
    monkeypatch.setattr(train_module, "train", lambda settings, verbose: run(settings, (recorder,), verbose=0))
    main(["train", "--config", str(config), "--data.subset", str(SUBSET), "--data.batch_size", "128",
          "--trainer.max_epochs", str(EPOCHS), "--data.data_dir", str(mnist_dir), "--output_dir", str(tmp_path)])

    ema = get_ema_avg_fn(0.9)
    steps = len(recorder.stepped) // EPOCHS
    assert steps == 5 and len(recorder.validated) == EPOCHS
    average = [torch.from_numpy(w) for w in recorder.stepped[0]]  # AveragedModel: the first update copies
    for step, weights in enumerate(recorder.stepped[1:], start=2):
        average = [ema(a, torch.from_numpy(w), step - 1) for a, w in zip(average, weights)]
        if step % steps == 0:  # the end of an epoch: what its validation scored
            for expected, validated in zip(average, recorder.validated[step // steps - 1]):
                np.testing.assert_allclose(validated, expected.numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(recorder.validated[-1][0], recorder.stepped[-1][0])  # the average, not the raw weights

    run_dir = tmp_path / "keras" / "version_0"
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    saved = keras.saving.load_model(run_dir / results["model_path"], safe_mode=True, compile=False)
    for kept, validated in zip(saved.weights, recorder.validated[results["best_epoch"]]):
        np.testing.assert_array_equal(kept.numpy(), validated)


def test_the_elastic_distortion_draws_lightnings_displacements():
    """Keras' elastic field has the distribution of Lightning's (the same filter, mnist_common's; per-pixel
    spread at the centre and at a corner, where the zero padding of the filter shrinks it), and the training
    pipeline applies it."""
    from keras_reference.augment import bilinear_at, elastic_displacements
    from keras_reference.config import DataSettings
    from keras_reference.data import train_dataset
    from lightning_mnist.data.augment import elastic_displacements as lightning_displacements
    n, alpha, sigma = 4000, 34.0, 4.0
    torch.manual_seed(0)
    ours = np.asarray(elastic_displacements(keras_generator(0), n, 28, 28, alpha, sigma))  # (n, 28, 28, [dy, dx])
    theirs = lightning_displacements(n, 28, 28, alpha, sigma).numpy()[..., ::-1] * 14  # normalised (x, y) -> pixels
    for pixel in [(14, 14), (0, 0)]:
        np.testing.assert_allclose(ours[:, pixel[0], pixel[1]].std(0), theirs[:, pixel[0], pixel[1]].std(0), rtol=0.06)
    assert abs(ours.mean()) < 0.05 * ours.std()

    # resampled where the field points, as torch's grid_sample(border) resamples Lightning's images
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    rows, cols = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    at_rows, at_cols = rows + ours[:64, ..., 0], cols + ours[:64, ..., 1]
    grid = torch.from_numpy(np.stack([(at_cols + 0.5) / 14 - 1, (at_rows + 0.5) / 14 - 1], -1)).float()
    expected = torch.nn.functional.grid_sample(torch.from_numpy(images).permute(0, 3, 1, 2), grid, mode="bilinear",
                                               padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
    got = bilinear_at(images, at_rows.astype(np.float32), at_cols.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), atol=1e-5)

    settings = DataSettings(batch_size=64, augment=True, rotation=0.0, zoom=0.0, shift=0.0, shear=0.0,
                            elastic_alpha=alpha)
    first, second = (next(iter(train_dataset(images, np.zeros((64, 10), np.float32), settings, 7)))[0].numpy()
                     for _ in range(2))
    np.testing.assert_array_equal(first, second)  # seeded: the same draws
    plain = next(iter(train_dataset(images, np.zeros((64, 10), np.float32), replace(settings, elastic_alpha=0.0),
                                    7)))[0].numpy()  # the same shuffle, no augmentation left at all
    assert sorted(plain.sum((1, 2, 3))) == pytest.approx(sorted(images.sum((1, 2, 3))))
    assert np.abs(first - plain).mean() > 0.05 and 0.0 <= first.min() and first.max() <= 1.0  # resampled in place


@pytest.mark.parametrize("params", [dict(rotation=10.0), dict(shear=12.0), dict(zoom_x=1.2, zoom_y=0.85),
                                    dict(shift_x=0.1, shift_y=-0.07), dict(rotation=-7.0, shear=10.0, zoom_x=1.1,
                                                                           zoom_y=0.9, shift_x=0.07, shift_y=-0.1)],
                         ids=["rotation", "shear", "zoom", "shift", "all together"])
def test_the_keras_warp_is_lightnings_for_the_same_parameters(params):
    """One affine warp per picture in both frameworks, from the same matrix: for the same parameters Keras' pictures
    are Lightning's (affine_grid + grid_sample, which tests/test_augment_cv.py checks against ImageDataGenerator)."""
    from keras_reference.augment import affine_positions, bilinear_at
    from lightning_mnist.data.augment import affine_matrices

    n, height, width = 6, 28, 28
    images = np.random.default_rng(1).random((n, height, width, 1), dtype=np.float32)
    every = {**dict(rotation=0.0, shear=0.0, zoom_x=1.0, zoom_y=1.0, shift_x=0.0, shift_y=0.0), **params}
    varied = {k: v * np.linspace(0.4, 1.0, n, dtype=np.float32) if k.startswith(("rot", "shear", "shift"))
              else 1 + (v - 1) * np.linspace(0.4, 1.0, n, dtype=np.float32) for k, v in every.items()}
    grid = torch.nn.functional.affine_grid(affine_matrices(**{k: torch.from_numpy(v) for k, v in varied.items()}),
                                           [n, 1, height, width], align_corners=False)
    expected = torch.nn.functional.grid_sample(torch.from_numpy(images).permute(0, 3, 1, 2), grid, mode="bilinear",
                                               padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
    rows, cols = affine_positions(**varied, height=height, width=width)
    got = np.asarray(bilinear_at(images, rows, cols))
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5)
    assert np.abs(got - images).max() > 0.3  # the pictures really moved


def test_the_training_pipeline_warps_each_picture_once_with_its_own_draws():
    """The Keras training batches: seeded draws (a rerun is the same), a fresh draw per picture and batch, every
    range 0 the identity, and one resampling: a shift of exactly one pixel moves the digits without blurring them."""
    from keras_reference.augment import notebook_augmentation
    from keras_reference.config import DataSettings
    from keras_reference.data import train_dataset

    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    labels = np.zeros((64, 10), np.float32)
    settings = DataSettings(batch_size=64, augment=True)  # the notebook's ranges
    first, again = (next(iter(train_dataset(images, labels, settings, 7)))[0].numpy() for _ in range(2))
    np.testing.assert_array_equal(first, again)
    epochs = iter(train_dataset(images, labels, replace(settings, batch_size=32), 7).repeat(2))
    batches = [next(epochs)[0].numpy() for _ in range(4)]
    assert not any(np.array_equal(a, b) for i, a in enumerate(batches) for b in batches[i + 1:])
    assert 0.0 <= first.min() and first.max() <= 1.0
    unchanged = notebook_augmentation(0, rotation=0.0, zoom=0.0, shift=0.0, shear=0.0)(images)
    np.testing.assert_allclose(np.asarray(unchanged), images, atol=1e-5)  # float rounding of the positions
    # one resampling: shifted by whole pixels, a picture keeps its pixel values (four bilinear passes would not)
    from keras_reference.augment import affine_positions, bilinear_at

    ones = np.ones(len(images), np.float32)
    rows, cols = affine_positions(0 * ones, 0 * ones, ones, ones, ones / 28, -2 * ones / 28, 28, 28)
    shifted = np.asarray(bilinear_at(images, rows, cols))
    np.testing.assert_allclose(shifted[:, 3:-3, 3:-3], images[:, 1:-5, 4:-2], atol=1e-5)  # from 1 right, 2 up


def keras_generator(seed: int):
    import tensorflow as tf

    return tf.random.Generator.from_seed(seed)


def test_a_saved_one_cycle_model_loads_with_safe_mode(tmp_path):
    model = build_model()
    compile_model(model, settings=ModelSettings(lr=5e-3, lr_schedule="onecycle", weight_decay=0.05), total_steps=40)
    model.optimizer.build(model.trainable_variables)  # as after a first step: its state is saved too
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, OneCycleAdamW)
    assert loaded.optimizer.one_cycle.get_config() == model.optimizer.one_cycle.get_config()


@pytest.mark.parametrize("config_text, expected", [
    ("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.StochasticWeightAveraging\n"
     "      init_args: {swa_lrs: 0.01}\n", "--trainer.callbacks (StochasticWeightAveraging): Lightning callbacks do not"),
    ("trainer:\n  callbacks:\n    - class_path: lightning_mnist.training.callbacks.EMAWeightAveraging\n"
     "      init_args: {decay: 0.99, update_every_n_steps: 10}\n", "EMAWeightAveraging {'update_every_n_steps': 10}"),
    ("trainer:\n  callbacks:\n    - class_path: lightning_mnist.training.callbacks.EMAWeightAveraging\n"
     "      init_args: {decay: 1.5}\n", "EMAWeightAveraging decay 1.5: a number from 0 to 1"),
    ("checkpoint:\n  dirpath: somewhere\n", "checkpoint.dirpath"),
    ("checkpoint:\n  save_top_k: 3\n", "--checkpoint.save_top_k 3: the Keras reference keeps the one best"),
    ("checkpoint:\n  save_top_k: -2\n", "--checkpoint.save_top_k -2: the Keras reference keeps the one best"),
    ("early_stopping:\n  monitor: train/loss\n", "early_stopping.monitor"),
    ("model:\n  lr_schedule: cosine\n", "--model.lr_schedule"),
    ("model:\n  label_smoothing: 1.0\n", "--model.label_smoothing must be at least 0 and below 1"),
    ("model:\n  weight_decay: -0.1\n", "--model.weight_decay must be 0 or more"),
])
def test_what_keras_cannot_do_is_refused_in_one_line(config_text, expected, tmp_path, capsys, mnist_dir):
    config = tmp_path / "recipe.yaml"
    config.write_text(config_text)
    code, line, _ = main_error(main, ["train", "--config", str(config), "--data.data_dir", str(mnist_dir),
                                      "--output_dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and expected in line, line
    assert not (tmp_path / "runs").exists()
