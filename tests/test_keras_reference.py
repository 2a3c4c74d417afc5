"""keras_reference: the notebook's model, the shared splits, training, saving, k-fold, command line.

Trains on real MNIST (``$MNIST_DATA_DIR``, else ../shared/datasets) with small
subsets, so the whole file stays around a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from keras_reference import cv as cv_module
from keras_reference import train as train_module
from keras_reference.__main__ import main
from keras_reference.augment import notebook_augmentation
from keras_reference.config import CVConfig, TrainConfig
from keras_reference.cv import cross_validate, scores
from keras_reference.data import load_data
from keras_reference.model import build_model, compile_model, keras
from keras_reference.train import history_rows, train
from mnist_common.errors import UserError
from mnist_common.mnist import load_mnist
from mnist_common.results import CURVES_FILE, CV_CURVES_FILE, CV_RESULTS_FILE, RESULTS_FILE
from mnist_common.splits import make_split

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("MNIST_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")  # as conftest.py finds it

# REFERENCE.md, layer by layer: (Keras layer class, output shape without the batch axis, parameters)
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
TEST_ACC_FLOOR = 0.85  # measured 0.92-0.93 over three seeds


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MNIST_DATA_DIR": DATA_DIR, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "keras_reference", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run (library API), shared by the tests below; records the data it used."""
    tmp = tmp_path_factory.mktemp("keras_train")
    config = TrainConfig(epochs=TRAIN_EPOCHS, subset=TRAIN_SUBSET, data_dir=DATA_DIR,
                         output_dir=str(tmp / "out"), model_path=str(tmp / "ckpt" / "model.keras"))
    used = []

    def recording_load_data(*args, **kwargs):
        used.append(load_data(*args, **kwargs))
        return used[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "load_data", recording_load_data)
        results, model = train(config, verbose=0)
    return config, results, model, used[0]


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


def test_data_uses_the_shared_splits(trained):
    mnist = load_mnist(DATA_DIR)
    config, _, _, data = trained
    expected = make_split(mnist.train_labels, subset=TRAIN_SUBSET, val_fraction=config.val_fraction)
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


def test_bad_subsets_are_user_errors():
    mnist = load_mnist(DATA_DIR)
    with pytest.raises(UserError, match="subset"):
        load_data(mnist=mnist, subset=70_000)
    with pytest.raises(UserError, match="cannot split"):  # 2 images per class cannot make 5 folds
        load_data(mnist=mnist, subset=20, num_folds=5)


def test_short_training_learns_and_writes_results(trained):
    config, results, _, _ = trained
    assert results.test_acc >= TEST_ACC_FLOOR
    assert results.framework == "keras" and results.epochs == len(results.history) == TRAIN_EPOCHS
    assert 0 <= results.best_epoch < TRAIN_EPOCHS
    assert [set(row) for row in results.history] == \
        [{"epoch", "seconds", "train_loss", "train_acc", "val_loss", "val_acc"}] * TRAIN_EPOCHS
    out = Path(config.output_dir)
    for name in (RESULTS_FILE, CURVES_FILE, "history.csv", "history.json"):
        assert (out / name).stat().st_size > 0, name
    written = json.loads((out / RESULTS_FILE).read_text())
    assert written["test_acc"] == pytest.approx(results.test_acc)
    assert written["config"]["subset"] == TRAIN_SUBSET and Path(written["config"]["data_dir"]) == Path(DATA_DIR)
    assert Path(written["model_path"]) == Path(config.model_path).resolve()
    assert len((out / "history.csv").read_text().splitlines()) == TRAIN_EPOCHS + 1


