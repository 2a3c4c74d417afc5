"""keras_reference: the notebook's model, the shared splits, training, saving, k-fold, command line.

Trains on real MNIST with small subsets, so the whole file stays around a minute on 2 CPU cores.
"""

from __future__ import annotations

import math

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, main_output, module_env
from keras_reference import cv as cv_module
from keras_reference import train as train_module
from keras_reference.__main__ import main
from keras_reference.augment import notebook_augmentation
from keras_reference.config import CV_DATA, DataSettings, ModelSettings, RunSettings, TrainerSettings
from keras_reference.cv import cross_validate, scores
from keras_reference.data import load_data
from keras_bridge.build import build_model
from keras_reference.model import compile_model, keras
from keras_reference.train import HISTORY_CSV, HISTORY_JSON, MODEL_FILE, history_rows, train
from mnist_common.errors import UserError
from mnist_common.results import CURVES_FILE, CV_CURVES_FILE, CV_RESULTS_FILE, RESULTS_FILE
from mnist_common.splits import make_split

# The notebook's model (mnist_common/architecture/presets/notebook.yaml), layer by layer: (Keras layer class, output shape without the batch axis, parameters)
NOTEBOOK_LAYERS = [
    ("Conv2D", (26, 26, 32), 320),
    ("BatchNormalization", (26, 26, 32), 128),
    ("MaxPooling2D", (13, 13, 32), 0),
    ("Conv2D", (11, 11, 64), 18_496),
    ("BatchNormalization", (11, 11, 64), 256),
    ("MaxPooling2D", (5, 5, 64), 0),
    ("Flatten", (1600,), 0),
    ("Dense", (128,), 204_928),
    ("Dropout", (128,), 0),
    ("Dense", (10,), 1_290),
]
TRAIN_SUBSET, TRAIN_EPOCHS = 6000, 3  # ~500 steps: enough for BatchNorm's slow (0.99) moving statistics
TEST_ACC_FLOOR = 0.88  # measured 0.92-0.93 over three seeds; chance is 0.10


class Recorder(keras.callbacks.Callback):
    """Records, for every ``fit`` it is passed to, the model, its weights and optimizer step at start and end."""

    def __init__(self):
        super().__init__()
        self.models, self.start_weights, self.end_weights, self.start_steps = [], [], [], []

    def on_train_begin(self, logs=None):
        self.models.append(self.model)
        self.start_weights.append([w.copy() for w in self.model.get_weights()])
        self.start_steps.append(int(self.model.optimizer.iterations.numpy()))

    def on_train_end(self, logs=None):
        self.end_weights.append([w.copy() for w in self.model.get_weights()])


def settings_for(mnist_dir, output_dir, data: DataSettings = DataSettings(), epochs: int = TRAIN_EPOCHS) -> RunSettings:
    return RunSettings(data=replace(data, data_dir=str(mnist_dir)), trainer=TrainerSettings(epochs),
                       output_dir=str(output_dir))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """One short training run (library API), shared by the tests below; records the data it used."""
    settings = settings_for(mnist_dir, tmp_path_factory.mktemp("keras_train"), DataSettings(subset=TRAIN_SUBSET))
    used = []

    def recording_load_data(*args, **kwargs):
        used.append(load_data(*args, **kwargs))
        return used[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "load_data", recording_load_data)
        results, model, run_dir = train(settings.check("train"), verbose=0)
    return settings, results, model, run_dir, used[0]


def test_model_is_the_notebooks():
    model = compile_model(build_model())
    assert model.count_params() == 225_418
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 225_226
    assert [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
            for layer in model.layers] == NOTEBOOK_LAYERS
    assert [layer.activation.__name__ for layer in model.layers if hasattr(layer, "activation")] == \
        ["relu", "relu", "relu", "softmax"]  # ReLU in the conv layers, before BatchNormalization
    for bn in (layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)):
        assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)
    assert model.layers[-2].rate == 0.5
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    assert optimizer.epsilon == 1e-7
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and not model.loss.from_logits


