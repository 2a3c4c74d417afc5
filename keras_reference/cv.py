"""``python -m keras_reference cv``: the notebook's stratified k-fold, with a fresh model per fold.

The notebook kept training one model across all folds, so from fold 2 on each fold
validated on images the model had already trained on (its 99.98 % mean). Here every fold
builds and compiles a new model, trains it on the fold's training part (augmented by
default), validates on the fold's plain validation part, and is then tested; the fold
models' mean test probabilities give an ensemble score. The run owns
``<output_dir>/keras/cv_N``: ``fold_k.keras``, per-fold histories, ``cv_results.json``
(fold model paths relative to it) and ``cv_curves.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from keras_bridge.backend import import_keras
from keras_reference.config import FRAMEWORK, RunSettings
from keras_reference.data import load_data
from keras_bridge.files import save_model
from keras_reference.model import new_model
from keras_reference.train import evaluate, fit, save_with_weights, total_steps, write_history
from mnist_common.figures import plot_cv_curves
from mnist_common.mnist import load_mnist
from mnist_common.model_files import load_architecture
from mnist_common.predictions import softmax
from mnist_common.results import CV_CURVES_FILE, CV_RESULTS_FILE, CVResults, FoldResult, write_json
from mnist_common.runs import allocate_run_dir, discard_if_empty_of_work

keras = import_keras()

FOLD_MODEL = "fold_{fold}.keras"
FOLD_LAST_MODEL = "last_fold_{fold}.keras"  # --checkpoint.save_last: each fold's last epoch
PROBABILITY_CLIP = 1e-7  # Keras clips probabilities this way in categorical cross-entropy


def scores(probabilities: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(categorical cross-entropy, accuracy) of predicted ``probabilities`` against one-hot ``targets``."""
    true_class = targets.argmax(axis=1)
    p_true = np.clip(probabilities[np.arange(len(targets)), true_class], PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return float(-np.log(p_true).mean()), float((probabilities.argmax(axis=1) == true_class).mean())


def cross_validate(settings: RunSettings, callbacks: tuple = (), verbose: int | str = 2,
                   log=print) -> tuple[CVResults, Path]:
    """Run ``settings.data.num_folds`` folds in a new run folder; return the results and the folder.

    ``callbacks`` are added to every fold's ``fit`` (tests use one to watch each fold's model).
    """
    start = time.perf_counter()
    run_dir = allocate_run_dir(Path(settings.output_dir) / FRAMEWORK, "cv")
    data_settings, folds, probabilities = settings.data, [], []
    try:
        mnist = load_mnist(data_settings.data_dir)
        architecture = load_architecture(settings.model.architecture)
        for k in range(data_settings.num_folds):
            data = load_data(mnist=mnist, subset=data_settings.subset, num_folds=data_settings.num_folds, fold=k,
                             seed=data_settings.split_seed)
            keras.backend.clear_session()  # the previous fold's model is gone: nothing carries over
            keras.utils.set_random_seed(settings.seed_everything + k)  # each fold reproducible on its own
            model = new_model(architecture, settings=settings.model,
                              total_steps=total_steps(len(data.x_train), settings),
                              steps_per_execution=data_settings.steps_per_execution)
            data = data.for_model(model, architecture.pixel_scale)
            history, best_epoch, last = fit(model, data, settings, callbacks, verbose)
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val, data_settings.eval_batch_size)  # best weights
            outputs = model.predict(data.x_test, batch_size=data_settings.eval_batch_size, verbose=0)
            probabilities.append(softmax(outputs) if model.loss.from_logits else outputs)  # as compiled: logits or not
            test_loss, test_acc = scores(probabilities[-1], data.y_test)
            model_file = FOLD_MODEL.format(fold=k)
            save_model(model, run_dir / model_file)
            if last is not None:
                save_with_weights(model, last, run_dir / FOLD_LAST_MODEL.format(fold=k))
            write_history(history, run_dir, prefix=f"fold_{k}_")
            folds.append(FoldResult(fold=k, val_acc=val_acc, val_loss=val_loss, epochs=len(history),
                                    model_path=model_file, test_acc=test_acc, test_loss=test_loss, history=history))
            log(f"fold {k}: val_acc {val_acc:.4f}  val_loss {val_loss:.4f}  test_acc {test_acc:.4f}  "
                f"({len(history)} epochs, best {best_epoch + 1})")
    except BaseException:
        discard_if_empty_of_work(run_dir)
        raise
    ensemble_loss, ensemble_acc = scores(np.mean(probabilities, axis=0), data.y_test)  # mean of fold probabilities
    results = CVResults(framework=FRAMEWORK, num_folds=len(folds), folds=folds,
                        wall_seconds=round(time.perf_counter() - start, 2), ensemble_test_acc=ensemble_acc,
                        ensemble_test_loss=ensemble_loss, config=settings.as_dict())
    write_json(results, run_dir / CV_RESULTS_FILE)
    plot_cv_curves([f.history for f in folds], run_dir / CV_CURVES_FILE,
                   title=f"Keras, {len(folds)}-fold CV, val accuracy "
                         f"{results.val_acc_mean:.2%} ± {results.val_acc_std:.2%}")
    return results, run_dir