def test_saved_model_reloads_in_a_fresh_process(trained, tmp_path):
    config, _, model, data = trained
    np.save(tmp_path / "x.npy", data.x_test[:500])
    expected = model.predict(data.x_test[:500], batch_size=500, verbose=0)
    script = textwrap.dedent(f"""
        import numpy as np
        from keras_reference.backend import import_keras
        keras = import_keras()
        model = keras.saving.load_model({config.model_path!r}, safe_mode=True)
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, model.predict(x, batch_size=500, verbose=0))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=0, atol=1e-6)


def test_augmentation_keeps_the_notebooks_meaning():
    layers = {type(layer).__name__: layer for layer in notebook_augmentation(seed=0).layers}
    assert layers["RandomRotation"].factor == pytest.approx((-5 / 360, 5 / 360))  # degrees, not turns
    zoom = layers["RandomZoom"]
    assert (zoom.height_lower, zoom.height_upper, zoom.width_lower, zoom.width_upper) == (-0.05, 0.05, -0.05, 0.05)
    assert all(layer.fill_mode == "nearest" for layer in layers.values())
    images = load_data(DATA_DIR, subset=100).x_train[:32]
    augmented = notebook_augmentation(seed=0)(images, training=True).numpy()
    assert augmented.shape == images.shape and 0.0 <= augmented.min() and augmented.max() <= 1.0
    assert 0.0 < np.abs(augmented - images).mean() < 0.2  # moved, but still the same digits
    np.testing.assert_array_equal(notebook_augmentation(seed=0)(images, training=False), images)


def test_kfold_trains_a_fresh_model_per_fold(tmp_path):
    config = CVConfig(epochs=1, subset=1500, folds=2, data_dir=DATA_DIR, output_dir=str(tmp_path / "out"),
                      checkpoint_dir=str(tmp_path / "ckpt"))
    recorder, used = Recorder(), []

    def recording_load_data(*args, **kwargs):
        used.append(load_data(*args, **kwargs))
        return used[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cv_module, "load_data", recording_load_data)
        results = cross_validate(config, callbacks=(recorder,), verbose=0, log=lambda *_: None)

    assert recorder.models[0] is not recorder.models[1]
    assert recorder.start_steps == [0, 0]  # a new optimizer too
    changed = [not np.array_equal(a, b) for a, b in zip(recorder.end_weights[0], recorder.start_weights[1])]
    assert all(changed)  # every weight of fold 1 starts anew, none carried over from fold 0
    labels = load_mnist(DATA_DIR).train_labels
    for k, data in enumerate(used):
        expected = make_split(labels, subset=1500, num_folds=2, fold=k)
        np.testing.assert_array_equal(data.split.val, expected.val)
        np.testing.assert_array_equal(data.split.train, expected.train)

    assert results.num_folds == 2 and [f.fold for f in results.folds] == [0, 1]
    assert results.val_acc_mean == pytest.approx(np.mean([f.val_acc for f in results.folds]))
    assert 0.0 <= results.ensemble_test_acc <= 1.0 and results.config["augment"] is True
    for fold in results.folds:
        assert Path(fold.model_path).is_file() and fold.epochs == len(fold.history) == 1
    assert (tmp_path / "out" / CV_RESULTS_FILE).is_file() and (tmp_path / "out" / CV_CURVES_FILE).is_file()


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


def test_cli_train_writes_results_curves_and_model(tmp_path):
    done = run_cli("train", "--subset", "2000", "--epochs", "1", "--data-dir", DATA_DIR,
                   "--output-dir", str(tmp_path / "out"), "--model-path", str(tmp_path / "ckpt" / "m.keras"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())
    assert results["framework"] == "keras" and results["epochs"] == 1 and results["config"]["subset"] == 2000
    assert (tmp_path / "out" / CURVES_FILE).is_file() and (tmp_path / "ckpt" / "m.keras").is_file()
    assert str(tmp_path / "out" / RESULTS_FILE) in done.stdout and "test accuracy" in done.stdout


def test_cli_cv_writes_results_for_every_fold(tmp_path):
    done = run_cli("cv", "--subset", "1500", "--folds", "2", "--epochs", "1", "--no-augment",
                   "--output-dir", "out", "--checkpoint-dir", "ckpt", cwd=tmp_path)  # data dir from the env
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / CV_RESULTS_FILE).read_text())
    assert results["num_folds"] == 2 and len(results["folds"]) == 2 and results["config"]["augment"] is False
    assert results["ensemble_test_acc"] is not None and (tmp_path / "out" / CV_CURVES_FILE).is_file()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["fold_0.keras", "fold_1.keras"]


def _assert_one_line_error(code: int, stderr: str, expected: str) -> None:
    assert code == 2
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr


@pytest.mark.parametrize("args, expected", [
    (["train", "--data-dir", "{tmp}/no_such_dir"], "MNIST data in"),
    (["train", "--output-dir", "{tmp}/a_file/out"], "output directory"),
    (["cv", "--checkpoint-dir", "{tmp}/a_file/ckpt"], "checkpoint directory"),
])
def test_cli_bad_paths_fail_in_one_line(tmp_path, args, expected):
    (tmp_path / "a_file").write_text("not a directory")
    done = run_cli(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    _assert_one_line_error(done.returncode, done.stderr, expected)


@pytest.mark.parametrize("args, expected", [
    (["train", "--epochs", "0"], "epochs"),
    (["train", "--batch-size", "abc"], "--batch-size"),
    (["train", "--lr", "-0.1"], "learning rate"),
    (["train", "--val-fraction", "1"], "val fraction"),
    (["train", "--subset", "0"], "subset"),
    (["train", "--model-path", "model.h5"], ".keras"),
    (["cv", "--folds", "1"], "folds"),
    (["cv", "--patience", "-1"], "patience"),
    (["train", "--no-such-flag"], "unrecognized"),
    ([], "command"),
])
def test_bad_flags_fail_in_one_line(capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    _assert_one_line_error(exit_info.value.code, capsys.readouterr().err, expected)
