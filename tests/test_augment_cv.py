"""Augmentation on the batch's device and k-fold cross-validation with a fresh model per fold."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Callback

from conftest import main_output
from lightning_mnist.training.cli import MnistCLI
from lightning_mnist.data import MNISTDataModule, NotebookAugmentation
from lightning_mnist.data.augment import affine_matrices

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
CHECKED = 2000  # the test images the k-fold run is tested on (4 batches of 500), its ONNX file too


@pytest.fixture(scope="module")
def digits(mnist):
    from lightning_mnist.data.datamodule import to_tensor

    return to_tensor(mnist.train_images[:64])


@pytest.mark.parametrize("device", DEVICES)
def test_parameters_are_drawn_per_image_on_the_batch_device(digits, device):
    torch.manual_seed(0)
    same_digit = digits[:1].repeat(32, 1, 1, 1).to(device)
    out = NotebookAugmentation()(same_digit)
    assert out.device == same_digit.device and out.dtype == torch.float32 and out.shape == same_digit.shape
    differences = (out[1:] - out[:1]).flatten(1).abs().amax(1)
    assert (differences > 0.05).all()  # 32 copies of one digit come out as 32 different images
    assert 0.0 <= out.min() and out.max() <= 1.0
    # small transforms: every augmented digit still looks like the original
    assert ((out - same_digit).abs().mean((1, 2, 3)) < 0.15).all()


def test_ranges_keep_their_keras_meaning():
    torch.manual_seed(0)
    zoom = NotebookAugmentation(rotation=0, zoom=0.05, shift=0, shear=0).matrices(4000)
    assert torch.all(zoom[:, [0, 1], [1, 0]] == 0) and torch.all(zoom[:, :, 2] == 0)
    zx, zy = zoom[:, 0, 0], zoom[:, 1, 1]
    assert 0.95 <= zx.min() < 0.951 and 1.049 < zx.max() <= 1.05
    assert abs(torch.corrcoef(torch.stack([zx, zy]))[0, 1]) < 0.05  # x and y zoom drawn independently
    rotation = NotebookAugmentation(rotation=5, zoom=0, shift=0, shear=0).matrices(4000)
    degrees = torch.rad2deg(torch.atan2(rotation[:, 1, 0], rotation[:, 0, 0]))
    assert -5 <= degrees.min() < -4.99 and 4.99 < degrees.max() <= 5
    shift = NotebookAugmentation(rotation=0, zoom=0, shift=0.05, shear=0).matrices(4000)[:, :, 2]
    assert 0.099 < shift.abs().max() <= 0.1  # 5 % of the size = 0.1 of the normalised [-1, 1] span


@pytest.mark.parametrize("params", [{"theta": 10}, {"shear": 12}, {"zx": 1.2, "zy": 0.85}, {"tx": 3, "ty": -2},
                                    {"theta": -7, "shear": 10, "zx": 1.1, "zy": 0.9, "tx": 2, "ty": -3}],
                         ids=["rotation", "shear", "zoom", "shift", "all together"])
def test_each_transform_is_keras_own_for_the_same_parameters(digits, params):
    """Keras' ImageDataGenerator.apply_transform (bilinear, nearest fill) and ours agree pixel for pixel."""
    from lightning_mnist.frameworks import import_keras

    import_keras()
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    images = digits[:8]
    keras_out = np.stack([ImageDataGenerator(fill_mode="nearest").apply_transform(image[0, ..., None].numpy(), params)
                          for image in images])[..., 0]
    n, side = len(images), images.shape[-1]
    matrices = affine_matrices(*(torch.full((n,), float(v)) for v in (
        params.get("theta", 0), params.get("shear", 0), params.get("zx", 1), params.get("zy", 1),
        params.get("tx", 0) / side, params.get("ty", 0) / side)))
    grid = torch.nn.functional.affine_grid(matrices, list(images.shape), align_corners=False)
    ours = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)[:, 0].numpy()
    assert np.abs(ours - keras_out).max() < 1e-5
    assert np.abs(keras_out - images[:, 0].numpy()).max() > 0.5  # the transform really moved the digits