def test_data_uses_the_shared_splits(trained, mnist):
    settings, _, _, _, data = trained
    expected = make_split(mnist.train_labels, subset=TRAIN_SUBSET, val_fraction=settings.data.val_fraction)
    np.testing.assert_array_equal(data.split.train, expected.train)  # what the training run used
    np.testing.assert_array_equal(data.split.val, expected.val)
    assert data.x_train.shape == (len(expected.train), 28, 28, 1) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_val[..., 0], mnist.train_images[expected.val] / np.float32(255))
    np.testing.assert_array_equal(data.y_train.argmax(axis=1), mnist.train_labels[expected.train])
    assert data.y_train.shape == (len(expected.train), 10) and set(np.unique(data.y_train)) == {0.0, 1.0}
    assert len(data.x_test) == 10_000  # the untouched test set, never used for validation

    fold = load_data(mnist=mnist, subset=1500, num_folds=3, fold=2)
    expected = make_split(mnist.train_labels, subset=1500, num_folds=3, fold=2)
    np.testing.assert_array_equal(fold.split.train, expected.train)
    np.testing.assert_array_equal(fold.split.val, expected.val)


def test_bad_subsets_are_user_errors(mnist):
    with pytest.raises(UserError, match="subset"):
        load_data(mnist=mnist, subset=70_000)
    with pytest.raises(UserError, match="cannot split"):  # 2 images per class cannot make 5 folds
        load_data(mnist=mnist, subset=20, num_folds=5)


def test_short_training_learns_and_writes_its_run_folder(trained, mnist):
    settings, results, model, run_dir, data = trained
    assert results.test_acc >= TEST_ACC_FLOOR
    assert results.framework == "keras" and results.epochs == len(results.history) == TRAIN_EPOCHS
    assert run_dir == Path(settings.output_dir) / "keras" / "version_0"
    assert 0 <= results.best_epoch < TRAIN_EPOCHS
    assert [set(row) for row in results.history] == \
        [{"epoch", "seconds", "train_loss", "train_acc", "val_loss", "val_acc"}] * TRAIN_EPOCHS
    for name in (RESULTS_FILE, CURVES_FILE, HISTORY_CSV, HISTORY_JSON, MODEL_FILE):
        assert (run_dir / name).stat().st_size > 0, name
    written = json.loads((run_dir / RESULTS_FILE).read_text())
    assert written["test_acc"] == pytest.approx(results.test_acc) and written["model_path"] == MODEL_FILE
    assert written["config"]["data"]["subset"] == TRAIN_SUBSET and written["config"]["model"]["lr"] == 1e-4
    assert len((run_dir / HISTORY_CSV).read_text().splitlines()) == TRAIN_EPOCHS + 1
    # the test accuracy is the restored best weights' on the 10,000 test images
    predicted = model.predict(data.x_test, batch_size=1000, verbose=0).argmax(1)
    assert (predicted == mnist.test_labels).mean() == pytest.approx(results.test_acc, abs=1e-6)


def test_saved_model_reloads_in_a_fresh_process_without_torch(trained, tmp_path):
    _, _, model, run_dir, data = trained
    np.save(tmp_path / "x.npy", data.x_test[:500])
    expected = model.predict(data.x_test[:500], batch_size=500, verbose=0)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from keras_bridge.backend import import_keras
        keras = import_keras()
        model = keras.saving.load_model({str(run_dir / MODEL_FILE)!r}, safe_mode=True)
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, model.predict(x, batch_size=500, verbose=0))
        print("torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**module_env(REPO), "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=0, atol=1e-6)


def test_augmentation_keeps_the_notebooks_meaning(mnist_dir):
    """The ranges mean ImageDataGenerator's: rotation and shear in degrees, zooms and shifts as fractions; a
    picture's draws stay inside them (measured on a one-pixel picture: where its bright pixel lands)."""
    images = load_data(mnist_dir, subset=100).x_train[:32]
    augmented = np.asarray(notebook_augmentation(seed=0)(images))
    assert augmented.shape == images.shape and 0.0 <= augmented.min() and augmented.max() <= 1.0
    assert 0.0 < np.abs(augmented - images).mean() < 0.2  # moved, but still the same digits
    dot = np.zeros((2000, 28, 28, 1), np.float32)
    dot[:, 13, 23] = 1.0  # 9.5 pixels right of the centre (13.5, 13.5), half a pixel up
    for ranges, most in [(dict(rotation=5.0, zoom=0, shift=0, shear=0), 9.52 * math.sin(math.radians(5)) + 0.5),
                         (dict(rotation=0, zoom=0, shift=0.05, shear=0), 0.05 * 28 + 0.5)]:
        moved = np.asarray(notebook_augmentation(0, **ranges)(dot))[..., 0]
        rows = (moved * np.arange(28)[None, :, None]).sum((1, 2)) / moved.sum((1, 2))
        assert 13 - most <= rows.min() < 13 - 0.8 * most + 0.5 and 13 + 0.8 * most - 0.5 < rows.max() <= 13 + most


