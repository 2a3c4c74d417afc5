"""``python -m keras_reference train``: the notebook's first training run, done right.

Batch 32, at most 10 epochs, Adam(1e-4), EarlyStopping on val_loss (patience 3,
best weights restored), as in the notebook; but validation and early stopping
use a stratified hold-out of the *training* images, so the test score at the
end is a real held-out score (the notebook validated on the test set).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from keras_reference.config import Config, TrainConfig, writable_dir
from keras_reference.data import Data, load_data, train_dataset
from keras_reference.backend import import_keras
from keras_reference.files import save_model
from keras_reference.model import new_model
from mnist_common.figures import plot_curves
from mnist_common.results import CURVES_FILE, RESULTS_FILE, RunResults, write_json

keras = import_keras()
import tensorflow as tf  # noqa: E402  (Keras' backend, with its logging settings)

FRAMEWORK = "keras"
EVAL_BATCH_SIZE = 500  # validation/test batch size: inference results do not depend on it
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
# Keras' names for what the shared results schema calls train_loss, train_acc, ...
HISTORY_KEYS = {"loss": "train_loss", "accuracy": "train_acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}


def use_device() -> str:
    """Say where TensorFlow will run; let GPU memory grow so torch can share the card."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: keep its setting
            pass
    return f"GPU ({len(gpus)} visible)" if gpus else "CPU"


class EpochTimer(keras.callbacks.Callback):
    """Training seconds (validation included) at the end of each epoch, as Lightning's history has them."""

    def on_train_begin(self, logs=None):
        self.seconds, self._elapsed = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._elapsed += time.perf_counter() - self._started
        self.seconds.append(round(self._elapsed, 3))


def history_rows(history: dict[str, list[float]], seconds: list[float] = ()) -> list[dict[str, float]]:
    """Keras' ``History.history`` (one list per metric) as the shared per-epoch rows."""
    epochs = len(history.get("loss", []))
    return [{"epoch": e, **({"seconds": seconds[e]} if e < len(seconds) else {}),
             **{ours: float(history[theirs][e]) for theirs, ours in HISTORY_KEYS.items() if theirs in history}}
            for e in range(epochs)]


def fit(model: "keras.Model", data: Data, config: Config, csv_path: str | os.PathLike,
        callbacks: tuple = (), verbose: int | str = 2) -> tuple[list[dict[str, float]], int]:
    """Train with early stopping on the validation part; return the history rows and the best epoch.

    When this returns, the model holds the weights of its best epoch (lowest val_loss).
    """
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                   restore_best_weights=True)
    timer = EpochTimer()
    history = model.fit(
        train_dataset(data.x_train, data.y_train, config.batch_size, config.seed, config.augment),
        validation_data=(data.x_val, data.y_val), validation_batch_size=EVAL_BATCH_SIZE,
        epochs=config.epochs, shuffle=False, verbose=verbose,  # shuffle=False: tf.data shuffles
        callbacks=[early_stopping, timer, keras.callbacks.CSVLogger(str(csv_path)), *callbacks],
    )
    return history_rows(history.history, timer.seconds), early_stopping.best_epoch


def evaluate(model: "keras.Model", x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on ``x``, ``y``, in inference mode."""
    scores = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0, return_dict=True)
    return float(scores["loss"]), float(scores["accuracy"])


def train(config: TrainConfig, callbacks: tuple = (), verbose: int | str = 2) -> tuple[RunResults, "keras.Model"]:
    """Train, test, save the ``.keras`` file, write results.json, history and curves; return results and model."""
    start = time.perf_counter()
    config.validate()
    output_dir = writable_dir(config.output_dir, "output directory")
    model_path = Path(config.model_path).resolve()
    writable_dir(model_path.parent, "model directory")
    data = load_data(config.data_dir, subset=config.subset, val_fraction=config.val_fraction,
                     seed=config.split_seed)
    keras.utils.set_random_seed(config.seed)
    model = new_model(config.architecture, config.lr)
    history, best_epoch = fit(model, data, config, output_dir / HISTORY_CSV, callbacks, verbose)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    save_model(model, model_path)
    results = RunResults(framework=FRAMEWORK, test_acc=test_acc, test_loss=test_loss, model_path=str(model_path),
                         epochs=len(history), best_epoch=best_epoch, wall_seconds=time.perf_counter() - start,
                         history=history, config=config.as_dict())
    write_json(history, output_dir / HISTORY_JSON)
    write_json(results, output_dir / RESULTS_FILE)
    plot_curves(history, output_dir / CURVES_FILE, title=f"Keras, test accuracy {test_acc:.2%}")
    return results, model