def test_gaussian_matrix_is_scipys_gaussian_filter():
    """The elastic field's smoothing (mnist_common's matrix, which both frameworks use) is
    scipy.ndimage.gaussian_filter (zeros beyond the edges, 3 sigma), to float32's precision."""
    from scipy.ndimage import gaussian_filter

    from lightning_mnist.data.augment import gaussian_matrix

    field = np.random.default_rng(0).uniform(-1, 1, (28, 20))
    for sigma in (0.7, 4.0, 12.0):
        rows, cols = (gaussian_matrix(n, sigma, "cpu", torch.float64) for n in field.shape)
        ours = (rows @ torch.from_numpy(field) @ cols.T).numpy()
        np.testing.assert_allclose(ours, gaussian_filter(field, sigma, mode="constant", truncate=3.0), atol=1e-6)


def test_elastic_displacements_have_the_papers_scale():
    """Uniform [-1, 1] noise smoothed and scaled by alpha: at the centre its spread is alpha * sqrt(1/3 * sum w^2)
    pixels, where w are the 2-D filter's weights; each image gets its own field, in grid_sample's units."""
    from lightning_mnist.data.augment import elastic_displacements, gaussian_matrix

    torch.manual_seed(0)
    alpha, sigma = 34.0, 4.0
    pixels = elastic_displacements(4000, 28, 28, alpha, sigma) * 14  # normalised units -> pixels (28 px = 2 units)
    assert pixels.shape == (4000, 28, 28, 2)
    weights = gaussian_matrix(28, sigma, "cpu", torch.float64)[14]
    expected = alpha * math.sqrt(weights.square().sum().item() ** 2 / 3)
    for axis in (0, 1):
        assert pixels[:, 14, 14, axis].std().item() == pytest.approx(expected, rel=0.05)
    assert pixels[:, 14, 14, 0].mean().abs() < 0.1  # no drift
    assert (pixels[0] - pixels[1]).abs().amax() > 1  # a field per image
    # smooth: neighbours move together far more than pixels 10 apart
    near = torch.corrcoef(torch.stack([pixels[:, 14, 14, 0], pixels[:, 14, 15, 0]]))[0, 1]
    far = torch.corrcoef(torch.stack([pixels[:, 14, 4, 0], pixels[:, 14, 14, 0]]))[0, 1]
    assert near > 0.9 and far < 0.3


def test_elastic_distortion_is_off_by_default_and_bends_digits_when_on(digits):
    torch.manual_seed(0)
    plain = NotebookAugmentation(rotation=0, zoom=0, shift=0, shear=0)
    assert plain.elastic_alpha == 0
    elastic = NotebookAugmentation(rotation=0, zoom=0, shift=0, shear=0, elastic_alpha=34, elastic_sigma=4)
    out = elastic(digits)
    assert out.shape == digits.shape and 0 <= out.min() and out.max() <= 1
    moved = (out - digits).abs().amax((1, 2, 3))
    assert (moved > 0.3).all()  # every digit is bent...
    assert ((out - digits).abs().mean((1, 2, 3)) < 0.2).all()  # ...and stays mostly where it was
    torch.testing.assert_close(plain(digits), digits, atol=1e-5, rtol=0)


def test_zero_ranges_are_the_identity(digits):
    out = NotebookAugmentation(rotation=0, zoom=0, shift=0, shear=0)(digits)
    torch.testing.assert_close(out, digits, atol=1e-5, rtol=0)


def test_only_training_batches_are_augmented_and_labels_untouched(mnist_dir, digits):
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=500, augment=True)
    labels = torch.arange(64) % 10
    batch = (digits, labels)

    class FakeTrainer:
        training = True

    data.trainer = FakeTrainer()
    images, out_labels = data.on_after_batch_transfer(batch, 0)
    assert out_labels is labels and not torch.equal(images, digits)
    FakeTrainer.training = False
    images, _ = data.on_after_batch_transfer(batch, 0)
    assert images is digits
    assert MNISTDataModule(data_dir=str(mnist_dir)).augmentation is None  # off for the plain fit