def test_kfold_trains_a_fresh_model_per_fold_and_scores_their_ensemble(tmp_path, mnist_dir, mnist):
    settings = settings_for(mnist_dir, tmp_path, replace(CV_DATA, subset=1500, num_folds=2), epochs=1)
    recorder, used = Recorder(), []

    def recording_load_data(*args, **kwargs):
        used.append(load_data(*args, **kwargs))
        return used[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cv_module, "load_data", recording_load_data)
        results, run_dir = cross_validate(settings.check("cv"), callbacks=(recorder,), verbose=0, log=lambda *_: None)

    assert recorder.models[0] is not recorder.models[1]
    assert recorder.start_steps == [0, 0]  # a new optimizer too
    changed = [not np.array_equal(a, b) for a, b in zip(recorder.end_weights[0], recorder.start_weights[1])]
    assert all(changed)  # every weight of fold 1 starts anew, none carried over from fold 0
    for k, data in enumerate(used):
        expected = make_split(mnist.train_labels, subset=1500, num_folds=2, fold=k)
        np.testing.assert_array_equal(data.split.val, expected.val)
        np.testing.assert_array_equal(data.split.train, expected.train)

    assert run_dir == tmp_path / "keras" / "cv_0"
    assert results.num_folds == 2 and [f.fold for f in results.folds] == [0, 1]
    assert results.val_acc_mean == pytest.approx(np.mean([f.val_acc for f in results.folds]))
    assert results.config["data"]["augment"] is True
    # the ensemble's score is the mean of the saved fold models' probabilities
    x_test = (mnist.test_images.astype(np.float32) / 255)[..., None]
    probabilities = [keras.saving.load_model(run_dir / f.model_path, safe_mode=True).predict(x_test, batch_size=1000,
                                                                                              verbose=0)
                     for f in results.folds]
    assert (np.mean(probabilities, 0).argmax(1) == mnist.test_labels).mean() == pytest.approx(
        results.ensemble_test_acc, abs=1e-6)
    for fold in results.folds:
        assert fold.model_path == f"fold_{fold.fold}.keras" and fold.epochs == len(fold.history) == 1
    assert (run_dir / CV_RESULTS_FILE).is_file() and (run_dir / CV_CURVES_FILE).is_file()


def test_kfold_of_a_network_that_gives_logits_scores_their_softmax(tmp_path, mnist_dir):
    """A network without a final softmax gives logits: the fold and ensemble scores are of their softmax (the
    test loss equal to the one Keras computes from logits), not of the logits taken for probabilities."""
    logits = tmp_path / "logits.yaml"
    logits.write_text("input_shape: [28, 28, 1]\nlayers:\n  - {type: Flatten}\n  - {type: Dense, units: 10}\n")
    settings = settings_for(mnist_dir, tmp_path, replace(CV_DATA, subset=600, num_folds=2, augment=False), epochs=1)
    settings = replace(settings, model=replace(settings.model, architecture=str(logits), lr=1e-2))
    results, run_dir = cross_validate(settings.check("cv"), verbose=0, log=lambda *_: None)
    data = load_data(mnist_dir, subset=600, num_folds=2, fold=0)
    model = keras.saving.load_model(run_dir / results.folds[0].model_path, safe_mode=True)
    assert model.loss.from_logits is True
    keras_loss, keras_acc = model.evaluate(data.x_test, data.y_test, batch_size=1000, verbose=0)[:2]
    assert results.folds[0].test_loss == pytest.approx(keras_loss, rel=1e-4)
    assert results.folds[0].test_acc == pytest.approx(keras_acc, abs=1e-6)
    assert 0 < results.ensemble_test_loss < 2.3 and results.ensemble_test_acc > 0.5


