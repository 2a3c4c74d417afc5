"""``python -m keras_reference train``: the notebook's first training run, done right.

Batch 32, at most 10 epochs, Adam(1e-4), EarlyStopping on val_loss (patience 3, best
weights restored), as in the notebook; but validation and early stopping use a stratified
hold-out of the *training* images, so the test score at the end is a real held-out score
(the notebook validated on the test set). The run owns ``<output_dir>/keras/version_N``:
``model.keras``, ``results.json``, ``history.json``/``.csv`` and ``curves.png``, each
written atomically.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from keras_bridge.backend import import_keras
from keras_reference.averaging import WeightAveraging
from keras_reference.config import FRAMEWORK, KEEP_EVERY_EPOCH, RunSettings
from keras_reference.data import Data, load_data, train_dataset
from keras_bridge.build import set_layer_weights
from keras_bridge.files import save_model
from keras_reference.model import PLAIN_LOSS, new_model
from mnist_common.figures import plot_curves
from mnist_common.files import write_text
from mnist_common.keras_file import read_keras_file
from mnist_common.model_files import load_architecture
from mnist_common.results import CURVES_FILE, RESULTS_FILE, RunResults, write_json
from mnist_common.runs import allocate_run_dir, discard_if_empty_of_work
from mnist_common.schedules import steps_per_epoch

keras = import_keras()
import tensorflow as tf  # noqa: E402  (Keras' backend, with its logging settings)

MODEL_FILE = "model.keras"
LAST_MODEL_FILE = "last.keras"  # --checkpoint.save_last: the last epoch's weights, as Lightning's last.ckpt
EPOCHS_FOLDER = "checkpoints"  # --checkpoint.save_top_k -1: each epoch's weights, as Lightning's checkpoints folder
EPOCH_MODEL_FILE = "epoch{epoch:02d}.keras"  # numbered from 0, as Lightning's checkpoint names
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
# Keras' names for what the shared results schema calls train_loss, train_acc, ...
HISTORY_KEYS = {"loss": "train_loss", "accuracy": "train_acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
# With label smoothing, Lightning's val/loss is plain cross-entropy (its training loss is smoothed): Keras' is a metric
SMOOTHED_HISTORY_KEYS = {**{k: v for k, v in HISTORY_KEYS.items() if k != "val_loss"}, f"val_{PLAIN_LOSS}": "val_loss"}


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


def history_rows(history: dict[str, list[float]], seconds: list[float] = (),
                 keys: dict[str, str] = HISTORY_KEYS) -> list[dict[str, float]]:
    """Keras' ``History.history`` (one list per metric) as the shared per-epoch rows (``keys``: Keras' name -> ours)."""
    epochs = len(history.get("loss", []))
    return [{"epoch": e, **({"seconds": seconds[e]} if e < len(seconds) else {}),
             **{ours: float(history[theirs][e]) for theirs, ours in keys.items() if theirs in history}}
            for e in range(epochs)]


def write_history(rows: list[dict[str, float]], folder: Path, prefix: str = "") -> None:
    """``history.json`` and ``history.csv`` (one row per epoch), atomically."""
    write_json(rows, folder / f"{prefix}{HISTORY_JSON}")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["epoch", "seconds", *HISTORY_KEYS.values()], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / f"{prefix}{HISTORY_CSV}", table.getvalue())


class LastWeights(keras.callbacks.Callback):
    """The weights at the end of each epoch as the callbacks before it saw them (with an EMA, the averaged ones,
    which Lightning's ``last.ckpt`` holds too): what ``--checkpoint.save_last`` saves as ``last.keras``."""

    weights: list | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.weights = self.model.get_weights()


class EveryEpoch(keras.callbacks.Callback):
    """Saves each epoch's weights as the callbacks before it saw them (with an EMA, the averaged ones, as in
    Lightning's checkpoints) in ``run_dir/checkpoints``: ``--checkpoint.save_top_k -1``, Lightning's "keep every
    epoch". Each file is written atomically."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.folder = run_dir / EPOCHS_FOLDER

    def on_train_begin(self, logs=None):
        self.folder.mkdir(exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.model, self.folder / EPOCH_MODEL_FILE.format(epoch=epoch))


def keras_monitor(monitor: str, smoothed: bool) -> str:
    """Keras' log name of what Lightning calls ``monitor`` (val/loss is plain cross-entropy even when smoothed)."""
    if monitor == "val/acc":
        return "val_accuracy"
    return f"val_{PLAIN_LOSS}" if smoothed else "val_loss"


def fit(model: "keras.Model", data: Data, settings: RunSettings, callbacks: tuple = (),
        verbose: int | str = 2, run_dir: Path | None = None) -> tuple[list[dict[str, float]], int, list | None]:
    """Train with early stopping on the validation part; return the history rows, the best epoch and (with
    ``--checkpoint.save_last``) the last epoch's weights. With ``--checkpoint.save_top_k -1`` each epoch's
    weights are saved under ``run_dir`` as they are trained (their seconds count in the epoch's, as
    Lightning's checkpoints' do).

    When this returns, the model holds the weights of its best epoch by ``--checkpoint.monitor`` (lowest
    val/loss by default: plain cross-entropy even when the training loss is label-smoothed), the checkpoint
    Lightning's ``fit`` tests; Keras restores them whether or not training stopped early. With an EMA of the
    weights (``trainer.callbacks``) validation scores the averaged weights and those are the ones kept, as in
    Lightning.
    """
    smoothed = bool(settings.model.label_smoothing)
    stopping, chosen = settings.early_stopping, settings.checkpoint
    early_stopping = keras.callbacks.EarlyStopping(monitor=keras_monitor(stopping.monitor, smoothed), mode=stopping.mode,
                                                   patience=stopping.patience, restore_best_weights=True)
    choosers = [early_stopping]
    if (chosen.monitor, chosen.mode) != (stopping.monitor, stopping.mode):
        # the checkpoint is chosen on another figure than early stopping's: an EarlyStopping that never stops
        # (patience beyond the run) keeps and restores the best epoch by that figure, after early stopping's restore
        choosers.append(keras.callbacks.EarlyStopping(monitor=keras_monitor(chosen.monitor, smoothed), mode=chosen.mode,
                                                      patience=settings.trainer.max_epochs + 1,
                                                      restore_best_weights=True))
    last = [LastWeights()] if chosen.save_last else []
    every = [EveryEpoch(run_dir)] if chosen.save_top_k == KEEP_EVERY_EPOCH else []
    timer = EpochTimer()
    decay = settings.trainer.ema_decay()
    # after the choosers: they keep (and restore) the averaged weights they were shown, as Lightning's checkpoints hold
    averaging = [WeightAveraging(decay)] if decay is not None else []
    history = model.fit(
        train_dataset(data.x_train, data.y_train, settings.data, settings.seed_everything),
        validation_data=(data.x_val, data.y_val), validation_batch_size=settings.data.eval_batch_size,
        epochs=settings.trainer.max_epochs, shuffle=False, verbose=verbose,  # shuffle=False: tf.data shuffles
        callbacks=[*choosers, *last, *every, *averaging, timer, *callbacks],
    )
    keys = SMOOTHED_HISTORY_KEYS if smoothed else HISTORY_KEYS
    return history_rows(history.history, timer.seconds, keys), choosers[-1].best_epoch, \
        (last[0].weights if last else None)


def save_with_weights(model: "keras.Model", weights: list, path: Path) -> None:
    """Save ``model`` as it would be with ``weights`` (the last epoch's), leaving it as it was."""
    kept = model.get_weights()
    model.set_weights(weights)
    try:
        save_model(model, path)
    finally:
        model.set_weights(kept)


def evaluate(model: "keras.Model", x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(plain cross-entropy, accuracy) of ``model`` on ``x``, ``y``, in inference mode (label smoothing or not)."""
    scores = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return float(scores.get(PLAIN_LOSS, scores["loss"])), float(scores["accuracy"])


def total_steps(train_images: int, settings: RunSettings) -> int:
    """The run's optimizer steps if no epoch is cut short: what Lightning's one-cycle schedule spans."""
    return settings.trainer.max_epochs * steps_per_epoch(train_images, settings.data.batch_size)


def train(settings: RunSettings, callbacks: tuple = (), verbose: int | str = 2) -> tuple[RunResults, "keras.Model", Path]:
    """Train, test, save; write the run's files. Returns (results, model, run folder)."""
    start = time.perf_counter()
    run_dir = allocate_run_dir(Path(settings.output_dir) / FRAMEWORK)
    try:
        data = load_data(settings.data.data_dir, subset=settings.data.subset,
                         val_fraction=settings.data.val_fraction, seed=settings.data.split_seed)
        keras.utils.set_random_seed(settings.seed_everything)
        # fine-tuning (--weights): the file's network as it is, its weights set as Keras' loading sets them
        origin = None if settings.weights is None else read_keras_file(settings.weights)
        architecture = origin.architecture if origin else load_architecture(settings.model.architecture)
        model = new_model(architecture, settings=settings.model, total_steps=total_steps(len(data.x_train), settings),
                          steps_per_execution=settings.data.steps_per_execution)
        if origin:
            set_layer_weights(model, architecture, origin.weights)
            print(f"starting from the weights of {settings.weights}", flush=True)
        data = data.for_model(model, architecture.pixel_scale)
        history, best_epoch, last = fit(model, data, settings, callbacks, verbose, run_dir)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, settings.data.eval_batch_size)
        save_model(model, run_dir / MODEL_FILE)
        if last is not None:
            save_with_weights(model, last, run_dir / LAST_MODEL_FILE)
    except BaseException:
        discard_if_empty_of_work(run_dir)
        raise
    results = RunResults(framework=FRAMEWORK, test_acc=test_acc, test_loss=test_loss, model_path=MODEL_FILE,
                         epochs=len(history), best_epoch=best_epoch, wall_seconds=round(time.perf_counter() - start, 2),
                         history=history, config=settings.as_dict())
    write_history(history, run_dir)
    write_json(results, run_dir / RESULTS_FILE)
    plot_curves(history, run_dir / CURVES_FILE, title=f"Keras, test accuracy {test_acc:.2%}")
    return results, model, run_dir