def test_folds_and_pixels_are_identical_for_keras_and_lightning(mnist_dir):
    from keras_reference.data import load_data

    for fold in range(3):
        lightning = MNISTDataModule(data_dir=str(mnist_dir), subset=3000, num_folds=3, fold=fold)
        lightning.setup()
        keras = load_data(mnist_dir, subset=3000, num_folds=3, fold=fold)
        assert np.array_equal(lightning.split.train, keras.split.train)
        assert np.array_equal(lightning.split.val, keras.split.val)
        assert np.array_equal(lightning.datasets["val"].tensors[0][:, 0].numpy(), keras.x_val[..., 0])
        assert np.array_equal(lightning.datasets["val"].tensors[1].numpy(), keras.y_val.argmax(1))


class WeightRecorder(Callback):
    """Keeps the first conv kernel at the start and end of every fit, and the objects used."""

    def __init__(self):
        self.starts, self.ends, self.models, self.optimizers, self.validated = [], [], [], [], []

    def on_train_start(self, trainer, pl_module):
        self.starts.append(pl_module.network.conv2d.weight.detach().clone())
        self.models.append(id(pl_module))
        self.optimizers.append(id(trainer.optimizers[0]))
        self.validated.append(trainer.datamodule.datasets["val"].tensors[0].clone())  # the images it validates on

    def on_train_end(self, trainer, pl_module):
        self.ends.append(pl_module.network.conv2d.weight.detach().clone())