def test_scores_and_history_rows():
    targets = np.eye(10, dtype=np.float32)[[0, 1, 2]]
    probabilities = np.full((3, 10), 0.05, dtype=np.float32)
    probabilities[[0, 1, 2], [0, 1, 3]] = 0.55
    loss, acc = scores(probabilities, targets)
    assert acc == pytest.approx(2 / 3)
    assert loss == pytest.approx(-(2 * np.log(0.55) + np.log(0.05)) / 3)
    rows = history_rows({"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.9, 0.4],
                         "val_accuracy": [0.7, 0.9]})
    assert rows[1] == {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.4, "val_acc": 0.9}


RUN_AND_LIST_MODULES = """
import runpy, sys
sys.argv = ["keras_reference", *sys.argv[1:]]
try:
    runpy.run_module("keras_reference", run_name="__main__")
finally:
    print("frameworks imported:", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lightning", "keras"}))
"""


def test_steps_per_execution_trains_the_same_steps(tmp_path, mnist_dir):
    """``--data.steps_per_execution 4`` compiles Keras with it (4 batches per call of its training function, an
    epoch's last call what is left: 900 images make 29 steps) and trains the same weights as one batch a call,
    under the one-cycle schedule (configs/fast.yaml's): its rate and beta_1 follow each step inside a call."""
    trained_weights = {}
    for steps in (1, 4):
        settings = settings_for(mnist_dir, tmp_path / f"x{steps}", DataSettings(subset=1000, steps_per_execution=steps),
                                epochs=1)
        settings = replace(settings, model=ModelSettings(lr=5e-3, lr_schedule="onecycle"))
        _, model, _ = train(settings.check("train"), verbose=0)
        assert model.steps_per_execution == steps and int(model.optimizer.iterations.numpy()) == 29
        assert float(model.optimizer.beta_1) == pytest.approx(0.95)  # torch's one-cycle momentum at its end
        trained_weights[steps] = model.get_weights()
    for ours, theirs in zip(trained_weights[4], trained_weights[1]):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_cli_train_is_quiet_never_imports_torch_and_writes_its_run_folder(tmp_path, mnist_dir):
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, "train", "--data.subset", "2000",
                           "--trainer.max_epochs", "1", "--output_dir", "out"], cwd=tmp_path,
                          env=module_env(mnist_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frameworks imported: ['keras']" in proc.stdout
    assert proc.stderr == ""  # no TensorFlow / absl start-up lines, nothing else either
    run = tmp_path / "out" / "keras" / "version_0"
    results = json.loads((run / RESULTS_FILE).read_text())
    assert results["framework"] == "keras" and results["epochs"] == 1 and results["config"]["data"]["subset"] == 2000
    assert (run / CURVES_FILE).is_file() and (run / MODEL_FILE).is_file()
    assert f"results: {Path('out/keras/version_0') / RESULTS_FILE}" in proc.stdout and "test accuracy" in proc.stdout


def test_cli_cv_writes_results_for_every_fold(run_module, tmp_path):
    run_module("keras_reference", "cv", "--data.subset", "1500", "--data.num_folds", "2", "--trainer.max_epochs", "1",
               "--data.augment", "false", "--data.steps_per_execution", "3")
    run = tmp_path / "runs" / "keras" / "cv_0"
    results = json.loads((run / CV_RESULTS_FILE).read_text())
    assert results["num_folds"] == 2 and len(results["folds"]) == 2 and results["config"]["data"]["augment"] is False
    assert results["config"]["data"]["steps_per_execution"] == 3
    assert sorted(p.name for p in run.glob("*.keras")) == ["fold_0.keras", "fold_1.keras"]
    assert (run / CV_CURVES_FILE).is_file()


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(--[a-z_]+(?:\.[a-z_]+)?)", help_text))


def test_both_command_lines_spell_the_shared_ideas_alike(capsys):
    from lightning_mnist.__main__ import main as lightning_main

    keras_flags = _flags(main_output(main, ["train", "--help"], capsys))
    lightning_flags = _flags(main_output(lightning_main, ["fit", "--help"], capsys))
    shared = {"--data.data_dir", "--data.subset", "--data.batch_size", "--data.val_fraction", "--data.split_seed",
              "--data.augment", "--model.architecture", "--model.lr", "--model.lr_schedule", "--model.weight_decay",
              "--model.label_smoothing", "--data.elastic_alpha", "--data.steps_per_execution", "--trainer.max_epochs",
              "--early_stopping.patience", "--seed_everything", "--output_dir", "--config", "--print_config"}
    assert shared <= keras_flags and shared <= lightning_flags, (shared - keras_flags, shared - lightning_flags)


@pytest.mark.parametrize("args, expected", [
    (["train", "--data.data_dir", "{tmp}/no_such_dir", "--data.download", "false"], "MNIST data in"),
    (["train", "--output_dir", "{tmp}/a_file/out"], "a_file is a file, not a folder"),
    (["train", "--trainer.max_epochs", "0"], "--trainer.max_epochs must be at least 1"),
    (["train", "--data.batch_size", "abc"], "--data.batch_size: expected int, got abc"),
    (["train", "--model.lr", "-0.1"], "--model.lr must be a positive number"),
    (["train", "--data.val_fraction", "1"], "--data.val_fraction must be between 0 and 1"),
    (["train", "--data.subset", "0"], "--data.subset must be between 20 and 60000"),
    (["cv", "--data.steps_per_execution", "0"], "--data.steps_per_execution must be at least 1, got 0"),
    # past every training image: 2**63 and up were TensorFlow's tracebacks (an int64 out of range)
    (["train", "--data.batch_size", str(2**63)], "--data.batch_size must be at most 60,000 (the training images)"),
    (["cv", "--data.eval_batch_size", str(2**64)], "--data.eval_batch_size must be at most 60,000"),
    (["train", "--model.architecture", "nope"], "not a preset"),
    (["cv", "--data.num_folds", "1"], "--data.num_folds must be between 2 and 100"),
    (["cv", "--early_stopping.patience", "-1"], "--early_stopping.patience must be at least 0"),
    (["train", "--seed_everything", "99999999999999999999"], "a seed must be from 0 to 4294967295"),
    (["cv", "--seed_everything", "-1"], "--seed_everything -1: a seed must be from 0"),
    (["train", "--trainer.max_epochs", "-1"], "--trainer.max_epochs must be at least 1, got -1"),
    (["train", "--no-such-flag"], "unrecognized"),
    (["train", "--output_dir", ""], "--output_dir '': an empty name; give a folder"),
    (["cv", "--data.data_dir", ""], "--data.data_dir '': an empty name; give a folder"),
    (["train", "--data.num_folds", "3"], "--data.num_folds 3: train validates on the hold-out"),
    (["cv", "--data.val_fraction", "0.3"], "--data.val_fraction 0.3: cv validates each fold on its own part"),
    (["train", "--data.elastic_alpha", "30"], "--data.elastic_alpha 30: the augmentation is off, so its ranges are "
                                              "not used"),
    (["cv", "--data.subset", "20"], "cannot split 20 images into --data.num_folds 5 stratified folds"),
    (["train", "--data.split_seed", "-1"], "--data.split_seed must be from 0 to 4294967295, got -1"),
    (["train", "--model.lr", "5"], "--model.lr must be a positive number up to 1"),
    (["train", "--config", "{tmp}/latin1.yaml"], "latin1.yaml: not UTF-8 text (byte 0xe9 at position 5)"),
    ([], "command"),
])
def test_bad_flags_fail_in_one_line_and_leave_nothing(capsys, tmp_path, monkeypatch, args, expected):
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "latin1.yaml").write_bytes("# caf\u00e9\n".encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "latin1.yaml"]


def test_a_training_ended_by_sigterm_says_so_and_leaves_no_run_folder_of_no_work(mnist_dir, tmp_path):
    """SIGTERM (``timeout``, a container's stop) killed the Keras reference where it stood: exit 143 with nothing
    said, and the run folder it had made, holding nothing, left behind. Now it ends as a Ctrl-C does, said in one
    line: the folder of a run that saved no model goes."""
    proc = subprocess.Popen([sys.executable, "-m", "keras_reference", "train", "--trainer.max_epochs", "5",
                             "--output_dir", "runs"], cwd=tmp_path, env=module_env(mnist_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # Keras' "Epoch 1/5": the run folder is made and training has begun
        if line.startswith("Epoch 1/"):
            break
    assert (tmp_path / "runs" / "keras" / "version_0").is_dir()
    proc.terminate()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and stderr.splitlines()[-1] == "terminated (SIGTERM)", stderr[-2000:]
    assert "Traceback" not in stderr and not (tmp_path / "runs" / "keras" / "version_0").exists()