def test_cv_trains_every_fold_from_a_fresh_model_and_writes_results(mnist_dir, mnist, tmp_path, monkeypatch):
    from lightning_mnist.checkpoints import load_classifier

    monkeypatch.chdir(tmp_path)
    recorder = WeightRecorder()
    MnistCLI(args=["cv", "--data.data_dir", str(mnist_dir), "--data.subset", "1200", "--data.num_folds", "3",
                   "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                   "--trainer.limit_test_batches", str(CHECKED // 500)],  # each fold and the ensemble: CHECKED images
             trainer_defaults={"callbacks": [recorder]})
    assert len(recorder.starts) == 3 and len(set(recorder.models)) == 3 and len(set(recorder.optimizers)) == 3
    # each fold validates on its own part, the one the data module's fold gives (every fold validated on fold 0's:
    # Lightning made the data module's hyperparameters from the first fold's settings, found in session 39)
    for k, images in enumerate(recorder.validated):
        own = MNISTDataModule(data_dir=str(mnist_dir), subset=1200, num_folds=3, fold=k)
        own.setup("fit")
        assert torch.equal(images, own.datasets["val"].tensors[0]), k
    for k in range(2):
        assert not torch.equal(recorder.starts[k + 1], recorder.ends[k])  # not carried over (the notebook's leak)
        assert not torch.equal(recorder.starts[k + 1], recorder.starts[k])  # a new initialisation

    run = tmp_path / "runs" / "lightning" / "cv_0"
    results = json.loads((run / "cv_results.json").read_text())
    assert results["framework"] == "lightning" and results["num_folds"] == 3
    assert [f["fold"] for f in results["folds"]] == [0, 1, 2]
    accs = [f["val_acc"] for f in results["folds"]]
    assert results["val_acc_mean"] == pytest.approx(np.mean(accs)) and results["val_acc_std"] == pytest.approx(np.std(accs))
    # the configuration the user ran, not the last fold's
    assert results["config"]["data"]["augment"] is True and results["config"]["data"]["fold"] is None
    assert results["config"]["data"]["num_folds"] == 3
    for fold in results["folds"]:
        assert fold["model_path"].startswith(f"fold_{fold['fold']}/checkpoints/") and (run / fold["model_path"]).is_file()
        # what a resume from it keeps (it went on validating on a 10 % hold-out: hostile round 12)
        saved = torch.load(run / fold["model_path"], weights_only=True)["datamodule_hyper_parameters"]
        assert (saved["num_folds"], saved["fold"]) == (3, fold["fold"])
        assert len(fold["history"]) == fold["epochs"] == 1
        assert (run / f"fold_{fold['fold']}" / "metrics.csv").is_file()
    # each fold's logs are its own: the ensemble's test wrote into the last fold's (a second test row in its
    # metrics.csv, its hparams.yaml replaced by a dump of every member network: hostile round 6)
    for k in range(3):
        tested = [row for row in csv.DictReader((run / f"fold_{k}" / "metrics.csv").open()) if row.get("test/acc")]
        assert len(tested) == 1 and float(tested[0]["test/acc"]) == pytest.approx(results["folds"][k]["test_acc"])
        assert "KerasNetwork" not in (run / f"fold_{k}" / "hparams.yaml").read_text()
    # the ensemble's score is the mean of the fold models' probabilities, computed here independently
    x = torch.from_numpy(mnist.test_images[:CHECKED]).float().div(255).unsqueeze(1)
    with torch.inference_mode():
        mean = torch.stack([load_classifier(run / f["model_path"]).predict_proba(x) for f in results["folds"]]).mean(0)
    right = (mean.argmax(1).numpy() == mnist.test_labels[:CHECKED])
    assert results["ensemble_test_acc"] == pytest.approx(right.mean(), abs=1e-6)
    matrix = np.array(results["ensemble_confusion_matrix"])  # of the images tested, as test/acc
    assert matrix.sum() == CHECKED and np.trace(matrix) == right.sum()
    assert (run / "cv_curves.png").stat().st_size > 10_000 and (run / "mistakes.png").is_file()
    # the ensemble as one ONNX graph (convert, proven on the images tested): the ensemble's predictions
    from lightning_mnist.__main__ import main as command_line
    from lightning_mnist.formats import onnx_model

    command_line(["convert", str(run / "cv_results.json"), str(tmp_path / "ensemble.onnx"),
                  "--data_dir", str(mnist_dir), "--check_images", str(CHECKED)])  # the formats' own tests check all
    images = mnist.test_images[:CHECKED, ..., None].astype(np.float32) / 255
    p_onnx, p_torch = onnx_model.load(tmp_path / "ensemble.onnx")(images), mean.numpy()
    assert np.abs(p_onnx - p_torch).max() <= 1e-5 and (p_onnx.argmax(1) == p_torch.argmax(1)).all()


def test_cv_command_line_reports_fold_scores(run_module, mnist_dir, tmp_path, monkeypatch, capsys):
    """The k-fold command line, then (in this process, saving two start-ups) its saved settings and its ensemble."""
    from lightning_mnist.__main__ import main
    from mnist_common.mnist import DATA_DIR_ENV

    proc = run_module("lightning_mnist", "cv", "--data.subset", "600", "--data.num_folds", "2",
                      "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                      "--data.augment", "false")
    assert "fold 0: val acc" in proc.stdout and "fold 1: val acc" in proc.stdout
    assert "2-fold val acc" in proc.stdout and "ensemble test acc" in proc.stdout
    results = json.loads((tmp_path / "runs/lightning/cv_0/cv_results.json").read_text())
    assert all(not Path(f["model_path"]).is_absolute() for f in results["folds"])  # relative to the run

    # the k-fold run's settings, saved in its folder, are a cv config again: the folds unset, the run's own values
    saved = yaml.safe_load((tmp_path / "runs/lightning/cv_0/config.yaml").read_text())
    assert saved["data"]["fold"] is None and saved["checkpoint"]["dirpath"] is None and saved == results["config"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_dir))
    printed = main_output(main, ["cv", "--config", "runs/lightning/cv_0/config.yaml", "--print_config"], capsys)
    assert yaml.safe_load(printed) == saved

    # the ensemble is usable afterwards, also once moved: `test` scores it from its cv_results.json
    (tmp_path / "runs").rename(tmp_path / "moved")
    results_path = tmp_path / "moved/lightning/cv_0/cv_results.json"
    main(["test", "--ckpt_path", str(results_path), "--trainer.logger", "false", "--trainer.enable_progress_bar",
          "false"])
    tested = capsys.readouterr().out
    assert "2-fold ensemble" in tested
    [row] = [line for line in tested.splitlines() if "test/acc" in line]
    assert float(row.split("│")[2]) == pytest.approx(results["ensemble_test_acc"], abs=1e-6)


def test_augment_preview_writes_a_png(run_module, tmp_path):
    run_module("lightning_mnist", "augment-preview", "grid.png", "--count", "6", "--rows", "2")
    assert (tmp_path / "grid.png").stat().st_size > 5_000
